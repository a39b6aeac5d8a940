"""Apply the sizing rule of docs/sizing.md to the pilot's measurements.

    python docs/pilot/analyze_pilot.py --runs docs/pilot/pilot_runs.csv \\
        --reference /path/to/reference/results --reference-wall 289 --out docs/pilot

``--reference`` is the results/ folder of a run of the old default (N = 15,000, E = 12)
on this machine and ``--reference-wall`` its wall time in seconds: they give the fixed cost
and the calibration factor of the rule. Writes ``pilot_table.csv`` (one row per candidate
default: N, E, seeds, MLP kept or not, predicted wall time, CE training accuracy, s, MDE,
eligibility) and ``pilot.png``, and prints the choice.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

BUDGET_S = 540.0
REGIME = 0.995
BS_COST = 1.45  # BS / CE step cost, benchmark
CNN_GRID = {"ce": 1, "sd": 4, "ls": 3, "er": 3, "bs": 3}
MLP_GRID = {"ce": 1, "sd": 4, "ls": 1, "er": 1, "bs": 1}


def mde(s: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable paired mean difference (two-sided t over n seeds)."""
    return (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * s / math.sqrt(n)


def reference_costs(results: Path, wall: float) -> tuple[float, dict[str, float], float]:
    """Fixed cost (s), mean CE wall time per arch (s) and the sum of all network times."""
    total, ce = 0.0, {}
    for arch in ("cnn1d", "mlp"):
        times = []
        for f in glob.glob(f"{results}/mnist1d/{arch}/*/*/seed*/gen*/run.json"):
            t = json.loads(Path(f).read_text())["wall_time_s"]
            total += t
            if "/ce/" in f:
                times.append(t)
        ce[arch] = float(np.mean(times))
    return wall - total / 2, ce, total


def seed_cost(per_net: dict[str, float], grid: dict[str, int]) -> float:
    """Seconds of one seed's networks: LS/ER as CE, BS as CE x BS_COST, SD as measured."""
    cost = {"ce": per_net["ce"], "sd": per_net["sd"], "ls": per_net["ce"],
            "er": per_net["ce"], "bs": per_net["ce"] * BS_COST}
    return sum(cost[m] * k for m, k in grid.items())


def reference_times(results: Path) -> dict[tuple[str, str], float]:
    """Mean wall time per network of the reference run (N = 15,000, E = 12), by arch and method."""
    times: dict[tuple[str, str], list[float]] = {}
    for f in glob.glob(f"{results}/mnist1d/*/*/*/seed*/gen*/run.json"):
        arch, method = Path(f).parts[-6], Path(f).parts[-5]
        times.setdefault((arch, method), []).append(json.loads(Path(f).read_text())["wall_time_s"])
    return {k: float(np.mean(v)) for k, v in times.items()}


def linear_seed_cost(ref: dict[tuple[str, str], float], arch: str, grid: dict[str, int],
                     n_samples: int, epochs: int) -> float:
    """One seed's network seconds, from the reference run's per-method times scaled linearly in
    epochs and in the number of training examples (deviation 1 of docs/sizing.md)."""
    train = {15000: 11000, 30000: 23000}[n_samples]
    return sum(ref[(arch, m)] * k for m, k in grid.items()) * epochs / 12 * train / 11000


def candidates(runs: pd.DataFrame, fixed: float, ref_ce: dict[str, float],
               ref: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    test = runs[runs["split"] == "test"].pivot_table(
        index=["arch", "num_samples", "epochs", "seed"], columns="gen", values="accuracy")
    net = runs[runs["split"] == "test"].assign(m=lambda d: np.where(d["gen"] == 0, "ce", "sd"))
    times = net.groupby(["arch", "num_samples", "epochs", "m"])["wall_time_s"].mean()
    scale = ref_ce["cnn1d"] / times[("cnn1d", 15000, 12, "ce")]
    mlp_scale = ref_ce["mlp"] / times[("mlp", 15000, 12, "ce")]
    train_acc = runs[(runs["split"] == "train") & (runs["gen"] == 0)].groupby(
        ["arch", "num_samples", "epochs"])["accuracy"].mean()
    rows = []
    for (n_samp, epochs), _ in test.loc["cnn1d"].groupby(level=[0, 1]):
        d = 100 * (test.loc[("cnn1d", n_samp, epochs)][2] - test.loc[("cnn1d", n_samp, epochs)][0])
        cnn = seed_cost({m: scale * times[("cnn1d", n_samp, epochs, m)] for m in ("ce", "sd")},
                        CNN_GRID)
        mlp12 = {m: mlp_scale * times[("mlp", n_samp, 12, m)] for m in ("ce", "sd")}
        mlp = seed_cost({m: t * epochs / 12 for m, t in mlp12.items()}, MLP_GRID)
        if ref is not None:
            cnn = linear_seed_cost(ref, "cnn1d", CNN_GRID, n_samp, epochs)
            mlp = linear_seed_cost(ref, "mlp", MLP_GRID, n_samp, epochs)
        for keep_mlp in (True, False):
            per_seed = cnn + (mlp if keep_mlp else 0.0)
            n = int((BUDGET_S - fixed) * 2 // per_seed)
            s = float(d.std(ddof=1))
            rows.append({"num_samples": n_samp, "epochs": epochs, "mlp": keep_mlp,
                         "seeds": n, "predicted_wall_s": round(fixed + n * per_seed / 2, 1),
                         "seconds_per_seed": round(per_seed, 1),
                         "ce_train_accuracy": round(float(train_acc[("cnn1d", n_samp, epochs)]), 5),
                         "ce_test_accuracy": round(float(test.loc[("cnn1d", n_samp, epochs)][0].mean()), 5),
                         "s_pp": round(s, 3),
                         "mean_sd2_minus_ce_pp": round(float(d.mean()), 3),
                         "mde_pp": round(mde(s, n), 3) if n >= 3 else math.nan,
                         "in_budget": n >= 3,
                         "in_regime": float(train_acc[("cnn1d", n_samp, epochs)]) >= REGIME})
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame) -> pd.Series:
    ok = table[table["in_budget"]]
    if ok["in_regime"].any():
        ok = ok[ok["in_regime"]]
    else:
        ok = ok[ok["ce_train_accuracy"] == ok["ce_train_accuracy"].max()]
    best = {}
    for keep in (True, False):
        part = ok[ok["mlp"] == keep]
        if len(part):
            top = part[part["mde_pp"] <= part["mde_pp"].min() + 0.02]
            best[keep] = top.sort_values("predicted_wall_s").iloc[0]
    if True in best and False in best:
        return best[False] if best[False]["mde_pp"] < 0.9 * best[True]["mde_pp"] else best[True]
    return next(iter(best.values()))


def figure(runs: pd.DataFrame, table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cnn = runs[runs["arch"] == "cnn1d"]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for n_samp, part in cnn.groupby("num_samples"):
        tr = part[(part["split"] == "train") & (part["gen"] == 0)].groupby("epochs")["accuracy"]
        ax[0].errorbar(tr.mean().index, 100 * tr.mean(), 100 * tr.std(), marker="o",
                       capsize=3, label=f"N = {n_samp:,}")
        t = part[part["split"] == "test"].pivot_table(index=["epochs", "seed"], columns="gen",
                                                      values="accuracy")
        for g, ls in ((1, "--"), (2, "-")):
            d = 100 * (t[g] - t[0])
            m = d.groupby(level=0)
            ax[1].errorbar(m.mean().index + (0.3 if g == 2 else 0), m.mean(), m.std(),
                           marker="o", ls=ls, capsize=3, label=f"N = {n_samp:,}, SD gen {g} − CE")
    ax[0].axhline(100 * REGIME, color="grey", lw=0.8)
    ax[0].set(xlabel="epochs E", ylabel="CE train accuracy (%)", title="fit of the training data")
    ax[1].axhline(0, color="grey", lw=0.8)
    ax[1].set(xlabel="epochs E", ylabel="test accuracy difference (pp)",
              title="paired SD − CE, mean ± sd over seeds 100-105")
    for keep, part in table.groupby("mlp"):
        ax[2].scatter(part["predicted_wall_s"], part["mde_pp"], marker="o" if keep else "x",
                      label="MLP kept" if keep else "MLP dropped")
        for r in part.itertuples():
            ax[2].annotate(f"{r.num_samples // 1000}k/E{r.epochs}/n{r.seeds}",
                           (r.predicted_wall_s, r.mde_pp), fontsize=7)
    ax[2].set(xlabel="predicted wall time of `all` (s)", ylabel="claim-1 MDE (pp)",
              title="candidates within the 540 s budget")
    for a in ax:
        a.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--reference-wall", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cost", choices=["pilot", "reference-linear"], default="reference-linear",
                    help="pilot: the pilot's times x one calibration factor (the written rule); "
                         "reference-linear: the reference run's times scaled in E and N "
                         "(deviation 1 of docs/sizing.md)")
    args = ap.parse_args()
    runs = pd.read_csv(args.runs)
    fixed, ref_ce, total = reference_costs(args.reference, args.reference_wall)
    print(f"reference: fixed cost {fixed:.1f} s, network time {total:.1f} s, "
          f"CE means {ref_ce}")
    ref = reference_times(args.reference) if args.cost == "reference-linear" else None
    table = candidates(runs, fixed, ref_ce, ref)
    table.insert(0, "cost_model", args.cost)
    name = "pilot_table.csv" if args.cost == "reference-linear" else "pilot_table_pilot_cost.csv"
    table.to_csv(args.out / name, index=False)
    print(table.to_string(index=False))
    print("choice:\n" + choose(table).to_string())
    if args.cost == "reference-linear":
        figure(runs, table, args.out / "pilot.png")


if __name__ == "__main__":
    main()
