"""Wrapper of rule collect: selfdistill.measure.collect for each tidy table."""
from selfdistill.logs import to_rule_log
from selfdistill.measure import collect

to_rule_log(snakemake.log[0])
for name in ("metrics", "metrics_last", "reliability", "history"):
    collect(snakemake.input[name], snakemake.output[name])
