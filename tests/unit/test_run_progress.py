"""What a run reports while it trains (selfdistill.run.EpochReport): history.csv and
progress.json after every epoch and at the start of a resumed run, one line per epoch in
the log or on the CLI's stdout; and one device lease per process (selfdistill.devices)."""

import csv
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from selfdistill import run as R
from selfdistill.cli import main as cli_main
from selfdistill.data import prepare_dataset
from selfdistill.progress import PROGRESS_FILE
from selfdistill.run import RunSpec, train_bundle, train_run
from selfdistill.train import TrainConfig

torch.set_num_threads(1)
MNIST1D = {"source": "mnist1d", "num_samples": 400, "train_fraction": 0.8,
           "generator_seed": 42, "val_size": 60, "split_seed": 0}
LINE = re.compile(r"^(network (\d+)/(\d+) · )?mnist1d/cnn1d/(\w+)/([\w.]+)/seed0/gen0 · "
                  r"epoch (\d+)/(\d+) · loss [\d.]+ · train [\d.]+ % · val [\d.]+ % · "
                  r"lr [\d.e-]+ · [\d.]+ s/epoch · ETA \d+ s$")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "mnist1d"
    prepare_dataset("mnist1d", MNIST1D, out)
    return out


def spec(data_dir: Path, out: Path, method: str = "ce", param: float | None = None,
         epochs: int = 3) -> RunSpec:
    return RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method=method, param=param, seed=0,
                   gen=0, out_dir=str(out), dataset="mnist1d", device="cpu",
                   train=TrainConfig(epochs=epochs, milestones=(), seed=0))


def history_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def snapshots(monkeypatch) -> list[tuple[dict, list[dict[str, str]]]]:
    """Each progress.json write, with history.csv as it was at that moment."""
    seen = []
    real = R.write_progress

    def spy(run_dir, row, epochs, network, seconds):
        real(run_dir, row, epochs, network, seconds)
        history = Path(run_dir) / "history.csv"
        seen.append((json.loads((Path(run_dir) / PROGRESS_FILE).read_text()),
                     history_rows(history) if history.exists() else []))

    monkeypatch.setattr(R, "write_progress", spy)
    return seen


def epoch_lines(caplog) -> list[re.Match]:
    return [m for m in (LINE.match(r.getMessage()) for r in caplog.records) if m]


def test_history_and_progress_after_every_epoch_and_one_log_line_each(data_dir, tmp_path,
                                                                        snapshots, caplog):
    with caplog.at_level(logging.INFO, logger="selfdistill"):
        record = train_run(spec(data_dir, tmp_path / "run"))
    start, *epochs = snapshots
    assert start == ({**start[0], "epoch": 0, "epochs": 3, "seconds_per_epoch": None,
                      "val_accuracy": None}, [])  # at the start: nothing done, nothing known
    assert [p["epoch"] for p, _ in epochs] == [1, 2, 3]
    final = history_rows(tmp_path / "run" / "history.csv")
    for k, (progress, rows) in enumerate(epochs, 1):
        assert rows == final[:k]  # history.csv rewritten with the rows so far, same columns
        assert progress["val_accuracy"] == float(rows[-1]["val_accuracy"])
        assert progress["seconds_per_epoch"] == pytest.approx(
            sum(float(r["time_s"]) for r in rows) / k)
    lines = epoch_lines(caplog)
    assert [(m[1], m[4], m[6], m[7]) for m in lines] == [(None, "ce", str(k), "3")
                                                         for k in (1, 2, 3)]
    assert record["device"] == "cpu" and record["device_record"]["device"] == "cpu"
    # resources.gpu schedules, it is not the network's identity
    assert R.run_fingerprint(replace(spec(data_dir, tmp_path / "run"), gpus=1),
                             json.loads((data_dir / "manifest.json").read_text())) == \
        record["fingerprint"]


def test_a_bundle_holds_one_lease_and_names_network_k_of_n(data_dir, tmp_path, monkeypatch,
                                                         caplog):
    leases = []
    real = R.acquire_device

    def counting(requested, want_gpu, **kw):
        leases.append((requested, want_gpu))
        return real(requested, want_gpu, **kw)

    monkeypatch.setattr(R, "acquire_device", counting)
    specs = [spec(data_dir, tmp_path / "ce", epochs=2),
             spec(data_dir, tmp_path / "ls", method="ls", param=0.1, epochs=2)]
    with caplog.at_level(logging.INFO, logger="selfdistill"):
        records = train_bundle(specs)
    assert leases == [("cpu", False)]
    assert [(m[2], m[3], m[4], m[6]) for m in epoch_lines(caplog)] == [
        ("1", "2", "ce", "1"), ("1", "2", "ce", "2"), ("2", "2", "ls", "1"), ("2", "2", "ls", "2")]
    progress = json.loads((tmp_path / "ls" / PROGRESS_FILE).read_text())
    assert (progress["network"], progress["networks"]) == (2, 2)
    assert all(r["device_record"]["name"] for r in records)


def test_a_resumed_run_reports_its_done_epochs_at_the_start(data_dir, tmp_path, snapshots,
                                                           monkeypatch):
    real = R.EpochReport.epoch

    def fail_at_epoch_2(self, row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # as a kill after epoch 1's resume file
        real(self, row)

    monkeypatch.setattr(R.EpochReport, "epoch", fail_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_run(spec(data_dir, tmp_path / "run"))
    monkeypatch.setattr(R.EpochReport, "epoch", real)
    first = history_rows(tmp_path / "run" / "history.csv")
    assert [r["epoch"] for r in first] == ["1"]
    snapshots.clear()
    record = train_run(spec(data_dir, tmp_path / "run"))
    assert record["resumed_from_epoch"] == 1
    progress, rows = snapshots[0]  # the start of the resumed run
    assert progress["epoch"] == 1 and rows == first
    assert progress["seconds_per_epoch"] == pytest.approx(float(first[0]["time_s"]))
    assert [p["epoch"] for p, _ in snapshots[1:]] == [2, 3]


def test_cli_prints_each_epoch_line_on_stdout_without_verbose(data_dir, tmp_path, capsys):
    assert cli_main(["train", "--data", str(data_dir), "--arch", "cnn1d", "--method", "ce",
                     "--epochs", "2", "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    lines = [m for m in map(LINE.match, out.splitlines()) if m]
    assert [(m[6], m[7]) for m in lines] == [("1", "2"), ("2", "2")]
    assert "epoch 1/2" not in err


def test_cli_without_cuda_exits_1_naming_the_key(data_dir, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the absent-CUDA error cannot be triggered")
    assert cli_main(["train", "--data", str(data_dir), "--arch", "cnn1d", "--method", "ce",
                     "--epochs", "1", "--device", "cuda", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "execution.device is 'cuda'" in err and "torch.cuda.is_available() is False" in err
    assert not (tmp_path / "run").exists()
