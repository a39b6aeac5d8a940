"""Failures name their cause: a full disk names the file being written (errno kept), a
truncated manifest names itself and how to rebuild it, a non-finite loss names the method's
unusual settings (methods §3) before the learning rate, and SIGTERM leaves a line in the log."""

import errno
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import selfdistill.io
from selfdistill.checkpoint import ResumeIdentity, TrainInterrupted, read_resume
from selfdistill.data import DataError, load_manifest, load_split
from selfdistill.io import write_csv, write_json, write_npz, write_torch
from selfdistill.methods import METHODS, get_method
from selfdistill.models import build_model
from selfdistill.objectives import CrossEntropy
from selfdistill.run import RunSpec, train_run
from selfdistill.train import NonFiniteLossError, TrainConfig, fit

from ..conftest import REPO


def spec(data_dir, out, method="ce", param=None, teacher=None, epochs=1, lr=0.1, options=None):
    cfg = TrainConfig(epochs=epochs, milestones=(), seed=0, lr=lr)
    return RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method=method, param=param, seed=0,
                   gen=1 if method == "sd" else 0, out_dir=str(out), train=cfg,
                   options=options or {}, teacher=str(teacher) if teacher else None,
                   dataset="mnist1d")


# --------------------------------------------------------------------------- full disk


class FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, fh, room: int = 64) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def full_disk_open(only: str = ""):
    """``open`` for selfdistill.io: files opened for writing whose name contains ``only``
    run out of space."""
    def opener(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return FullDisk(fh) if "w" in mode and only in Path(path).name else fh
    return opener


def _no_space_npz(monkeypatch, target):
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(np.lib.format, "write_array", fail)
    write_npz(target, x=np.arange(3))


def _no_space_json(monkeypatch, target):
    def fail(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(pathlib.Path, "write_text", fail)
    write_json(target, {"a": 1})


def _no_space_csv(monkeypatch, target):
    monkeypatch.setattr(selfdistill.io, "open", full_disk_open(), raising=False)
    write_csv(target, [{"a": "x" * 100}])


def _no_space_torch(monkeypatch, target):
    monkeypatch.setattr(selfdistill.io, "open", full_disk_open(), raising=False)
    write_torch(target, {"w": torch.zeros(1000)})  # torch's writer hides the errno itself


@pytest.mark.parametrize("write", [_no_space_npz, _no_space_json, _no_space_csv,
                                   _no_space_torch])
def test_a_full_disk_names_the_file_and_keeps_the_errno(monkeypatch, tmp_path, write):
    target = tmp_path / "results" / "out.bin"
    with pytest.raises(OSError) as err:
        write(monkeypatch, target)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == (f"no space left on device while writing {target} (ENOSPC): "
                              f"free space or point results/ elsewhere")
    assert list(target.parent.iterdir()) == []  # no partial file, no temporary left


@pytest.mark.parametrize("name", ["model.pt", "resume.pt"])
def test_a_full_disk_during_training_names_the_checkpoint(monkeypatch, data_dir, tmp_path, name):
    """model.pt and resume.pt were written by torch's own writer, which reported a full
    disk as ``basic_ios::clear: iostream error`` or ``unexpected pos`` without the path."""
    monkeypatch.setattr(selfdistill.io, "open", full_disk_open(f".{name}."), raising=False)
    out = tmp_path / "run"
    with pytest.raises(OSError, match=rf"no space left on device while writing .*{name} "
                                      rf"\(ENOSPC\)") as err:
        train_run(spec(data_dir, out))
    assert err.value.errno == errno.ENOSPC and str(out / name) in str(err.value)
    assert not (out / "run.json").exists()


# --------------------------------------------------------------------------- manifest


def test_a_truncated_manifest_is_named_with_how_to_rebuild_it(data_dir, tmp_path):
    broken = tmp_path / "mnist1d"
    shutil.copytree(data_dir, broken)
    text = (broken / "manifest.json").read_text()
    (broken / "manifest.json").write_text(text[:len(text) // 2])
    manifest = str(broken / "manifest.json")
    for call in (lambda: load_manifest(broken), lambda: load_split(broken, "train"),
                 lambda: train_run(spec(broken, tmp_path / "run"))):
        with pytest.raises(DataError) as err:
            call()
        message = str(err.value)
        assert message.startswith(f"dataset manifest {manifest} is unreadable")
        assert f"Delete the dataset directory {broken}" in message
        assert "snakemake data" in message and "selfdistill prepare" in message


def test_a_manifest_without_its_keys_is_named(data_dir, tmp_path):
    broken = tmp_path / "mnist1d"
    shutil.copytree(data_dir, broken)
    (broken / "manifest.json").write_text(json.dumps({"dataset": "mnist1d"}))
    with pytest.raises(DataError, match=r"manifest.json lacks \['num_classes', 'input_shape', "
                                        r"'sha256'\].*snakemake data"):
        load_manifest(broken)


# --------------------------------------------------------------------------- non-finite loss


@pytest.fixture(scope="module")
def teacher(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "gen0"
    train_run(spec(data_dir, out))
    return out / "model.pt"


def test_nan_from_a_tiny_sd_temperature_names_the_temperature(data_dir, teacher, tmp_path):
    run = spec(data_dir, tmp_path / "sd", method="sd", teacher=teacher,
               options={"temperature": 1e-40})
    with pytest.raises(NonFiniteLossError) as err:
        train_run(run)
    message = str(err.value)
    assert "methods.sd.temperature = 1e-40" in message and "z/T overflows" in message
    assert message.index("methods.sd.temperature") < message.index("train.lr")
    assert "epoch 1, step 0" in message and "sd seed=0 gen=1" in message
    assert not (tmp_path / "sd" / "model.pt").exists()


def test_nan_from_a_huge_lr_names_the_lr_and_no_method_setting(data_dir, tmp_path):
    with pytest.raises(NonFiniteLossError) as err:
        train_run(spec(data_dir, tmp_path / "ls", method="ls", param=0.1, lr=1e30))
    message = str(err.value)
    assert "train.lr = 1e+30 too high" in message and "methods.ls" not in message
    assert "ls_eps" not in message


def _unusual(usual) -> float:
    return usual.high + 1.0 if usual.high is not None else usual.low / 1000.0


@pytest.mark.parametrize("key", sorted({(m.name, k) for m in METHODS.values()
                                        for k in m.nan_risks}))
def test_each_risky_setting_is_named_when_unusual(key):
    method, keyword = get_method(key[0]), key[1]
    value = _unusual(method.nan_risks[keyword].usual)
    if keyword == method.swept:
        causes, where = method.nan_causes(value, {}), f"{method.sweep_key} (this run's param)"
    else:
        param = 1.0 if method.swept else None
        causes, where = method.nan_causes(param, {keyword: value}), f"methods.{key[0]}.{keyword}"
    assert causes[0].startswith(f"{where} = {value:g}, outside the usual")


def test_the_default_grid_is_never_flagged():
    """Every sweep point and default option of config/config.yaml is a usual value."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for m in METHODS.values():
        points = config["sweeps"].get(m.sweep_key, [None]) if m.swept else [None]
        for param in points:
            assert m.nan_causes(param, config["methods"].get(m.name, {})) == (
                [m.nan_note] if m.nan_note else []), (m.name, param)


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_logs_where_it_stopped_before_exiting_143(data_dir, tmp_path, caplog):
    torch.manual_seed(0)
    model = build_model("cnn1d", 10, (1, 40))
    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")
    resume = ResumeIdentity(tmp_path / "resume.pt", "fp", "[run]")
    cfg = TrainConfig(epochs=5, milestones=(), seed=0)

    def terminate_after_first_epoch(row):
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # lands before epoch 2's first step

    with caplog.at_level(logging.WARNING), pytest.raises(TrainInterrupted) as err:
        fit(model, CrossEntropy(), train, val, cfg, torch.device("cpu"), resume=resume,
            on_epoch=terminate_after_first_epoch)
    assert err.value.code == 143
    line = "[run]: SIGTERM at epoch 2 step 0: resume.pt written, exiting 143"
    assert line in caplog.messages
    state = read_resume(tmp_path / "resume.pt")["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)


RULE = """import json, sys
from selfdistill.logs import to_rule_log
from selfdistill.run import spec_from_params, train_run
to_rule_log(sys.argv[1])
train_run(spec_from_params(json.loads(sys.argv[2])))
"""


@pytest.mark.slow
def test_sigterm_line_is_in_the_rule_log(data_dir, tmp_path):
    """The train rule's wrapper, killed by SIGTERM (as SLURM does before a time limit)."""
    out, log = tmp_path / "run", tmp_path / "logs" / "train.log"
    params = {"dataset_dir": str(data_dir), "arch": "cnn1d", "method": "ce", "param": None,
              "seed": 0, "gen": 0, "out_dir": str(out), "dataset": "mnist1d", "options": {},
              "train": {"epochs": 400, "milestones": [], "seed": 0}}
    proc = subprocess.Popen([sys.executable, "-c", RULE, str(log), json.dumps(params)])
    t0 = time.time()
    while not (out / "resume.pt").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    state = read_resume(out / "resume.pt")["state"]
    line = (f"SIGTERM at epoch {state['epoch'] + 1} step {state['step_in_epoch']}: resume.pt "
            f"written, exiting 143")
    assert line in log.read_text()
