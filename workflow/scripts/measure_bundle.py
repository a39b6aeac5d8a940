"""Wrapper of the measure_bundle rules: selfdistill.measure.measure_run for each run of a
bundle (outputs in the order of the rule's inputs)."""
from selfdistill.logs import to_rule_log
from selfdistill.measure import measure_run

to_rule_log(snakemake.log[0])
for preds, run, metrics, reliability, last in zip(
        snakemake.input.preds, snakemake.params.runs, snakemake.output.metrics,
        snakemake.output.reliability, snakemake.output.metrics_last, strict=True):
    measure_run(preds, run, metrics, reliability, **snakemake.params.bins, metrics_last_out=last)
