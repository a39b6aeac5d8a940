"""Benchmark: our training path against the authors'-style path, side by side.

    python -m selfdistill.bench [--out results/bench] [--rounds 5] [--steps 40] [--small]
    python -m selfdistill.bench --from-run .   # share of a finished `all` outside training

Variants run in one process, interleaved (A, B, A, B, ...) for several rounds, so machine
noise hits both alike; ratios are reported as median (min, max) over rounds, by wall time
and by core-time (CPU seconds of this process and its DataLoader workers). Writes one
``{out}/<suite>.csv`` of timings per suite, ``{out}/ratios.csv`` (every reported ratio)
and ``{out}/summary.md``. The data-path suite includes the same step with no data work,
whose ratio to the DataLoader is the ceiling for any data path. Our step is fit's own
:func:`selfdistill.train.train_step`; that its losses are the methods §3 formulas is a unit
test (``tests/unit/test_faithfulness.py``). ``--from-run`` is :mod:`selfdistill.runlog`.

On CUDA the GPU suites follow: ResNet-34's share of the bf16 peak, and the precision suite
(:func:`precision_trajectories`): the three ``execution.precision`` modes train the same
network from the same initialisation on the same batches, with their loss-trajectory
agreement against fp32 and their throughput (``gpu_precision.csv``, per step
``gpu_precision_steps.csv``). On the CPU all three modes are plain fp32, so they agree
exactly there (a unit test).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import InputPipeline, build_augment
from .io import write_csv, write_text
from .methods import METHODS, get_method
from .models import build_model
from .objectives import Objective
from .runlog import write_run_shares
from .train import PRECISIONS, TrainConfig, derive_seed, forward_views, set_precision, train_step

Step = Callable[[], int]  # runs a fixed amount of work, returns examples processed


# --------------------------------------------------------------------------- data


def synthetic(kind: str, n: int, seed: int = 0) -> tuple[Tensor, Tensor, int]:
    """MNIST-1D-shaped float signals or CIFAR-shaped uint8 images, with labels."""
    g = torch.Generator().manual_seed(seed)
    if kind == "mnist1d":
        return torch.randn(n, 1, 40, generator=g), torch.randint(0, 10, (n,), generator=g), 10
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return x, torch.randint(0, 10, (n,), generator=g), 10


class _ItemDataset(torch.utils.data.Dataset):
    """The authors' data path: one example at a time through torchvision transforms.

    Images are held as HWC uint8 arrays and handed to the transforms as PIL images, as
    ``torchvision.datasets.CIFAR10.__getitem__`` does; signals go through as tensors."""

    def __init__(self, x: Tensor, y: Tensor, transform: Callable[[Any], Tensor]) -> None:
        self.images = x.dim() == 4 and x.dtype == torch.uint8
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy() if self.images else x
        self.y, self.transform = y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if self.images:
            from PIL import Image

            return self.transform(Image.fromarray(self.x[i])), self.y[i]
        return self.transform(self.x[i]), self.y[i]


def torchvision_transform(kind: str) -> Callable[[Any], Tensor]:
    """The authors' per-example transforms: for images, PIL RandomCrop(32, padding=4) and
    RandomHorizontalFlip, then ToTensor and Normalize (methods §2 CIFAR recipe)."""
    from torchvision import transforms as T

    if kind == "mnist1d":
        return lambda x: x  # MNIST-1D is trained un-augmented (config datasets.mnist1d)
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))])


def our_pipeline(kind: str) -> InputPipeline:
    if kind == "mnist1d":
        return InputPipeline(build_augment("none"))
    return InputPipeline(build_augment("crop_flip", (0.0,), 4),
                         {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]})


# --------------------------------------------------------------------------- steps


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def our_step(kind: str, arch: str, steps: int, objective: str = "ce",
             batch: int = 128, fast: bool = True, device: str = "cpu") -> Step:
    """Our path: tensors in memory, seeded permutation, batched augmentation, no sync, and
    fit's own :func:`~selfdistill.train.train_step`.

    ``fast`` adds the device switches of the pipeline (channels_last for images, bf16
    autocast on CUDA: ``precision`` bf16 in :func:`~selfdistill.train.train_step`; the
    process-wide kernel switches are left as they are); without it only the data path
    differs from :func:`authors_step`.
    """
    dev = torch.device(device)
    x, y, k = synthetic(kind, steps * batch)
    x, y = x.to(dev), y.to(dev)
    torch.manual_seed(0)
    model = build_model(arch, k, tuple(x.shape[1:])).to(dev)
    obj = _objective(objective, arch, k, tuple(x.shape[1:]), dev)
    opt, pipe = _sgd(model), our_pipeline(kind)
    gen = torch.Generator().manual_seed(0)
    channels_last = fast and x.dim() == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    cached = pipe.deterministic_train  # as in fit: e.g. the SD teacher's logits, once
    precision = "bf16" if fast else "fp32"
    if cached:
        view_cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=batch,
                               channels_last=channels_last, precision=precision)
        obj.precompute(lambda net: forward_views(net, x, pipe, view_cfg, dev))

    def run() -> int:
        model.train()
        perm = torch.randperm(len(y), generator=gen).to(dev)
        acc = torch.zeros((), device=dev)
        for lo in range(0, len(y), batch):
            idx = perm[lo:lo + batch]
            xb = pipe.train(x.index_select(0, idx), gen)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss, _ = train_step(model, obj, opt, xb, y.index_select(0, idx),
                                 idx if cached else None, precision=precision)
            acc += loss
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return len(y)

    return run


def model_only(kind: str, arch: str, steps: int, batch: int = 128, device: str = "cpu") -> Step:
    """The same model and step as :func:`our_step` with ``fast=False``, with no data work at
    all: each step reads a contiguous slice (a view) of un-augmented inputs. Its time is the
    floor of any data path, so ``DataLoader ÷ model_only`` is the largest data-path ratio
    this model allows on this machine."""
    dev = torch.device(device)
    x, y, k = synthetic(kind, steps * batch)
    pipe = our_pipeline(kind)
    xs = pipe.eval(x).to(dev)  # scaled and normalised once, outside the timed loop
    y = y.to(dev)
    torch.manual_seed(0)
    model = build_model(arch, k, tuple(x.shape[1:])).to(dev)
    opt, criterion = _sgd(model), nn.CrossEntropyLoss()

    def run() -> int:
        model.train()
        acc = torch.zeros((), device=dev)
        for lo in range(0, len(y), batch):
            loss = criterion(model(xs[lo:lo + batch]), y[lo:lo + batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc += loss.detach()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return len(y)

    return run


def authors_step(kind: str, arch: str, steps: int, batch: int = 128, workers: int = 2,
                 sync: bool = True, device: str = "cpu") -> Step:
    """Authors'-style: Dataset + torchvision transforms + DataLoader, fp32, NCHW, and
    (``sync``) a `.item()` per step; without ``sync`` only the data path differs from
    :func:`our_step` with ``fast=False``."""
    dev = torch.device(device)
    x, y, k = synthetic(kind, steps * batch)
    torch.manual_seed(0)
    model = build_model(arch, k, tuple(x.shape[1:])).to(dev)
    opt = _sgd(model)
    loader = torch.utils.data.DataLoader(_ItemDataset(x, y, torchvision_transform(kind)),
                                         batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0,
                                         pin_memory=dev.type == "cuda")
    criterion = nn.CrossEntropyLoss()

    def run() -> int:
        model.train()
        total = torch.zeros((), device=dev)
        for xb, yb in loader:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            loss = criterion(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sync:
                total += loss.item()  # per-step host synchronisation
            else:
                total += loss.detach()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return len(y)

    return run


def data_only(kind: str, steps: int, ours: bool, batch: int = 128, workers: int = 2) -> Step:
    """Batches of one epoch and nothing else: the data path's own cost, no model."""
    x, y, _ = synthetic(kind, steps * batch)
    if ours:
        pipe, gen = our_pipeline(kind), torch.Generator().manual_seed(0)

        def run_ours() -> int:
            perm = torch.randperm(len(y), generator=gen)
            for lo in range(0, len(y), batch):
                idx = perm[lo:lo + batch]
                pipe.train(x.index_select(0, idx), gen)
                y.index_select(0, idx)
            return len(y)

        return run_ours
    loader = torch.utils.data.DataLoader(_ItemDataset(x, y, torchvision_transform(kind)),
                                         batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)

    def run_loader() -> int:
        for _ in loader:
            pass
        return len(y)

    return run_loader


# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def flops_per_image(arch: str, shape: tuple[int, ...], k: int, batch: int = 128,
                    device: str = "cpu") -> float:
    """Training FLOPs per example (forward + backward) counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    dev = torch.device(device)
    model = build_model(arch, k, shape).to(dev)
    x = torch.randn(batch, *shape, device=dev)
    y = torch.randint(0, k, (batch,), device=dev)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def gpu_peak_fraction(steps: int, rounds: int) -> dict[str, Any]:
    """ResNet-34 (K=10) at batch 128, our fast path on CUDA: images/s and share of the
    device's dense bf16 peak (FLOPs per image × images/s ÷ peak)."""
    name = torch.cuda.get_device_name()
    peak = next((v for key, v in BF16_PEAK.items() if key in name), None)
    step = our_step("cifar", "resnet34", steps, device="cuda")
    rows = interleave({"ours": step}, rounds)
    ips = statistics.median(r["examples_per_s"] for r in rows)
    fpi = flops_per_image("resnet34", (3, 32, 32), 10, device="cuda")
    return {"device": name, "images_per_s": ips, "flops_per_image": fpi,
            "bf16_peak_flops": peak, "fraction_of_peak": fpi * ips / peak if peak else None}


# --------------------------------------------------------------------------- precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_batches(kind: str, steps: int, batch: int,
                      device: torch.device) -> tuple[list[tuple[Tensor, Tensor]], int]:
    """``steps`` training batches (augmented training views [b, ...], labels [b]), drawn
    once, so every precision mode trains on the very same inputs; and the class count."""
    x, y, k = synthetic(kind, steps * batch)
    x, y = x.to(device), y.to(device)
    pipe, gen = our_pipeline(kind), torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=gen).to(device)
    views = []
    for idx in perm.split(batch):
        xb = pipe.train(x.index_select(0, idx), gen)
        if xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        views.append((xb, y.index_select(0, idx)))
    return views, k


def trajectory(init: nn.Module, objective: Objective, batches: list[tuple[Tensor, Tensor]],
               precision: str, warmup: int = 2,
               compile_model: bool = False) -> tuple[list[float], float]:
    """A copy of ``init`` trained by fit's :func:`~selfdistill.train.train_step` on
    ``batches`` in ``precision`` (its kernel switches set first): the loss of every step,
    and the seconds of the steps after the first ``warmup`` (for throughput; compilation,
    with ``compile_model``, happens in the first steps, as ``fit``'s ``torch.compile``)."""
    device = batches[0][0].device
    set_precision(precision, device)
    model = copy.deepcopy(init)
    forward = torch.compile(model) if compile_model else None
    opt = _sgd(model)
    losses, t0 = [], time.perf_counter()
    for step, (xb, yb) in enumerate(batches):
        if step == warmup:
            _sync(device)
            t0 = time.perf_counter()
        losses.append(train_step(model, objective, opt, xb, yb, None, precision,
                                 forward)[0])
    _sync(device)
    return torch.stack(losses).double().cpu().tolist(), time.perf_counter() - t0


def precision_trajectories(kind: str, arch: str, steps: int, objective: str = "sd",
                           batch: int = 128, device: str = "cpu", warmup: int = 2,
                           modes: tuple[str, ...] = PRECISIONS) -> dict[str, dict[str, Any]]:
    """Per ``execution.precision`` mode: the same network (same initialisation) trained on
    the same batches with the same objective (SD: the same teacher, run outside autocast,
    methods §3.4). Returns ``{mode: {"losses": [...], "seconds": s, "images": n}}``, ``images``
    the examples of the timed steps. PyTorch's default switches (tf32's) are restored."""
    if steps <= warmup:
        raise ValueError(f"steps={steps} must exceed warmup={warmup} (steps are timed after it)")
    dev = torch.device(device)
    batches, k = precision_batches(kind, steps, batch, dev)
    shape = tuple(batches[0][0].shape[1:])
    torch.manual_seed(0)
    init = build_model(arch, k, shape).to(dev)
    if len(shape) == 3:
        init.to(memory_format=torch.channels_last)
    out = {}
    try:
        for mode in modes:
            losses, seconds = trajectory(init, _objective(objective, arch, k, shape, dev),
                                         batches, mode, warmup)
            n = sum(len(yb) for _, yb in batches[warmup:])
            out[mode] = {"losses": losses, "seconds": seconds, "images": n}
    finally:
        set_precision("tf32", dev)
    return out


def precision_agreement(trajectories: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mode against fp32: the largest per-step |loss - fp32 loss|, the
    final step's difference, and images/s (also as a multiple of fp32's)."""
    ref = trajectories["fp32"]
    rows = []
    for mode, t in trajectories.items():
        diffs = [a - b for a, b in zip(t["losses"], ref["losses"], strict=True)]
        ips = t["images"] / t["seconds"]
        rows.append({"precision": mode, "steps": len(diffs),
                     "max_abs_loss_diff": max(abs(d) for d in diffs),
                     "final_loss_diff": diffs[-1], "final_loss": t["losses"][-1],
                     "images_per_s": ips,
                     "speedup_vs_fp32": ips / (ref["images"] / ref["seconds"])})
    return rows


def gpu_precision(out: Path, steps: int) -> list[str]:
    """The precision suite on CUDA: ResNet-34, CIFAR-shaped batches of 128, SD (teacher on
    every augmented batch); writes ``gpu_precision.csv`` and ``gpu_precision_steps.csv``
    under ``out``, returns summary.md lines."""
    traj = precision_trajectories("cifar", "resnet34", steps, "sd", device="cuda")
    rows = precision_agreement(traj)
    write_csv(out / "gpu_precision.csv", rows)
    write_csv(out / "gpu_precision_steps.csv",
              [{"step": i + 1, **{m: t["losses"][i] for m, t in traj.items()}}
               for i in range(steps)])
    md = ["", f"Precision modes, ResNet-34 SD, batch 128, {steps} steps from one "
          f"initialisation on the same batches (loss vs fp32):", "",
          "| precision | max abs loss diff | final-step diff | images/s | x fp32 |",
          "|---|---|---|---|---|"]
    md += [f"| {r['precision']} | {r['max_abs_loss_diff']:.2e} | {r['final_loss_diff']:+.2e} "
           f"| {r['images_per_s']:.0f} | {r['speedup_vs_fp32']:.2f} |" for r in rows]
    return md


STEP_PARAMS: dict[str, float] = {"ls_eps": 0.1, "er_beta": 0.3, "bs_a": 3.0}
"""The swept strength of each swept method for a single step (a benchmark, a check): the
``compare:`` points of config/config.yaml (methods §5 E3; BS: the default a = 3, methods §3.5).
A unit test keeps the keys equal to the registry's sweep keys and the values to the config's."""


@dataclass(frozen=True)
class MethodCase:
    """One code path of a method's objective: the method, its strength and options."""

    name: str  # "ls-uniform": the method, then the option value that picks this path
    method: str  # registry name (methods §7)
    param: float | None  # swept strength (STEP_PARAMS), None for ce and sd
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)


def method_cases() -> tuple[MethodCase, ...]:
    """Every registered method with its default options, plus one case per other choice of a
    text option (LS ``spread``) and per flipped boolean option (SD ``student_temperature``,
    ``t_squared``): every branch of every objective a config can select."""
    cases = []
    for m in METHODS.values():
        if m.sweep_key is not None and m.sweep_key not in STEP_PARAMS:
            raise KeyError(f"bench.STEP_PARAMS has no strength for {m.sweep_key} (method "
                           f"{m.name}): add its compare point from config/config.yaml")
        param = None if m.sweep_key is None else STEP_PARAMS[m.sweep_key]
        defaults = m.options()
        cases.append(MethodCase(m.name, m.name, param, {}))
        for key, rng in m.ranges.items():
            for choice in rng.choices:
                if choice != defaults.get(key):
                    cases.append(MethodCase(f"{m.name}-{choice}", m.name, param, {key: choice}))
        for key, default in defaults.items():
            if isinstance(default, bool):
                cases.append(MethodCase(f"{m.name}-{key}", m.name, param, {key: not default}))
    return tuple(cases)


def build_objective(case: MethodCase, arch: str, k: int, shape: tuple[int, ...],
                    device: torch.device | None = None) -> Objective:
    """``case``'s objective from the registry, its networks (SD teacher, BS ranking network,
    each its own seeded init) built on ``device``, in channels_last for images as the
    student (:func:`selfdistill.train.fit` lays out the student alike)."""
    dev = device or torch.device("cpu")

    def net(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = build_model(arch, k, shape).to(dev)
        return model.to(memory_format=torch.channels_last) if len(shape) == 3 else model

    providers: dict[str, Callable[[], Any]] = {
        "teacher": lambda: net(1), "ema_model": lambda: net(2),
        "generator": lambda: torch.Generator().manual_seed(derive_seed(0, "beta")),
        "partner_generator": lambda: torch.Generator().manual_seed(derive_seed(0, "partner")),
        "num_classes": lambda: k}
    method = get_method(case.method)
    state = {name: providers[name]() for name in method.requires()}
    return method.build(case.param, case.options, **state)


def _objective(name: str, arch: str, k: int, shape: tuple[int, ...],
               device: torch.device | None = None) -> Objective:
    """The method's objective from the registry with its default options (its
    :func:`method_cases` entry of that name)."""
    case = next(c for c in method_cases() if c.name == name)
    return build_objective(case, arch, k, shape, device)


def children_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process's live child processes, e.g.
    DataLoader workers: with this process's own ``time.process_time()``, the core-time a
    variant takes from other jobs on the machine. Resolution: one clock tick (10 ms)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.NoSuchProcess:  # exited between listing and reading
            continue
        total += c.user + c.system
    return total


def interleave(variants: dict[str, Step], rounds: int) -> list[dict[str, Any]]:
    """Time each variant once per round, in alternating order; one row per (round, variant)
    with its wall seconds and its CPU seconds (``cpu_seconds``: this process, all threads,
    plus its child processes; the scan of the children stays outside the timed window)."""
    for step in variants.values():  # warm-up (worker start, allocator, kernels)
        step()
    rows = []
    names = list(variants)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            k0 = children_cpu_seconds()
            c0, t0 = time.process_time(), time.perf_counter()
            n = variants[name]()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            dc += children_cpu_seconds() - k0
            rows.append({"round": r, "variant": name, "seconds": dt, "cpu_seconds": dc,
                         "examples": n, "examples_per_s": n / dt,
                         "examples_per_cpu_s": n / dc})
    return rows


def ratios(rows: list[dict[str, Any]], num: str, den: str, key: str = "seconds",
           invert: bool = False) -> dict[str, float]:
    """Per-round ratio num/den of ``key`` (or den/num with ``invert``): median, min, max."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["variant"]] = row[key]
    vals = [(r[den] / r[num]) if invert else (r[num] / r[den]) for r in by_round.values()]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "rounds": len(vals)}


# --------------------------------------------------------------------------- main


Suites = dict[str, tuple[dict[str, Step], list[tuple[str, str, str]]]]
LOADER = "DataLoader(num_workers=2)"


def suites(steps: int, cifar_arch: str, dev: str) -> Suites:
    """Each suite: its variants, then (denominator, numerator, label) rows of examples/s
    ratios; an empty list marks the method-cost suite (epoch-time ratios over CE)."""
    out: Suites = {}
    for kind, arch, n in (("mnist1d", "cnn1d", steps), ("cifar", cifar_arch, max(2, steps // 4))):
        out[f"data_only_{kind}"] = (
            {"ours": data_only(kind, n, True), "dataloader": data_only(kind, n, False)},
            [("dataloader", "ours", f"{kind}, batches only (no model): ours ÷ {LOADER}")])
        out[f"data_path_{kind}"] = (
            {"ours": our_step(kind, arch, n, fast=False, device=dev),
             "dataloader": authors_step(kind, arch, n, sync=False, device=dev),
             "model_only": model_only(kind, arch, n, device=dev)},
            [("dataloader", "ours", f"{kind}/{arch}, same step, data path: ours ÷ {LOADER}"),
             ("dataloader", "model_only",
              f"{kind}/{arch}, ceiling for any data path (same step, no data work) "
              f"÷ {LOADER}"),
             ("model_only", "ours",
              f"{kind}/{arch}, ours ÷ no data work (1.00× = a free data path)")])
        out[f"full_step_{kind}"] = (
            {"ours": our_step(kind, arch, n, device=dev),
             "authors": authors_step(kind, arch, n, device=dev)},
            [("authors", "ours",
              f"{kind}/{arch}, full step: ours ÷ authors' loop ({LOADER}, fp32, NCHW, "
              f".item())")])
    out["method_cost_mnist1d"] = (
        {m: our_step("mnist1d", "cnn1d", steps, m, device=dev) for m in ("ce", "sd", "bs")}, [])
    return out


def _suite_ratios(name: str, rows: list[dict[str, Any]],
                  pairs: list[tuple[str, str, str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The suite's ratios.csv rows (wall and core-time per comparison) and summary lines."""
    # (numerator, denominator, label, invert, wall measure, core-time measure, unit)
    specs = [(num, den, label, True, "examples_per_s", "examples_per_cpu_s", "×")
             for den, num, label in pairs]
    if not pairs:
        specs = [(m, "ce", f"{m.upper()} epoch ÷ CE epoch", False, "epoch_seconds",
                  "epoch_cpu_seconds", "") for m in ("sd", "bs")]
    results, md = [], []
    for num, den, label, invert, wall_m, core_m, unit in specs:
        w = ratios(rows, num, den, invert=invert)
        c = ratios(rows, num, den, key="cpu_seconds", invert=invert)
        for measure, r in ((wall_m, w), (core_m, c)):
            results.append({"suite": name, "numerator": num, "denominator": den,
                            "measure": measure, "comparison": label, **r})
        shown = label if pairs else f"{label} (time), mnist1d/cnn1d"
        md.append(f"| {shown} | {w['median']:.2f}{unit} | {w['min']:.2f}{unit} | "
                  f"{w['max']:.2f}{unit} | {c['median']:.2f}{unit} "
                  f"({c['min']:.2f}–{c['max']:.2f}) |")
    return results, md


def run_benchmark(out: Path, rounds: int, steps: int, small: bool) -> None:
    """Every suite, interleaved; per-suite timings, ratios.csv and summary.md under ``out``."""
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    md = ["# Benchmark", "", f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"device {torch.cuda.get_device_name() if cuda else 'cpu'}; {rounds} interleaved "
          f"rounds of {steps} steps, batch 128.", "",
          "Wall: examples/s ratio (or epoch-time ratio), median over rounds (min–max). "
          "Core-time: the same ratio of CPU seconds, counting DataLoader worker processes, "
          "i.e. the cores a variant takes from other jobs on the machine.", "",
          "| comparison | wall: median | min | max | core-time: median (min–max) |",
          "|---|---|---|---|---|"]
    # ResNet-18 only on a GPU: on a CPU thread one of its steps takes seconds, so the
    # CIFAR-shaped comparison uses the small 2D CNN there.
    cifar_arch = "resnet18" if cuda and not small else "cnn_digits"
    results: list[dict[str, Any]] = []  # one row per reported ratio -> ratios.csv
    for name, (variants, pairs) in suites(steps, cifar_arch, "cuda" if cuda else "cpu").items():
        rows = interleave(variants, rounds)
        write_csv(out / f"{name}.csv", rows)
        suite_results, suite_md = _suite_ratios(name, rows, pairs)
        results += suite_results
        md += suite_md
    write_csv(out / "ratios.csv", results)
    if cuda and not small:
        g = gpu_peak_fraction(max(steps, 50), rounds)
        write_csv(out / "gpu_peak.csv", [g])
        frac = "n/a" if g["fraction_of_peak"] is None else f"{100 * g['fraction_of_peak']:.1f} %"
        md += ["", f"ResNet-34 bs128 bf16 channels_last on {g['device']}: "
               f"{g['images_per_s']:.0f} images/s × {g['flops_per_image'] / 1e9:.2f} GFLOP "
               f"per image = {frac} of the dense bf16 peak."]
        md += gpu_precision(out, max(steps, 50))
    elif not cuda:
        md += ["", "GPU fraction of bf16 peak: not measured here (no CUDA device).",
               "Precision modes (fp32, tf32, bf16): not compared here (no CUDA device; on "
               "the CPU all three are plain fp32)."]
    md.append("")
    write_text(out / "summary.md", "\n".join(md) + "\n")
    print("\n".join(md))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m selfdistill.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40, help="optimiser steps per timed epoch")
    p.add_argument("--small", action="store_true", help="CI scale: small models only")
    p.add_argument("--precision-only", action="store_true",
                   help="only the precision suite (fp32/tf32/bf16 on CUDA)")
    p.add_argument("--from-run", default=None, help="a finished workdir: report time shares")
    p.add_argument("--wall", type=float, default=None, help="wall seconds of that run")
    p.add_argument("--cores", type=int, default=2, help="--cores of that run")
    args = p.parse_args(argv)
    if args.from_run:  # the run-log analysis (selfdistill.runlog)
        share = write_run_shares(Path(args.from_run), Path(args.out), args.cores, args.wall)
        print(json.dumps(share, indent=2))
        return 0
    if args.precision_only:
        if not torch.cuda.is_available():
            print("--precision-only needs CUDA: on the CPU all three modes are plain fp32",
                  file=sys.stderr)
            return 1
        print("\n".join(gpu_precision(Path(args.out), max(args.steps, 50))))
        return 0
    run_benchmark(Path(args.out), args.rounds, args.steps, args.small)
    return 0


if __name__ == "__main__":
    sys.exit(main())
