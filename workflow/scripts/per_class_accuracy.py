"""Wrapper of rule per_class_accuracy: selfdistill.measure.per_class_table over every
network's predictions, each named by the identity its run.json records."""
import json

from selfdistill.logs import to_rule_log
from selfdistill.measure import per_class_table

to_rule_log(snakemake.log[0])
runs = []
for path in snakemake.input.runs:
    with open(path, encoding="utf-8") as fh:
        runs.append(json.load(fh)["run"])
per_class_table(snakemake.input.preds, runs, snakemake.output[0])
