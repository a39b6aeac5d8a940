"""Where a finished workflow run's time went: training steps against everything else.

    python -m selfdistill.bench --from-run DIR [--wall S] [--cores N] [--out results/bench]

Reads the latest snakemake log under ``DIR/.snakemake/log`` (job start and end times) and
every network's ``history.csv`` under ``DIR/results`` (``train_step_s`` and the epoch's
optimiser-step span ``step_start_unix``–``step_end_unix``, written by
:func:`selfdistill.train.fit`), and writes ``run_shares.json`` and ``run_shares.md``.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .io import write_text

__all__ = ["outside_training_share", "run_shares_markdown", "write_run_shares"]


def write_run_shares(run_dir: Path, out: Path, cores: int = 2,
                     total_wall_s: float | None = None) -> dict[str, Any]:
    """:func:`outside_training_share` of ``run_dir``, written to ``out/run_shares.json``
    (with the run directory) and ``out/run_shares.md``; returns the shares."""
    share = outside_training_share(run_dir, cores, total_wall_s)
    write_text(out / "run_shares.json", json.dumps(
        {**share, "run_dir": str(run_dir.resolve())}, indent=2) + "\n")
    write_text(out / "run_shares.md", run_shares_markdown(share))
    return share


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
