# Training (methods §2 recipe, §3 methods). One job per network (execution.bundle: none), or
# one job per (dataset, arch, seed) that trains that seed's runs in DAG order (bundle: seed,
# rules train_bundle_<dataset>_<arch>), or two per seed (bundle: chain): the CE -> SD chain
# (train_chain_*) and the LS/ER/BS baselines (train_baselines_*). Paths: common.smk.
# params hold exactly what a network's numbers depend on (grid.run_params): a change there
# retrains; resources (gpu, mem_mb, runtime, checkpoint_every) only schedule, and the
# wrappers take the config for provenance from snakemake.config, so neither reruns a job.
# A bundle job that runs again trains only the networks without kept finished outputs
# (run.train_bundle).

if BUNDLE == "none":

    rule train:
        input:
            manifest=f"{DATA_DIR}/manifest.json",
            teacher=teacher_input,
        output:
            model=f"{RUN_DIR}/model.pt",
            history=f"{RUN_DIR}/history.csv",
            preds=f"{RUN_DIR}/preds.npz",
            provenance=f"{RUN_DIR}/run.json",
        log:
            run_log("logs/train", "log"),
        benchmark:
            run_log("benchmarks/train", "tsv")
        conda:
            "../../envs/selfdistill.yaml"
        threads: config["execution"]["threads"]
        resources:
            gpu=train_gpu,
            mem_mb=train_mem_mb,
            runtime=train_runtime,
            checkpoint_every=train_checkpoint_every,
        params:
            spec=run_params,
        script:
            "../scripts/train.py"

else:
    for _exp in G.experiments(config):
        for _part in bundle_parts(_exp):

            rule:
                name:
                    f"train_{_part}_{_exp['dataset']}_{_exp['arch']}"
                input:
                    manifest=f"{G.data_dir(_exp['dataset'])}/manifest.json",
                output:
                    bundle_outputs(_exp, _part),
                log:
                    f"logs/train_{_part}/{_exp['dataset']}/{_exp['arch']}/seed{{seed}}.log",
                benchmark:
                    f"benchmarks/train_{_part}/{_exp['dataset']}/{_exp['arch']}/seed{{seed}}.tsv"
                # Longest first: bundles with more networks start first, so the short
                # ones fill the cores at the end (shorter makespan).
                priority: len(bundle_parts(_exp)[_part])
                conda:
                    "../../envs/selfdistill.yaml"
                threads: config["execution"]["threads"]
                resources:
                    gpu=_exp["resources"]["gpu"],
                    mem_mb=bundle_mem_mb(_exp),
                    runtime=bundle_runtime(_exp, _part),
                    checkpoint_every=_exp["resources"]["checkpoint_every"],
                params:
                    specs=bundle_params(_exp, _part),
                script:
                    "../scripts/train_bundle.py"
