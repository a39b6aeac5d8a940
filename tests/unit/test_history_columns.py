"""history.csv's validation columns (selfdistill.train.VALIDATION_COLUMNS, docs/results.md):
each epoch's val_loss, val_nll and, with a frozen teacher, the argmax agreement with it and
KL(teacher || student) at the training temperature, recomputed here in float64 numpy from the
networks at that epoch; and computing them changes no trained byte."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from selfdistill import train as T
from selfdistill.checkpoint import load_model
from selfdistill.data import load_split
from selfdistill.run import RunSpec, train_run
from selfdistill.train import TrainConfig

torch.set_num_threads(1)
EPOCHS = 3


def spec(data_dir: Path, out: Path, method: str, param=None, gen=0, teacher=None,
         options=None) -> RunSpec:
    return RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method=method, param=param,
                   seed=0, gen=gen, out_dir=str(out), dataset="mnist1d", device="cpu",
                   teacher=teacher, options=options or {},
                   train=TrainConfig(epochs=EPOCHS, milestones=(2,), seed=0))


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def logits_of(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(x)).double().numpy()


@pytest.fixture(scope="module")
def teacher(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hist") / "ce"
    train_run(spec(data_dir, out, "ce"))
    return out / "model.pt"


@pytest.fixture
def epoch_nets(monkeypatch):
    """The student's weights after each epoch, as fit leaves them when the row is written."""
    seen: list[dict[str, torch.Tensor]] = []
    real = T._end_epoch

    def spy(state, row, val_acc, model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real(state, row, val_acc, model)

    monkeypatch.setattr(T, "_end_epoch", spy)
    return seen


def student_at(model_pt: Path, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    _, net = load_model(model_pt, None)
    net.load_state_dict(weights)
    return net


def test_sd_rows_hold_teacher_agreement_kl_loss_and_nll(data_dir, tmp_path, teacher,
                                                        epoch_nets):
    out = tmp_path / "sd"
    alpha, temp = 0.6, 3.0
    train_run(spec(data_dir, out, "sd", gen=1, teacher=str(teacher),
                   options={"alpha": alpha, "temperature": temp}))
    val = load_split(data_dir, "val")
    zt = logits_of(load_model(teacher, None)[1], val.x)
    rows = history(out)
    assert len(rows) == len(epoch_nets) == EPOCHS
    for row, weights in zip(rows, epoch_nets, strict=True):
        z = logits_of(student_at(out / "model.pt", weights), val.x)
        log_p = log_softmax(z)
        n = np.arange(len(val.y))
        nll = -log_p[n, val.y].mean()
        # methods §3.4: (1-α)·CE + α·H(softmax(z_t/T), p), the student at T = 1
        q_t = np.exp(log_softmax(zt / temp))
        loss = (1 - alpha) * nll + alpha * -(q_t * log_p).sum(1).mean()
        kl = (q_t * (np.log(q_t) - log_softmax(z / temp))).sum(1).mean()
        agree = (z.argmax(1) == zt.argmax(1)).mean()
        assert float(row["val_accuracy"]) == (z.argmax(1) == val.y).mean()
        assert float(row["val_nll"]) == pytest.approx(nll, rel=1e-5)
        assert float(row["val_loss"]) == pytest.approx(loss, rel=1e-5)
        assert float(row["val_teacher_kl"]) == pytest.approx(kl, rel=1e-4, abs=1e-7)
        assert float(row["val_teacher_agreement"]) == agree
    assert len({row["val_teacher_kl"] for row in rows}) == EPOCHS  # a value per epoch


@pytest.mark.parametrize("method,param,loss_given", [("ce", None, True), ("ls", 0.1, True),
                                                      ("bs", 3.0, False)])
def test_rows_without_teacher_leave_its_columns_empty(data_dir, tmp_path, method, param,
                                                      loss_given, epoch_nets):
    out = tmp_path / method
    train_run(spec(data_dir, out, method, param=param))
    val = load_split(data_dir, "val")
    for row, weights in zip(history(out), epoch_nets, strict=True):
        assert row["val_teacher_agreement"] == row["val_teacher_kl"] == ""
        log_p = log_softmax(logits_of(student_at(out / "model.pt", weights), val.x))
        nll = -log_p[np.arange(len(val.y)), val.y].mean()
        assert float(row["val_nll"]) == pytest.approx(nll, rel=1e-5)
        if not loss_given:  # BS's loss needs the epoch's Beta draws: not defined held out
            assert row["val_loss"] == ""
        elif method == "ce":
            assert float(row["val_loss"]) == pytest.approx(nll, rel=1e-5)
        else:  # methods §3.2: H(q, p), q = 1-ε on y and ε/(K-1) on each other class
            k, n = log_p.shape[1], np.arange(len(val.y))
            others = log_p.sum(1) - log_p[n, val.y]
            ls = -((1 - param) * log_p[n, val.y] + param / (k - 1) * others).mean()
            assert float(row["val_loss"]) == pytest.approx(ls, rel=1e-5)


@pytest.mark.parametrize("method", ["sd", "bs"])
def test_the_columns_change_no_trained_byte(data_dir, tmp_path, teacher, monkeypatch, method):
    """The same run with validation reduced to val_accuracy alone: the same model.pt,
    preds.npz and history numbers (the new columns read logits and change no state)."""
    kwargs = {"gen": 1, "teacher": str(teacher)} if method == "sd" else {"param": 3.0}
    full = tmp_path / "full"
    train_run(spec(data_dir, full, method, **kwargs))

    def accuracy_only(model, objective, x_va, val, cfg, pipeline):
        logits = T.predict_logits(model, x_va, cfg.eval_batch_size, cfg.channels_last,
                                  pipeline.eval)
        return {"val_accuracy": float((logits.argmax(1).numpy() == val.y).mean()),
                **dict.fromkeys(T.VALIDATION_COLUMNS)}

    monkeypatch.setattr(T, "_validation", accuracy_only)
    bare = tmp_path / "bare"
    train_run(spec(data_dir, bare, method, **kwargs))
    for name in ("model.pt", "preds.npz"):
        assert (full / name).read_bytes() == (bare / name).read_bytes(), name
    keep = ("epoch", "lr", "train_loss", "train_accuracy", "val_accuracy")
    assert ([[r[k] for k in keep] for r in history(full)]
            == [[r[k] for k in keep] for r in history(bare)])
    assert all(r["val_nll"] for r in history(full)) and not any(
        r["val_nll"] for r in history(bare))
