# Metrics from saved predictions (SPEC §4) and the tidy tables (SPEC §7).


rule measure:
    input:
        preds="results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}/preds.npz",
    output:
        metrics="results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}/metrics.csv",
        reliability="results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}/reliability.csv",
    params:
        bins=measure_params,
    log:
        "logs/measure/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/measure.py"


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
