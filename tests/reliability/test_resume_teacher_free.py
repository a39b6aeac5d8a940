"""The stateful teacher-free methods (methods §3.8 PS-KD's table, §3.9 CS-KD's partner sampler,
§3.11 OLS's matrix, sums and counts) killed and resumed give the bytes of an uninterrupted run.

Each run is SIGKILLed twice at random moments (it resumes from the last epoch's resume
file) and once stopped by SIGTERM inside an epoch (the mid-epoch resume file: OLS's partial
sums, PS-KD's partly rewritten table, the sampler's position), then run to the end.
"""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selfdistill.checkpoint import read_resume
from selfdistill.data import prepare_dataset

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

DATA = {"source": "mnist1d", "num_samples": 4000, "train_fraction": 0.8, "generator_seed": 42,
        "val_size": 200, "split_seed": 0}
EPOCHS = 8
STATEFUL = ["pskd", "cskd", "ols"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tf") / "mnist1d"
    prepare_dataset("mnist1d", DATA, out)
    return out


def cli(data_dir: Path, out: Path, method: str) -> list[str]:
    return [sys.executable, "-m", "selfdistill", "train", "--data", str(data_dir), "--arch",
            "cnn1d", "--method", method, "--seed", "3", "--epochs", str(EPOCHS),
            "--milestones", "3", "6", "--batch-size", "32", "--out", str(out)]


def fresh_resume(out: Path, before: int | None, proc: subprocess.Popen) -> bool:
    """Wait until this attempt has written a resume file of its own."""
    resume, t0 = out / "resume.pt", time.time()
    while proc.poll() is None and time.time() - t0 < 120:
        if resume.exists() and resume.stat().st_mtime_ns != before:
            return True
        time.sleep(0.02)
    return False


def mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.mark.parametrize("method", STATEFUL)
def test_killed_and_resumed_run_is_byte_identical(data_dir, tmp_path, method):
    reference = tmp_path / "reference"
    subprocess.run(cli(data_dir, reference, method), check=True, timeout=600)

    out, rng = tmp_path / "run", random.Random(99)
    for _ in range(2):  # SIGKILL: resumes from the last epoch boundary
        proc = subprocess.Popen(cli(data_dir, out, method))
        assert fresh_resume(out, mtime(out / "resume.pt"), proc), "no resume file written"
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "model.pt").exists(), "finished before the kill: lengthen the run"
    landed = []  # (epoch, step) of each SIGTERM: on a loaded machine the signal can arrive
    for delay in (0.1, 0.2, 0.05):  # between two epochs (step 0); then it is sent again
        proc = subprocess.Popen(cli(data_dir, out, method), stderr=subprocess.PIPE, text=True)
        assert fresh_resume(out, mtime(out / "resume.pt"), proc), "no resume file written"
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)  # inside an epoch: the mid-epoch resume file
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stderr[-2000:]
        assert not (out / "model.pt").exists(), "finished before SIGTERM: lengthen the run"
        state = read_resume(out / "resume.pt")
        landed.append((state["state"]["epoch"], state["state"]["step_in_epoch"]))
        if landed[-1][1] > 0:
            break
    assert landed[-1][1] > 0, f"every SIGTERM landed on an epoch boundary: {landed}"
    saved = state["objective"]
    assert saved and all(isinstance(v, torch.Tensor) for v in saved.values())

    subprocess.run(cli(data_dir, out, method), check=True, timeout=600)
    for name in ("model.pt", "preds.npz", "history.csv"):
        if name == "history.csv":  # wall-clock columns differ; every number of the run agrees
            ref_rows = _numbers(reference / name)
            assert _numbers(out / name) == ref_rows
        else:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def _numbers(path: Path) -> list[tuple[str, ...]]:
    """history.csv without its timing columns."""
    import csv

    with path.open() as f:
        rows = list(csv.DictReader(f))
    keep = ("epoch", "lr", "train_loss", "train_accuracy", "val_accuracy")
    return [tuple(r[k] for k in keep) for r in rows]
