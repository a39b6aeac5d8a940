# Dataset preparation (SPEC §2 validation hold-out, §5 embedded default).


rule prepare_dataset:
    input:
        archives=download_input,
    output:
        train="results/data/{dataset}/train.npz",
        val="results/data/{dataset}/val.npz",
        test="results/data/{dataset}/test.npz",
        manifest="results/data/{dataset}/manifest.json",
    params:
        spec=dataset_params,
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/prepare_dataset.py"
