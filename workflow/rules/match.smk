# Matched-entropy baselines (methods §5 E2, §6 claim 3; selfdistill.matching). After the
# sweep, each round of a dataset x arch interpolates, in log-strength, the LS and ER
# strengths whose seed-mean VALIDATION entropy equals SD generation compare.sd_gen's
# (test accuracy never enters), and trains them on every seed under results/matched/.
# A second round runs only where the first still misses compare.entropy_tolerance.
# match_entropy is a checkpoint: which networks exist depends on its output.


checkpoint match_entropy:
    input:
        unpack(match_input),
    output:
        "results/matched/{dataset}/{arch}/round{round}.json",
    log:
        "logs/match/{dataset}/{arch}/round{round}.log",
    wildcard_constraints:
        round=r"[1-9]",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        sd_gen=config["compare"]["sd_gen"],
        tolerance=config["compare"]["entropy_tolerance"],
    script:
        "../scripts/match_entropy.py"


for _exp in G.experiments(config) if MATCH_ROUNDS else []:

    rule:
        name:
            f"train_matched_{_exp['dataset']}_{_exp['arch']}"
        input:
            manifest=f"{G.data_dir(_exp['dataset'])}/manifest.json",
        output:
            matched_files(_exp, RUN_FILES),
        log:
            f"logs/train_matched/{_exp['dataset']}/{_exp['arch']}/{{method}}/{{param}}/seed{{seed}}.log",
        benchmark:
            f"benchmarks/train_matched/{_exp['dataset']}/{_exp['arch']}/{{method}}/{{param}}/seed{{seed}}.tsv"
        wildcard_constraints:
            method=one_of(M.MATCHED),
        priority: 50
        conda:
            "../../envs/selfdistill.yaml"
        threads: config["execution"]["threads"]
        resources:
            gpu=_exp["resources"]["gpu"],
            mem_mb=bundle_mem_mb(_exp),
            runtime=lambda wildcards, attempt, _r=_exp["resources"]["runtime"]: _r * attempt,
            checkpoint_every=_exp["resources"]["checkpoint_every"],
        params:
            specs=matched_specs(_exp),
        script:
            "../scripts/train_bundle.py"

    rule:
        name:
            f"measure_matched_{_exp['dataset']}_{_exp['arch']}"
        input:
            preds=matched_files(_exp, ["preds.npz"]),
        output:
            metrics=matched_files(_exp, ["metrics.csv"]),
            metrics_last=matched_files(_exp, ["metrics_last.csv"]),
            reliability=matched_files(_exp, ["reliability.csv"]),
        log:
            f"logs/measure_matched/{_exp['dataset']}/{_exp['arch']}/{{method}}/{{param}}/seed{{seed}}.log",
        wildcard_constraints:
            method=one_of(M.MATCHED),
        priority: 100
        localrule: True
        conda:
            "../../envs/selfdistill.yaml"
        params:
            runs=matched_wildcards(_exp),
            bins=measure_params,
        script:
            "../scripts/measure_bundle.py"


rule matched_table:
    input:
        metrics="results/metrics.csv",
        rounds=(
            [
                match_round_file(e["dataset"], e["arch"], MATCH_ROUNDS)
                for e in G.experiments(config)
            ]
            if MATCH_ROUNDS
            else []
        ),
    output:
        "results/matched/matched.csv",
    log:
        "logs/match/matched_table.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/matched_table.py"
