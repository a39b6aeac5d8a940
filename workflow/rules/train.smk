# Training (SPEC §2 recipe, §3 methods). One job per network (execution.bundle: none), or
# one job per (dataset, arch, seed) that trains that seed's runs in DAG order (bundle: seed).
RUN_DIR = "results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}"

if BUNDLE == "none":

    rule train:
        input:
            manifest="results/data/{dataset}/manifest.json",
            teacher=teacher_input,
        output:
            model=f"{RUN_DIR}/model.pt",
            history=f"{RUN_DIR}/history.csv",
            preds=f"{RUN_DIR}/preds.npz",
            provenance=f"{RUN_DIR}/run.json",
        params:
            spec=run_params,
        threads: config["execution"]["threads"]
        resources:
            gpu=train_gpu,
            mem_mb=train_mem_mb,
            runtime=train_runtime,
        log:
            "logs/train/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}.log",
        benchmark:
            "benchmarks/train/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}.tsv"
        conda:
            "../../envs/selfdistill.yaml"
        script:
            "../scripts/train.py"

else:
    for _exp in G.experiments(config):

        rule:
            name:
                f"train_bundle_{_exp['dataset']}_{_exp['arch']}"
            input:
                manifest=f"results/data/{_exp['dataset']}/manifest.json",
            output:
                bundle_outputs(_exp),
            params:
                specs=bundle_params(_exp),
            threads: config["execution"]["threads"]
            resources:
                gpu=_exp["resources"]["gpu"],
                mem_mb=bundle_mem_mb(_exp),
                runtime=bundle_runtime(_exp),
            log:
                f"logs/train_bundle/{_exp['dataset']}/{_exp['arch']}/seed{{seed}}.log",
            benchmark:
                f"benchmarks/train_bundle/{_exp['dataset']}/{_exp['arch']}/seed{{seed}}.tsv"
            conda:
                "../../envs/selfdistill.yaml"
            script:
                "../scripts/train_bundle.py"
