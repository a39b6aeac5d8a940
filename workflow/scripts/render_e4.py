"""Wrapper of rule render_e4: selfdistill.plots.render_e4."""
from selfdistill.logs import to_rule_log
from selfdistill.plots import render_e4

to_rule_log(snakemake.log[0])
render_e4(snakemake.input.reliability, snakemake.output.png, snakemake.output.pdf,
          snakemake.output.sidecar, compare=dict(snakemake.params.compare))
