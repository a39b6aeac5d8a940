"""Wrapper of rule render_e5: selfdistill.plots.render_e5."""
import logging

from selfdistill.plots import render_e5

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
render_e5(snakemake.input.metrics, snakemake.output.png, snakemake.output.pdf,
          snakemake.output.sidecar)
