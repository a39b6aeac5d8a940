"""examples/use_results.py on a finished network: loading model.pt and evaluating it again
from Python gives the number of metrics.csv (docs/python.md).

One LS network is trained through the training rules' code (:func:`selfdistill.run.train_run`,
a workflow-layout results/ folder, 2 epochs of a small MNIST-1D), measured and collected as the
measure and collect rules do; the script then runs as a subprocess from that directory.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.data import prepare_dataset
from selfdistill.io import read_json
from selfdistill.measure import collect, measure_run
from selfdistill.methods import get_method
from selfdistill.run import RunSpec, train_run
from selfdistill.train import TrainConfig

from ..conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT = REPO / "examples" / "use_results.py"
DATA = {"source": "mnist1d", "num_samples": 1000, "train_fraction": 0.8, "generator_seed": 42,
        "val_size": 100, "split_seed": 0}
RUN = Path("results/mnist1d/cnn1d/ls/0.1/seed0/gen0")  # docs/results.md layout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A workflow directory holding one trained, measured and collected network."""
    wd = tmp_path_factory.mktemp("python_example")
    data, run_dir = wd / "results" / "data" / "mnist1d", wd / RUN
    prepare_dataset("mnist1d", DATA, data)
    spec = RunSpec(dataset_dir=str(data), arch="cnn1d", method="ls", param=0.1, seed=0, gen=0,
                   out_dir=str(run_dir), train=TrainConfig(epochs=2, milestones=(1,), seed=0),
                   options=get_method("ls").resolve({}), device="cpu", dataset="mnist1d")
    threads = torch.get_num_threads()
    try:
        train_run(spec)
    finally:
        torch.set_num_threads(threads)  # train_run sets the run's thread count
    measure_run(run_dir / "preds.npz", read_json(run_dir / "run.json")["run"],
                run_dir / "metrics.csv", run_dir / "reliability.csv")
    for name in ("metrics.csv", "history.csv"):
        collect([run_dir / name], wd / "results" / name)
    return wd


def use_results(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPT), str(RUN)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def copy_of(workdir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(workdir / "results", tmp_path / "results")).parent


def test_script_recomputes_the_test_accuracy_of_metrics_csv(workdir, tmp_path):
    wd = copy_of(workdir, tmp_path)
    with np.load(wd / RUN / "preds.npz") as npz:  # float64 reference from the definition
        reference = float(np.mean(np.argmax(npz["test_logits"], axis=1) == npz["test_targets"]))
    (wd / RUN / "preds.npz").unlink()  # the script must evaluate the network, not read these
    proc = use_results(wd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = float(re.search(r"test accuracy (\S+)", proc.stdout).group(1))
    tidy = pd.read_csv(wd / "results" / "metrics.csv")
    assert len(tidy) == 3
    assert abs(printed - tidy.loc[tidy["split"] == "test", "accuracy"].item()) <= 1e-9
    assert abs(printed - reference) <= 1e-9
    history = pd.read_csv(wd / "results" / "history.csv")
    last = float(re.search(r"last epoch \(2\): (\S+)", proc.stdout).group(1))
    assert last == history.loc[history["epoch"] == 2, "val_accuracy"].item()
    assert re.search(r"mnist1d\s+cnn1d\s+ls\s+0\.1\s+0\s+\S+\s+1\n", proc.stdout), proc.stdout


def test_script_fails_when_metrics_csv_disagrees(workdir, tmp_path):
    wd = copy_of(workdir, tmp_path)
    path = wd / RUN / "metrics.csv"
    rows = pd.read_csv(path, keep_default_na=False, dtype={"param": str})
    rows.loc[rows["split"] == "test", "accuracy"] += 0.01
    rows.to_csv(path, index=False)
    proc = use_results(wd)
    assert proc.returncode == 1 and "MISMATCH" in proc.stdout, proc.stdout + proc.stderr


def test_script_refuses_an_altered_model_pt(workdir, tmp_path):
    wd = copy_of(workdir, tmp_path)
    blob = bytearray((wd / RUN / "model.pt").read_bytes())
    blob[-100] ^= 0xFF
    (wd / RUN / "model.pt").write_bytes(bytes(blob))
    proc = use_results(wd)
    assert proc.returncode != 0
    assert "sha256" in proc.stderr and "was recorded" in proc.stderr, proc.stderr
