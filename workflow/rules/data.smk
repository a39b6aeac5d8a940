# Dataset preparation (methods §2 validation hold-out, §5 embedded default).


rule prepare_dataset:
    input:
        archives=download_input,
    output:
        train=f"{DATA_DIR}/train.npz",
        val=f"{DATA_DIR}/val.npz",
        test=f"{DATA_DIR}/test.npz",
        manifest=f"{DATA_DIR}/manifest.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        spec=dataset_params,
    script:
        "../scripts/prepare_dataset.py"
