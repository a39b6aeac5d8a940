# selfdistill: "Self-Distillation as Instance-Specific Label Smoothing" (Zhang & Sabuncu,
# NeurIPS 2020), end to end. This file is an index: stages live in workflow/rules/.
#   snakemake --cores 2 all            every figure, table and the claims check
#   snakemake --cores 2 figures        re-render from results/metrics.csv, no retraining
#   snakemake --cores 2 metrics        train + measure + collect only
#   snakemake --cores 2 benchmark      python -m selfdistill.bench -> results/bench/
from snakemake.utils import min_version

min_version("9.0")


# Relative to the working directory. Used as a module with `config: config` (README,
# "Use as a module"), Snakemake skips this line: the user's config is the whole config.
configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/match.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/bench.smk"


rule all:
    default_target: True
    input:
        FIGURE_FILES,
        PER_CLASS,


rule figures:
    input:
        FIGURE_FILES,


rule metrics:
    input:
        COLLECTED,
        PER_CLASS,


rule data:
    input:
        DATA_MANIFESTS,
