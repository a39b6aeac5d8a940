"""Wrapper of rule render_claims: selfdistill.claims.render_claims."""
import logging

from selfdistill.claims import render_claims

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
out = snakemake.output
render_claims(snakemake.input.metrics, out.md, out.csv, out.sidecar,
              compare=dict(snakemake.params.compare))
