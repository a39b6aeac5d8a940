"""Wrapper of rule render_e2: selfdistill.plots.render_e2 (figure + matched-entropy table)."""
from selfdistill.logs import to_rule_log
from selfdistill.plots import render_e2

to_rule_log(snakemake.log[0])
out = snakemake.output
render_e2(snakemake.input.metrics, out.png, out.pdf, out.sidecar, out.table_csv, out.table_md,
          out.table_tex, out.table_sidecar, matched_path=(snakemake.input.matched or [None])[0])
