"""Wrapper of rule measure: selfdistill.measure.measure_run."""
from selfdistill.measure import measure_run

measure_run(snakemake.input.preds, dict(snakemake.wildcards), snakemake.output.metrics,
            snakemake.output.reliability, **snakemake.params.bins)
