# Verified downloads of the paper-scale datasets (SPEC §2, §5): one rule per source that
# needs archives (cifar10, cifar100, tiny_imagenet, cub200, fashion_mnist), fetched from
# the official URL or the dataset block's `mirror`, checked against pinned sha256/md5
# (selfdistill.download.SOURCES) and written to resources/downloads/{source}/.
# Include it BEFORE data.smk: prepare_dataset takes `download_input` as an input.
from selfdistill import download as D

# Sources of the datasets in the grid that have archives (DATASETS comes from common.smk).
DOWNLOAD_SOURCES = sorted(
    {config["datasets"][d]["source"] for d in DATASETS} & set(D.SOURCES)
)


def download_input(wildcards):
    """Archives the prepare_dataset job of a dataset needs ([] for embedded sources)."""
    source = config["datasets"][wildcards.dataset]["source"]
    return D.download_outputs(source) if source in D.SOURCES else []


for _source in DOWNLOAD_SOURCES:

    rule:
        name:
            f"download_{_source}"
        output:
            D.download_outputs(_source),
        params:
            source=_source,
            spec=D.download_params(config["datasets"], _source),
        log:
            f"logs/download/{_source}.log",
        benchmark:
            f"benchmarks/download/{_source}.tsv"
        localrule: True
        conda:
            "../../envs/selfdistill.yaml"
        script:
            "../scripts/download.py"
