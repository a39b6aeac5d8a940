# The benchmark of the training path (issue: performance): `snakemake --cores 2 benchmark`
# is `python -m selfdistill.bench` with the options below; not part of `all`.


rule benchmark:
    output:
        summary="results/bench/summary.md",
    params:
        out=bench_out,
        rounds=5,
        steps=40,
    log:
        "logs/bench/benchmark.log",
    threads: 2  # the bench runs 1 torch thread beside 2 DataLoader workers
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    shell:
        "python -m selfdistill.bench --out {params.out} --rounds {params.rounds}"
        " --steps {params.steps} > {log} 2>&1"
