"""Wrapper of rule render_e3: selfdistill.tables.write_methods."""
import logging

from selfdistill.tables import write_methods

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
out = snakemake.output
write_methods(snakemake.input.metrics, out.csv, out.md, out.tex, out.sidecar,
              compare=dict(snakemake.params.compare))
