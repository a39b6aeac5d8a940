"""Watching a run through the real snakemake CLI: `python -m selfdistill progress` on a
half-finished tiny grid (killed mid-training), and a GPU asked for without CUDA named in
the rule log before any training."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from selfdistill import grid as G

from ..conftest import copy_workflow, snakemake
from ..workflow.test_dag import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# One experiment, one seed, one point per baseline: CE, SD gen 1, LS, ER, BS = 5 networks,
# each long enough (30 epochs) to be caught mid-training.
HALF = {"seeds": [0], "generations": 1,
        "train": {"epochs": 30, "milestones": [20]},
        "sweeps": {"ls_eps": [0.1], "er_beta": [0.3], "bs_a": [3]},
        "experiments": [{"dataset": "mnist1d", "arch": "mlp"}],
        "execution": {"bundle": "none"}}


def _finished_and_running(results) -> tuple[int, int]:
    done = len(list(results.rglob("run.json")))
    running = sum(not (p.parent / "run.json").exists() and '"epoch": 0' not in p.read_text()
                  for p in results.rglob("progress.json"))
    return done, running


def test_progress_on_a_killed_run_counts_done_running_waiting_with_an_eta(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    (wf / "half.yaml").write_text(yaml.safe_dump(HALF))
    configs = ["--configfile", "config/config.yaml", "tiny.yaml", "half.yaml"]
    proc = subprocess.Popen(["snakemake", "--cores", "1", "all", *configs], cwd=wf,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        deadline = time.monotonic() + 600
        while _finished_and_running(wf / "results") < (2, 1):
            assert proc.poll() is None and time.monotonic() < deadline, "never half-finished"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done, running = _finished_and_running(wf / "results")
    cfg = load_config(wf / "config" / "config.yaml", wf / "tiny.yaml", wf / "half.yaml")
    planned = [G.run_dir(r, "results") for r in G.grid(cfg)]
    (wf / "planned.txt").write_text("\n".join(planned) + "\n")
    out = subprocess.run([sys.executable, "-m", "selfdistill", "progress", "results",
                          "--expected", "planned.txt"], cwd=wf, capture_output=True,
                         text=True, check=True).stdout
    waiting = len(planned) - done - running
    assert out.splitlines()[0] == (f"{done} done · {running} running · 0 failed · "
                                   f"{waiting} waiting ({len(planned)} runs)"), out
    eta = re.search(r"^ETA (\d+(?:\.\d+)?) (s|min|h) at 1 run\(s\) at once$", out, re.M)
    assert eta and float(eta[1]) > 0, out  # waiting runs timed by the done runs' wall time
    assert re.search(r"^  mnist1d/mlp/\w+/[\w.]+/seed0/gen\d · epoch \d+/30 · val ", out,
                     re.M), out


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: no error to trigger")
def test_gpu_job_without_cuda_fails_before_training_naming_the_key_in_its_log(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    one = {**HALF, "train": {"epochs": 1, "milestones": []},
           "resources": {"gpu": 1, "mem_mb": 1000, "runtime": 10, "checkpoint_every": 1}}
    (wf / "gpu.yaml").write_text(yaml.safe_dump(one))
    run = "results/mnist1d/mlp/ce/none/seed0/gen0"
    proc = snakemake(wf, "--cores", "1", f"{run}/model.pt", "--configfile",
                     "config/config.yaml", "tiny.yaml", "gpu.yaml", check=False)
    assert proc.returncode != 0
    log = (wf / "logs" / "train" / "mnist1d" / "mlp" / "ce" / "none" / "seed0" /
           "gen0.log").read_text()
    assert "CudaUnavailableError: resources.gpu > 0 (this job reserved a GPU) but " \
           "torch.cuda.is_available() is False" in log, log
    assert "execution.device: cpu" in log  # the fix
    assert not (wf / run / "history.csv").exists() and not (wf / run / "progress.json").exists()
