"""The claims check (SPEC §6): one statistic and verdict per paper claim (SPEC §1).

Statistics, all on the test split unless said otherwise (seed = the unit of replication):

- Paired difference over seeds: d_s = metric(A, seed s) − metric(B, seed s) for the seeds
  both settings have; reported with a Student-t interval and a seeded percentile
  bootstrap interval (``bootstrap`` resamples of the seeds). The verdict uses the hull of
  the two intervals, so it is only as confident as the more cautious one (the percentile
  bootstrap is too narrow with 3-5 seeds; the t interval assumes normality).
- Spearman ρ over all runs of the SD chain (generation 0 = CE, SPEC §3.4), with a
  seed-cluster bootstrap interval (runs of one seed share a teacher chain, so seeds,
  not runs, are resampled) and the asymptotic p-value (which treats runs as
  independent). "Significant" means the interval excludes 0 AND p < 1 − confidence.

Verdicts: *supported* when every deciding interval lies above 0; *not supported* when
one lies below 0 (the data contradict the claim); *inconclusive* otherwise, and always
with fewer than two paired seeds. Claim 5 is a reporting check (see :func:`claim_5`).
Comparison points are pre-specified by ``compare`` (no best-generation selection).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .io import write_csv, write_text
from .tables import (
    compare_runs,
    markdown_table,
    matched_entropy,
    one_pair,
    pairs,
    param_is,
    read_metrics,
    sd_chain,
    write_sidecar,
)

__all__ = ["CLAIM_COLUMNS", "CLAIM_TEXT", "VERDICTS", "BootstrapConfig", "Test", "claims_table",
           "paired_test", "render_claims", "spearman_test", "verdict"]

log = logging.getLogger(__name__)

VERDICTS = ("supported", "not supported", "inconclusive")
CLAIM_COLUMNS = ["dataset", "arch", "claim", "statistic", "value", "interval", "verdict",
                 "n_seeds", "detail", "claim_text", "ci_low", "ci_high", "p_value"]
CLAIM_TEXT = {
    1: "Multi-generation SD improves test accuracy over generations",
    2: "The gain comes with growing uncertainty (entropy) and teacher diversity",
    3: "SD beats LS and ER at matched average entropy",
    4: "Beta smoothing beats label smoothing",
    5: "Accuracy, NLL and ECE are reported",
}


@dataclass(frozen=True)
class BootstrapConfig:
    """SPEC §6 interval settings: level, bootstrap resamples, bootstrap seed."""

    confidence: float = 0.95
    n_boot: int = 10000
    seed: int = 0


@dataclass(frozen=True)
class Test:
    """One statistic: point value, deciding interval (hull), components, p-value, seeds."""

    value: float
    low: float
    high: float
    text: str
    p: float
    n: int


_NAN_TEST = Test(math.nan, math.nan, math.nan, "n/a", math.nan, 0)


# --------------------------------------------------------------------------- statistics

def paired_test(a: pd.Series, b: pd.Series, boot: BootstrapConfig, scale: float = 1.0) -> Test:
    """Mean of a − b over shared seeds (index = seed), t and bootstrap intervals (SPEC §6)."""
    common = a.index.intersection(b.index)
    d = scale * (a.loc[common].to_numpy(float) - b.loc[common].to_numpy(float))
    n = len(d)
    if n == 0:
        return _NAN_TEST
    if n < 2:
        return Test(float(d.mean()), math.nan, math.nan, "n/a (1 seed)", math.nan, n)
    alpha = 1.0 - boot.confidence
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    q = float(stats.t.ppf(1 - alpha / 2, n - 1))
    t_lo, t_hi = mean - q * se, mean + q * se
    rng = np.random.default_rng(boot.seed)
    means = d[rng.integers(0, n, size=(boot.n_boot, n))].mean(axis=1)
    b_lo, b_hi = (float(v) for v in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if se > 0 else (0.0 if mean != 0 else 1.0)
    text = f"t [{t_lo:+.3f}, {t_hi:+.3f}]; bootstrap [{b_lo:+.3f}, {b_hi:+.3f}]"
    return Test(mean, min(t_lo, b_lo), max(t_hi, b_hi), text, p, n)


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair of ``x``, ``y`` [B, m] (average ranks for ties)."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))


def spearman_test(runs: pd.DataFrame, x: str, y: str, boot: BootstrapConfig) -> Test:
    """Spearman ρ(x, y) over all runs; seed-cluster bootstrap interval (SPEC §6).

    ``runs`` has one row per (seed, gen); seeds missing a generation are dropped so that
    every resample has the same design.
    """
    values = [c for c in (x, y) if c != "gen"]
    wide = runs.pivot_table(index="seed", columns="gen", values=values).dropna()
    n = len(wide)
    if n == 0:
        return _NAN_TEST
    xs = wide[x].to_numpy(float) if x != "gen" else np.tile(wide[y].columns.to_numpy(float), (n, 1))
    ys = wide[y].to_numpy(float)
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:  # e.g. CE only: no generations to correlate
        return Test(math.nan, math.nan, math.nan, "n/a (constant input)", math.nan, n)
    rho, p = stats.spearmanr(xs.ravel(), ys.ravel())
    rho, p = float(rho), float(p)
    if n < 2 or not np.isfinite(rho):
        return Test(rho, math.nan, math.nan, "n/a", p, n)
    idx = np.random.default_rng(boot.seed).integers(0, n, size=(boot.n_boot, n))
    rhos = _rowwise_spearman(xs[idx].reshape(boot.n_boot, -1), ys[idx].reshape(boot.n_boot, -1))
    alpha = 1.0 - boot.confidence
    if np.isnan(rhos).mean() > alpha:
        return Test(rho, math.nan, math.nan, "n/a (degenerate resamples)", p, n)
    lo, hi = (float(v) for v in np.nanquantile(rhos, [alpha / 2, 1 - alpha / 2]))
    p_text = "p < 1e-15" if p < 1e-15 else f"p = {p:.2g}"
    return Test(rho, lo, hi, f"cluster bootstrap [{lo:+.2f}, {hi:+.2f}], {p_text}", p, n)


def _above(t: Test, boot: BootstrapConfig) -> bool:
    ok = np.isfinite(t.low) and t.low > 0
    return bool(ok and (not np.isfinite(t.p) or t.p < 1 - boot.confidence))


def _below(t: Test, boot: BootstrapConfig) -> bool:
    ok = np.isfinite(t.high) and t.high < 0
    return bool(ok and (not np.isfinite(t.p) or t.p < 1 - boot.confidence))


def verdict(deciding: Sequence[Test], contra: Sequence[Test], boot: BootstrapConfig) -> str:
    """SPEC §6: supported if all ``deciding`` lie above 0 and no ``contra`` below 0;
    not supported if any of either lies below 0; inconclusive otherwise / < 2 seeds."""
    if not deciding or min(t.n for t in deciding) < 2:
        return "inconclusive"
    if any(_below(t, boot) for t in [*deciding, *contra]):
        return "not supported"
    if all(_above(t, boot) for t in deciding):
        return "supported"
    return "inconclusive"


def _row(claim: int, statistic: str, main: Test, verdict_: str, detail: str) -> dict[str, Any]:
    return {"claim": claim, "statistic": statistic, "value": main.value,
            "interval": main.text, "verdict": verdict_, "n_seeds": main.n, "detail": detail,
            "claim_text": CLAIM_TEXT[claim], "ci_low": main.low, "ci_high": main.high,
            "p_value": main.p}


def _by_seed(runs: pd.DataFrame, column: str) -> pd.Series:
    return runs.groupby("seed")[column].mean()


def _fmt(t: Test, unit: str = "") -> str:
    return f"{t.value:+.3f}{unit} ({t.text}; {t.n} seeds)"


# --------------------------------------------------------------------------- claims

def claim_1(test: pd.DataFrame, compare: Mapping[str, Any], boot: BootstrapConfig) -> dict:
    """Claim 1, "improves over generations", from pre-specified points only (no pick of
    the best generation). Deciding: accuracy(last generation G) − accuracy(CE), paired
    over seeds (pp), AND Spearman ρ(accuracy, generation 0..G) > 0. Also not supported if
    SD generation ``compare.sd_gen`` is significantly below CE."""
    chain = sd_chain(test)
    last = int(chain["gen"].max()) if len(chain) else 0
    acc = {g: _by_seed(chain[chain["gen"] == g], "accuracy") for g in chain["gen"].unique()}
    k = int(compare["sd_gen"])

    def vs_ce(g: int) -> Test:
        ok = g >= 1 and g in acc and 0 in acc
        return paired_test(acc[g], acc[0], boot, 100.0) if ok else _NAN_TEST

    end, early = vs_ce(last), vs_ce(k)
    rho = spearman_test(chain, "gen", "accuracy", boot)
    detail = (f"gen {k} − CE: {_fmt(early, ' pp')}; Spearman ρ(accuracy, generation "
              f"0..{last}) = {rho.value:+.2f} ({rho.text})")
    return _row(1, f"paired mean difference of test accuracy, last SD generation ({last}) − "
                "CE (pp); verdict also needs Spearman ρ(accuracy, generation) > 0", end,
                verdict([end, rho] if end.n else [], [early], boot), detail)


def claim_2(metrics: pd.DataFrame, boot: BootstrapConfig) -> dict:
    """Claim 2: Spearman ρ with generation of test entropy and of the train-split
    diversity (cd_entropy_max: what the next student is taught with, SPEC §4)."""
    test = sd_chain(metrics[metrics["split"] == "test"])
    train = sd_chain(metrics[metrics["split"] == "train"])
    ent = spearman_test(test, "gen", "entropy", boot)
    div = spearman_test(train, "gen", "cd_entropy_max", boot)
    div_test = spearman_test(test, "gen", "cd_entropy_max", boot)
    acc_ent = spearman_test(test, "entropy", "accuracy", boot)
    acc_div = spearman_test(test.merge(train[["seed", "gen", "cd_entropy_max"]],
                                       on=["seed", "gen"], suffixes=("_test", "")),
                            "cd_entropy_max", "accuracy", boot)
    detail = (f"train-split diversity vs generation: ρ = {div.value:+.2f} ({div.text}); "
              f"test diversity vs generation: ρ = {div_test.value:+.2f} ({div_test.text}); "
              f"descriptive, not in the verdict: ρ(test accuracy, test entropy) = "
              f"{acc_ent.value:+.2f}, ρ(test accuracy, train diversity) = {acc_div.value:+.2f}")
    return _row(2, "Spearman ρ(test entropy, generation); verdict also needs ρ(train "
                "cd_entropy_max, generation)", ent, verdict([ent, div], [], boot), detail)


def claim_3(metrics: pd.DataFrame, compare: Mapping[str, Any], boot: BootstrapConfig) -> dict:
    """Claim 3: at SD gen compare.sd_gen, accuracy(SD) − accuracy(LS/ER setting closest
    in seed-mean test entropy, the E2 table), paired over seeds (pp)."""
    test = metrics[metrics["split"] == "test"]
    k = int(compare["sd_gen"])
    matched = matched_entropy(metrics)
    row = matched[matched["sd_gen"] == k] if len(matched) else matched
    sd = _by_seed(test[(test["method"] == "sd") & (test["gen"] == k)], "accuracy")
    tests, notes = {}, []
    for m in ("ls", "er"):
        param = row[f"{m}_param"].iloc[0] if len(row) else ""
        if param == "":
            notes.append(f"no {m.upper()} runs")
            continue
        other = test[(test["method"] == m) & param_is(test["param"], float(param))]
        tests[m] = paired_test(sd, _by_seed(other, "accuracy"), boot, 100.0)
        notes.append(f"SD − {m.upper()}({param}): {_fmt(tests[m], ' pp')}, entropy gap "
                     f"{row[f'{m}_entropy_gap'].iloc[0]:+.3f} nats")
    main = tests.get("ls", tests.get("er", _NAN_TEST))
    deciding = list(tests.values()) if len(tests) == 2 else []
    return _row(3, f"paired mean difference of test accuracy, SD gen {k} − LS at matched "
                "entropy (pp); verdict also needs SD − ER", main,
                verdict(deciding, [], boot), "; ".join(notes))


def claim_4(test: pd.DataFrame, compare: Mapping[str, Any], boot: BootstrapConfig) -> dict:
    """Claim 4: accuracy(BS, a = compare.bs_a) − accuracy(LS, ε = compare.ls_eps), paired (pp).
    BS − SD(gen compare.sd_gen) is reported (reviewers' note) but not part of the verdict."""
    runs = compare_runs(test, compare)
    acc = {m: _by_seed(runs[runs["method"] == m], "accuracy") for m in ("bs", "ls", "sd")}
    main = paired_test(acc["bs"], acc["ls"], boot, 100.0)
    vs_sd = paired_test(acc["bs"], acc["sd"], boot, 100.0)
    return _row(4, f"paired mean difference of test accuracy, BS(a={compare['bs_a']}) − "
                f"LS(ε={compare['ls_eps']}) (pp)", main, verdict([main], [], boot),
                f"descriptive, not in the verdict: BS − SD(gen {compare['sd_gen']}) = "
                f"{_fmt(vs_sd, ' pp')}")


def claim_5(test: pd.DataFrame, compare: Mapping[str, Any], boot: BootstrapConfig) -> dict:
    """Claim 5 is a reporting claim: "supported" means accuracy, NLL and ECE are present
    and finite for all five E3 methods and every seed; "not supported" if any is not
    finite; "inconclusive" if a method was not run. Calibration differences (SD − CE in
    ECE and NLL) are reported descriptively; SPEC §1 makes no calibration claim."""
    runs = compare_runs(test, compare)
    finite = np.isfinite(runs[["accuracy", "nll", "ece"]].to_numpy(float)).all(axis=1)
    present = set(runs["method"]) >= {"ce", "ls", "er", "sd", "bs"}
    seeds = runs.groupby("method")["seed"].nunique()
    share = float(finite.mean()) if len(runs) else math.nan
    main = Test(share, math.nan, math.nan, "", math.nan, int(seeds.min()) if len(seeds) else 0)
    by = {m: runs[runs["method"] == m] for m in ("sd", "ce")}
    ece = paired_test(_by_seed(by["sd"], "ece"), _by_seed(by["ce"], "ece"), boot, 100.0)
    nll = paired_test(_by_seed(by["sd"], "nll"), _by_seed(by["ce"], "nll"), boot)
    if len(runs) and not finite.all():
        verdict_ = "not supported"
    else:
        verdict_ = "supported" if present else "inconclusive"  # methods not run: no evidence
    detail = (f"methods present: {', '.join(sorted(set(runs['method'])))}; descriptive "
              f"calibration, not a SPEC §1 claim: SD(gen {compare['sd_gen']}) − CE ECE = "
              f"{_fmt(ece, ' pp')}, NLL = {_fmt(nll, ' nats')}")
    return _row(5, "share of E3 runs (5 methods × seeds) with finite test accuracy, NLL and "
                "ECE", main, verdict_, detail)


def claims_table(metrics: pd.DataFrame, compare: Mapping[str, Any],
                 boot: BootstrapConfig) -> pd.DataFrame:
    """One row per SPEC §1 claim per dataset × arch (SPEC §6)."""
    rows = []
    for dataset, arch in pairs(metrics):
        m = one_pair(metrics, dataset, arch)
        test = m[m["split"] == "test"]
        for row in (claim_1(test, compare, boot), claim_2(m, boot), claim_3(m, compare, boot),
                    claim_4(test, compare, boot), claim_5(test, compare, boot)):
            rows.append({"dataset": dataset, "arch": arch, **row})
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# --------------------------------------------------------------------------- rendering

def _header(boot: BootstrapConfig, compare: Mapping[str, Any]) -> str:
    c = f"{100 * boot.confidence:g} %"
    return f"""# Claims check (SPEC §6)

One row per paper claim (SPEC §1) per dataset × architecture, decided from
`results/metrics.csv` at the scale that was run. Comparison points are fixed in advance by
the config (`compare`: LS ε = {compare['ls_eps']}, ER β = {compare['er_beta']},
BS a = {compare['bs_a']}, SD generation {compare['sd_gen']}); no best generation is picked.

- **Claim 1** needs both: last SD generation − CE above 0 and a positive Spearman ρ of
  accuracy with generation; generation {compare['sd_gen']} significantly below CE refutes it.
- **Claim 2** needs ρ(test entropy, generation) and ρ(train-split diversity, generation),
  the teacher's diversity on the images the student is taught with, both above 0.
- **Claim 3** uses the E2 table row of SD generation {compare['sd_gen']}: SD − LS and SD − ER at
  the closest seed-mean entropy, both above 0.
- **Paired differences** (claims 1, 3, 4): per seed, metric(A) − metric(B); mean over seeds
  in percentage points (pp) with a {c} Student-t interval and a {c} percentile bootstrap
  interval ({boot.n_boot} resamples of the seeds, seed {boot.seed}).
- **Spearman ρ** (claims 1, 2): over all runs of the SD chain (generation 0 = CE), with a
  {c} bootstrap interval that resamples seeds (the runs of one seed share a teacher
  chain) and the asymptotic p-value.
- **Verdict**: *supported* when every deciding interval (for differences the hull of the
  t and bootstrap intervals) lies above 0; *not supported* when one lies below 0;
  *inconclusive* otherwise and whenever fewer than 2 seeds are paired. Claim 5 is a
  reporting check: accuracy, NLL and ECE exist and are finite for every E3 run.
  No correction for multiple claims or experiments is applied.

"""


def _value_text(claim: int, value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.0f} % of runs" if claim == 5 else f"{value:+.3f}"


def render_claims(metrics_path: str | Path, md_out: str | Path, csv_out: str | Path,
                  sidecar: str | Path, compare: Mapping[str, Any],
                  claims: Mapping[str, Any]) -> pd.DataFrame:
    """Write ``claims.csv``, ``claims.md`` and the sidecar (SPEC §6).

    ``claims`` has keys ``confidence``, ``bootstrap`` and ``seed``.
    """
    started = time.perf_counter()
    boot = BootstrapConfig(float(claims["confidence"]), int(claims["bootstrap"]),
                           int(claims["seed"]))
    table = claims_table(read_metrics(metrics_path), compare, boot)
    write_csv(csv_out, table.to_dict(orient="records"), CLAIM_COLUMNS)
    rows = [[r.dataset, r.arch, f"{r.claim}. {r.claim_text}", f"**{r.verdict}**",
             r.statistic, _value_text(r.claim, r.value), r.interval, str(r.n_seeds)]
            for r in table.itertuples()]
    details = "\n".join(f"- {r.dataset} / {r.arch}, claim {r.claim}: {r.detail}"
                        for r in table.itertuples())
    write_text(md_out, _header(boot, compare) + markdown_table(
        ["dataset", "arch", "claim", "verdict", "statistic", "value", "interval", "seeds"],
        rows, 5) + "\n## Details\n\n" + details + "\n")
    write_sidecar(sidecar, [metrics_path], {"compare": dict(compare), "claims": dict(claims)},
                  started, [md_out, csv_out])
    log.info("claims: %s", table["verdict"].value_counts().to_dict())
    return table
