"""Wrapper of the train_bundle rules: selfdistill.run.train_bundle for one seed's runs."""
from selfdistill.logs import to_rule_log
from selfdistill.run import spec_from_params, train_bundle

to_rule_log(snakemake.log[0])
# params: the networks' identities (a rerun trigger); resources and execution.tensorboard:
# scheduling and event files, not identity; config: provenance
train_bundle([spec_from_params(p, snakemake.resources.checkpoint_every, snakemake.config,
                               snakemake.resources.gpu,
                               snakemake.config["execution"]["tensorboard"])
              for p in snakemake.params.specs])
