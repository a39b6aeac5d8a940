"""Wrapper of rule train: selfdistill.run.train_run for one network."""
from selfdistill.logs import to_rule_log
from selfdistill.run import spec_from_params, train_run

to_rule_log(snakemake.log[0])
# params: the network's identity (a rerun trigger); resources and execution.tensorboard:
# scheduling and event files, not identity; config: provenance
train_run(spec_from_params(snakemake.params.spec, snakemake.resources.checkpoint_every,
                           snakemake.config, snakemake.resources.gpu,
                           snakemake.config["execution"]["tensorboard"]))
