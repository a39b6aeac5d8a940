"""Use a finished run from Python: load its network, evaluate it again, read the tidy tables.

``python examples/use_results.py RUN_DIR [--results results] [--device cpu]``, run from the
workflow directory (run.json records the dataset's path relative to it). The recomputed test
accuracy must equal the run's metrics.csv test row to 1e-9 (else exit status 1). docs/python.md
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from selfdistill import metrics
from selfdistill.checkpoint import load_model, recorded_sha256
from selfdistill.grid import csv_param
from selfdistill.io import read_json
from selfdistill.prepared import load_split
from selfdistill.run import build_pipeline
from selfdistill.train import TrainConfig, predict_logits


def read_table(path: str | Path) -> pd.DataFrame:
    """A tidy CSV (docs/results.md), ``param`` kept as text: '' for ce and sd, '0.1', '3'."""
    return pd.read_csv(path, keep_default_na=False, dtype={"param": str})


def rows_of(table: pd.DataFrame, run: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``table`` of the network that ``run`` (run.json's ``run``) describes."""
    ident = {"dataset": run["dataset"], "arch": run["arch"], "method": run["method"],
             "param": csv_param(run["param"]), "seed": int(run["seed"]), "gen": int(run["gen"])}
    return table[(table[list(ident)] == pd.Series(ident)).all(axis=1)]


def evaluate(run_dir: Path, run: dict[str, Any], device: torch.device) -> float:
    """Top-1 test accuracy (methods §4) of ``run_dir/model.pt`` on its prepared dataset, on
    the un-augmented view the measure step saw (the manifest's scaling and normalisation)."""
    sha256 = recorded_sha256(run_dir / "model.pt")  # recorded in run.json when it was written
    if sha256 is None:
        raise SystemExit(f"{run_dir}/run.json records no model_sha256: not a finished run")
    _, net = load_model(run_dir / "model.pt", sha256)  # sha256, keys, shapes, finite weights
    recipe = TrainConfig(**{**run["train"], "milestones": tuple(run["train"]["milestones"])})
    test = load_split(run["dataset_dir"], "test")  # sha256-checked against its manifest
    x = torch.as_tensor(test.x, device=device)  # [n, *input_shape]
    logits = predict_logits(net.to(device), x, recipe.eval_batch_size, recipe.channels_last,
                            build_pipeline(test.meta, recipe).eval)  # [n, K] on the CPU
    return metrics.accuracy(metrics.softmax(logits), test.y)


def main(argv: list[str] | None = None) -> int:
    """Evaluate RUN_DIR, check it against metrics.csv, print table summaries; exit status."""
    p = argparse.ArgumentParser(description="Use a finished run from Python", allow_abbrev=False)
    p.add_argument("run_dir", type=Path, help="one network's directory (holds model.pt)")
    p.add_argument("--results", type=Path, default=Path("results"), help="the results folder")
    p.add_argument("--device", default="cpu", help="torch device to evaluate on (default: cpu)")
    args = p.parse_args(argv)
    run = read_json(args.run_dir / "run.json")["run"]
    accuracy = evaluate(args.run_dir, run, torch.device(args.device))
    print(f"{args.run_dir}: test accuracy {accuracy!r}")
    for table in (args.run_dir / "metrics.csv", args.results / "metrics.csv"):  # run, tidy
        row = rows_of(read_table(table), run).query("split == 'test'")
        if len(row) != 1 or abs(row["accuracy"].iloc[0] - accuracy) > 1e-9:
            print(f"MISMATCH: the test row of {table} has {row['accuracy'].tolist()}")
            return 1
        print(f"equals the test row of {table}")
    tidy = read_table(args.results / "metrics.csv").query("split == 'test'")
    settings = ["dataset", "arch", "method", "param", "gen"]  # a setting: all but the seed
    mean = tidy.groupby(settings)["accuracy"].agg(["mean", "count"])  # count: its seeds
    print(f"seed-mean test accuracy per setting:\n{mean.to_string()}")
    last = rows_of(read_table(args.results / "history.csv"), run).sort_values("epoch").iloc[-1]
    print(f"val accuracy at its last epoch ({last['epoch']}): {float(last['val_accuracy'])!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
