"""Wrapper of rule render_e2: selfdistill.plots.render_e2 (figure + matched-entropy table)."""
import logging

from selfdistill.plots import render_e2

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
out = snakemake.output
render_e2(snakemake.input.metrics, out.png, out.pdf, out.sidecar, out.table_csv, out.table_md,
          out.table_tex, out.table_sidecar)
