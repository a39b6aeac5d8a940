"""GPU-hour ESTIMATES of a config's grid, from counted FLOPs and operator counts.

Nothing here is measured on a GPU: every number is an estimate until a GPU run replaces
it (docs/paper_scale.md). Per network of an experiment (methods §2 recipe, methods §3 methods):

- work per epoch: every training image once through forward + backward
  (:func:`selfdistill.bench.flops_per_image`, torch's ``FlopCounterMode``), plus one
  extra forward per image for SD generations >= 1 (the teacher, methods §3.4) and BS (the EMA
  ranking network, methods §3.5), plus one evaluation forward over the validation split;
  after training, one forward over the train, validation and test splits (``preds.npz``);
- time: the larger of (a) those FLOPs at an assumed share ``utilisation`` of the H200's
  dense peak (:data:`H200_PEAK`): the student's training forward + backward at the peak of
  the precision, the other forwards (SD's teacher, BS's ranking network, evaluation) at the
  peak of the precision they run at (:data:`OUTSIDE_AUTOCAST`: TF32 in bf16 mode, whose
  autocast covers the student only), and (b) a launch floor: the operators
  each step dispatches (counted on the CPU) x :data:`SECONDS_PER_OP`. Small 32x32 networks
  at batch 128 are often bound by (b), DenseNet-BC-100 (about 1,500 operators per step for
  0.2 TFLOP) most of all.

    python -m selfdistill.cost config/config.yaml config/paper.yaml   # the table, Markdown

The files are merged as Snakemake merges ``--configfile`` (mappings key by key, other
values replaced); :func:`gpu_hours` itself takes the merged mapping.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode  # FlopCounterMode's base class
from torch.utils.flop_counter import FlopCounterMode

from .bench import flops_per_image
from .grid import experiment_runs, experiments
from .methods import METHODS
from .models import build_model

__all__ = ["AUXILIARY_FORWARDS", "EVAL_BATCH", "H200_PEAK", "OUTSIDE_AUTOCAST", "SECONDS_PER_OP",
           "SOURCE_SIZES",
           "UTILISATION", "ArchCost", "SourceSize", "gpu_hours", "main", "markdown",
           "measure_arch", "merge_configs"]

H200_PEAK = {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12}
"""FLOP/s, dense (no sparsity), H200 SXM datasheet: fp32 on CUDA cores; tf32 and bf16 on
tensor cores (the datasheet's 989 / 1,979 TFLOP/s are with 2:4 sparsity)."""

OUTSIDE_AUTOCAST = {"fp32": "fp32", "tf32": "tf32", "bf16": "tf32"}
"""The arithmetic of the forwards outside the student's autocast (SD's teacher, BS's ranking
network, every evaluation pass) per ``execution.precision``: in bf16 mode they run in fp32
with TF32 kernels (``selfdistill.train.set_precision``), not in bf16."""

UTILISATION = {"35": 0.35, "20": 0.20, "10": 0.10}
"""Assumed sustained shares of that peak (column suffix -> share): 20-35 % is the planning
range for these small 32x32 networks; 10 % shows the case of eager PyTorch at batch 128
falling well short of it. Assumptions, to be replaced by a measured share."""

SECONDS_PER_OP = 5e-6
"""Assumed host cost of one dispatched operator in eager PyTorch on a fast host CPU
(dispatch + kernel launch); the GPU cannot finish a step faster than its operators launch."""

AUXILIARY_FORWARDS = {m.name: m.extra_forwards for m in METHODS.values() if m.extra_forwards}
"""Extra forward passes per training image: SD's teacher (methods §3.4; generation 0 is the
CE run), BS's EMA ranking network (methods §3.5), Tf-KD_self's CE teacher (§3.7), CS-KD's
same-class partner (§3.9, a train-mode forward without backward). Zipf's dense votes
(§3.10) reuse the student's own forward."""

EVAL_BATCH = 1024  # TrainConfig.eval_batch_size: batches of the evaluation forwards


@dataclass(frozen=True)
class SourceSize:
    """A dataset source's official split sizes and its images' native shape."""

    train: int  # training images before the validation hold-out
    test: int
    classes: int
    channels: int
    pixels: int  # native side length


SOURCE_SIZES = {
    "cifar10": SourceSize(50000, 10000, 10, 3, 32),
    "cifar100": SourceSize(50000, 10000, 100, 3, 32),
    "tiny_imagenet": SourceSize(100000, 10000, 200, 3, 64),  # official val = our test
    "cub200": SourceSize(5994, 5794, 200, 3, 32),  # train_test_split.txt; stored at image_size
    "fashion_mnist": SourceSize(60000, 10000, 10, 1, 28),
}


@dataclass(frozen=True)
class ArchCost:
    """Per-image FLOPs and per-batch operator counts of one network (arch, shape, K)."""

    train_flops: float  # forward + backward, per image
    forward_flops: float  # one evaluation forward, per image
    step_ops: int  # operators dispatched by forward + backward of one batch
    forward_ops: int  # operators of one evaluation forward of one batch


@cache
def measure_arch(arch: str, shape: tuple[int, ...], k: int) -> ArchCost:
    """Count ``arch``'s FLOPs (``FlopCounterMode``) and operators on the CPU (batch 2)."""
    model = build_model(arch, k, shape)
    x, y = torch.randn(2, *shape), torch.randint(0, k, (2,))
    with _OpCounter() as step:
        F.cross_entropy(model(x), y).backward()
    model.eval()
    with torch.no_grad(), _OpCounter() as forward, FlopCounterMode(display=False) as flops:
        model(x)
    return ArchCost(flops_per_image(arch, shape, k, batch=2), flops.get_total_flops() / 2,
                    step.count, forward.count)


class _OpCounter(TorchDispatchMode):
    """Counts every operator dispatched while active (views and detaches included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.count += 1
        return func(*args, **(kwargs or {}))


def _dataset(config: Mapping[str, Any], name: str) -> tuple[SourceSize, int, int, tuple[int, ...]]:
    """(source sizes, training images per epoch, validation images, input shape)."""
    block = config["datasets"][name]
    if block["source"] not in SOURCE_SIZES:
        raise ValueError(f"datasets.{name}.source: {block['source']!r} has no split sizes in "
                         f"selfdistill.cost.SOURCE_SIZES (known: {sorted(SOURCE_SIZES)}); "
                         f"add them there to estimate its cost.")
    src = SOURCE_SIZES[block["source"]]
    train = min(block.get("train_subset", src.train), src.train)
    side = block.get("input_size") or block.get("image_size") or src.pixels
    return src, train - block["val_size"], block["val_size"], (src.channels, side, side)


def _network(exp: Mapping[str, Any], n_train: int, n_val: int, n_test: int, cost: ArchCost,
             aux: int) -> tuple[float, float, float]:
    """(student FLOPs, other FLOPs, operators) of one network trained by ``exp`` with ``aux``
    extra forwards: the student's training forward + backward (under autocast in bf16
    mode), then the forwards outside it (``aux`` per training image, evaluation)."""
    epochs, batch = exp["train"]["epochs"], exp["train"]["batch_size"]
    steps = math.ceil(n_train / batch)
    val_batches = math.ceil(n_val / EVAL_BATCH)
    student = epochs * n_train * cost.train_flops
    other = epochs * (n_train * aux + n_val) * cost.forward_flops + \
        (n_train + n_val + n_test) * cost.forward_flops
    epoch_ops = steps * (cost.step_ops + aux * cost.forward_ops) + val_batches * cost.forward_ops
    final_batches = sum(math.ceil(n / EVAL_BATCH) for n in (n_train, n_val, n_test))
    return student, other, epochs * epoch_ops + final_batches * cost.forward_ops


def _experiment_rows(config: Mapping[str, Any], exp: Mapping[str, Any],
                     measure: Callable[[str, tuple[int, ...], int], ArchCost],
                     peaks: Mapping[str, float], utilisation: Mapping[str, float],
                     op_s: float) -> list[dict[str, Any]]:
    src, n_train, n_val, shape = _dataset(config, exp["dataset"])
    cost = measure(exp["arch"], shape, src.classes)
    per_method = Counter(r.method for r in experiment_runs(exp, list(config["seeds"])))
    rows = []
    for precision, peak in peaks.items():
        row = {"dataset": exp["dataset"], "arch": exp["arch"], "precision": precision,
               "networks": sum(per_method.values()), "epochs": exp["train"]["epochs"],
               "gflop_per_image": cost.train_flops / 1e9, "pflop": 0.0, "floor_h": 0.0}
        row.update({f"flop_h_{u}": 0.0 for u in utilisation})
        row.update({f"gpu_h_{u}": 0.0 for u in utilisation})
        outside = peaks[OUTSIDE_AUTOCAST.get(precision, precision)]
        for method, n in per_method.items():
            student, other, ops = _network(exp, n_train, n_val, src.test, cost,
                                           AUXILIARY_FORWARDS.get(method, 0))
            row["pflop"] += n * (student + other) / 1e15
            row["floor_h"] += n * ops * op_s / 3600
            for u, share in utilisation.items():
                flop_s = student / (peak * share) + other / (outside * share)
                row[f"flop_h_{u}"] += n * flop_s / 3600
                row[f"gpu_h_{u}"] += n * max(flop_s, ops * op_s) / 3600
        rows.append(row)
    return rows


def gpu_hours(config: Mapping[str, Any],
              measure: Callable[[str, tuple[int, ...], int], ArchCost] = measure_arch,
              peaks: Mapping[str, float] = H200_PEAK,
              utilisation: Mapping[str, float] = UTILISATION,
              op_s: float = SECONDS_PER_OP) -> pd.DataFrame:
    """One row per experiment x precision, then one ``all``/``all`` row per precision.

    Columns: networks, epochs, gflop_per_image (training, forward + backward), pflop (all
    networks), flop_h_<u> (FLOPs at utilisation u), floor_h (operator launch floor),
    gpu_h_<u> (the estimate: per network the larger of the two), in GPU-hours.
    """
    rows = [row for exp in experiments(config)
            for row in _experiment_rows(config, exp, measure, peaks, utilisation, op_s)]
    table = pd.DataFrame(rows)
    sums = ["networks", "pflop", "floor_h", *(c for c in table if c.startswith(("flop_h_",
                                                                                "gpu_h_")))]
    total = table.groupby("precision", sort=False)[sums].sum().reset_index()
    total[["dataset", "arch"]] = "all"
    return pd.concat([table, total], ignore_index=True)[table.columns]


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: 3 significant digits below 100, whole numbers above."""
    def fmt(v: Any) -> str:
        if not isinstance(v, float):
            return f"{v:,}" if isinstance(v, int) else str(v)
        if math.isnan(v):
            return ""
        return f"{v:,.0f}" if v.is_integer() or abs(v) >= 100 else f"{v:.3g}"

    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("--:" if pd.api.types.is_numeric_dtype(t) else "---"
                          for t in table.dtypes) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join([head, rule, *body])


def merge_configs(*configs: Mapping[str, Any]) -> dict[str, Any]:
    """Later mappings merged into earlier ones key by key; lists and scalars replaced
    (how Snakemake applies ``--configfile`` on top of the workflow's ``configfile:``)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for key, value in cfg.items():
            both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
            out[key] = merge_configs(out[key], value) if both else value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m selfdistill.cost CONFIG [CONFIG ...]``: print the estimate as Markdown."""
    import yaml

    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m selfdistill.cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="config files, merged left to right")
    args = p.parse_args(argv)
    loaded = []
    for path in args.configs:
        with open(path) as fh:
            loaded.append(yaml.safe_load(fh))
    print(markdown(gpu_hours(merge_configs(*loaded))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
