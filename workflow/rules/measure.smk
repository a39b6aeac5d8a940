# Metrics from saved predictions (methods §4) and the tidy tables (methods §7).


if BUNDLE == "none":

    rule measure:
        input:
            preds=f"{RUN_DIR}/preds.npz",
        output:
            metrics=f"{RUN_DIR}/metrics.csv",
            metrics_last=f"{RUN_DIR}/metrics_last.csv",
            reliability=f"{RUN_DIR}/reliability.csv",
        log:
            run_log("logs/measure", "log"),
        localrule: True
        conda:
            "../../envs/selfdistill.yaml"
        params:
            bins=measure_params,
        script:
            "../scripts/measure.py"

else:
    # With bundled training, one measure job per bundle: the same per-run outputs from one
    # process instead of one process per network (each start costs about a second).
    for _exp in G.experiments(config):
        for _part in bundle_parts(_exp):

            rule:
                name:
                    f"measure_{_part}_{_exp['dataset']}_{_exp['arch']}"
                input:
                    preds=bundle_files(_exp, _part, ["preds.npz"]),
                output:
                    metrics=bundle_files(_exp, _part, ["metrics.csv"]),
                    metrics_last=bundle_files(_exp, _part, ["metrics_last.csv"]),
                    reliability=bundle_files(_exp, _part, ["reliability.csv"]),
                log:
                    f"logs/measure_{_part}/{_exp['dataset']}/{_exp['arch']}/seed{{seed}}.log",
                # as soon as its bundle is done (a second), not all at the end
                priority: 100
                localrule: True
                conda:
                    "../../envs/selfdistill.yaml"
                params:
                    runs=bundle_runs(_exp, _part),
                    bins=measure_params,
                script:
                    "../scripts/measure_bundle.py"


rule collect:
    input:
        metrics=run_metric_files(),
        metrics_last=run_metric_last_files(),
        reliability=run_reliability_files(),
        history=run_history_files(),
        matched_metrics=matched_metric_files,
        matched_metrics_last=matched_metric_last_files,
        matched_reliability=matched_reliability_files,
        matched_history=matched_history_files,
    output:
        metrics="results/metrics.csv",
        metrics_last="results/metrics_last.csv",
        reliability="results/reliability.csv",
        history="results/history.csv",
    log:
        "logs/collect/collect.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/collect.py"


# Per-class top-1 accuracy of every network (grid and matched runs), straight from the
# predictions: one numpy job after training (docs/results.md).
rule per_class_accuracy:
    input:
        unpack(per_class_input),
    output:
        PER_CLASS,
    log:
        "logs/collect/per_class_accuracy.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/per_class_accuracy.py"
