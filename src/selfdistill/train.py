"""Training one network: the methods §2 recipe on an in-memory data path.

The whole split lives as tensors on the training device; batches are drawn by a seeded
index permutation (last partial batch kept) and augmented on the device. SGD with
momentum, MultiStepLR stepped at the END of each epoch (methods §2), validation every
epoch, and the checkpoint of best validation accuracy (ties: later epoch) is the one
kept. Every ``checkpoint_every`` epochs, and on SIGTERM at the next step boundary, a
resume file (:mod:`selfdistill.checkpoint`) holds every piece of state, so a killed run
restarts bit-identically on CPU.

Reading order: :func:`train_step` (one optimiser step), :func:`run_epoch` (one pass over
the epoch's permutation), :func:`fit` (set-up, resume, the epochs, the best checkpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .augment import InputPipeline, build_augment, host_to_device
from .checkpoint import (
    ResumeIdentity,
    ResumeState,
    SigtermFlag,
    TrainInterrupted,
    fingerprint,
    interrupted,
    save_resume,
    try_resume,
)
from .data import Split
from .objectives import Objective

__all__ = [
    "EpochSums",
    "NonFiniteLossError",
    "PRECISIONS",
    "ResumeIdentity",
    "ResumeState",
    "TrainConfig",
    "TrainInterrupted",
    "TrainParts",
    "TrainResult",
    "autocast",
    "derive_seed",
    "fingerprint",
    "fit",
    "forward_views",
    "predict_logits",
    "run_epoch",
    "set_precision",
    "train_step",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss of run ``describe`` became NaN or infinite at ``epoch`` (1-based),
    ``step``, with learning rate ``lr``. ``causes`` name what likely made it so; by default
    only what the loop knows (the learning rate, the inputs): a caller that knows the
    method adds its settings with :meth:`with_causes`."""

    def __init__(self, describe: str, epoch: int, step: int, lr: float,
                 causes: str = "") -> None:
        self.describe, self.epoch, self.step, self.lr = describe, epoch, step, lr
        self.causes = causes or (f"train.lr = {lr} too high for this network (lower it), or "
                                 f"non-finite inputs")
        super().__init__(f"{describe}: non-finite training loss at epoch {epoch}, step {step} "
                         f"(lr {lr}). Likely causes: {self.causes}. No checkpoint of this epoch "
                         f"was written, the last resume file is kept.")

    def with_causes(self, causes: str) -> NonFiniteLossError:
        """The same error with ``causes`` as its likely causes."""
        return NonFiniteLossError(self.describe, self.epoch, self.step, self.lr, causes)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the keyword constructor
        return type(self), (self.describe, self.epoch, self.step, self.lr, self.causes)


PRECISIONS = ("fp32", "tf32", "bf16")
"""``execution.precision`` values (:func:`set_precision`); fp32 is the default."""


@dataclass(frozen=True)
class TrainConfig:
    """The methods §2 recipe plus execution switches; one per trained network."""

    epochs: int
    milestones: tuple[int, ...]
    seed: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    gamma: float = 0.1
    augment: str = "none"
    augment_padding: int = 4
    eval_batch_size: int = 1024
    checkpoint_every: int = 1
    channels_last: bool = False
    precision: str = "fp32"  # one of PRECISIONS, see set_precision
    compile: bool = False
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        bad = [m for m in self.milestones if not 0 < m <= self.epochs]
        if bad:
            raise ValueError(f"milestones {bad} outside 1..epochs={self.epochs}: each is the "
                             f"epoch after which the learning rate is multiplied by gamma")
        if self.precision not in PRECISIONS:
            raise ValueError(f"execution.precision: {self.precision!r} is not one of "
                             f"{', '.join(PRECISIONS)} (fp32 is the authors' arithmetic)")


@dataclass
class TrainResult:
    model: nn.Module  # carries the best-validation weights
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, Any]]
    device: str
    train_step_seconds: float
    resumed_from_epoch: int | None
    last_state: dict[str, Tensor] | None = None  # the last epoch's weights and BN buffers


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from the run seed and stream names (independent streams per purpose)."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def set_precision(precision: str, device: torch.device) -> None:
    """Set the process-wide float32 kernel switches of ``precision`` (one of PRECISIONS).

    On CUDA, exactly (PyTorch's defaults are those of ``tf32``):

    ========= ======================= ====================== =================================
    precision cudnn.allow_tf32 (conv) cuda.matmul.allow_tf32 float32_matmul_precision
    ========= ======================= ====================== =================================
    fp32      False                   False                  "highest"
    tf32      True                    False                  "highest"
    bf16      True                    False                  "highest"
    ========= ======================= ====================== =================================

    ``fp32`` is true IEEE fp32, the authors' arithmetic (methods §2 recipe). ``bf16`` also
    runs the student's forward and the loss under bf16 autocast (:func:`train_step`); the
    SD teacher and the BS ranking network run outside it (methods §3.4, §3.5: their logits
    are fp32), with ``tf32``'s switches, as do evaluation passes. On the CPU all three are
    plain fp32: nothing is set and autocast stays off, so CPU runs are bit-identical across
    the three values.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"execution.precision: {precision!r} is not one of "
                         f"{', '.join(PRECISIONS)}")
    if device.type != "cuda":
        return
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The student's autocast context: bf16 on CUDA for ``precision`` bf16, else off."""
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=precision == "bf16" and device.type == "cuda")


def set_determinism(enabled: bool, device: torch.device, compiling: bool = False) -> None:
    """Deterministic kernels (config switch on GPU; always deterministic on CPU here).

    ``torch.use_deterministic_algorithms`` also sets the flag of torch.compile's backend,
    and to do so imports ``torch._inductor`` (measured: 5.4 s per process on this kind of
    CPU, more than a whole MNIST-1D run). Without compilation that flag is never read, so
    only the ATen flag is set then; with ``compile`` the public call is used.
    """
    if device.type == "cuda":
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not enabled
        torch.backends.cudnn.deterministic = enabled
    if compiling or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(enabled, warn_only=False)
    elif torch.are_deterministic_algorithms_enabled() != enabled:
        torch._C._set_deterministic_algorithms(enabled, warn_only=False)


def _batches(x: Tensor, y: Tensor, perm: Tensor, start_step: int,
             batch_size: int) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    n = perm.shape[0]
    for step, lo in enumerate(range(start_step * batch_size, n, batch_size), start=start_step):
        idx = host_to_device(perm[lo:lo + batch_size], x.device)
        yield step, idx, x.index_select(0, idx), y.index_select(0, idx)


def forward_views(net: nn.Module, x: Tensor, pipeline: InputPipeline, cfg: TrainConfig,
                  device: torch.device) -> Tensor:
    """``net`` on the training view of every example, in order, in training-size batches and
    the step's memory format (for :meth:`Objective.precompute`: the SD teacher's cache).
    Never under autocast: the teacher's logits are fp32 in every precision (methods §3.4)."""
    outs = []
    for lo in range(0, x.shape[0], cfg.batch_size):
        xb = pipeline.eval(x[lo:lo + cfg.batch_size])
        if cfg.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        outs.append(net(xb))
    return torch.cat(outs)


@torch.inference_mode()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 1024,
                   channels_last: bool = False,
                   view: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Logits [n, K] (float32, on CPU) of ``model`` in eval mode on un-augmented inputs."""
    model.eval()
    outs = []
    for lo in range(0, x.shape[0], batch_size):
        xb = x[lo:lo + batch_size]
        xb = view(xb) if view is not None else xb
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        outs.append(model(xb).float().cpu())
    return torch.cat(outs)


# --------------------------------------------------------------------------- one step


def train_step(model: nn.Module, objective: Objective, opt: torch.optim.Optimizer, xb: Tensor,
               yb: Tensor, idx: Tensor | None = None, precision: str = "fp32",
               forward: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """One optimiser step on the training view ``xb`` [b, ...] with labels ``yb`` [b].

    Forward and the objective's loss (methods §3) on fp32 logits, under bf16 autocast on CUDA
    when ``precision`` is bf16 (the objective runs its teacher or ranking network outside
    it); backward, SGD step (methods §2), then the objective's per-step update (the BS EMA,
    methods §3.5). The kernel switches of ``precision`` are process-wide: :func:`fit` sets them
    once (:func:`set_precision`). ``idx`` [b]: the batch's example indices, for objectives
    with per-example state (the SD teacher's cached logits, the PS-KD table); ``forward``:
    what to call instead of ``model`` (its ``torch.compile`` wrapper). Returns the detached loss (scalar) and logits [b, K].
    """
    with autocast(precision, xb.device):
        logits = objective.student_logits(model if forward is None else forward, xb)  # [b, K]
        loss = objective.loss(logits.float(), xb, yb, idx)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    objective.after_step(model)
    return loss.detach(), logits.detach()


# --------------------------------------------------------------------------- one epoch


@dataclass(frozen=True)
class TrainParts:
    """What every step of one run uses, built once by :func:`fit`."""

    model: nn.Module
    objective: Objective
    opt: torch.optim.Optimizer
    sched: Any  # MultiStepLR, stepped at the end of each epoch
    gens: dict[str, torch.Generator]  # "order" (permutations), "augment" (training views)
    pipeline: InputPipeline
    cfg: TrainConfig
    forward: Callable[[Tensor], Tensor]  # ``model``, or its torch.compile wrapper
    describe: str = ""  # the run's name in error messages
    sync_check: bool = False  # CUDA: any host synchronisation inside the step loop raises

    @property
    def fixed_views(self) -> bool:
        """No augmentation: the objective may precompute per-example targets (by index)."""
        return self.pipeline.deterministic_train

    def train_view(self, xb: Tensor) -> Tensor:
        """The stored batch as the network sees it in training (augmented, laid out)."""
        xb = self.pipeline.train(xb, self.gens["augment"])
        if self.cfg.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb


@dataclass(frozen=True)
class EpochSums:
    """One pass's totals on the host: loss summed over examples, correct predictions,
    examples, optimiser steps taken, and the step SIGTERM stopped the pass before (None: the
    pass reached the end of the permutation)."""

    loss: float
    correct: float
    n: float
    steps: int
    stopped_at: int | None = None


def run_epoch(parts: TrainParts, x: Tensor, y: Tensor, perm: Tensor, start_step: int,
              epoch: int, stop: Callable[[], bool] = lambda: False) -> EpochSums:
    """Optimiser steps over ``perm`` [n] (indices into ``x``, ``y``) from ``start_step`` on.

    The accumulators stay on the device, so no step waits for the host. ``stop`` is polled
    before each step (SIGTERM): the pass ends there, before that batch's augmentation draws.
    After a complete pass a non-finite loss raises :class:`NonFiniteLossError` naming the
    first bad step of ``epoch`` (1-based).
    """
    dev = x.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    bad_seen = torch.zeros((), dtype=torch.bool, device=dev)
    finite_prefix = torch.zeros((), dtype=torch.int64, device=dev)  # steps before the first bad
    n_seen, steps, stopped_at = 0, 0, None
    parts.model.train()
    with _sync_debug_error(dev) if parts.sync_check else contextlib.nullcontext():
        for step, idx, xb, yb in _batches(x, y, perm, start_step, parts.cfg.batch_size):
            if stop():
                stopped_at = step
                break
            loss, logits = train_step(parts.model, parts.objective, parts.opt,
                                      parts.train_view(xb), yb, idx,
                                      parts.cfg.precision,
                                      parts.forward)
            steps += 1
            finite = torch.isfinite(loss)  # on device: no per-step host sync
            finite_prefix += finite & ~bad_seen
            bad_seen |= ~finite
            loss_sum += loss.double() * yb.shape[0]
            n_seen += yb.shape[0]
            correct += (logits.argmax(1) == yb).sum()
    if stopped_at is None and bool(bad_seen):
        raise NonFiniteLossError(parts.describe, epoch, start_step + int(finite_prefix),
                                 parts.opt.param_groups[0]["lr"])
    return EpochSums(float(loss_sum), float(correct), float(n_seen), steps, stopped_at)


@contextlib.contextmanager
def _sync_debug_error(device: torch.device) -> Iterator[None]:
    """On CUDA, make any host synchronisation raise while the block runs."""
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


# --------------------------------------------------------------------------- the run

_NO_RESUME = ResumeIdentity()  # no resume file; the run unnamed in messages


def fit(model: nn.Module, objective: Objective, train: Split, val: Split, cfg: TrainConfig,
        device: torch.device, *, resume: ResumeIdentity = _NO_RESUME,
        pipeline: InputPipeline | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_start: Callable[[list[dict[str, Any]]], None] | None = None,
        sync_check: bool = False) -> TrainResult:
    """Train ``model`` with ``objective`` by the methods §2 recipe; return best-val weights.

    ``objective`` must already hold its own networks (teacher, EMA) on ``device``.
    ``resume`` names the resume file, its fingerprint and the run (for messages);
    ``on_epoch`` gets each epoch's history row; ``on_start``, before the first epoch, the
    rows of the epochs already done (a resumed run's; empty for a new run). ``sync_check`` (CUDA): the optimiser steps
    run under ``torch.cuda.set_sync_debug_mode("error")``, so any host synchronisation
    inside the step loop raises (a test instrument, ``tests/gpu``).
    """
    parts = _setup(model, objective, cfg, device, pipeline, train.x.ndim, resume.describe,
                   sync_check)
    x_tr, y_tr = torch.as_tensor(train.x, device=device), torch.as_tensor(train.y, device=device)
    x_va = torch.as_tensor(val.x, device=device)
    objective.bind(model, x_tr, y_tr, parts.train_view)  # state sized by the training set
    state, resumed_from = try_resume(resume, model, parts.opt, parts.sched, objective, parts.gens,
                                     device)
    if on_start is not None:
        on_start(list(state.history))
    if parts.fixed_views:  # e.g. the SD teacher's logits, computed once (same every epoch)
        objective.precompute(lambda net, x=x_tr: forward_views(net, x, parts.pipeline, cfg,
                                                                  device))

    def save() -> None:
        save_resume(resume, state, model, parts.opt, parts.sched, objective, parts.gens)

    with SigtermFlag() as sigterm:
        while state.epoch < cfg.epochs:
            t0, t0_unix = time.perf_counter(), time.time()
            lr = parts.opt.param_groups[0]["lr"]
            _start_epoch(state, parts, len(train.y))
            objective.start_epoch(state.epoch, cfg.epochs)
            sums = run_epoch(parts, x_tr, y_tr, state.perm, state.step_in_epoch,
                             state.epoch + 1, lambda: sigterm.raised)
            _add_sums(state, sums)
            if sums.stopped_at is not None:
                save()  # then a log line says where it stopped (exit status 143)
                raise interrupted(resume.path, resume.describe, state.epoch + 1, sums.stopped_at)
            objective.end_epoch()
            train_seconds, t1_unix = time.perf_counter() - t0, time.time()
            state.train_step_seconds += train_seconds
            scores = _validation(model, objective, x_va, val, cfg, parts.pipeline)
            parts.sched.step()
            state.epoch += 1
            row = _history_row(state, lr, scores, (t0, t0_unix, train_seconds, t1_unix))
            _end_epoch(state, row, scores["val_accuracy"], model)
            if on_epoch is not None:
                on_epoch(row)
            if state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs:
                save()
    del x_tr, y_tr, x_va
    assert state.best_state is not None
    last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state.best_state)
    return TrainResult(model=model, best_epoch=state.best_epoch, best_val_accuracy=state.best_val,
                       history=state.history, device=str(device),
                       train_step_seconds=state.train_step_seconds,
                       resumed_from_epoch=resumed_from, last_state=last_state)


def _setup(model: nn.Module, objective: Objective, cfg: TrainConfig, device: torch.device,
           pipeline: InputPipeline | None, input_ndim: int, describe: str,
           sync_check: bool) -> TrainParts:
    """Determinism, the precision's kernel switches, the model on ``device``, SGD +
    MultiStepLR (methods §2), the seeded ``order`` and ``augment`` generators, the input
    pipeline and the (compiled) forward."""
    set_determinism(cfg.deterministic, device, cfg.compile)
    set_precision(cfg.precision, device)
    model.to(device)
    if cfg.channels_last and input_ndim == 4:
        for net in (model, *objective.networks()):
            net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones),
                                                 gamma=cfg.gamma)
    gens = {"order": torch.Generator().manual_seed(derive_seed(cfg.seed, "order")),
            "augment": torch.Generator().manual_seed(derive_seed(cfg.seed, "augment"))}
    if pipeline is None:
        pipeline = InputPipeline(build_augment(cfg.augment, (0.0,), cfg.augment_padding))
    forward = torch.compile(model) if cfg.compile else model
    return TrainParts(model, objective, opt, sched, gens, pipeline, cfg, forward, describe,
                      sync_check)


def _start_epoch(state: ResumeState, parts: TrainParts, n: int) -> None:
    """A new epoch (not one resumed mid-way) draws its permutation and zeroes its sums."""
    if state.perm is None:
        state.perm = torch.randperm(n, generator=parts.gens["order"])
        state.sums = {"loss": 0.0, "correct": 0.0, "n": 0.0}


def _add_sums(state: ResumeState, sums: EpochSums) -> None:
    """Fold one pass into the host-side resume state (``step_in_epoch``: where a stopped
    pass resumes; 0 after a complete one)."""
    state.sums["loss"] += sums.loss
    state.sums["correct"] += sums.correct
    state.sums["n"] += sums.n
    state.global_step += sums.steps
    state.step_in_epoch = 0 if sums.stopped_at is None else sums.stopped_at


# history.csv's validation columns besides val_accuracy (docs/results.md): the objective's
# loss and the NLL of the held-out split, and, for a run with a frozen teacher (SD, Tf-KD_self),
# the student's argmax agreement with it and KL(teacher || student) at the training temperature
VALIDATION_COLUMNS = ("val_loss", "val_nll", "val_teacher_agreement", "val_teacher_kl")


@torch.inference_mode()
def _validation(model: nn.Module, objective: Objective, x_va: Tensor, val: Split,
                cfg: TrainConfig, pipeline: InputPipeline) -> dict[str, float | None]:
    """The epoch's validation scores from one eval-mode pass over the validation split.

    ``val_accuracy`` (model selection, methods §2) is computed as it always was; the other
    columns (:data:`VALIDATION_COLUMNS`) only read the same logits, the labels and the frozen
    teacher's eval-mode logits, so they change no step, draw or checkpoint. None (an empty
    cell) where a column does not apply: ``val_loss`` for an objective whose loss needs
    training-time state (:meth:`Objective.held_out_loss`), the teacher columns without one.
    """
    logits = predict_logits(model, x_va, cfg.eval_batch_size, cfg.channels_last, pipeline.eval)
    scores: dict[str, float | None] = {
        "val_accuracy": float((logits.argmax(1).numpy() == val.y).mean())}
    # on the training device, as the objective's own tensors (one copy per epoch, not per step)
    device = x_va.device
    logits = logits.to(device)
    y = host_to_device(torch.as_tensor(val.y, dtype=torch.long), device)  # [n]
    z = logits.double()  # [n, K] float64, as the measure step's metrics
    scores["val_nll"] = float(torch.nn.functional.cross_entropy(z, y))
    teacher = objective.frozen_teacher()
    teacher_logits = None if teacher is None else predict_logits(
        teacher, x_va, cfg.eval_batch_size, cfg.channels_last, pipeline.eval).to(device)
    loss = objective.held_out_loss(logits, y, teacher_logits)
    scores["val_loss"] = None if loss is None else float(loss)
    scores["val_teacher_agreement"] = scores["val_teacher_kl"] = None
    if teacher_logits is not None:
        t = objective.distill_temperature()
        zt = teacher_logits.double()
        scores["val_teacher_agreement"] = float((zt.argmax(1) == z.argmax(1)).double().mean())
        log_q = torch.log_softmax(zt / t, dim=1)
        log_p = torch.log_softmax(z / t, dim=1)
        scores["val_teacher_kl"] = float((log_q.exp() * (log_q - log_p)).sum(1).mean())
    return scores


def _history_row(state: ResumeState, lr: float, scores: dict[str, float | None],
                 clock: tuple[float, float, float, float]) -> dict[str, Any]:
    """The epoch's ``history.csv`` row; ``scores``: :func:`_validation`'s; ``clock``:
    (perf_counter and Unix time at the epoch's start, seconds of its optimiser steps, Unix
    time at their end)."""
    t0, t0_unix, train_seconds, t1_unix = clock
    return {"epoch": state.epoch, "lr": lr,
            "train_loss": state.sums["loss"] / state.sums["n"],
            "train_accuracy": state.sums["correct"] / state.sums["n"],
            "val_accuracy": scores["val_accuracy"],
            **{k: scores[k] for k in VALIDATION_COLUMNS},
            "time_s": time.perf_counter() - t0,
            "train_step_s": train_seconds,
            # wall-clock span of this epoch's optimiser steps (Unix seconds), from which
            # the run-log analysis measures the wall time outside training steps
            "step_start_unix": round(t0_unix, 3), "step_end_unix": round(t1_unix, 3)}


def _end_epoch(state: ResumeState, row: dict[str, Any], val_acc: float, model: nn.Module) -> None:
    """Record the row, keep the best-validation weights (ties: the later epoch, methods §2)
    and mark the next epoch as not started."""
    state.history.append(row)
    if val_acc >= state.best_val:
        state.best_val, state.best_epoch = val_acc, state.epoch
        state.best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    state.perm, state.step_in_epoch = None, 0
