"""Wrapper of rule measure: selfdistill.measure.measure_run."""
from selfdistill.logs import to_rule_log
from selfdistill.measure import measure_run

to_rule_log(snakemake.log[0])
measure_run(snakemake.input.preds, dict(snakemake.wildcards), snakemake.output.metrics,
            snakemake.output.reliability, **snakemake.params.bins,
            metrics_last_out=snakemake.output.metrics_last)
