"""Wrapper of rule render_e3: selfdistill.tables.write_methods."""
from selfdistill.logs import to_rule_log
from selfdistill.tables import write_methods

to_rule_log(snakemake.log[0])
out = snakemake.output
write_methods(snakemake.input.metrics, out.csv, out.md, out.tex, out.sidecar,
              compare=dict(snakemake.params.compare),
              metrics_last_path=snakemake.input.metrics_last)
