"""Wrapper of rule matched_table: selfdistill.matching.matched_table."""
from selfdistill.logs import to_rule_log
from selfdistill.matching import matched_table
from selfdistill.tables import read_metrics

to_rule_log(snakemake.log[0])
matched_table(snakemake.input.rounds, read_metrics(snakemake.input.metrics), snakemake.output[0])
