# Metrics from saved predictions (SPEC §4) and the tidy tables (SPEC §7).


if BUNDLE == "none":

    rule measure:
        input:
            preds="results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}/preds.npz",
        output:
            metrics="results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}/metrics.csv",
            reliability=(
                "results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}/reliability.csv"
            ),
        params:
            bins=measure_params,
        log:
            "logs/measure/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}.log",
        localrule: True
        conda:
            "../../envs/selfdistill.yaml"
        script:
            "../scripts/measure.py"

else:
    # With bundled training, one measure job per bundle: the same per-run outputs from one
    # process instead of one process per network (each start costs about a second).
    for _exp in G.experiments(config):

        rule:
            name:
                f"measure_bundle_{_exp['dataset']}_{_exp['arch']}"
            input:
                preds=bundle_files(_exp, ["preds.npz"]),
            output:
                metrics=bundle_files(_exp, ["metrics.csv"]),
                reliability=bundle_files(_exp, ["reliability.csv"]),
            params:
                runs=bundle_runs(_exp),
                bins=measure_params,
            log:
                f"logs/measure_bundle/{_exp['dataset']}/{_exp['arch']}/seed{{seed}}.log",
            localrule: True
            conda:
                "../../envs/selfdistill.yaml"
            script:
                "../scripts/measure_bundle.py"


rule collect:
    input:
        metrics=run_metric_files,
        reliability=run_reliability_files,
        history=run_history_files,
    output:
        metrics="results/metrics.csv",
        reliability="results/reliability.csv",
        history="results/history.csv",
    log:
        "logs/collect/collect.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/collect.py"
