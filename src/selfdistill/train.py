"""Training one network: the SPEC §2 recipe on an in-memory data path.

The whole split lives as tensors on the training device; batches are drawn by a seeded
index permutation (last partial batch kept) and augmented on the device. SGD with
momentum, MultiStepLR stepped at the END of each epoch (SPEC §2), validation every
epoch, and the checkpoint of best validation accuracy (ties: later epoch) is the one
kept. Every ``checkpoint_every`` epochs, and on SIGTERM at the next step boundary, a
resume file holds every piece of state, so a killed run restarts bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .augment import InputPipeline, build_augment, host_to_device
from .data import Split
from .io import atomic_path
from .objectives import Objective

__all__ = [
    "NonFiniteLossError",
    "ResumeState",
    "TrainConfig",
    "TrainInterrupted",
    "TrainResult",
    "derive_seed",
    "fit",
    "forward_views",
    "predict_logits",
    "select_device",
]

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class TrainInterrupted(SystemExit):
    """Raised after SIGTERM once the resume checkpoint is written (exit status 143)."""

    def __init__(self, message: str) -> None:
        super().__init__(143)
        self.message = message


@dataclass(frozen=True)
class TrainConfig:
    """The SPEC §2 recipe plus execution switches; one per trained network."""

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
    bf16: bool = False
    compile: bool = False
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        bad = [m for m in self.milestones if not 0 < m <= self.epochs]
        if bad:
            raise ValueError(f"milestones {bad} outside 1..epochs={self.epochs}: each is the "
                             f"epoch after which the learning rate is multiplied by gamma")


@dataclass
class ResumeState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimiser steps done in the current (incomplete) epoch
    global_step: int = 0
    perm: Tensor | None = None  # the current epoch's index order
    sums: dict[str, float] = field(default_factory=dict)  # partial-epoch accumulators
    best_val: float = -1.0
    best_epoch: int = -1
    best_state: dict[str, Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_step_seconds: float = 0.0


@dataclass
class TrainResult:
    model: nn.Module  # carries the best-validation weights
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, Any]]
    device: str
    train_step_seconds: float
    resumed_from_epoch: int | None


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from the run seed and stream names (independent streams per purpose)."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def select_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` when absent is a named error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("execution.device is 'cuda' but CUDA is not available on this machine "
                           f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). "
                           "Set execution.device: auto or cpu, or run on a GPU node.")
    return torch.device(requested)


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
    """``net`` on the training view of every example, in order, in training-size batches,
    under the step's autocast and memory format (for :meth:`Objective.precompute`)."""
    outs = []
    for lo in range(0, x.shape[0], cfg.batch_size):
        xb = pipeline.eval(x[lo:lo + cfg.batch_size])
        if cfg.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=cfg.bf16 and device.type == "cuda"):
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


def _rng_state(gens: Mapping[str, torch.Generator]) -> dict[str, Any]:
    state: dict[str, Any] = {name: g.get_state() for name, g in gens.items()}
    state["torch"] = torch.get_rng_state()
    state["numpy"] = np.random.get_state()
    state["python"] = random.getstate()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gens: Mapping[str, torch.Generator], state: Mapping[str, Any]) -> None:
    for name, g in gens.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _SigtermFlag:
    """Turns SIGTERM into a flag polled at step boundaries (restored on exit)."""

    def __init__(self) -> None:
        self.raised = False
        self._old: Any = None

    def __enter__(self) -> _SigtermFlag:
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler possible
            self._old = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def fingerprint(payload: Mapping[str, Any]) -> str:
    """sha256 of a JSON payload (config + input hashes) that names a run's identity."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def fit(model: nn.Module, objective: Objective, train: Split, val: Split, cfg: TrainConfig,
        device: torch.device, resume_path: str | Path | None = None, fingerprint_id: str = "",
        describe: str = "", pipeline: InputPipeline | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        sync_check: bool = False) -> TrainResult:
    """Train ``model`` with ``objective`` by the SPEC §2 recipe; return best-val weights.

    ``objective`` must already hold its own networks (teacher, EMA) on ``device``.
    ``describe`` names the run in error messages (method, seed, generation).
    ``sync_check`` (CUDA): the optimiser steps run under
    ``torch.cuda.set_sync_debug_mode("error")``, so any host synchronisation inside the
    step loop raises (the per-epoch checks and validation stay outside). A test instrument
    (``tests/gpu``): a SIGTERM resume write inside the loop would raise under it too.
    """
    set_determinism(cfg.deterministic, device, cfg.compile)
    model.to(device)
    if cfg.channels_last and train.x.ndim == 4:
        model.to(memory_format=torch.channels_last)
    x_tr = torch.as_tensor(train.x, device=device)
    y_tr = torch.as_tensor(train.y, device=device)
    x_va = torch.as_tensor(val.x, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones),
                                                 gamma=cfg.gamma)
    gens = {"order": torch.Generator().manual_seed(derive_seed(cfg.seed, "order")),
            "augment": torch.Generator().manual_seed(derive_seed(cfg.seed, "augment"))}
    if pipeline is None:
        pipeline = InputPipeline(build_augment(cfg.augment, (0.0,), cfg.augment_padding))
    step_fn = torch.compile(model) if cfg.compile else model
    state, resumed_from = _try_resume(resume_path, fingerprint_id, model, opt, sched,
                                      objective, gens, device, describe)
    fixed_views = pipeline.deterministic_train
    if fixed_views:  # e.g. the SD teacher's logits, computed once (same values every epoch)
        objective.precompute(lambda net, x=x_tr: forward_views(net, x, pipeline, cfg, device))

    def save_resume() -> None:
        if resume_path is not None:
            _save_resume(resume_path, fingerprint_id, state, model, opt, sched, objective, gens)

    with _SigtermFlag() as sigterm:
        while state.epoch < cfg.epochs:
            t0, t0_unix = time.perf_counter(), time.time()
            lr = opt.param_groups[0]["lr"]
            if state.perm is None:
                state.perm = torch.randperm(len(train.y), generator=gens["order"])
                state.sums = {"loss": 0.0, "correct": 0.0, "n": 0.0}
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            bad_seen = torch.zeros((), dtype=torch.bool, device=device)
            finite_prefix = torch.zeros((), dtype=torch.int64, device=device)
            start_step = state.step_in_epoch
            model.train()
            steps = _batches(x_tr, y_tr, state.perm, state.step_in_epoch, cfg.batch_size)
            n_seen = 0
            sync_guard = _sync_debug_error(device) if sync_check else contextlib.nullcontext()
            with sync_guard:
                for step, idx, xb, yb in steps:
                    if sigterm.raised:
                        _flush_sums(state, loss_sum, correct, n_seen, step)
                        save_resume()
                        raise TrainInterrupted(f"{describe}: SIGTERM received; resume checkpoint "
                                               f"written at epoch {state.epoch} step {step}")
                    xb = pipeline.train(xb, gens["augment"])
                    if cfg.channels_last and xb.dim() == 4:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=torch.bfloat16,
                                        enabled=cfg.bf16 and device.type == "cuda"):
                        logits = step_fn(xb)  # [b, K]
                        loss = objective.loss(logits.float(), xb, yb,
                                              idx if fixed_views else None)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    objective.after_step(model)
                    state.global_step += 1
                    ld = loss.detach()
                    finite = torch.isfinite(ld)  # on device: no per-step host sync
                    finite_prefix += finite & ~bad_seen
                    bad_seen |= ~finite
                    loss_sum += ld.double() * yb.shape[0]
                    n_seen += yb.shape[0]
                    correct += (logits.detach().argmax(1) == yb).sum()
            if bool(bad_seen):
                bad = start_step + int(finite_prefix)
                raise NonFiniteLossError(
                    f"{describe}: non-finite training loss at epoch {state.epoch + 1}, step "
                    f"{bad} (lr {lr}). Lower train.lr or check the inputs; no checkpoint of this "
                    f"epoch was written, the last resume file is kept.")
            _flush_sums(state, loss_sum, correct, n_seen, 0)
            train_seconds = time.perf_counter() - t0
            t1_unix = time.time()
            state.train_step_seconds += train_seconds
            val_logits = predict_logits(model, x_va, cfg.eval_batch_size, cfg.channels_last,
                                        pipeline.eval)
            val_acc = float((val_logits.argmax(1).numpy() == val.y).mean())
            sched.step()
            state.epoch += 1
            row = {"epoch": state.epoch, "lr": lr,
                   "train_loss": state.sums["loss"] / state.sums["n"],
                   "train_accuracy": state.sums["correct"] / state.sums["n"],
                   "val_accuracy": val_acc, "time_s": time.perf_counter() - t0,
                   "train_step_s": train_seconds,
                   # wall-clock span of this epoch's optimiser steps (Unix seconds), from
                   # which the benchmark measures the wall time outside training steps
                   "step_start_unix": round(t0_unix, 3), "step_end_unix": round(t1_unix, 3)}
            state.history.append(row)
            if val_acc >= state.best_val:  # ties: the later epoch (SPEC §2)
                state.best_val, state.best_epoch = val_acc, state.epoch
                state.best_state = {k: v.detach().clone().cpu() for k, v in
                                    model.state_dict().items()}
            state.perm, state.step_in_epoch = None, 0
            if on_epoch is not None:
                on_epoch(row)
            if state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs:
                save_resume()
    del x_tr, y_tr, x_va
    assert state.best_state is not None
    model.load_state_dict(state.best_state)
    return TrainResult(model=model, best_epoch=state.best_epoch, best_val_accuracy=state.best_val,
                       history=state.history, device=str(device),
                       train_step_seconds=state.train_step_seconds,
                       resumed_from_epoch=resumed_from)


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


def _flush_sums(state: ResumeState, loss_sum: Tensor, correct: Tensor, n_seen: int,
                step: int) -> None:
    """Fold this pass's on-device accumulators into the host-side resume state."""
    state.sums["loss"] += float(loss_sum)
    state.sums["correct"] += float(correct)
    state.sums["n"] += float(n_seen)
    state.step_in_epoch = step


def _save_resume(path: str | Path, fp: str, state: ResumeState, model: nn.Module,
                 opt: torch.optim.Optimizer, sched: Any, objective: Objective,
                 gens: Mapping[str, torch.Generator]) -> None:
    payload = {"fingerprint": fp, "state": asdict(state), "model": model.state_dict(),
               "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "objective": objective.state_dict(), "rng": _rng_state(gens)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _try_resume(path: str | Path | None, fp: str, model: nn.Module, opt: torch.optim.Optimizer,
                sched: Any, objective: Objective, gens: Mapping[str, torch.Generator],
                device: torch.device, describe: str) -> tuple[ResumeState, int | None]:
    if path is None or not Path(path).exists():
        return ResumeState(), None
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # a resume file is a cache: an unreadable one is discarded
        log.warning("%s: resume file %s unreadable (%s); starting fresh", describe, path, err)
        return ResumeState(), None
    if payload.get("fingerprint") != fp:
        log.warning("%s: resume file %s was written for a different config or inputs "
                    "(fingerprint %s, now %s); starting fresh", describe, path,
                    str(payload.get("fingerprint"))[:12], fp[:12])
        return ResumeState(), None
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    objective.load_state_dict(payload["objective"])
    _set_rng_state(gens, payload["rng"])
    state = ResumeState(**payload["state"])
    log.info("%s: resuming from %s at epoch %d step %d", describe, path, state.epoch,
             state.step_in_epoch)
    return state, state.epoch
