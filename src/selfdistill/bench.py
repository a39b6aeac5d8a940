"""Benchmark: our training path against the authors'-style path, side by side.

    python -m selfdistill.bench [--out results/bench] [--rounds 5] [--steps 40] [--small]
    python -m selfdistill.bench --from-run .   # share of a finished `all` outside training

Variants run in one process, interleaved (A, B, A, B, ...) for several rounds, so machine
noise hits both alike; ratios are reported as median (min, max) over rounds, by wall time
and by core-time (CPU seconds of this process and its DataLoader workers). Writes one
``{out}/<suite>.csv`` of timings per suite, ``{out}/ratios.csv`` (every reported ratio),
``{out}/faithfulness.csv`` and ``{out}/summary.md``. The data-path suite includes the same
step with no data work, whose ratio to the DataLoader is the ceiling for any data path.
The faithfulness check (fast path vs reference path on identical views, losses equal to
1e-5 in fp32) is asserted, and the command exits non-zero if it fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import InputPipeline, build_augment
from .io import write_csv, write_text
from .models import build_model
from .objectives import BetaSmoothing, CrossEntropy, Objective, SelfDistillation
from .train import TrainConfig, derive_seed, forward_views

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
    RandomHorizontalFlip, then ToTensor and Normalize (SPEC §2 CIFAR recipe)."""
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
    """Our path: tensors in memory, seeded permutation, batched augmentation, no sync.

    ``fast`` adds the device switches of the pipeline (channels_last for images, bf16
    autocast on CUDA); without it only the data path differs from :func:`authors_step`.
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
    if cached:
        view_cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=batch,
                               channels_last=channels_last, bf16=fast)
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
            yb = y.index_select(0, idx)
            with torch.autocast(dev.type, dtype=torch.bfloat16,
                                enabled=fast and dev.type == "cuda"):
                logits = model(xb)
                loss = obj.loss(logits.float(), xb, yb, idx if cached else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            obj.after_step(model)
            acc += loss.detach()
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


def _objective(name: str, arch: str, k: int, shape: tuple[int, ...],
               device: torch.device | None = None) -> Objective:
    dev = device or torch.device("cpu")
    if name == "sd":
        torch.manual_seed(1)
        return SelfDistillation(build_model(arch, k, shape).to(dev))
    if name == "bs":
        torch.manual_seed(2)
        return BetaSmoothing(build_model(arch, k, shape).to(dev), a=3.0, alpha=0.6,
                             generator=torch.Generator().manual_seed(derive_seed(0, "beta")))
    return CrossEntropy()


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


# --------------------------------------------------------------------------- faithfulness


def reference_losses(kind: str, arch: str, method: str, steps: int,
                     batch: int = 64) -> tuple[list[float], list[float]]:
    """Losses of our objective and of a plainly written reference on identical views.

    Both start from the same weights and see the same augmented batches; the reference
    writes each SPEC §3 formula directly with ``log_softmax`` and its own EMA update.
    """
    x, y, k = synthetic(kind, steps * batch, seed=3)
    shape = tuple(x.shape[1:])
    pipe = our_pipeline(kind)
    gen = torch.Generator().manual_seed(5)
    views = [(pipe.train(x[i * batch:(i + 1) * batch], gen), y[i * batch:(i + 1) * batch])
             for i in range(steps)]
    torch.manual_seed(0)
    fast = build_model(arch, k, shape)
    ref = build_model(arch, k, shape)
    ref.load_state_dict(fast.state_dict())
    obj = _objective(method, arch, k, shape)
    aux = _objective(method, arch, k, shape)  # same seeds: identical teacher / EMA init
    ref_net = getattr(aux, "teacher", None) or getattr(aux, "ema", None)
    beta_gen = torch.Generator().manual_seed(derive_seed(0, "beta"))
    opt_f, opt_r = _sgd(fast), _sgd(ref)
    cached = pipe.deterministic_train  # the fast path's cached teacher logits, as in fit
    if cached:
        obj.precompute(lambda net: torch.cat([net(xb) for xb, _ in views]))
    out_f, out_r = [], []
    for s, (xb, yb) in enumerate(views, start=1):
        fast.train()
        idx = torch.arange((s - 1) * batch, s * batch) if cached else None
        loss_f = obj.loss(fast(xb), xb, yb, idx)
        opt_f.zero_grad()
        loss_f.backward()
        opt_f.step()
        obj.after_step(fast)
        ref.train()
        loss_r = _reference_loss(method, ref(xb), xb, yb, ref_net, beta_gen)
        opt_r.zero_grad()
        loss_r.backward()
        opt_r.step()
        if method == "bs":
            d = min(1 - 1 / (s + 1), 0.999)
            with torch.no_grad():
                for pe, p in zip(ref_net.parameters(), ref.parameters(), strict=True):
                    pe.copy_(d * pe + (1 - d) * p)
        out_f.append(loss_f.item())
        out_r.append(loss_r.item())
    return out_f, out_r


def _reference_loss(method: str, z: Tensor, x: Tensor, y: Tensor, net: nn.Module | None,
                    beta_gen: torch.Generator) -> Tensor:
    logp = F.log_softmax(z, 1)
    ce = -logp[torch.arange(len(y)), y].mean()
    if method == "ce":
        return ce
    if method == "sd":
        net.eval()
        with torch.no_grad():
            q = F.softmax(net(x) / 4.0, 1)
        return 0.6 * ce + 0.4 * -(q * logp).sum(1).mean()
    net.train()
    with torch.no_grad():
        conf = F.softmax(net(x), 1)[torch.arange(len(y)), y]
    b = torch.rand(len(y), generator=beta_gen, dtype=torch.float64).pow(1 / 3.0).float()
    b_sorted = torch.sort(b).values
    ranks = torch.argsort(torch.argsort(conf, stable=True))
    bi = b_sorted[ranks]
    k = z.shape[1]
    q = ((1 - bi) / (k - 1)).unsqueeze(1).repeat(1, k)
    q[torch.arange(len(y)), y] = bi
    return 0.4 * ce + 0.6 * -(q * logp).sum(1).mean()


# --------------------------------------------------------------------------- run shares


def outside_training_share(workdir: Path, cores: int = 2,
                           total_wall_s: float | None = None) -> dict[str, Any]:
    """Where a finished run's time went, three ways.

    Core-time: training-step seconds summed over every epoch of every network's
    ``history.csv`` (``train_step_s``) against ``cores`` × wall seconds; share = 1 − step
    seconds / (cores × wall). Wall time outside training steps: the seconds during which no
    optimiser step ran in any job, i.e. wall time minus the union of every epoch's step
    span (``step_start_unix``–``step_end_unix`` in each network's ``history.csv``); job
    start-up, data generation, validation, measuring and rendering all count as outside.
    Wall time with no training job: before the first training job starts, between, after
    the last ends, from the snakemake log. Wall time is ``total_wall_s`` or the span of the
    latest snakemake log's timestamps. Where that log's header gives its start, only step
    spans inside [start, start + wall] count (a network re-run later is not this run's).
    """
    log = _latest_log(workdir)
    text = log.read_text()
    stamps, intervals = _training_intervals(text)
    if total_wall_s is None:
        if len(stamps) < 2:
            raise ValueError(f"{log} has no job timestamps (snakemake ran with -q?); pass the "
                             f"run's wall seconds with --wall")
        total_wall_s = (max(stamps) - min(stamps)).total_seconds()
    # a log written with -q names no jobs: the job-based share is then unknown, not 100 %
    busy = _union_seconds(intervals) if intervals else None
    rows = _step_intervals(workdir)
    started = _log_start(text)
    if started is not None:  # only this invocation's steps (not an earlier or later run's)
        ended = started + timedelta(seconds=total_wall_s)
        rows = [(max(a, started), min(b, ended), sec) for a, b, sec in rows
                if b > started and a < ended]
    step_s = sum(sec for _, _, sec in rows)
    stepping = _union_seconds([(a, b) for a, b, _ in rows])
    return {"wall_s": total_wall_s, "train_step_s": step_s, "cores": cores,
            "share_outside_training": 1 - step_s / (cores * total_wall_s),
            "wall_with_steps_s": stepping,
            "wall_share_outside_steps": 1 - stepping / total_wall_s,
            "wall_with_training_s": busy,
            "wall_share_without_training": None if busy is None else 1 - busy / total_wall_s}


def _log_start(text: str) -> Any:
    """The invocation's start from the log header (``Date: 2026-11-29 20:30:58``), or None."""
    m = re.search(r"^\s*Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text, re.MULTILINE)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") if m else None


def _step_intervals(workdir: Path) -> list[tuple[Any, Any, float]]:
    """(start, end, step seconds) of every epoch's optimiser steps, from each network's
    ``history.csv`` under ``workdir/results`` (``train_step_s``, else end − start); the
    collected ``results/history.csv`` repeats the networks' rows and is skipped."""
    spans = []
    for path in (workdir / "results").rglob("history.csv"):
        if path.parent == workdir / "results":
            continue
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("step_start_unix") and row.get("step_end_unix"):
                    a, b = float(row["step_start_unix"]), float(row["step_end_unix"])
                    sec = float(row["train_step_s"]) if row.get("train_step_s") else b - a
                    spans.append((datetime.fromtimestamp(a), datetime.fromtimestamp(b), sec))
    if not spans:
        raise FileNotFoundError(f"no history.csv with step_start_unix/step_end_unix under "
                                f"{workdir}/results; re-run `snakemake all` with this version")
    return spans


def run_shares_markdown(share: dict[str, Any]) -> str:
    """The shares of :func:`outside_training_share` as a Markdown table."""

    def pct(v: float | None) -> str:
        return "unknown (log written with -q)" if v is None else f"{100 * v:.1f} %"

    rows = [("wall time", f"{share['wall_s']:.0f} s"),
            ("wall time outside training steps (no optimiser step in any job)",
             pct(share["wall_share_outside_steps"])),
            (f"core-time outside training steps ({share['cores']} cores)",
             pct(share["share_outside_training"])),
            ("wall time with no training job running", pct(share["wall_share_without_training"]))]
    return "\n".join(["# Where the run's time went", "", "| measure | value |", "|---|---|",
                      *(f"| {k} | {v} |" for k, v in rows)]) + "\n"


def _latest_log(workdir: Path) -> Path:
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise FileNotFoundError(f"no snakemake log under {workdir}/.snakemake/log; run "
                                f"`snakemake all` there first")
    return logs[-1]


def _training_intervals(text: str) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """All timestamps, and (start, end) of every training job, from a snakemake log."""
    stamp_re = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
    start_re = re.compile(r"^(?:local)?rule (train\w*):$")
    end_re = re.compile(r"^Finished jobid: (\d+) \(Rule: (train\w*)\)")
    stamps, starts, intervals = [], {}, []
    last, pending = None, None
    for line in text.splitlines():
        m = stamp_re.match(line.strip())
        if m:
            last = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            stamps.append(last)
        elif start_re.match(line.strip()):
            pending = last
        elif pending is not None and line.strip().startswith("jobid: "):
            starts[line.strip().split()[1]] = pending
            pending = None
        elif (m := end_re.match(line.strip())) and m.group(1) in starts:
            intervals.append((starts.pop(m.group(1)), last))
    return stamps, intervals


def _union_seconds(intervals: list[tuple[Any, Any]]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_end is None or a > cur_end:
            if cur_end is not None:
                total += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_end is not None:
        total += (cur_end - cur_start).total_seconds()
    return total


# --------------------------------------------------------------------------- main


def run_benchmark(out: Path, rounds: int, steps: int, small: bool) -> bool:
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    results: list[dict[str, Any]] = []  # one row per reported ratio -> ratios.csv
    md = ["# Benchmark", "", f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"device {torch.cuda.get_device_name() if cuda else 'cpu'}; {rounds} interleaved "
          f"rounds of {steps} steps, batch 128.", ""]
    # ResNet-18 only on a GPU: on a CPU thread one of its steps takes seconds, so the
    # CIFAR-shaped comparison uses the small 2D CNN there.
    cifar_arch = "resnet18" if cuda and not small else "cnn_digits"
    cifar_steps = max(2, steps // 4)
    loader = "DataLoader(num_workers=2)"
    # Each suite: its variants, then (denominator, numerator, label) rows of examples/s
    # ratios; an empty list marks the method-cost suite (epoch-time ratios over CE).
    suites: dict[str, tuple[dict[str, Step], list[tuple[str, str, str]]]] = {}
    for kind, arch, n in (("mnist1d", "cnn1d", steps), ("cifar", cifar_arch, cifar_steps)):
        suites[f"data_only_{kind}"] = (
            {"ours": data_only(kind, n, True), "dataloader": data_only(kind, n, False)},
            [("dataloader", "ours", f"{kind}, batches only (no model): ours ÷ {loader}")])
        suites[f"data_path_{kind}"] = (
            {"ours": our_step(kind, arch, n, fast=False, device=dev),
             "dataloader": authors_step(kind, arch, n, sync=False, device=dev),
             "model_only": model_only(kind, arch, n, device=dev)},
            [("dataloader", "ours", f"{kind}/{arch}, same step, data path: ours ÷ {loader}"),
             ("dataloader", "model_only",
              f"{kind}/{arch}, ceiling for any data path (same step, no data work) "
              f"÷ {loader}"),
             ("model_only", "ours",
              f"{kind}/{arch}, ours ÷ no data work (1.00× = a free data path)")])
        suites[f"full_step_{kind}"] = (
            {"ours": our_step(kind, arch, n, device=dev),
             "authors": authors_step(kind, arch, n, device=dev)},
            [("authors", "ours",
              f"{kind}/{arch}, full step: ours ÷ authors' loop ({loader}, fp32, NCHW, "
              f".item())")])
    suites["method_cost_mnist1d"] = ({"ce": our_step("mnist1d", "cnn1d", steps, device=dev),
                                      "sd": our_step("mnist1d", "cnn1d", steps, "sd",
                                                     device=dev),
                                      "bs": our_step("mnist1d", "cnn1d", steps, "bs",
                                                     device=dev)}, [])
    md += ["Wall: examples/s ratio (or epoch-time ratio), median over rounds (min–max). "
           "Core-time: the same ratio of CPU seconds, counting DataLoader worker processes, "
           "i.e. the cores a variant takes from other jobs on the machine.", "",
           "| comparison | wall: median | min | max | core-time: median (min–max) |",
           "|---|---|---|---|---|"]

    def row(label: str, w: dict[str, float], c: dict[str, float], unit: str) -> str:
        return (f"| {label} | {w['median']:.2f}{unit} | {w['min']:.2f}{unit} | "
                f"{w['max']:.2f}{unit} | {c['median']:.2f}{unit} "
                f"({c['min']:.2f}–{c['max']:.2f}) |")

    for name, (variants, pairs) in suites.items():
        rows = interleave(variants, rounds)
        write_csv(out / f"{name}.csv", rows)
        for den, num, label in pairs:
            w = ratios(rows, num, den, invert=True)
            c = ratios(rows, num, den, key="cpu_seconds", invert=True)
            results.append({"suite": name, "numerator": num, "denominator": den,
                            "measure": "examples_per_s", "comparison": label, **w})
            results.append({"suite": name, "numerator": num, "denominator": den,
                            "measure": "examples_per_cpu_s", "comparison": label, **c})
            md.append(row(label, w, c, "×"))
        if not pairs:
            for m in ("sd", "bs"):
                w = ratios(rows, m, "ce")
                c = ratios(rows, m, "ce", key="cpu_seconds")
                label = f"{m.upper()} epoch ÷ CE epoch"
                results.append({"suite": name, "numerator": m, "denominator": "ce",
                                "measure": "epoch_seconds", "comparison": label, **w})
                results.append({"suite": name, "numerator": m, "denominator": "ce",
                                "measure": "epoch_cpu_seconds", "comparison": label, **c})
                md.append(row(f"{label} (time), mnist1d/cnn1d", w, c, ""))
    write_csv(out / "ratios.csv", results)
    if cuda and not small:
        g = gpu_peak_fraction(max(steps, 50), rounds)
        write_csv(out / "gpu_peak.csv", [g])
        frac = "n/a" if g["fraction_of_peak"] is None else f"{100 * g['fraction_of_peak']:.1f} %"
        md += ["", f"ResNet-34 bs128 bf16 channels_last on {g['device']}: "
               f"{g['images_per_s']:.0f} images/s × {g['flops_per_image'] / 1e9:.2f} GFLOP "
               f"per image = {frac} of the dense bf16 peak."]
    ok = True
    md += ["", "## Faithfulness: fast vs reference path on identical views (fp32)", "",
           "| method | steps | max abs loss difference | within 1e-5 |", "|---|---|---|---|"]
    faith_rows = []
    for kind, arch in (("mnist1d", "cnn1d"), ("cifar", cifar_arch)):
        for method in ("ce", "sd", "bs"):
            f, r = reference_losses(kind, arch, method, 5)
            diff = max(abs(a - b) for a, b in zip(f, r, strict=True))
            ok &= diff <= 1e-5
            faith_rows.append({"data": kind, "arch": arch, "method": method, "steps": len(f),
                               "max_abs_diff": diff, "fast": json.dumps(f),
                               "reference": json.dumps(r)})
            md.append(f"| {kind}/{arch} {method} | {len(f)} | {diff:.2e} | "
                      f"{'yes' if diff <= 1e-5 else 'NO'} |")
    write_csv(out / "faithfulness.csv", faith_rows)
    if not cuda:
        md += ["", "GPU fraction of bf16 peak: not measured here (no CUDA device)."]
    md.append("")
    write_text(out / "summary.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfdistill.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40, help="optimiser steps per timed epoch")
    p.add_argument("--small", action="store_true", help="CI scale: small models only")
    p.add_argument("--from-run", default=None, help="a finished workdir: report time shares")
    p.add_argument("--wall", type=float, default=None, help="wall seconds of that run")
    p.add_argument("--cores", type=int, default=2, help="--cores of that run")
    args = p.parse_args(argv)
    if args.from_run:
        share = outside_training_share(Path(args.from_run), args.cores, args.wall)
        out = Path(args.out)
        write_text(out / "run_shares.json", json.dumps(
            {**share, "run_dir": str(Path(args.from_run).resolve())}, indent=2) + "\n")
        write_text(out / "run_shares.md", run_shares_markdown(share))
        print(json.dumps(share, indent=2))
        return 0
    ok = run_benchmark(Path(args.out), args.rounds, args.steps, args.small)
    if not ok:
        print("faithfulness check FAILED: fast and reference losses differ by more than 1e-5",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
