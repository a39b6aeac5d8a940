"""Training loop: methods §2 recipe details, SD teacher and BS EMA behaviour, determinism,
checkpoints, named errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from selfdistill.checkpoint import read_resume
from selfdistill.data import load_split, prepare_dataset
from selfdistill.devices import CudaUnavailableError
from selfdistill.io import sha256_file
from selfdistill.models import build_model
from selfdistill.objectives import BetaSmoothing, Objective, SelfDistillation
from selfdistill.run import RunSpec, TeacherError, train_run
from selfdistill.train import NonFiniteLossError, TrainConfig, fit

from .conftest import MNIST1D


def spec(data_dir, out, method="ce", param=None, seed=0, gen=0, teacher=None, epochs=3,
         arch="cnn1d", **train_kw):
    cfg = TrainConfig(epochs=epochs, milestones=(2,) if epochs >= 2 else (), seed=seed, **train_kw)
    return RunSpec(dataset_dir=str(data_dir), arch=arch, method=method, param=param, seed=seed,
                   gen=gen, out_dir=str(out), train=cfg,
                   teacher=str(teacher) if teacher else None, dataset="mnist1d")


def test_prepared_dataset_manifest(data_dir):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 400, "val": 80, "test": 120}
    assert sum(manifest["class_counts"]["val"]) == 80
    for name, digest in manifest["sha256"].items():
        assert sha256_file(data_dir / name) == digest
    # deterministic: a second preparation gives identical files
    again = prepare_dataset("mnist1d", MNIST1D, data_dir.parent / "again")
    assert again["sha256"] == manifest["sha256"]


def test_mnist1d_generation_leaves_global_rng_alone(tmp_path):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    prepare_dataset("mnist1d", MNIST1D, tmp_path / "d")
    assert np.array_equal(np.random.get_state()[1], before)


def test_fast_mnist1d_interpolation_gives_the_packages_dataset_bit_for_bit():
    """The generator with our np.interp resampling equals the mnist1d package's own output
    (interp1d) bit for bit, on a 2,000-example dataset, and the package is restored."""
    import importlib

    from mnist1d.data import get_dataset_args, make_dataset

    from selfdistill.sources.mnist1d import _fast_mnist1d_interpolation, _mnist1d_arrays

    params = {"num_samples": 2000, "train_fraction": 0.8, "generator_seed": 7}
    ours = _mnist1d_arrays(params)
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = 2000, 0.8, 7
    state = np.random.get_state()
    try:
        ref = make_dataset(args)  # the package's own interp1d path
    finally:
        np.random.set_state(state)
    assert np.array_equal(ours[0][:, 0, :], ref["x"].astype(np.float32))
    assert np.array_equal(ours[2][:, 0, :], ref["x_test"].astype(np.float32))
    assert np.array_equal(ours[1], ref["y"]) and np.array_equal(ours[3], ref["y_test"])

    module = importlib.import_module("mnist1d.transform")
    original = module.interpolate
    rng = np.random.default_rng(0)
    with _fast_mnist1d_interpolation():
        fast = module.interpolate
        assert fast is not original
        for n_in, n_out in [(12, 60), (60, 40), (73, 40), (2, 5)]:
            x = rng.normal(size=n_in)
            assert np.array_equal(fast(x, n_out), original(x, n_out))
        ints = np.arange(9)
        assert np.array_equal(fast(ints, 40), original(ints, 40))
        two_d = rng.normal(size=(3, 12))  # not 1-D: the package's own function
        assert np.array_equal(fast(two_d.T, 30), original(two_d.T, 30))
    assert module.interpolate is original


def test_corrupted_dataset_file_is_named(data_dir, tmp_path):
    bad = tmp_path / "bad"
    prepare_dataset("mnist1d", MNIST1D, bad)
    with open(bad / "val.npz", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(RuntimeError, match=r"val\.npz is corrupted: sha256 .* expects"):
        load_split(bad, "val")


def test_run_outputs_history_and_best_checkpoint(data_dir, tmp_path):
    record = train_run(spec(data_dir, tmp_path / "ce", epochs=3))
    out = tmp_path / "ce"
    for name in ("model.pt", "history.csv", "preds.npz", "run.json"):
        assert (out / name).exists()
    assert not (out / "resume.pt").exists()
    hist = np.genfromtxt(out / "history.csv", delimiter=",", names=True, dtype=None,
                         encoding=None)
    assert list(hist["epoch"]) == [1, 2, 3]
    assert list(hist["lr"]) == pytest.approx([0.1, 0.1, 0.01])  # stepped at END of epoch 2
    best = max(range(3), key=lambda i: (hist["val_accuracy"][i], i))  # ties: later epoch
    assert record["best_epoch"] == best + 1
    ckpt = torch.load(out / "model.pt", weights_only=False)
    assert ckpt["arch"] == "cnn1d" and ckpt["best_epoch"] == best + 1
    preds = np.load(out / "preds.npz")
    val_acc = (preds["val_logits"].argmax(1) == preds["val_targets"]).mean()
    assert val_acc == pytest.approx(hist["val_accuracy"][best])
    assert sorted(preds.files) == sorted(f"{s}_{k}" for s in ("train", "val", "test")
                                         for k in ("logits", "logits_last", "targets"))
    # the last epoch's weights: their validation accuracy is the last history row's
    last_acc = (preds["val_logits_last"].argmax(1) == preds["val_targets"]).mean()
    assert last_acc == pytest.approx(hist["val_accuracy"][-1])
    same = np.array_equal(preds["test_logits_last"], preds["test_logits"])
    assert same == (best == 2)  # identical exactly when the best epoch is the last
    prov = json.loads((out / "run.json").read_text())
    assert prov["device"] == "cpu" and prov["versions"]["torch"] == torch.__version__


def test_same_seed_identical_different_seed_differs(data_dir, tmp_path):
    train_run(spec(data_dir, tmp_path / "a", epochs=2))
    train_run(spec(data_dir, tmp_path / "b", epochs=2))
    train_run(spec(data_dir, tmp_path / "c", epochs=2, seed=1))
    for name in ("model.pt", "preds.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


class Spy(nn.Module):
    """Records the inputs and mode of every forward call of the wrapped network."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((x.detach().clone(), self.training, torch.is_grad_enabled()))
        return self.inner(x)


def test_sd_teacher_eval_mode_same_augmented_batch(data_dir):
    torch.manual_seed(0)
    teacher = Spy(build_model("cnn1d", 10, (1, 40)))
    student = Spy(build_model("cnn1d", 10, (1, 40)))
    objective = SelfDistillation(teacher)
    cfg = TrainConfig(epochs=1, milestones=(), seed=0, augment="shift1d", augment_padding=3)
    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")
    fit(student, objective, train, val, cfg, torch.device("cpu"))
    train_calls = [c for c in student.calls if c[1]]
    # after the epoch, one eval-mode pass over the validation split (history's
    # val_teacher_agreement and val_teacher_kl, docs/results.md)
    *step_calls, (vx, v_training, v_grad) = teacher.calls
    assert torch.equal(vx, torch.as_tensor(val.x)) and not v_training and not v_grad
    assert len(step_calls) == len(train_calls) == 4  # 400 examples / 128, last kept
    for (tx, t_training, t_grad), (sx, _, _) in zip(step_calls, train_calls, strict=True):
        assert not t_training and not t_grad
        assert torch.equal(tx, sx)  # the same augmented batch
    raw = torch.as_tensor(train.x)
    assert not any(torch.equal(sx, raw[: sx.shape[0]]) for sx, _, _ in train_calls)


def test_bs_ema_update_rule_and_train_mode(data_dir):
    torch.manual_seed(0)
    model = build_model("cnn1d", 10, (1, 40))
    ema = Spy(build_model("cnn1d", 10, (1, 40)))
    ema0 = [p.detach().clone() for p in ema.parameters()]
    bs = BetaSmoothing(ema, a=3.0, alpha=0.6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    bs.after_step(model)  # s = 1: d = 0.5
    for e, e0, p in zip(ema.parameters(), ema0, model.parameters(), strict=True):
        assert torch.allclose(e, 0.5 * e0 + 0.5 * p)
    for _ in range(2000):
        bs.step += 1
    before = [p.detach().clone() for p in ema.parameters()]
    bs.step -= 1
    bs.after_step(model)  # s = 2001: d capped at 0.999
    for e, b, p in zip(ema.parameters(), before, model.parameters(), strict=True):
        assert torch.allclose(e, 0.999 * b + 0.001 * p, atol=1e-7)
    x = torch.randn(8, 1, 40)
    bs.loss(model(x), x, torch.zeros(8, dtype=torch.long))
    _, training, grad = ema.calls[-1]
    assert training and not grad  # batch statistics, no gradients (methods §3.5)


def test_beta_sampler_distribution():
    bs = BetaSmoothing(nn.Linear(1, 1), a=3.0, alpha=0.6,
                       generator=torch.Generator().manual_seed(1))
    from scipy import stats

    draws = bs.sample(20000, torch.device("cpu")).numpy()
    assert stats.kstest(draws, stats.beta(3.0, 1.0).cdf).pvalue > 1e-3


def test_teacher_mismatch_is_named(data_dir, tmp_path):
    train_run(spec(data_dir, tmp_path / "mlp", arch="mlp", epochs=1))
    with pytest.raises(TeacherError, match="incompatible.*'mlp'.*'cnn1d'"):
        train_run(spec(data_dir, tmp_path / "sd", method="sd", gen=1,
                       teacher=tmp_path / "mlp" / "model.pt", epochs=1))
    with pytest.raises(TeacherError, match="missing"):
        train_run(spec(data_dir, tmp_path / "sd", method="sd", gen=1,
                       teacher=tmp_path / "nope" / "model.pt", epochs=1))


def test_nonfinite_loss_names_run_epoch_step(data_dir, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"method=ls param=0.1 seed=0 gen=0.*epoch 1, "
                                                 r"step \d+"):
        train_run(replace(spec(data_dir, tmp_path / "nan", method="ls", param=0.1, epochs=1),
                          train=TrainConfig(epochs=1, milestones=(), seed=0, lr=1e30)))
    assert not (tmp_path / "nan" / "model.pt").exists()


@pytest.mark.parametrize("device, gpus, key", [("cuda", 0, "execution.device is 'cuda'"),
                                               ("auto", 1, r"resources.gpu > 0")])
def test_gpu_asked_for_but_absent_is_named_before_any_output(data_dir, tmp_path, device, gpus,
                                                             key):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the absent-CUDA error cannot be triggered")
    run = replace(spec(data_dir, tmp_path / "run", epochs=1), device=device, gpus=gpus)
    with pytest.raises(CudaUnavailableError, match=f"{key}.*torch.cuda.is_available"):
        train_run(run)
    assert not (tmp_path / "run").exists()  # raised before any data or output


def test_unwritable_output_dir_is_named(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")  # works as root too, unlike chmod
    with pytest.raises(PermissionError, match="cannot create output directory"):
        train_run(spec(data_dir, blocker / "run", epochs=1))


def test_digits_embedded_dataset_trains(tmp_path):
    params = {"source": "sklearn_digits", "test_fraction": 0.25, "generator_seed": 0,
              "val_size": 150, "split_seed": 0, "standardize": True}
    manifest = prepare_dataset("digits", params, tmp_path / "digits")
    assert manifest["sizes"] == {"train": 1197, "val": 150, "test": 450}
    assert manifest["input_shape"] == [1, 8, 8] and manifest["num_classes"] == 10
    train = load_split(tmp_path / "digits", "train")
    assert abs(float(train.x.mean())) < 1e-4 and abs(float(train.x.std()) - 1) < 1e-3
    record = train_run(RunSpec(dataset_dir=str(tmp_path / "digits"), arch="cnn_digits",
                               method="ce", param=None, seed=0, gen=0,
                               out_dir=str(tmp_path / "run"),
                               train=TrainConfig(epochs=2, milestones=(1,), seed=0)))
    assert record["best_val_accuracy"] > 0.5


class _CountingNet(nn.Module):
    """Wraps a network and counts the examples it has been run on."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.seen = net, 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.net(x)


def _sd_fit(data_dir, augment, cached):
    from selfdistill.augment import build_input_pipeline

    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")
    torch.manual_seed(7)
    teacher = build_model("cnn1d", 10, (1, 40))
    teacher.train()
    teacher(torch.randn(256, 1, 40) * 2 + 0.5)  # non-trivial BN running statistics
    counting = _CountingNet(teacher)
    obj = SelfDistillation(counting)
    pipe = build_input_pipeline(augment, 4, None, None)
    if not cached:  # force the per-step teacher forward
        pipe = type("NoCache", (type(pipe),), {"deterministic_train": False})(
            pipe.augment, None, pipe.eval_transform)
    torch.manual_seed(1)
    model = build_model("cnn1d", 10, (1, 40))
    cfg = TrainConfig(epochs=3, milestones=(2,), seed=0, augment=augment)
    result = fit(model, obj, train, val, cfg, torch.device("cpu"), pipeline=pipe)
    weights = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    # the teacher's examples, less its validation pass after each epoch (history's teacher
    # columns): what training itself ran it on
    seen = counting.seen - cfg.epochs * len(val.y)
    return result.history, weights, seen, obj.table, len(train.y)


def test_sd_teacher_logits_cached_without_augmentation_change_nothing(data_dir):
    """Without augmentation the eval-mode teacher's logits are computed once (one pass over
    the training set instead of one forward per step); training is unchanged."""
    hist_c, w_c, seen_c, table, n = _sd_fit(data_dir, "none", cached=True)
    hist_s, w_s, seen_s, no_table, _ = _sd_fit(data_dir, "none", cached=False)
    assert table is not None and table.shape == (n, 10) and no_table is None
    assert seen_c == n and seen_s == 3 * n  # 3 epochs
    assert [h["train_loss"] for h in hist_c] == pytest.approx(
        [h["train_loss"] for h in hist_s], abs=1e-6)
    assert torch.allclose(w_c, w_s, atol=1e-6)


def test_sd_teacher_sees_each_augmented_batch(data_dir):
    """With augmentation the views change every step: no cache, one forward per step."""
    hist, _, seen, table, n = _sd_fit(data_dir, "shift1d", cached=True)
    assert table is None and seen == 3 * n


def test_train_step_is_one_sgd_step_then_the_objective_update():
    """train_step: loss of the pre-step logits, one SGD step with momentum and weight decay
    (methods §2; the first momentum buffer is the gradient), then ``after_step`` once."""
    from selfdistill.objectives import CrossEntropy
    from selfdistill.train import train_step

    class Counting(CrossEntropy):
        calls = 0

        def after_step(self, model):
            Counting.calls += 1

    torch.manual_seed(0)
    model = build_model("mlp", 10, (1, 40))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(16, 1, 40), torch.randint(0, 10, (16,))
    want_loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(want_loss, list(model.parameters()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss, logits = train_step(model, Counting(), opt, x, y)
    assert torch.allclose(loss, want_loss.detach()) and not loss.requires_grad
    assert logits.shape == (16, 10) and Counting.calls == 1
    for p, p0, g in zip(model.parameters(), before, grads, strict=True):
        assert torch.allclose(p, p0 - 0.1 * (g + 1e-4 * p0), atol=1e-7)


class _SigtermAfter(Objective):
    """Delegates to ``inner``; sends this process SIGTERM after optimiser step ``at``."""

    def __init__(self, inner, at):
        self.inner, self.at, self.steps = inner, at, 0

    def loss(self, logits, x, y, idx=None):
        return self.inner.loss(logits, x, y, idx)

    def after_step(self, model):
        import signal

        self.inner.after_step(model)
        self.steps += 1
        if self.steps == self.at:
            signal.raise_signal(signal.SIGTERM)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def test_sigterm_mid_epoch_then_resume_is_bit_identical(data_dir, tmp_path):
    """SIGTERM inside epoch 2 writes the resume file at the next step boundary and exits
    with 143; a fresh process-state restart from it ends with the same weights, history and
    EMA network as an uninterrupted run (BS with augmentation: every random stream)."""
    from selfdistill.augment import build_input_pipeline
    from selfdistill.train import ResumeIdentity, derive_seed

    train, val = load_split(data_dir, "train"), load_split(data_dir, "val")
    cfg = TrainConfig(epochs=3, milestones=(2,), seed=3, augment="shift1d", augment_padding=3)

    def run(resume=None, interrupt_at=None):
        resume = ResumeIdentity() if resume is None else resume
        torch.manual_seed(0)
        model = build_model("cnn1d", 10, (1, 40))
        bs = BetaSmoothing(build_model("cnn1d", 10, (1, 40)), a=3.0, alpha=0.6,
                           generator=torch.Generator().manual_seed(derive_seed(3, "beta")))
        obj = bs if interrupt_at is None else _SigtermAfter(bs, interrupt_at)
        pipe = build_input_pipeline("shift1d", 3, None, None)
        return fit(model, obj, train, val, cfg, torch.device("cpu"), resume=resume,
                   pipeline=pipe), bs

    plain, bs_plain = run()
    ident = ResumeIdentity(tmp_path / "resume.pt", "fp", "[test]")
    with pytest.raises(SystemExit) as stopped:
        run(ident, interrupt_at=6)  # 4 steps per epoch: inside epoch 2
    assert stopped.value.code == 143
    saved = read_resume(tmp_path / "resume.pt")["state"]
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 2, 6)
    resumed, bs_resumed = run(ident)
    assert resumed.resumed_from_epoch == 1
    for a, b in ((plain.model, resumed.model), (bs_plain.ema, bs_resumed.ema)):
        for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert k == k2 and torch.equal(v, v2), k
    drop = ("time_s", "train_step_s", "step_start_unix", "step_end_unix")
    assert [{k: v for k, v in r.items() if k not in drop} for r in plain.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in resumed.history]


@pytest.mark.parametrize("method", ["sd", "bs"])
def test_teacher_and_ema_follow_the_student_into_channels_last(method):
    """With ``channels_last`` on image input, the SD teacher and the BS EMA network take the
    student's memory format before the first step (no per-step layout conversions; the EMA
    lerp keeps its fused path) and keep it through training."""
    from selfdistill.augment import build_input_pipeline
    from selfdistill.data import Split

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 3, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 10, 32).astype(np.int64)
    pipe = build_input_pipeline("crop_flip", 2, {"mean": [0.5] * 3, "std": [0.25] * 3})
    torch.manual_seed(0)
    other = build_model("cnn_digits", 10, (3, 8, 8))
    objective = (SelfDistillation(other) if method == "sd" else
                 BetaSmoothing(other, a=3.0, alpha=0.6, generator=torch.Generator().manual_seed(0)))
    model = build_model("cnn_digits", 10, (3, 8, 8))
    cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=16, augment="crop_flip",
                      channels_last=True)
    fit(model, objective, Split(x, y, "train"), Split(x[:16], y[:16], "val"), cfg,
        torch.device("cpu"), pipeline=pipe)
    convs = [p for net in (model, *objective.networks()) for p in net.parameters()
             if p.dim() == 4]
    assert len(convs) == 2 * len([p for p in model.parameters() if p.dim() == 4]) > 0
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not all(p.is_contiguous() for p in convs)  # the check can tell the two apart
