"""Wrapper of rule render_e4: selfdistill.plots.render_e4."""
import logging

from selfdistill.plots import render_e4

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
render_e4(snakemake.input.reliability, snakemake.output.png, snakemake.output.pdf,
          snakemake.output.sidecar, compare=dict(snakemake.params.compare))
