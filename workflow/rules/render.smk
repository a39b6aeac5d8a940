# Figures, tables and the claims check (methods §5, §6), rendered from the tidy CSVs only
# (results/metrics.csv, results/metrics_last.csv, results/reliability.csv and, once the
# matching rounds have run, results/matched/matched.csv), so `snakemake figures` never
# retrains.
# Every output stem also gets a provenance sidecar <stem>.json (inputs' sha256, config
# subset, git, versions, wall time).


rule render_claims:
    input:
        metrics="results/metrics.csv",
        metrics_last="results/metrics_last.csv",
        # claim 3's matched-entropy runs (match.smk); none with matching.rounds: 0, and
        # claim 3 then takes the nearest sweep point
        matched=MATCHED_TABLE,
    output:
        md=report(
            "figures/claims.md",
            caption="../report/claims_md.rst",
            category="1. Claims check",
        ),
        csv=report(
            "figures/claims.csv",
            caption="../report/claims.rst",
            category="1. Claims check",
        ),
        sidecar="figures/claims.json",
    log:
        "logs/render/render_claims.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        compare=config["compare"],
        claims=config.get("claims", []),
    script:
        "../scripts/render_claims.py"


rule render_e1:
    input:
        metrics="results/metrics.csv",
    output:
        png=report(
            "figures/e1_generations.png",
            caption="../report/e1_generations.rst",
            category="2. E1 self-distillation generations",
        ),
        pdf="figures/e1_generations.pdf",
        sidecar="figures/e1_generations.json",
    log:
        "logs/render/render_e1.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/render_e1.py"


rule render_e2:
    input:
        metrics="results/metrics.csv",
        matched=MATCHED_TABLE,
    output:
        png=report(
            "figures/e2_entropy_accuracy.png",
            caption="../report/e2_entropy_accuracy.rst",
            category="3. E2 uncertainty vs diversity",
        ),
        pdf="figures/e2_entropy_accuracy.pdf",
        sidecar="figures/e2_entropy_accuracy.json",
        table_csv=report(
            "figures/e2_matched_entropy.csv",
            caption="../report/e2_matched_entropy.rst",
            category="3. E2 uncertainty vs diversity",
        ),
        table_md="figures/e2_matched_entropy.md",
        table_tex="figures/e2_matched_entropy.tex",
        table_sidecar="figures/e2_matched_entropy.json",
    log:
        "logs/render/render_e2.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/render_e2.py"


rule render_e3:
    input:
        metrics="results/metrics.csv",
        metrics_last="results/metrics_last.csv",
    output:
        csv=report(
            "figures/e3_methods.csv",
            caption="../report/e3_methods.rst",
            category="4. E3 method comparison",
        ),
        md="figures/e3_methods.md",
        tex="figures/e3_methods.tex",
        sidecar="figures/e3_methods.json",
    log:
        "logs/render/render_e3.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        compare=config["compare"],
    script:
        "../scripts/render_e3.py"


rule render_e4:
    input:
        reliability="results/reliability.csv",
    output:
        png=report(
            "figures/e4_reliability.png",
            caption="../report/e4_reliability.rst",
            category="5. E4 reliability diagrams",
        ),
        pdf="figures/e4_reliability.pdf",
        sidecar="figures/e4_reliability.json",
    log:
        "logs/render/render_e4.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        compare=config["compare"],
    script:
        "../scripts/render_e4.py"


rule render_e5:
    input:
        metrics="results/metrics.csv",
    output:
        png=report(
            "figures/e5_beta_sensitivity.png",
            caption="../report/e5_beta_sensitivity.rst",
            category="6. E5 Beta-smoothing sensitivity",
        ),
        pdf="figures/e5_beta_sensitivity.pdf",
        sidecar="figures/e5_beta_sensitivity.json",
    log:
        "logs/render/render_e5.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    script:
        "../scripts/render_e5.py"


rule render_e6:
    input:
        metrics="results/metrics.csv",
        claims="figures/claims.csv",
    output:
        png=report(
            "figures/e6_teacher_free.png",
            caption="../report/e6_teacher_free.rst",
            category="7. E6 teacher-free family",
        ),
        pdf="figures/e6_teacher_free.pdf",
        sidecar="figures/e6_teacher_free.json",
        table_csv=report(
            "figures/e6_teacher_free_table.csv",
            caption="../report/e6_teacher_free.rst",
            category="7. E6 teacher-free family",
        ),
        table_md="figures/e6_teacher_free_table.md",
        table_tex="figures/e6_teacher_free_table.tex",
        table_sidecar="figures/e6_teacher_free_table.json",
    log:
        "logs/render/render_e6.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        compare=config["compare"],
    script:
        "../scripts/render_e6.py"


# Not part of `all`: copies the figures, tables and claims check of a finished run into
# docs/results/ (tracked), with the commit and date they came from, for the README.
rule publish:
    input:
        FIGURE_FILES,
        metrics="results/metrics.csv",
        claims="figures/claims.json",
    output:
        readme=f"{PUBLISH_DIR}/README.md",
    log:
        "logs/render/publish.log",
    localrule: True
    conda:
        "../../envs/selfdistill.yaml"
    params:
        # the config files of the run, in load order (config/config.yaml first)
        configfiles=[os.path.relpath(str(f)) for f in workflow.configfiles],
    script:
        "../scripts/publish.py"
