"""Optional TensorBoard event files (execution.tensorboard, selfdistill.tensorboard_log): read
back with TensorBoard's own reader they hold history.csv's curves at step = epoch and the
run's identity; they change no output byte and no identity; a resumed run writes each epoch
once; without the package a run with the switch on fails before training, naming the fix."""

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selfdistill import cli, grid
from selfdistill import run as R
from selfdistill.run import RunSpec, spec_from_params, train_bundle, train_run
from selfdistill.tensorboard_log import TensorBoardMissingError
from selfdistill.train import TrainConfig

from ..conftest import REPO

torch.set_num_threads(1)
# the list, then the validation columns an LS run has (no teacher columns)
CURVE_COLUMNS = ("train_loss", "train_accuracy", "val_accuracy", "lr", "val_loss", "val_nll")
CLOCK_COLUMNS = ("time_s", "train_step_s", "step_start_unix", "step_end_unix")
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason='needs pip install -e ".[tensorboard]"')


def spec(data_dir: Path, out: Path, tensorboard: bool, epochs: int = 3) -> RunSpec:
    return RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method="ls", param=0.1, seed=0,
                   gen=0, out_dir=str(out), dataset="mnist1d", device="cpu",
                   tensorboard=tensorboard,
                   train=TrainConfig(epochs=epochs, milestones=(2,) if epochs > 2 else (), seed=0))


def history(path: Path) -> list[dict[str, str]]:
    with open(path / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def events(run: Path):
    """TensorBoard's reader on the run's folder, keeping every event it finds (no purge)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), purge_orphaned_data=False)
    acc.Reload()
    return acc


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = events(run)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(rows: list[dict[str, str]]) -> dict[str, list[tuple[int, float]]]:
    """history.csv's curves as TensorBoard stores a scalar: float32 at step = epoch."""
    return {tag: [(int(r["epoch"]), float(np.float32(float(r[tag])))) for r in rows]
            for tag in CURVE_COLUMNS}


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict[bool, tuple[Path, dict]]:
    """The same tiny LS run with the switch off, then on: {switch: (run dir, record)}."""
    root = tmp_path_factory.mktemp("tb")
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip('needs pip install -e ".[tensorboard]"')
    return {on: (root / str(on), train_run(spec(data_dir, root / str(on), on)))
            for on in (False, True)}


# --------------------------------------------------------------------------- what is written

@needs_tensorboard
def test_events_hold_each_curve_of_history_at_step_epoch(runs):
    run, _ = runs[True]
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert scalars(run) == expected(rows)
    assert float(rows[2]["lr"]) < float(rows[1]["lr"])  # falls after milestone 2


@needs_tensorboard
def test_events_name_the_run_and_its_fingerprint(runs):
    run, record = runs[True]
    acc = events(run)
    (text,) = acc.Tensors("run/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert "mnist1d/cnn1d/ls/0.1/seed0/gen0" in shown and record["fingerprint"] in shown
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1


@needs_tensorboard
def test_the_switch_changes_no_output_byte_and_no_identity(runs):
    (off, off_record), (on, on_record) = runs[False], runs[True]
    assert not (off / "tensorboard").exists()
    for name in ("model.pt", "preds.npz"):
        assert (on / name).read_bytes() == (off / name).read_bytes(), name
    drop = [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in history(off)]
    assert [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in history(on)] == drop
    assert on_record["fingerprint"] == off_record["fingerprint"]
    assert on_record["model_sha256"] == off_record["model_sha256"]


def test_the_switch_is_scheduling_not_a_rerun_trigger():
    """grid.run_params (the training rules' params) is the same whichever the switch says;
    spec_from_params takes it beside them, as it takes resources.gpu."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    run = grid.grid(config)[0]
    params = {}
    for on in (False, True):
        config["execution"]["tensorboard"] = on
        params[on] = grid.run_params(config, run)
    assert params[False] == params[True]
    assert "tensorboard" not in str(params[True])
    assert spec_from_params(params[True], 1, config, 0, True).tensorboard is True
    assert spec_from_params(params[True], 1, config, 0).tensorboard is False


def test_cli_flag_and_config_file_reach_the_spec(tmp_path):
    base = ["train", "--data", "d", "--arch", "cnn1d", "--method", "ce", "--out", "o"]
    assert cli.run_spec(cli.parse(base)).tensorboard is False
    assert cli.run_spec(cli.parse([*base, "--tensorboard"])).tensorboard is True
    cfg = tmp_path / "run.yaml"
    cfg.write_text("execution: {tensorboard: true}\n")
    assert cli.run_spec(cli.parse([*base, "--config", str(cfg)])).tensorboard is True
    assert cli.run_spec(cli.parse([*base, "--config", str(cfg),
                                   "--no-tensorboard"])).tensorboard is False


# --------------------------------------------------------------------------- resume

@needs_tensorboard
def test_a_resumed_run_writes_each_epoch_once(data_dir, tmp_path, monkeypatch):
    """Killed after epoch 2's events, before its resume file (fit writes the resume file
    after the epoch's report): the resumed run trains epoch 2 again from epoch 1's resume
    file, and the folder then holds epochs 1, 2, 3 once each, as history.csv does."""
    real = R.EpochReport.epoch

    def kill_after_epoch_2(self, row):
        real(self, row)
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # as a kill: epoch 2's events exist, its resume file not

    run = tmp_path / "run"
    monkeypatch.setattr(R.EpochReport, "epoch", kill_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_run(spec(data_dir, run, True))
    monkeypatch.setattr(R.EpochReport, "epoch", real)
    assert [step for step, _ in scalars(run)["val_accuracy"]] == [1, 2]
    record = train_run(spec(data_dir, run, True))
    assert record["resumed_from_epoch"] == 1
    assert scalars(run) == expected(history(run))  # no epoch twice, none of the killed try
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1


# --------------------------------------------------------------------------- without the package

@pytest.fixture
def no_tensorboard(monkeypatch):
    """An environment without the tensorboard package: its import fails."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)


def test_switch_on_without_the_package_fails_before_training(data_dir, tmp_path,
                                                              no_tensorboard, capsys):
    for start in (lambda s: train_run(s), lambda s: train_bundle([s])):
        with pytest.raises(TensorBoardMissingError) as err:
            start(spec(data_dir, tmp_path / "run", True, epochs=1))
        message = str(err.value)
        assert "execution.tensorboard" in message and 'pip install -e ".[tensorboard]"' in message
        assert "execution.tensorboard: false" in message
        assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    assert cli.main(["train", "--data", str(data_dir), "--arch", "cnn1d", "--method", "ce",
                     "--epochs", "1", "--device", "cpu", "--tensorboard", "--out",
                     str(tmp_path / "cli")]) == 1
    assert "execution.tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def test_switch_off_needs_no_package(data_dir, tmp_path, no_tensorboard):
    record = train_run(spec(data_dir, tmp_path / "run", False, epochs=1))
    assert record["best_epoch"] == 1 and not (tmp_path / "run" / "tensorboard").exists()
