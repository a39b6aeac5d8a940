"""Wrapper of the train_bundle rules: selfdistill.run.train_bundle for one seed's runs."""
from selfdistill.logs import to_rule_log
from selfdistill.run import spec_from_params, train_bundle

to_rule_log(snakemake.log[0])
train_bundle([spec_from_params(p) for p in snakemake.params.specs])
