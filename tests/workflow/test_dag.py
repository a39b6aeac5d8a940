"""Workflow shape: lint, dry-run job counts equal the grid, schema errors name the key."""

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from selfdistill import grid as G

from ..conftest import REPO, snakemake


def job_counts(stdout: str) -> Counter:
    """Parse the 'Job stats' table of a dry run."""
    table = stdout.split("Job stats:")[1]
    counts = Counter()
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def load_config(*files: Path) -> dict:
    cfg: dict = {}
    for f in files:
        _merge(cfg, yaml.safe_load(f.read_text()))
    return cfg


def _merge(base: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def expected_counts(cfg: dict) -> Counter:
    runs = G.grid(cfg)
    want = Counter(collect=1, per_class_accuracy=1,
                   prepare_dataset=len({r.dataset for r in runs}))
    mode = cfg["execution"]["bundle"]
    if mode != "none":
        for exp in G.experiments(cfg):
            for part in G.bundle_parts(exp, mode, 0):
                for kind in ("train", "measure"):
                    want[f"{kind}_{part}_{exp['dataset']}_{exp['arch']}"] = len(cfg["seeds"])
    else:
        want["train"] = want["measure"] = len(runs)
    if cfg["matching"]["rounds"]:
        # every round of each dataset x arch is planned, and matched.csv; the matched
        # networks are added once a round is decided (a checkpoint)
        want["match_entropy"] = cfg["matching"]["rounds"] * len(G.experiments(cfg))
        want["matched_table"] = 1
    return want


def test_lint(workflow_dir):
    proc = snakemake(workflow_dir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("bundle", ["seed", "chain", "none"])
def test_default_dry_run_counts_equal_grid(workflow_dir, bundle):
    cfg = load_config(REPO / "config" / "config.yaml")
    cfg["execution"]["bundle"] = bundle
    (workflow_dir / "b.yaml").write_text(f"execution: {{bundle: {bundle}}}\n")
    proc = snakemake(workflow_dir, "-n", "metrics", "--configfile", "config/config.yaml",
                     "b.yaml")
    got = job_counts(proc.stdout)
    want = expected_counts(cfg)
    want["metrics"] = 1
    assert got == want
    # the default grid (docs/sizing.md): seeds x (ce + the SD generations + every sweep point)
    per_seed = 1 + cfg["generations"] + sum(len(v) for v in cfg["sweeps"].values())
    assert len(G.grid(cfg)) == len(cfg["seeds"]) * per_seed


def test_a_method_added_to_the_registry_changes_no_existing_grid(monkeypatch):
    """Methods opt in per experiment (methods §5): the shipped configs that list none run
    the paper's five, whatever the registry holds."""
    from selfdistill import methods

    for name in ("config.yaml", "paper.yaml", "fashion_mnist.yaml"):
        cfg = load_config(REPO / "config" / "config.yaml", REPO / "config" / name)
        before = G.grid(cfg)
        extra = methods.Method("extra", "X", "CrossEntropy", "cross_entropy", None, None, "3.1")
        monkeypatch.setitem(methods.METHODS, "extra", extra)
        assert G.grid(cfg) == before, name
        assert {r.method for r in before} == set(methods.PAPER_METHODS), name
        monkeypatch.delitem(methods.METHODS, "extra")


def test_sd_generation_depends_on_previous(workflow_dir):
    (workflow_dir / "b.yaml").write_text("execution: {bundle: none}\n")
    proc = snakemake(workflow_dir, "-n", "results/mnist1d/cnn1d/sd/none/seed3/gen2/preds.npz",
                     "--configfile", "config/config.yaml", "b.yaml")
    out = proc.stdout
    # gen2 needs gen1, which needs the ce run of the same seed; nothing of other seeds
    assert "results/mnist1d/cnn1d/sd/none/seed3/gen1/model.pt" in out
    assert "results/mnist1d/cnn1d/ce/none/seed3/gen0/model.pt" in out
    assert "seed0" not in out and "/ls/" not in out
    assert job_counts(out)["train"] == 3


def test_all_target_lists_every_figure(workflow_dir):
    proc = snakemake(workflow_dir, "-n", "all")
    counts = job_counts(proc.stdout)
    for rule in ("render_e1", "render_e2", "render_e3", "render_e4", "render_e5",
                 "render_claims"):
        assert counts[rule] == 1, rule


def test_schema_error_names_key(workflow_dir):
    bad = workflow_dir / "bad.yaml"
    bad.write_text("execution:\n  bundle: sometimes\n")
    proc = snakemake(workflow_dir, "-n", "--configfile", "config/config.yaml", str(bad),
                     check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "bundle" in err and "sometimes" in err


def test_config_typo_is_one_line_with_the_nearest_key(workflow_dir):
    """A misspelt key gets one line naming its path and the closest valid key, not the
    schema's dump."""
    bad = workflow_dir / "typo.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    proc = snakemake(workflow_dir, "-n", "--configfile", "config/config.yaml", str(bad),
                     check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "config key train.epoch: unknown key (did you mean epochs?)" in err, err[-3000:]
    assert "Additional properties are not allowed" not in err
    assert "(set in typo.yaml)" in err  # the file the key comes from


def test_compare_point_missing_from_sweep_is_named(workflow_dir):
    bad = workflow_dir / "bad.yaml"
    bad.write_text("compare:\n  ls_eps: 0.33\n  er_beta: 0.3\n  bs_a: 3\n  sd_gen: 1\n")
    proc = snakemake(workflow_dir, "-n", "--configfile", "config/config.yaml", str(bad),
                     check=False)
    assert proc.returncode != 0
    assert "compare.ls_eps=0.33" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_paper_dry_run_counts_equal_grid(workflow_dir):
    """config/paper.yaml plans the whole paper grid (methods §5): one job per network."""
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "config" / "paper.yaml")
    proc = snakemake(workflow_dir, "-n", "all", "--configfile", "config/config.yaml",
                     "config/paper.yaml")
    got = job_counts(proc.stdout)
    want = expected_counts(cfg)
    for source in sorted({cfg["datasets"][e["dataset"]]["source"] for e in cfg["experiments"]}):
        want[f"download_{source}"] = 1
    want.update({f"render_{n}": 1 for n in ("e1", "e2", "e3", "e4", "e5", "claims")}, all=1)
    assert got == want
    runs = G.grid(cfg)
    assert len({(r.dataset, r.arch) for r in runs}) == 6
    assert all(e["train"]["epochs"] == 150 for e in G.experiments(cfg))
    milestones = {e["arch"]: e["train"]["milestones"] for e in G.experiments(cfg)}
    assert milestones["resnet34"] == [50, 100] and milestones["densenet_bc100"] == [75, 112]


@pytest.mark.slow
def test_benchmark_target_runs_the_bench_command(workflow_dir):
    """`snakemake benchmark` is one local job running `python -m selfdistill.bench` into
    results/bench/, and `all` does not pull it in."""
    proc = snakemake(workflow_dir, "-n", "-p", "benchmark")
    assert job_counts(proc.stdout) == {"benchmark": 1}
    assert "python -m selfdistill.bench --out results/bench --rounds 5 --steps 40" in proc.stdout
    assert "benchmark" not in job_counts(snakemake(workflow_dir, "-n", "all").stdout)
