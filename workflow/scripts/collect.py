"""Wrapper of rule collect: selfdistill.measure.collect for each tidy table."""
from selfdistill.logs import to_rule_log
from selfdistill.measure import collect

to_rule_log(snakemake.log[0])
for name in ("metrics", "metrics_last", "reliability", "history"):
    # the grid's networks, then the matched-entropy runs (match.smk)
    collect([*snakemake.input[name], *snakemake.input[f"matched_{name}"]],
            snakemake.output[name])
