"""Checkpoints are checked before they teach: model.pt's sha256 recorded in run.json, then
hash, type, keys, shapes and finite weights verified when it is loaded as an SD teacher
(methods §3.4), each failure a named error with the path, the problem and the fix that fits
the caller (workflow or CLI)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from selfdistill.checkpoint import CheckpointError, recorded_sha256, verify_model
from selfdistill.cli import main
from selfdistill.io import sha256_file, write_torch
from selfdistill.run import RunSpec, TeacherError, train_run
from selfdistill.train import TrainConfig


@pytest.fixture(scope="module")
def teacher_run(data_dir, tmp_path_factory) -> Path:
    """A finished generation-0 (ce) run: model.pt and run.json side by side."""
    out = tmp_path_factory.mktemp("teacher") / "gen0"
    train_run(spec(data_dir, out))
    return out


def spec(data_dir, out, method="ce", teacher=None, epochs=1, options=None):
    cfg = TrainConfig(epochs=epochs, milestones=(), seed=0)
    return RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method=method, param=None, seed=0,
                   gen=1 if method == "sd" else 0, out_dir=str(out), train=cfg,
                   options=options or {}, teacher=str(teacher) if teacher else None,
                   dataset="mnist1d")


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest / "model.pt"


def rewrite(path: Path, ckpt, record_hash: bool = True) -> None:
    """Write ``ckpt`` as model.pt and, like train_run, its hash into the run.json beside it
    (a checkpoint its own run wrote that way, e.g. after diverging)."""
    write_torch(path, ckpt)
    record = path.parent / "run.json"
    if record_hash and record.exists():
        data = json.loads(record.read_text())
        data["model_sha256"] = sha256_file(path)
        record.write_text(json.dumps(data))


def sd_with(data_dir, tmp_path, teacher: Path):
    return train_run(spec(data_dir, tmp_path / "sd", method="sd", teacher=teacher))


def test_run_json_records_the_hash_of_model_pt(teacher_run):
    record = json.loads((teacher_run / "run.json").read_text())
    assert record["model_sha256"] == sha256_file(teacher_run / "model.pt")
    ckpt = verify_model(teacher_run / "model.pt", recorded_sha256(teacher_run / "model.pt"))
    assert ckpt["arch"] == "cnn1d" and set(ckpt["state_dict"]) == set(
        torch.load(teacher_run / "model.pt", weights_only=True)["state_dict"])


def test_flipped_bytes_inside_the_weights_are_a_hash_mismatch(data_dir, teacher_run, tmp_path):
    model = copy_run(teacher_run, tmp_path / "gen0")
    ckpt = torch.load(model, weights_only=True)
    weight = next(v for v in ckpt["state_dict"].values() if v.numel() > 64)
    raw = model.read_bytes()
    at = raw.find(weight.numpy().tobytes())
    assert at > 0  # the tensor's bytes are stored as they are
    model.write_bytes(raw[:at + 8] + bytes(b ^ 0x5A for b in raw[at + 8:at + 40]) +
                      raw[at + 40:])
    verify_model(model, None)  # still a loadable checkpoint: only the hash can tell
    with pytest.raises(CheckpointError, match="sha256 .* changed since"):
        verify_model(model, recorded_sha256(model))
    with pytest.raises(TeacherError, match=rf"teacher checkpoint {re.escape(str(model))} has "
                                           rf"sha256 .*Delete {re.escape(str(model.parent))} "
                                           rf"and re-run snakemake"):
        sd_with(data_dir, tmp_path, model)
    assert not (tmp_path / "sd" / "model.pt").exists()


def test_nan_weights_are_named_not_blamed_on_the_learning_rate(data_dir, teacher_run, tmp_path):
    model = copy_run(teacher_run, tmp_path / "gen0")
    ckpt = torch.load(model, weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name][0] = float("nan")
    rewrite(model, ckpt)  # its own run wrote it so: the hash matches
    with pytest.raises(TeacherError, match=rf"{re.escape(str(model))} holds non-finite "
                                           rf"weights .*{re.escape(name)}") as err:
        sd_with(data_dir, tmp_path, model)
    assert "lr" not in str(err.value)


def test_a_checkpoint_that_is_not_a_dict_is_named(data_dir, teacher_run, tmp_path):
    model = copy_run(teacher_run, tmp_path / "gen0")
    rewrite(model, [torch.zeros(3)])
    with pytest.raises(TeacherError, match=rf"{re.escape(str(model))} holds a list, not"):
        sd_with(data_dir, tmp_path, model)


def test_missing_keys_and_resume_files_are_named(teacher_run, tmp_path):
    model = copy_run(teacher_run, tmp_path / "gen0")
    ckpt = torch.load(model, weights_only=True)
    rewrite(model, {k: v for k, v in ckpt.items() if k != "state_dict"})
    with pytest.raises(CheckpointError, match=r"lacks the key\(s\) \['state_dict'\]"):
        verify_model(model, recorded_sha256(model))
    rewrite(model, {"fingerprint": "f", "state": {}, "model": ckpt["state_dict"],
                    "optimizer": {}})
    with pytest.raises(CheckpointError, match="is a resume file"):
        verify_model(model, recorded_sha256(model))


def test_a_state_dict_of_the_wrong_shape_is_named(data_dir, teacher_run, tmp_path):
    model = copy_run(teacher_run, tmp_path / "gen0")
    ckpt = torch.load(model, weights_only=True)
    name, value = next((k, v) for k, v in ckpt["state_dict"].items() if v.dim() >= 2)
    ckpt["state_dict"][name] = torch.zeros(value.shape[0] + 1, *value.shape[1:])
    rewrite(model, ckpt)
    with pytest.raises(TeacherError, match=rf"{re.escape(str(model))} does not load into the "
                                           rf"cnn1d network for 10 classes.*{re.escape(name)}"):
        sd_with(data_dir, tmp_path, model)


def test_verify_model_leaves_the_global_random_stream_alone(teacher_run):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    verify_model(teacher_run / "model.pt", None)
    assert torch.equal(torch.rand(3), expected)


def test_a_corrupt_run_json_beside_the_teacher_is_named(teacher_run, tmp_path):
    model = copy_run(teacher_run, tmp_path / "gen0")
    (model.parent / "run.json").write_text('{"model_sha256": "ab')
    with pytest.raises(CheckpointError, match=r"run\.json beside it is unreadable"):
        recorded_sha256(model)


def _cli_sd(data_dir, teacher, out) -> list[str]:
    return ["train", "--data", str(data_dir), "--arch", "cnn1d", "--method", "sd", "--gen",
            "1", "--teacher", str(teacher), "--seed", "0", "--epochs", "1", "--out", str(out)]


@pytest.mark.parametrize("kind", ["directory", "preds.npz"])
def test_a_wrong_teacher_through_the_cli_says_what_it_is(data_dir, teacher_run, tmp_path,
                                                          capsys, kind):
    if kind == "directory":
        teacher = teacher_run
        what = (f"{teacher} is a directory, not a model.pt (it holds one: "
                f"{teacher / 'model.pt'})")
    else:
        teacher = teacher_run / "preds.npz"  # beside the run.json that hashes model.pt
        what = f"{teacher} is a NumPy archive"
    assert main(_cli_sd(data_dir, teacher, tmp_path / "sd")) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("teacher checkpoint") == 1
    assert what in err and ("predictions, not network weights" in err) == (kind != "directory")
    assert "--teacher must be the model.pt of a finished `selfdistill train` run" in err
    assert "snakemake" not in err and "Traceback" not in err
