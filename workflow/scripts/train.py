"""Wrapper of rule train: selfdistill.run.train_run for one network."""
import logging

from selfdistill.run import spec_from_params, train_run

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
train_run(spec_from_params(snakemake.params.spec))
