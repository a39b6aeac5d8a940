"""Wrapper of rule render_claims: selfdistill.claims.render_claims."""
from selfdistill.claims import render_claims
from selfdistill.logs import to_rule_log

to_rule_log(snakemake.log[0])
out = snakemake.output
render_claims(snakemake.input.metrics, out.md, out.csv, out.sidecar,
              compare=dict(snakemake.params.compare), matched_path=(snakemake.input.matched or [None])[0],
              metrics_last_path=snakemake.input.metrics_last,
              literature=list(snakemake.params.claims))
