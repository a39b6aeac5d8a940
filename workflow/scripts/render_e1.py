"""Wrapper of rule render_e1: selfdistill.plots.render_e1."""
import logging

from selfdistill.plots import render_e1

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
render_e1(snakemake.input.metrics, snakemake.output.png, snakemake.output.pdf,
          snakemake.output.sidecar)
