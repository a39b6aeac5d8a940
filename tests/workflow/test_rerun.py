"""Exact rerun triggers: a training job reruns when, and only when, its network would come
out different. Scheduling (resources.runtime, mem_mb, checkpoint_every) retrains nothing; a
method's block retrains that method's networks only; execution.threads (part of a
network's bits on CPU) retrains every network. Real tiny runs, then dry runs."""

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from selfdistill import grid as G
from selfdistill.run import run_fingerprint, spec_from_params

from ..conftest import REPO, copy_workflow, snakemake
from .test_dag import job_counts, load_config

pytestmark = pytest.mark.slow

# One seed, one MLP experiment on tiny MNIST-1D: 7 networks (ce, sd 1-2, ls x2, er, bs).
SMALL = "seeds: [0]\nexperiments: [{dataset: mnist1d, arch: mlp}]\n"
ARGS = ["--cores", "2", "metrics", "--configfile", "config/config.yaml", "tiny.yaml", "small.yaml"]
SCHEDULING = "resources: {runtime: 61, mem_mb: 1234, checkpoint_every: 2}\n"
SD_ALPHA = "methods: {sd: {alpha: 0.5}}\n"


def small_config(bundle: str) -> dict:
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "tests" / "data" / "tiny.yaml")
    cfg.update(seeds=[0], experiments=[{"dataset": "mnist1d", "arch": "mlp"}])
    cfg["execution"]["bundle"] = bundle
    return cfg


def finished_workflow(dest: Path, bundle: str) -> Path:
    wf = copy_workflow(dest)
    (wf / "small.yaml").write_text(SMALL + f"execution: {{bundle: {bundle}}}\n")
    snakemake(wf, *ARGS)
    return wf


@pytest.fixture(scope="module")
def per_network(tmp_path_factory) -> Path:
    return finished_workflow(tmp_path_factory.mktemp("none") / "wf", "none")


@pytest.fixture(scope="module")
def per_seed(tmp_path_factory) -> Path:
    return finished_workflow(tmp_path_factory.mktemp("seed") / "wf", "seed")


def dry_run(wf: Path, overlay: str) -> subprocess.CompletedProcess:
    (wf / "overlay.yaml").write_text(overlay)
    return snakemake(wf, "-n", *ARGS, "overlay.yaml")


def scheduled_runs(stdout: str, rule: str = "train") -> set[str]:
    """Run directories of the scheduled jobs of one-network rule ``rule`` in a dry run."""
    return set(re.findall(rf"^rule {rule}:\n(?:    .*\n)*?    output: (\S+)/model\.pt,",
                          stdout, re.M))


def train_jobs(stdout: str) -> int:
    counts = job_counts(stdout) if "Job stats:" in stdout else {}
    return sum(n for rule, n in counts.items() if rule.startswith("train"))


@pytest.mark.parametrize("fixture", ["per_network", "per_seed"])
def test_scheduling_changes_retrain_nothing(fixture, request):
    proc = dry_run(request.getfixturevalue(fixture), SCHEDULING)
    assert train_jobs(proc.stdout) == 0, proc.stdout[-3000:]


def test_sd_alpha_reruns_only_sd_networks(per_network):
    got = scheduled_runs(dry_run(per_network, SD_ALPHA).stdout)
    want = {G.run_dir(r) for r in G.grid(small_config("none")) if r.method == "sd"}
    assert got == want and len(want) == 2


def test_threads_rerun_every_network(per_network):
    """Threads are part of a network's identity on CPU (they change the bits)."""
    got = scheduled_runs(dry_run(per_network, "execution: {threads: 2}\n").stdout)
    assert got == {G.run_dir(r) for r in G.grid(small_config("none"))}


def test_bundle_rerun_retrains_only_sd(per_seed):
    """The bundle job reruns on an SD change, but every other network is recognised as
    finished and kept byte for byte; only the SD networks are trained again."""
    runs = G.grid(small_config("seed"))
    models = {r: per_seed / G.run_dir(r) / "model.pt" for r in runs}
    before = {r: p.read_bytes() for r, p in models.items()}
    assert train_jobs(dry_run(per_seed, SD_ALPHA).stdout) == 1
    snakemake(per_seed, *ARGS, "overlay.yaml")
    log = (per_seed / "logs/train_bundle/mnist1d/mlp/seed0.log").read_text()
    for r in runs:
        trained = r.method == "sd"
        assert (models[r].read_bytes() == before[r]) is not trained, r
        line = re.search(rf"{re.escape(describe(r))} network \d+ of {len(runs)}: (\w+)", log)
        assert line and line.group(1) == ("training" if trained else "finished"), (r, log)
    assert train_jobs(dry_run(per_seed, SD_ALPHA).stdout) == 0  # and now it is up to date


def describe(run: G.Run) -> str:
    param = "" if G.parse_param(run.param) is None else f" param={G.parse_param(run.param)}"
    return (f"[{run.dataset}/{run.arch} method={run.method}{param} seed={run.seed} "
            f"gen={run.gen}]")


def test_workflow_profile_is_loaded_alone_and_beside_the_slurm_profile(workflow_dir):
    """profiles/default (rerun-incomplete, keep-incomplete) applies to every plain run: the
    same command finishes after a kill. Snakemake looks for it beside the Snakefile."""
    settings = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert settings == {"rerun-incomplete": True, "keep-incomplete": True}
    alone = snakemake(workflow_dir, "-n", "data")
    assert "Using workflow specific profile profiles/default" in alone.stderr
    both = snakemake(workflow_dir, "-n", "data", "--profile", "profiles/slurm")
    assert ("Using profiles profiles/slurm and workflow specific profile profiles/default"
            in both.stderr)


@pytest.mark.parametrize("profile", ["slurm", "profiles/slurm"])
def test_slurm_profile_plans_from_the_repository_root_as_users_type_it(workflow_dir, profile):
    """``snakemake --profile slurm all`` (the form users type) and ``--profile profiles/slurm``
    both plan the whole default DAG from the clone's root: Snakemake looks for a profile
    named ``slurm`` in the working directory, where the clone's ``slurm`` link leads to
    profiles/slurm (no copy into ~/.config/snakemake)."""
    if profile == "slurm":
        assert (REPO / "slurm").is_symlink() and (REPO / "slurm").resolve() == (
            REPO / "profiles" / "slurm").resolve()
    dry = snakemake(workflow_dir, "--profile", profile, "all", "-n")
    assert (f"Using profiles {profile} and workflow specific profile profiles/default"
            in dry.stderr), dry.stderr[-2000:]
    assert "train_bundle" in dry.stdout + dry.stderr


# --------------------------------------------------------------------------- identity


def _params(cfg: dict, method: str, gen: int = 0) -> dict:
    run = next(r for r in G.grid(cfg) if r.method == method and r.gen == gen)
    return G.run_params(cfg, run)


def test_run_params_hold_no_scheduling_or_other_methods():
    cfg = small_config("none")
    base = _params(cfg, "ce")
    cfg["resources"].update(runtime=999, mem_mb=1, checkpoint_every=5)
    cfg["methods"]["sd"]["alpha"] = 0.9
    assert _params(cfg, "ce") == base
    assert _params(cfg, "sd", 1) != _params(small_config("none"), "sd", 1)
    cfg["execution"]["threads"] = 2
    assert _params(cfg, "ce") != base


def test_fingerprint_ignores_checkpoint_cadence_and_provenance_not_threads(tmp_path):
    manifest = {"sha256": {"train.npz": "0" * 64}}
    spec = spec_from_params(_params(small_config("none"), "ce"), 1, {"any": "config"})
    fp = run_fingerprint(spec, manifest)
    other = spec_from_params(_params(small_config("none"), "ce"), 7, {"other": 1})
    assert run_fingerprint(other, manifest) == fp
    assert run_fingerprint(replace(spec, threads=2), manifest) != fp
    assert run_fingerprint(replace(spec, out_dir=str(tmp_path)), manifest) == fp
