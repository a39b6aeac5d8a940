"""Kill at any moment, restart, and get the same bytes (our reliability guarantees).

Training runs in a subprocess through the CLI (the rules' code path). A run is killed
with SIGKILL at random points (after a random number of epochs, inside an epoch), then
restarted until it completes; its checkpoint, predictions and metrics must equal an
uninterrupted run byte for byte.
"""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from selfdistill.checkpoint import read_resume
from selfdistill.data import prepare_dataset
from selfdistill.io import write_npz
from selfdistill.measure import measure_run

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

DATA = {"source": "mnist1d", "num_samples": 6000, "train_fraction": 0.8, "generator_seed": 42,
        "val_size": 200, "split_seed": 0}
EPOCHS = 10


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel") / "mnist1d"
    prepare_dataset("mnist1d", DATA, out)
    return out


def cli(data_dir: Path, out: Path, method="bs", param="3") -> list[str]:
    return [sys.executable, "-m", "selfdistill", "train", "--data", str(data_dir), "--arch",
            "cnn1d", "--method", method, "--param", param, "--seed", "7", "--epochs",
            str(EPOCHS), "--milestones", "4", "7", "--out", str(out)]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None or time.time() - t0 > timeout:
            return False
        time.sleep(0.02)
    return True


def resume_position(path: Path) -> tuple[int, int]:
    state = read_resume(path)["state"]
    return state["epoch"], state["step_in_epoch"]


def same_outputs(a: Path, b: Path) -> None:
    for name in ("model.pt", "preds.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for d in (a, b):
        measure_run(d / "preds.npz", {"dataset": "m", "arch": "c", "method": "bs", "param": "3",
                                      "seed": 7, "gen": 0}, d / "metrics.csv", d / "rel.csv",
                    metrics_last_out=d / "metrics_last.csv")
    for name in ("metrics.csv", "metrics_last.csv"):  # best-validation and last epoch
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(cli(data_dir, out), check=True, timeout=600)
    return out


def test_sigkill_at_random_points_then_resume_is_identical(data_dir, reference, tmp_path):
    """Beta smoothing (the most stateful method: EMA network, Beta sampler) killed 4 times."""
    out = tmp_path / "run"
    rng = random.Random(1234)
    kills, kill_points = 0, []
    for _ in range(4):
        resume = out / "resume.pt"
        before = resume.stat().st_mtime_ns if resume.exists() else None
        proc = subprocess.Popen(cli(data_dir, out))
        # wait for a fresh resume checkpoint of this attempt, then kill at a random moment
        t0 = time.time()
        while proc.poll() is None and time.time() - t0 < 120:
            if resume.exists() and resume.stat().st_mtime_ns != before:
                break
            time.sleep(0.02)
        # within about an epoch (0.2 s on an idle 2-core machine): a longer wait lets the
        # run finish before 3 kills land when the machine is idle
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / "model.pt").exists():  # it finished before the signal landed
            break
        kills += 1
        kill_points.append(resume_position(resume))
        assert not (out / "model.pt").exists()  # nothing final was written
    assert kills >= 3, f"only {kills} kills landed before the run finished"
    subprocess.run(cli(data_dir, out), check=True, timeout=600)
    assert not (out / "resume.pt").exists()
    same_outputs(reference, out)
    epochs = {e for e, _ in kill_points}
    assert len(epochs) >= 2, f"kills all landed in the same epoch: {kill_points}"


def test_sigterm_writes_resume_at_step_boundary_and_exits_nonzero(data_dir, reference, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(cli(data_dir, out), stderr=subprocess.PIPE, text=True)
    assert wait_for(out / "resume.pt", proc)
    first = (out / "resume.pt").stat().st_mtime_ns
    time.sleep(0.13)  # land inside an epoch
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert (out / "resume.pt").stat().st_mtime_ns != first  # written on SIGTERM
    epoch, step = resume_position(out / "resume.pt")
    assert 0 < epoch < EPOCHS
    # the reason is logged (epoch: the one in progress, 1-based)
    assert f"SIGTERM at epoch {epoch + 1} step {step}: resume.pt written, exiting 143" in stderr
    subprocess.run(cli(data_dir, out), check=True, timeout=600)
    same_outputs(reference, out)


def test_changed_config_starts_fresh_and_says_why(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(cli(data_dir, out))
    assert wait_for(out / "resume.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    changed = cli(data_dir, out, param="10")
    done = subprocess.run([*changed[:3], "-v", *changed[3:]], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "different config or inputs" in done.stderr and "starting fresh" in done.stderr


def test_kill_while_writing_leaves_no_partial_file(tmp_path):
    """SIGKILL during a large write: the target name never holds a partial file."""
    target = tmp_path / "preds.npz"
    code = ("import numpy as np, sys; from selfdistill.io import write_npz; "
            "write_npz(sys.argv[1], x=np.ones((64, 1024, 1024), np.float32))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)])
    t0 = time.time()
    while time.time() - t0 < 60:
        tmps = list(tmp_path.glob(".preds.npz.*.tmp"))
        if tmps and tmps[0].stat().st_size > 1 << 20:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmps, "the writer never started"
    assert not target.exists()
    # a completed write is whole
    write_npz(target, x=np.arange(10))
    assert np.array_equal(np.load(target)["x"], np.arange(10))


def test_exception_while_writing_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "preds.npz"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        write_npz(target, x=np.arange(3))
    assert list(tmp_path.iterdir()) == []
