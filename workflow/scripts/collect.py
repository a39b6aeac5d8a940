"""Wrapper of rule collect: selfdistill.measure.collect for each tidy table."""
from selfdistill.measure import collect

for name in ("metrics", "reliability", "history"):
    collect(snakemake.input[name], snakemake.output[name])
