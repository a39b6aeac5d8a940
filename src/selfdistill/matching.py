"""Matched-entropy baselines (methods §5 E2, §6 claim 3): the LS and ER strengths whose
seed-mean *validation* entropy equals SD generation ``sd_gen``'s, found after the sweep.

Round 1 interpolates over the sweep points in log-strength; round 2, only when round 1's
trained strength still misses ``compare.entropy_tolerance``, interpolates again between
the points that now bracket the target most tightly. Each chosen strength is trained on
every seed (workflow/rules/match.smk, a Snakemake checkpoint: the DAG depends on these
numbers). Only validation entropies enter the choice; test accuracy never does.

Pure functions over the tidy metric rows (pandas, numpy), so the rule's script and the
tests call the same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd

from .grid import parse_param, path_param
from .io import read_json, write_csv, write_json

__all__ = ["MATCHED", "MATCHED_COLUMNS", "ROUNDS", "choose", "entropy_points", "interpolate",
           "match_round", "matched_table", "read_rows", "rounded_strength", "sd_target",
           "to_train", "write_round"]

MATCHED = ("ls", "er")  # the uncertainty-only baselines matched to SD (methods §5 E2)
ROUNDS = 2
SIGNIFICANT = 3  # digits of an interpolated strength (its path spelling, e.g. 0.137)
MATCHED_COLUMNS = ["dataset", "arch", "method", "param", "round", "target_entropy",
                   "val_entropy", "gap", "status"]


def _val(metrics: pd.DataFrame, dataset: str, arch: str) -> pd.DataFrame:
    m = metrics[(metrics["split"] == "val") & (metrics["dataset"] == dataset)
                & (metrics["arch"] == arch)]
    return m


def sd_target(metrics: pd.DataFrame, dataset: str, arch: str, sd_gen: int) -> float:
    """Seed-mean validation entropy of SD generation ``sd_gen`` (nats)."""
    sd = _val(metrics, dataset, arch)
    sd = sd[(sd["method"] == "sd") & (sd["gen"] == sd_gen)]
    if sd.empty:
        raise ValueError(f"no SD generation {sd_gen} rows on the val split for "
                         f"{dataset}/{arch}: the matched-entropy runs need them")
    return float(sd.groupby("seed")["entropy"].mean().mean())


def entropy_points(metrics: pd.DataFrame, dataset: str, arch: str,
                   method: str) -> dict[float, float]:
    """Strength -> seed-mean validation entropy of every ``method`` run present."""
    runs = _val(metrics, dataset, arch)
    runs = runs[runs["method"] == method]
    out: dict[float, float] = {}
    for param, group in runs.groupby("param"):
        out[float(parse_param(str(param)))] = float(group.groupby("seed")["entropy"].mean()
                                                    .mean())
    return out


def rounded_strength(value: float) -> float:
    """A strength to ``SIGNIFICANT`` significant digits (what is trained and recorded)."""
    return float(f"{value:.{SIGNIFICANT}g}")


def interpolate(points: Mapping[float, float], target: float) -> float | None:
    """Strength whose entropy is ``target`` by linear interpolation in log-strength between
    the two points that bracket it most tightly (closest below and above the target in
    entropy among neighbours in strength); None when no neighbouring pair brackets it."""
    xs = sorted(p for p in points if p > 0)
    best: tuple[float, float] | None = None
    for lo, hi in pairwise(xs):
        h_lo, h_hi = points[lo], points[hi]
        if min(h_lo, h_hi) <= target <= max(h_lo, h_hi):
            width = abs(h_hi - h_lo)
            if best is None or width < best[1]:
                if h_hi == h_lo:
                    x = math.log(lo)
                else:
                    x = math.log(lo) + (target - h_lo) * (math.log(hi) - math.log(lo)) / (
                        h_hi - h_lo)
                best = (math.exp(x), width)
    return None if best is None else best[0]


def choose(points: Mapping[float, float], target: float, tolerance: float,
           trained: Sequence[float] = ()) -> dict[str, Any]:
    """The next strength to train for one method, from the points measured so far.

    ``status``: ``matched`` (a measured point is within ``tolerance``: nothing to train),
    ``train`` (an interpolated strength not measured yet), ``no bracket`` (the points do
    not bracket the target: widen the sweep) or ``stalled`` (interpolation lands on a
    point already measured, which misses). ``param`` is the path spelling of the best
    measured point (``matched``) or of the strength to train; ``gap`` its measured
    entropy minus the target (None until measured).
    """
    gaps = {p: h - target for p, h in points.items()}
    if gaps:
        nearest = min(gaps, key=lambda p: (abs(gaps[p]), p))
        if abs(gaps[nearest]) <= tolerance:
            return {"status": "matched", "param": path_param(nearest),
                    "gap": gaps[nearest]}
    x = interpolate(points, target)
    if x is None:
        return {"status": "no bracket", "param": None, "gap": None}
    x = rounded_strength(x)
    if x in points or x in trained:
        return {"status": "stalled", "param": path_param(x), "gap": gaps.get(x)}
    return {"status": "train", "param": path_param(x), "gap": None}


def match_round(metrics: pd.DataFrame, dataset: str, arch: str, sd_gen: int,
                tolerance: float, round_no: int,
                previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One matching round of one dataset × arch: per method of ``MATCHED``, what
    :func:`choose` decides on every point measured so far (sweep, then earlier rounds)."""
    target = sd_target(metrics, dataset, arch, sd_gen)
    out: dict[str, Any] = {"dataset": dataset, "arch": arch, "round": round_no,
                           "sd_gen": sd_gen, "target_entropy": target,
                           "tolerance": tolerance, "methods": {}}
    for method in MATCHED:
        points = entropy_points(metrics, dataset, arch, method)
        before = (previous or {}).get("methods", {}).get(method, {})
        trained = [float(p) for p in before.get("trained", [])]
        decision = choose(points, target, tolerance, trained)
        decision["points"] = {path_param(p): h for p, h in sorted(points.items())}
        decision["trained"] = trained + ([float(decision["param"])]
                                         if decision["status"] == "train" else [])
        out["methods"][method] = decision
    return out


def to_train(decision: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(method, param) pairs a round asks to train."""
    return [(m, d["param"]) for m, d in decision["methods"].items() if d["status"] == "train"]


def matched_table(rounds: Sequence[str | Path], metrics: pd.DataFrame,
                  out: str | Path) -> pd.DataFrame:
    """results/matched/matched.csv: per dataset × arch × method, the measured strength
    whose seed-mean validation entropy is closest to SD's (over the sweep and every
    round), its gap and how it was found. A method whose points never bracket the
    target has an empty param and NaN gap."""
    rows = []
    for path in rounds:
        last = read_json(path)
        d, a, target = last["dataset"], last["arch"], float(last["target_entropy"])
        for method in MATCHED:
            dec = last["methods"][method]
            points = entropy_points(metrics, d, a, method)
            trained = {path_param(p) for p in dec.get("trained", [])}
            row = {"dataset": d, "arch": a, "method": method, "param": "",
                   "round": last["round"], "target_entropy": target,
                   "val_entropy": math.nan, "gap": math.nan, "status": dec["status"]}
            if points and dec["status"] != "no bracket":
                best = min(points, key=lambda p: (abs(points[p] - target), p))
                row.update(param=path_param(best), val_entropy=points[best],
                           gap=points[best] - target,
                           status=("interpolated" if path_param(best) in trained
                                   else "sweep point"))
            rows.append(row)
    table = pd.DataFrame(rows, columns=MATCHED_COLUMNS)
    write_csv(out, table.to_dict("records"), MATCHED_COLUMNS)
    return table


def read_rows(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Per-run metrics.csv files as one table (``param`` kept as text)."""
    from .tables import read_metrics

    return pd.concat([read_metrics(p) for p in paths], ignore_index=True)


def write_round(decision: Mapping[str, Any], out: str | Path) -> None:
    write_json(out, dict(decision))
