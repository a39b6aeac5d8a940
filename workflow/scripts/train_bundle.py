"""Wrapper of the train_bundle rules: selfdistill.run.train_bundle for one seed's runs."""
import logging

from selfdistill.run import spec_from_params, train_bundle

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")
train_bundle([spec_from_params(p) for p in snakemake.params.specs])
