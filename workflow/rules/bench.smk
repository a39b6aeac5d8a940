# The benchmark of the training path (issue: performance): `snakemake --cores 2 benchmark`
# is `python -m selfdistill.bench` with the options below; not part of `all`.


rule benchmark:
    output:
        summary="results/bench/summary.md",
    log:
        "logs/bench/benchmark.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    threads: 2  # the bench runs 1 torch thread beside 2 DataLoader workers
    params:
        out=bench_out,
        rounds=5,
        steps=40,
    shell:
        "python -m selfdistill.bench --out {params.out} --rounds {params.rounds}"
        " --steps {params.steps} > {log} 2>&1"
