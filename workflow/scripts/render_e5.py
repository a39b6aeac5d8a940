"""Wrapper of rule render_e5: selfdistill.plots.render_e5."""
from selfdistill.logs import to_rule_log
from selfdistill.plots import render_e5

to_rule_log(snakemake.log[0])
render_e5(snakemake.input.metrics, snakemake.output.png, snakemake.output.pdf,
          snakemake.output.sidecar)
