"""Wrapper of rule prepare_dataset: selfdistill.data.prepare_dataset."""
import logging
from pathlib import Path

from selfdistill.data import prepare_dataset

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
prepare_dataset(snakemake.wildcards.dataset, snakemake.params.spec,
                Path(snakemake.output.manifest).parent)
