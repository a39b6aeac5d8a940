"""Wrapper of rule render_e6: selfdistill.plots.render_e6 (figure) and
selfdistill.tables.write_teacher_free (table, with the literature claims of claims.csv)."""
from selfdistill.logs import to_rule_log
from selfdistill.plots import render_e6
from selfdistill.tables import write_teacher_free

to_rule_log(snakemake.log[0])
out = snakemake.output
compare = dict(snakemake.params.compare)
render_e6(snakemake.input.metrics, out.png, out.pdf, out.sidecar, compare=compare)
write_teacher_free(snakemake.input.metrics, out.table_csv, out.table_md, out.table_tex,
                   out.table_sidecar, compare=compare, claims_path=snakemake.input.claims)
