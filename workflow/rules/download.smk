# Verified downloads of the paper-scale datasets (methods §2, §5): one rule per source that
# needs archives (cifar10, cifar100, tiny_imagenet, cub200, fashion_mnist), fetched from
# the official URL or the dataset block's `mirror`, checked against pinned sha256/md5
# (selfdistill.download.SOURCES) and written to resources/downloads/{source}/.
# DOWNLOAD_SOURCES, download_input and D (selfdistill.download) come from common.smk.


for _source in DOWNLOAD_SOURCES:

    rule:
        name:
            f"download_{_source}"
        output:
            D.download_outputs(_source),
        log:
            f"logs/download/{_source}.log",
        benchmark:
            f"benchmarks/download/{_source}.tsv"
        localrule: True
        conda:
            "../../envs/selfdistill.yaml"
        params:
            source=_source,
            spec=D.download_params(config["datasets"], _source),
        script:
            "../scripts/download.py"
