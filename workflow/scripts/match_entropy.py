"""Wrapper of checkpoint match_entropy: selfdistill.matching.match_round for one round."""
from selfdistill.io import read_json
from selfdistill.logs import to_rule_log
from selfdistill.matching import match_round, read_rows, write_round

to_rule_log(snakemake.log[0])
w = snakemake.wildcards
previous = read_json(snakemake.input.previous[0]) if snakemake.input.previous else None
decision = match_round(read_rows(snakemake.input.metrics), w.dataset, w.arch,
                       int(snakemake.params.sd_gen), float(snakemake.params.tolerance),
                       int(w.round), previous)
write_round(decision, snakemake.output[0])
