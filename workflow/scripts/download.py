"""Wrapper of rules download_<source>: selfdistill.download.download_source."""
import logging
from pathlib import Path

from selfdistill.download import download_source

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
download_source(snakemake.params.source, snakemake.params.spec,
                Path(snakemake.output[0]).parent)
