"""Wrapper of rule prepare_dataset: selfdistill.data.prepare_dataset."""
from pathlib import Path

from selfdistill.data import prepare_dataset
from selfdistill.logs import to_rule_log

to_rule_log(snakemake.log[0])
prepare_dataset(snakemake.wildcards.dataset, snakemake.params.spec,
                Path(snakemake.output.manifest).parent)
