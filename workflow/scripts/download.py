"""Wrapper of rules download_<source>: selfdistill.download.download_source."""
from pathlib import Path

from selfdistill.download import download_source
from selfdistill.logs import to_rule_log

to_rule_log(snakemake.log[0])
download_source(snakemake.params.source, snakemake.params.spec,
                Path(snakemake.output[0]).parent)
