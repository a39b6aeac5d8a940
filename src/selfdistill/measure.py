"""From saved predictions to the tidy metric tables (methods §4, §7).

Numpy and the csv module only, so measure jobs start fast (no torch import).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .data import SPLITS
from .grid import csv_param
from .io import atomic_path, write_csv

__all__ = ["METRIC_COLUMNS", "PER_CLASS_COLUMNS", "RUN_COLUMNS", "collect", "measure_run",
           "per_class_table"]

RUN_COLUMNS = ["dataset", "arch", "method", "param", "seed", "gen"]
# top5_accuracy came last, after the others: the columns before it kept their bytes
METRIC_COLUMNS = ["accuracy", "nll", "ece", "entropy", "cd_entropy_max", "cd_entropy_true",
                  "cd_std_max", "cd_std_true", "top5_accuracy"]
PER_CLASS_COLUMNS = ["class", "n", "correct", "accuracy"]
RELIABILITY_COLUMNS = ["bin", "lower", "upper", "confidence", "accuracy", "count"]

log = logging.getLogger(__name__)


def _run_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    return {"dataset": run["dataset"], "arch": run["arch"], "method": run["method"],
            "param": csv_param(run["param"]), "seed": int(run["seed"]),
            "gen": int(run["gen"])}


def measure_run(preds_path: str | Path, run: Mapping[str, Any], metrics_out: str | Path,
                reliability_out: str | Path, ece_bins: int = 20, cd_bins: int = 20,
                metrics_last_out: str | Path | None = None) -> None:
    """One row per split in ``metrics_out``; per-bin reliability data in ``reliability_out``;
    with ``metrics_last_out``, the same rows for the last epoch's weights (the
    ``{split}_logits_last`` arrays) there.

    Probabilities are recomputed from the saved logits in float64 (methods §4: any metric
    can be recomputed from the intermediate files).
    """
    fields = _run_fields(run)
    rows, rel_rows, last_rows = [], [], []
    with np.load(preds_path) as npz:
        for split in SPLITS:
            probs = metrics.softmax(npz[f"{split}_logits"])
            targets = npz[f"{split}_targets"]
            rows.append({**fields, "split": split, "n": len(targets),
                         **metrics.summarize(probs, targets, ece_bins, cd_bins)})
            bins = metrics.reliability_bins(probs, targets, ece_bins)
            for b in range(ece_bins):
                rel_rows.append({**fields, "split": split, "bin": b,
                                 **{k: bins[k][b].item() for k in RELIABILITY_COLUMNS[1:]}})
            if metrics_last_out is not None:
                key = f"{split}_logits_last"
                if key not in npz.files:
                    raise KeyError(f"{preds_path}: no {key} (last-epoch logits): it was written "
                                   f"before last-epoch predictions existed; delete it and "
                                   f"retrain that network (snakemake reruns it)")
                last = metrics.softmax(npz[key])
                last_rows.append({**fields, "split": split, "n": len(targets),
                                  **metrics.summarize(last, targets, ece_bins, cd_bins)})
    columns = RUN_COLUMNS + ["split", "n"] + METRIC_COLUMNS
    write_csv(metrics_out, rows, columns)
    write_csv(reliability_out, rel_rows, RUN_COLUMNS + ["split"] + RELIABILITY_COLUMNS)
    if metrics_last_out is not None:
        write_csv(metrics_last_out, last_rows, columns)
    log.info("%s: %s", preds_path, {r["split"]: round(r["accuracy"], 4) for r in rows})


def per_class_table(preds: Sequence[str | Path], runs: Sequence[Mapping[str, Any]],
                    output: str | Path) -> int:
    """``results/per_class_accuracy.csv``: for each network (``runs[i]``: its dataset, arch,
    method, param, seed, gen; ``preds[i]``: its ``preds.npz``), each split and each class,
    the top-1 accuracy of the best-validation checkpoint's predictions (methods §4,
    :func:`selfdistill.metrics.per_class_accuracy`); returns the row count."""
    if len(preds) != len(runs):
        raise ValueError(f"per_class_table: {len(preds)} prediction files for {len(runs)} runs")
    rows = []
    for path, run in zip(preds, runs, strict=True):
        fields = _run_fields(run)
        with np.load(path) as npz:
            for split in SPLITS:
                logits = npz[f"{split}_logits"]
                table = metrics.per_class_accuracy(metrics.softmax(logits),
                                                   npz[f"{split}_targets"], logits.shape[1])
                rows += [{**fields, "split": split, "class": c, "n": int(table["n"][c]),
                          "correct": int(table["correct"][c]),
                          "accuracy": float(table["accuracy"][c])}
                         for c in range(logits.shape[1])]
    write_csv(output, rows, RUN_COLUMNS + ["split"] + PER_CLASS_COLUMNS)
    log.info("%s: %d rows from %d networks", output, len(rows), len(preds))
    return len(rows)


def collect(inputs: Sequence[str | Path], output: str | Path) -> int:
    """Concatenate per-run CSVs (same columns) into one tidy CSV; returns the row count."""
    import pandas as pd

    frames = [pd.read_csv(p, keep_default_na=False, dtype={"param": str}) for p in inputs]
    df = pd.concat(frames, ignore_index=True)
    with atomic_path(output) as tmp:
        df.to_csv(tmp, index=False)
    log.info("%s: %d rows from %d files", output, len(df), len(frames))
    return len(df)
