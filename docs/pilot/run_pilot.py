"""Pilot study that sizes the embedded default (docs/sizing.md). Pilot seeds only (100+).

Trains, for each candidate (training-set size N, epochs E with milestones E/3, 2E/3), the
cnn1d chain CE -> SD gen 1 -> SD gen 2 on seeds 100..105, plus a short MLP chain
(CE -> SD gen 1, seeds 100..101, E = 12) for its cost, through the package's own CLI
(``python -m selfdistill train``), two chains at a time with one thread each, as the
default workflow runs them. Then measures every network with ``selfdistill.metrics``.

    python docs/pilot/run_pilot.py --work /tmp/pilot --out docs/pilot

Writes ``pilot_runs.csv`` (one row per network and split). ``analyze_pilot.py`` turns it
into the table and figure of docs/sizing.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEEDS = range(100, 106)
CANDIDATES = [(15000, 12), (15000, 24), (15000, 36), (30000, 12), (30000, 24)]
MLP = [(15000, 12), (30000, 12)]
MLP_SEEDS = range(100, 102)
VAL_SIZE = 1000


def chain_script(data: Path, arch: str, epochs: int, seed: int, gens: int, root: Path) -> str:
    """Python source that trains CE and SD generations 1..gens of one seed in one process."""
    calls = [["train", "--data", str(data), "--arch", arch, "--method", "ce", "--seed",
              str(seed), "--epochs", str(epochs), "--out", str(root / "gen0")]]
    for g in range(1, gens + 1):
        calls.append(["train", "--data", str(data), "--arch", arch, "--method", "sd", "--gen",
                      str(g), "--teacher", str(root / f"gen{g - 1}" / "model.pt"), "--seed",
                      str(seed), "--epochs", str(epochs), "--out", str(root / f"gen{g}")])
    return ("import sys\nfrom selfdistill.cli import main\n"
            f"for argv in {calls!r}:\n"
            "    if main(argv):\n        sys.exit(1)\n")


def run_chain(job: tuple[Path, str, int, int, int, Path]) -> str:
    data, arch, epochs, seed, gens, root = job
    if (root / f"gen{gens}" / "run.json").exists():
        return f"{root}: done before"
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", chain_script(data, arch, epochs, seed, gens,
                                                                root)],
                          capture_output=True, text=True)
    (root / "chain.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"{root} failed:\n{proc.stderr[-2000:]}")
    return f"{root}: {proc.stdout.strip().splitlines()[-1]}"


def prepare(work: Path, n: int) -> Path:
    out = work / f"data_{n}"
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "selfdistill", "prepare", "--source", "mnist1d",
                        "--out", str(out), "--num-samples", str(n), "--val-size",
                        str(VAL_SIZE), "--seed", "0"], check=True)
    return out


def measure(work: Path, out_csv: Path) -> None:
    import numpy as np
    import torch

    from selfdistill import metrics as M

    rows = []
    for run_json in sorted(work.glob("runs/*/*/*/seed*/gen*/run.json")):
        d = run_json.parent
        arch, n, e = d.parts[-5], int(d.parts[-4][1:]), int(d.parts[-3][1:])
        seed, gen = int(d.parts[-2][4:]), int(d.parts[-1][3:])
        rec = json.loads(run_json.read_text())
        preds = np.load(d / "preds.npz")
        for split in ("train", "val", "test"):
            probs = torch.softmax(torch.as_tensor(preds[f"{split}_logits"]).double(), 1)
            y = torch.as_tensor(preds[f"{split}_targets"])
            rows.append({"arch": arch, "num_samples": n, "epochs": e, "seed": seed, "gen": gen,
                         "split": split, "accuracy": M.accuracy(probs, y),
                         "entropy": M.mean_entropy(probs), "nll": M.nll(probs, y),
                         "best_epoch": rec["best_epoch"], "wall_time_s": rec["wall_time_s"],
                         "train_step_seconds": rec["train_step_seconds"]})
    with open(out_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {out_csv}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    data = {n: prepare(args.work, n) for n in {n for n, _ in CANDIDATES + MLP}}
    jobs = [(data[n], "cnn1d", e, s, 2, args.work / "runs" / "cnn1d" / f"n{n}" / f"e{e}" /
             f"seed{s}") for s in SEEDS for n, e in CANDIDATES]
    jobs += [(data[n], "mlp", e, s, 1, args.work / "runs" / "mlp" / f"n{n}" / f"e{e}" /
              f"seed{s}") for s in MLP_SEEDS for n, e in MLP]
    jobs.sort(key=lambda j: -j[2] * (2 if "30000" in str(j[0]) else 1))  # longest first
    with ThreadPoolExecutor(max_workers=2) as pool:
        for line in pool.map(run_chain, jobs):
            print(line, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    measure(args.work, args.out / "pilot_runs.csv")


if __name__ == "__main__":
    main()
