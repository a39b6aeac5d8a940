"""The same command, typed again, finishes after any kill or failure and loses no finished
network: a SIGKILLed run (stale lock, incomplete outputs) and a failing training bundle,
through the real snakemake CLI on tiny configs (the workflow profile profiles/default and
the stale-lock check of common.smk apply as they do for a user)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from selfdistill import grid as G
from selfdistill.io import temp_host

from ..conftest import REPO, copy_workflow, snakemake
from ..workflow.test_dag import load_config

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ARGS = ["--cores", "2", "metrics", "--configfile", "config/config.yaml", "tiny.yaml", "grid.yaml"]
# 6 CNN networks of one seed (ce, sd 1-2, ls, er, bs), slow enough to be killed mid-bundle
KILL_GRID = ("seeds: [0]\nexperiments: [{dataset: mnist1d, arch: cnn1d, sweeps: {ls_eps: [0.1]}}]\n"
             "train: {epochs: 16, milestones: [8]}\ndatasets: {mnist1d: {num_samples: 4000}}\n")
# 16 epochs: the first run must outlive a second snakemake's start (its DAG waits on the
# matching checkpoint) on a loaded CI machine; at 8 it could finish first (CI, 2026-12-03)
# 14 MLP networks of one seed, as the default grid's CNN bundle (ce, sd 1-4, 3 ls, 3 er, 3 bs)
FULL_GRID = ("seeds: [0]\ngenerations: 4\nexperiments: [{dataset: mnist1d, arch: mlp}]\n"
             "sweeps: {ls_eps: [0.05, 0.1, 0.2], er_beta: [0.1, 0.3, 1.0], bs_a: [1, 3, 10]}\n")


def workflow(dest: Path, grid: str) -> Path:
    wf = copy_workflow(dest)
    (wf / "grid.yaml").write_text(grid)
    return wf


def bundle_runs(wf: Path) -> list[Path]:
    """Run directories of the workflow's one bundle, in training order."""
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "tests" / "data" / "tiny.yaml",
                      wf / "grid.yaml")
    return [wf / G.run_dir(r) for r in G.grid(cfg)]


def wait(condition, proc: subprocess.Popen, timeout: float = 300) -> bool:
    t0 = time.time()
    while not condition():
        if proc.poll() is not None or time.time() - t0 > timeout:
            return False
        time.sleep(0.05)
    return True


def network_lines(log: str) -> dict[str, str]:
    """'[run description]' -> what train_bundle did with it: 'training' or 'finished'."""
    return dict(re.findall(r"(\[.*?\]) network \d+ of \d+: (\w+)", log))


def test_sigkill_then_the_same_command_finishes_identically(tmp_path):
    """Kill snakemake and its bundle mid-training: the same command (nothing else) clears
    the stale lock, reruns the incomplete job, keeps the finished networks and resumes the
    killed one, and metrics.csv equals an uninterrupted run's byte for byte. While the first
    run is alive, a second one in the same directory is refused."""
    ref, wf = workflow(tmp_path / "ref", KILL_GRID), workflow(tmp_path / "wf", KILL_GRID)
    snakemake(ref, *ARGS)
    runs = bundle_runs(wf)

    def training(r: Path) -> bool:
        return (r / "resume.pt").exists() and not (r / ".finished-run.json").exists()

    proc = subprocess.Popen(["snakemake", *ARGS], cwd=wf, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        assert wait(lambda: training(runs[0]), proc)
        second = snakemake(wf, *ARGS, check=False)
        assert proc.poll() is None, "the first run finished before the second one started"
        assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr
        assert proc.poll() is None  # the first run goes on, its lock untouched
        assert wait(lambda: (runs[1] / ".finished-run.json").exists()
                    and any(training(r) for r in runs[2:]), proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = [r for r in runs if (r / ".finished-run.json").exists()]
    killed = [r for r in runs if training(r)]
    assert len(kept) >= 2 and killed, "the kill did not land mid-bundle"
    assert any((wf / ".snakemake" / "locks").iterdir()), "the kill left no lock to clear"
    again = snakemake(wf, *ARGS)
    assert "removed the stale lock of a killed run" in again.stderr
    assert (wf / "results/metrics.csv").read_bytes() == (ref / "results/metrics.csv").read_bytes()
    log = (wf / "logs/train_bundle/mnist1d/cnn1d/seed0.log").read_text()
    assert list(network_lines(log).values()) == [
        "finished" if r in kept else "training" for r in runs], log
    assert "resuming from" in log, log  # the killed network went on from its resume file


def test_failing_bundle_keeps_finished_networks_rerun_trains_from_the_failing_one(tmp_path):
    """Network 8 of 14 fails (the path of its kept run record is taken by a directory, so
    once trained its outputs cannot be kept; a resume.pt in the way would be set aside, not
    fail the run): networks 1-7 stay in place; once the fault is gone, the
    same command trains networks 8-14 only and keeps 1-7 byte for byte. Orphan temp files
    of killed writes are removed at that start, a newer one stays."""
    wf = workflow(tmp_path / "wf", FULL_GRID)
    runs = bundle_runs(wf)
    assert len(runs) > 8 and "/ls/0.2/" in str(runs[7])  # the grid of FULL_GRID
    blocker = runs[7] / ".finished-run.json"
    blocker.mkdir(parents=True)
    failed = snakemake(wf, *ARGS, check=False)
    assert failed.returncode != 0
    outputs = [[r / name for name in ("model.pt", "history.csv", "preds.npz", "run.json")]
               for r in runs]
    assert all(p.is_file() for files in outputs[:7] for p in files)
    # network 8 was not kept, networks 9-14 never started
    assert blocker.is_dir() and not list(blocker.iterdir())
    assert not any((r / name).exists() for r in runs[8:] for name in ("model.pt", "run.json"))
    before = [r.joinpath("model.pt").read_bytes() for r in runs[:7]]
    blocker.rmdir()
    gone = subprocess.Popen(["true"])  # the killed writer of an atomic write, gone
    gone.wait()
    orphan = wf / "results" / f".reliability.csv.selfdistill-{temp_host()}-{gone.pid}-a1b2c3d4.tmp"
    live = wf / "figures" / ".x.tmp"
    for path, age in ((orphan, -600), (live, 3600)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        os.utime(path, (time.time() + age, time.time() + age))
    snakemake(wf, *ARGS)
    log = (wf / "logs/train_bundle/mnist1d/mlp/seed0.log").read_text()
    assert list(network_lines(log).values()) == ["finished"] * 7 + ["training"] * 7, log
    assert [r.joinpath("model.pt").read_bytes() for r in runs[:7]] == before
    assert not orphan.exists() and live.exists()
