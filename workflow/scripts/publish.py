"""Wrapper of rule publish: selfdistill.publish.publish into docs/results/ (config key publish_dir)."""
from pathlib import Path

from selfdistill.logs import to_rule_log
from selfdistill.publish import publish

to_rule_log(snakemake.log[0])
publish(Path(snakemake.input.claims).parent, Path(snakemake.input.metrics).parent,
        Path(snakemake.output.readme).parent, configfiles=list(snakemake.params.configfiles))
