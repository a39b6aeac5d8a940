"""The claims check (methods §6): one statistic and verdict per paper claim (methods §1).

The seed is the unit of replication. Every deciding statistic is a per-seed number:

- Paired difference (claims 1, 3, 4): d_s = 100·(accuracy(A, seed s) − accuracy(B, seed s))
  in percentage points (pp) over the seeds both settings have.
- Trend (claim 1's trend, claim 2): each seed's least-squares slope of the quantity over
  generations 0..G of its SD chain (generation 0 = CE, methods §3.4), per generation. Not
  each seed's Spearman ρ: ρ saturates at ±1, so a trend that is monotone in every seed,
  the strongest evidence there is, would have zero spread. Mean per-seed ρ is reported.

Over seeds: the mean, a Student-t interval with n − 1 df at ``compare.confidence``, the
two-sided one-sample t-test p-value against 0, the sign count (seeds with a positive
statistic) and the minimal detectable effect at ``compare.power``,
MDE = (t_{1−α/2, n−1} + t_{power, n−1}) · s / √n (α = 1 − confidence, s the sample
standard deviation of the per-seed statistic): the true mean difference this many
seeds would detect with that probability (the usual normal-approximation formula with t
quantiles), in the statistic's unit.

Verdicts (exactly one):

- *inconclusive*, always, with fewer than 3 seeds or zero spread of a deciding per-seed
  statistic (the t interval is undefined; ``detail`` says why), when a method was not run,
  or when claim 3 finds no LS/ER setting at SD's entropy;
- *contradicted*: a deciding (or claim 1's contra) interval lies entirely below 0 and the
  claim's Holm-adjusted p < 1 − confidence;
- *supported*: every deciding interval lies above 0 and the Holm-adjusted p < 1 − confidence;
- *no effect* (claims in pp: 1, 3, 4): every equivalence interval lies within
  ±``compare.margin_pp``, an equivalence test (TOST-style via the interval);
- *inconclusive* otherwise.

A claim's p-value is the larger p of its deciding tests (all must hold), or, when some
interval lies below 0, the smallest p of those (one suffices to contradict). Holm's
step-down adjustment runs over the p-values of claims 1-4 of one dataset × arch.
Claim 5 is a reporting check (see :func:`claim_5`). Comparison points are pre-specified by
``compare`` (no best-generation selection).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .io import write_csv, write_text
from .tables import (
    markdown_table,
    one_pair,
    pairs,
    param_is,
    read_metrics,
    sd_chain,
    write_sidecar,
)

__all__ = ["CLAIM_COLUMNS", "CLAIM_TEXT", "VERDICTS", "CheckConfig", "Evidence", "Stat",
           "claim_1", "claim_2", "claim_3", "claim_4", "claim_5", "evaluate", "holm", "mde",
           "render_claims", "seed_stat", "slopes"]

log = logging.getLogger(__name__)

VERDICTS = ("supported", "contradicted", "no effect", "inconclusive")
CLAIM_COLUMNS = ["dataset", "arch", "claim", "verdict", "value", "low", "high", "n_seeds",
                 "detail", "p_value", "p_holm", "mde", "sign_count", "unit", "statistic",
                 "summary", "claim_text"]
CLAIM_TEXT = {
    1: "Multi-generation SD improves test accuracy over generations",
    2: "The gain comes with growing uncertainty (entropy) and teacher diversity",
    3: "SD beats LS and ER at matched average entropy",
    4: "Beta smoothing beats label smoothing",
    5: "Accuracy, NLL and ECE are reported",
}
METRIC_COLUMNS = ["dataset", "arch", "method", "param", "seed", "gen", "split", "accuracy",
                  "nll", "ece", "entropy", "cd_entropy_max"]
MIN_SEEDS = 3
PP = "pp"


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class CheckConfig:
    """The config's ``compare`` block (methods §5 comparison points, methods §6 test settings)."""

    ls_eps: float
    er_beta: float
    bs_a: float
    sd_gen: int
    confidence: float
    margin_pp: float
    entropy_tolerance: float
    power: float

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    @classmethod
    def from_compare(cls, compare: Mapping[str, Any]) -> CheckConfig:
        """Validate ``compare``; errors name the key and the fix."""
        missing = [k for k in cls.__dataclass_fields__ if k not in compare]
        if missing:
            raise ValueError(f"compare: missing keys {missing}; add them to the config's "
                             "compare block (see config/config.yaml for each key's meaning)")
        cfg = cls(float(compare["ls_eps"]), float(compare["er_beta"]), float(compare["bs_a"]),
                  int(compare["sd_gen"]), float(compare["confidence"]),
                  float(compare["margin_pp"]), float(compare["entropy_tolerance"]),
                  float(compare["power"]))
        for key in ("confidence", "power"):
            if not 0.0 < getattr(cfg, key) < 1.0:
                raise ValueError(f"compare.{key}={getattr(cfg, key)} must lie in (0, 1)")
        for key in ("margin_pp", "entropy_tolerance"):
            if getattr(cfg, key) < 0:
                raise ValueError(f"compare.{key}={getattr(cfg, key)} must be >= 0")
        return cfg


# --------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Stat:
    """One per-seed statistic summarised over seeds (methods §6); ``problem`` is non-empty
    when its interval cannot be used (too few seeds, zero spread, nothing paired)."""

    name: str
    unit: str
    values: np.ndarray
    value: float
    low: float
    high: float
    p: float
    sd: float
    mde: float
    problem: str

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def positive(self) -> int:
        return int((self.values > 0).sum())

    @property
    def usable(self) -> bool:
        return not self.problem


def mde(sd: float, n: int, confidence: float, power: float) -> float:
    """Minimal detectable effect, (t_{1−α/2, n−1} + t_{power, n−1}) · sd / √n (methods §6)."""
    if n < 2 or not sd > 0:
        return math.nan
    q = stats.t.ppf(1 - (1 - confidence) / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(q * sd / math.sqrt(n))


def _problem(values: np.ndarray, unit: str) -> str:
    n = len(values)
    if n == 0:
        return "no seeds to pair"
    if n < MIN_SEEDS:
        return f"only {n} seed{'s' * (n > 1)} (need at least {MIN_SEEDS})"
    mean = float(values.mean())
    if np.ptp(values) <= 1e-9 * max(1.0, abs(mean)):
        return (f"zero spread: all {n} seeds give {mean:+.4g} {unit}, so the t interval is "
                "undefined")
    return ""


def seed_stat(name: str, unit: str, per_seed: pd.Series | np.ndarray,
              cfg: CheckConfig) -> Stat:
    """Mean over seeds, Student-t interval (n − 1 df), t-test p, MDE (methods §6)."""
    d = np.asarray(per_seed, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    value = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    problem = _problem(d, unit)
    low = high = p = math.nan
    if not problem:
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(cfg.confidence)
        low, high, p = float(ci.low), float(ci.high), float(res.pvalue)
    size = math.nan if problem.startswith("zero spread") else mde(sd, n, cfg.confidence,
                                                                  cfg.power)
    return Stat(name, unit, d, value, low, high, p, sd, size, problem)


def paired(name: str, a: pd.Series, b: pd.Series, cfg: CheckConfig) -> Stat:
    """Per-seed difference 100·(a − b) in pp over the seeds both have (index = seed)."""
    common = a.index.intersection(b.index).sort_values()
    return seed_stat(name, PP, 100.0 * (a.loc[common] - b.loc[common]), cfg)


def _wide(chain: pd.DataFrame, column: str) -> pd.DataFrame:
    """seed × generation table of ``column``; seeds missing a generation are dropped."""
    if chain.empty:
        return pd.DataFrame()
    return chain.pivot_table(index="seed", columns="gen", values=column).dropna()


def slopes(chain: pd.DataFrame, column: str, scale: float = 1.0) -> pd.Series:
    """Each seed's least-squares slope of ``scale``·``column`` over its generations."""
    wide = _wide(chain, column)
    if wide.shape[1] < 2:
        return pd.Series(dtype=float)
    g = wide.columns.to_numpy(float) - wide.columns.to_numpy(float).mean()
    y = scale * wide.to_numpy(float)
    return pd.Series((y - y.mean(axis=1, keepdims=True)) @ g / (g @ g), index=wide.index)


def _spearman_note(chain: pd.DataFrame, column: str, what: str) -> list[str]:
    """Mean per-seed Spearman ρ(column, generation), descriptive (empty under 3 gens)."""
    wide = _wide(chain, column)
    if wide.shape[1] < 3:
        return []
    gens = wide.columns.to_numpy(float)
    rhos = np.array([stats.spearmanr(gens, row).statistic if np.ptp(row) > 0 else np.nan
                     for row in wide.to_numpy(float)])
    rhos = rhos[np.isfinite(rhos)]
    if not len(rhos):
        return []
    return [f"descriptive: mean per-seed Spearman ρ({what}, generation) {rhos.mean():+.2f} "
            f"({int((rhos > 0).sum())}/{len(rhos)} seeds > 0)"]


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are not tested and stay NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def describe(s: Stat) -> str:
    """One-line account of a statistic for ``detail``."""
    if not s.usable:
        mean = "" if not s.n else f"mean {s.value:+.3f} {s.unit}, "
        return f"{s.name}: {mean}{s.problem}"
    return (f"{s.name}: {s.value:+.3f} {s.unit} [{s.low:+.3f}, {s.high:+.3f}], "
            f"{s.positive}/{s.n} seeds positive, p = {s.p:.2g}, MDE {s.mde:.3g} {s.unit}")


# --------------------------------------------------------------------------- claims

@dataclass
class Evidence:
    """What decides one claim: ``deciding`` must all lie above 0; any of ``deciding`` or
    ``contra`` below 0 contradicts; all of ``equivalent`` within ±margin is "no effect";
    ``problems`` make it inconclusive; ``fixed`` is a verdict that needs no test (claim 5)."""

    claim: int
    main: Stat | None
    deciding: list[Stat]
    notes: list[str]
    summary: str
    contra: list[Stat] = field(default_factory=list)
    equivalent: list[Stat] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixed: tuple[str, str] | None = None
    value: float = math.nan
    n: int | None = None


def _by_seed(runs: pd.DataFrame, column: str = "accuracy") -> pd.Series:
    return runs.groupby("seed")[column].mean()


def _binding(ev_stats: Sequence[Stat]) -> Stat:
    """The component whose p is the claim's p (weakest support or strongest contradiction)."""
    below = [s for s in ev_stats if s.usable and s.high < 0]
    if below:
        return min(below, key=lambda s: s.p)
    unusable = [s for s in ev_stats if not s.usable]
    return unusable[0] if unusable else max(ev_stats, key=lambda s: s.p)


def claim_1(test: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 1, "improves over generations", from pre-specified points only. Deciding:
    accuracy(last SD generation G) − accuracy(CE), paired (pp), AND the per-seed accuracy
    slope over generations 0..G (pp/generation); SD generation ``sd_gen`` significantly
    below CE contradicts. "No effect": the G − CE interval within ±margin."""
    chain = sd_chain(test)
    if not (chain["gen"] >= 1).any() or not (chain["gen"] == 0).any():
        return Evidence(1, None, [], [], "SD vs CE", problems=["no SD or no CE runs"])
    last = int(chain["gen"].max())
    acc = {g: _by_seed(chain[chain["gen"] == g]) for g in (0, cfg.sd_gen, last)
           if (chain["gen"] == g).any()}
    end = paired(f"SD gen {last} − CE", acc[last], acc[0], cfg)
    trend = seed_stat(f"slope of accuracy over generations 0..{last}", "pp/generation",
                      slopes(chain, "accuracy", 100.0), cfg)
    contra = []
    if cfg.sd_gen != last and cfg.sd_gen in acc:
        contra = [paired(f"SD gen {cfg.sd_gen} − CE", acc[cfg.sd_gen], acc[0], cfg)]
    notes = [describe(end), describe(trend), *(describe(s) for s in contra),
             *_spearman_note(chain, "accuracy", "accuracy")]
    summary = (f"SD {end.value:+.2f} pp after {last} generation{'s' * (last > 1)} "
               f"({end.positive}/{end.n} seeds)")
    return Evidence(1, end, [end, trend], notes, summary, contra, [end])


def claim_2(metrics: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 2: per-seed slope over generations 0..G of test entropy and of the train-split
    diversity (cd_entropy_max: what the next student is taught with, methods §4), both > 0."""
    test = sd_chain(metrics[metrics["split"] == "test"])
    train = sd_chain(metrics[metrics["split"] == "train"])
    if not (test["gen"] >= 1).any():
        return Evidence(2, None, [], [], "entropy and diversity", problems=["no SD runs"])
    ent = seed_stat("slope of test entropy", "nats/generation", slopes(test, "entropy"), cfg)
    div = seed_stat("slope of train-split teacher diversity (cd_entropy_max)",
                    "nats/generation", slopes(train, "cd_entropy_max"), cfg)
    div_test = seed_stat("slope of test diversity", "nats/generation",
                         slopes(test, "cd_entropy_max"), cfg)
    notes = [describe(ent), describe(div), *_spearman_note(test, "entropy", "test entropy"),
             *_spearman_note(train, "cd_entropy_max", "train diversity"),
             "descriptive, not in the verdict: " + describe(div_test)]
    summary = (f"entropy {ent.value:+.3f} and teacher diversity {div.value:+.3f} nats per "
               f"generation ({ent.positive}/{ent.n}, {div.positive}/{div.n} seeds up)")
    return Evidence(2, _binding([ent, div]), [ent, div], notes, summary)


def _match(val: pd.DataFrame, method: str, target: float,
           cfg: CheckConfig) -> tuple[str | None, str, str]:
    """methods §5 E2 on the validation split: the ``method`` setting closest to SD's seed-mean
    val entropy ``target`` (ties: smaller param). Returns (param, note, short note); param
    is None when the sweep does not bracket the target or the gap exceeds
    ``compare.entropy_tolerance``."""
    runs = val[val["method"] == method]
    name = method.upper()
    if runs.empty:
        return None, f"no {name} runs on the val split", f"no {name} runs"
    means = runs.groupby("param")["entropy"].mean()
    gap = means - target
    lo, hi = float(means.min()), float(means.max())
    if not lo <= target <= hi:
        span = (f"one {name} setting, at {lo:.3f}" if len(means) == 1
                else f"{name} settings span {lo:.3f}-{hi:.3f}")
        return None, (f"{name} sweep does not bracket SD's val entropy {target:.3f} nats "
                      f"({span}); widen the sweep"), f"{name} sweep does not bracket SD's entropy"
    param = min(gap.index, key=lambda q: (abs(gap[q]), float(q)))
    g = float(gap[param])
    if abs(g) > cfg.entropy_tolerance:
        return None, (f"closest {name} setting ({param}) is {g:+.3f} nats from SD's val "
                      f"entropy, beyond the {cfg.entropy_tolerance:g}-nat tolerance; add "
                      "sweep points near it"), f"{name} gap {g:+.2f} nats"
    return str(param), f"{name}({param}) matched, val entropy gap {g:+.3f} nats", ""


def claim_3(metrics: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 3: SD gen ``sd_gen`` vs the LS and ER settings closest to it in seed-mean
    VALIDATION entropy (so test accuracy is not used to pick them); test-accuracy paired
    differences SD − LS and SD − ER (pp), both > 0 to support."""
    val, test = (metrics[metrics["split"] == s] for s in ("val", "test"))
    k = cfg.sd_gen
    sd_val = val[(val["method"] == "sd") & (val["gen"] == k)]
    if sd_val.empty:
        return Evidence(3, None, [], [], "SD vs LS/ER at matched entropy",
                        problems=[f"no SD gen {k} runs on the val split"])
    target = float(_by_seed(sd_val, "entropy").mean())
    sd = _by_seed(test[(test["method"] == "sd") & (test["gen"] == k)])
    tests, notes, problems, short = [], [], [], []
    for m in ("ls", "er"):
        param, note, brief = _match(val, m, target, cfg)
        notes.append(note)
        if param is None:
            problems.append(note)
            short.append(brief)
            continue
        other = test[(test["method"] == m) & param_is(test["param"], float(param))]
        tests.append(paired(f"SD gen {k} − {m.upper()}({param})", sd, _by_seed(other), cfg))
    notes += [describe(s) for s in tests]
    summary = ", ".join(f"SD − {s.name.split(' − ')[-1]} {s.value:+.2f} pp" for s in tests)
    summary = f"{summary or 'SD vs LS/ER'} at matched val entropy"
    summary += f" ({'; '.join(short)})" if short else ""
    main = _binding(tests) if tests else None
    return Evidence(3, main, tests, notes, summary, equivalent=tests, problems=problems)


def claim_4(test: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 4: accuracy(BS, a = bs_a) − accuracy(LS, ε = ls_eps), paired (pp). BS − SD
    (gen ``sd_gen``) is reported (reviewers' note) but is not part of the verdict."""
    m = test["method"]
    bs = test[(m == "bs") & param_is(test["param"], cfg.bs_a)]
    ls = test[(m == "ls") & param_is(test["param"], cfg.ls_eps)]
    sd = test[(m == "sd") & (test["gen"] == cfg.sd_gen)]
    missing = [n for n, r in (("BS", bs), ("LS", ls)) if r.empty]
    if missing:
        return Evidence(4, None, [], [], "BS vs LS",
                        problems=[f"no {' or '.join(missing)} runs at the compare point"])
    main = paired(f"BS(a={cfg.bs_a:g}) − LS(ε={cfg.ls_eps:g})", _by_seed(bs), _by_seed(ls), cfg)
    vs_sd = paired(f"BS − SD(gen {cfg.sd_gen})", _by_seed(bs), _by_seed(sd), cfg)
    notes = [describe(main), f"descriptive, not in the verdict: {describe(vs_sd)}"]
    summary = f"BS − LS {main.value:+.2f} pp ({main.positive}/{main.n} seeds)"
    return Evidence(4, main, [main], notes, summary, equivalent=[main])


def claim_5(test: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 5 is a reporting claim: *supported* when accuracy, NLL and ECE are present and
    finite for all five E3 methods and every seed; *contradicted* if any is not finite;
    *inconclusive* if a method was not run. No p-value."""
    m = test["method"]
    runs = test[(m == "ce") | ((m == "sd") & (test["gen"] == cfg.sd_gen))
                | ((m == "ls") & param_is(test["param"], cfg.ls_eps))
                | ((m == "er") & param_is(test["param"], cfg.er_beta))
                | ((m == "bs") & param_is(test["param"], cfg.bs_a))]
    finite = np.isfinite(runs[["accuracy", "nll", "ece"]].to_numpy(float)).all(axis=1)
    absent = [x for x in ("ce", "ls", "er", "sd", "bs") if x not in set(runs["method"])]
    if len(runs) and not finite.all():
        fixed = ("contradicted", f"{int((~finite).sum())} of {len(runs)} E3 runs have a "
                 "non-finite accuracy, NLL or ECE")
    elif absent:
        fixed = ("inconclusive", f"methods not run: {', '.join(absent)}")
    else:
        fixed = ("supported", f"all {len(runs)} E3 runs (5 methods × seeds) report finite "
                 "accuracy, NLL and ECE")
    ev = Evidence(5, None, [], [], "accuracy, NLL, ECE reported", fixed=fixed)
    ev.value = float(finite.mean()) if len(runs) else math.nan
    ev.n = int(runs.groupby("method")["seed"].nunique().min()) if len(runs) else None
    return ev


# --------------------------------------------------------------------------- verdicts

def claim_p(ev: Evidence) -> float:
    """The p-value entering Holm: NaN if the claim cannot be tested; else the smallest p
    of the intervals below 0 if any, otherwise the largest p of the deciding tests."""
    if ev.fixed or ev.problems or not ev.deciding or not all(s.usable for s in ev.deciding):
        return math.nan
    below = [s.p for s in ev.deciding + ev.contra if s.usable and s.high < 0]
    return min(below) if below else max(s.p for s in ev.deciding)


def decide(ev: Evidence, p_holm: float, cfg: CheckConfig) -> tuple[str, str]:
    """(verdict, reason), methods §6 rules in order: untestable, contradicted, supported,
    no effect, inconclusive."""
    if ev.fixed:
        return ev.fixed
    unusable = [describe(s) for s in ev.deciding if not s.usable]
    if ev.problems or unusable or not ev.deciding:
        return "inconclusive", "; ".join(ev.problems or unusable or ["nothing to test"])
    significant = p_holm < cfg.alpha
    below = [s.name for s in ev.deciding + ev.contra if s.usable and s.high < 0]
    p_text = f"Holm p = {p_holm:.2g}"
    m = cfg.margin_pp
    within = bool(ev.equivalent) and all(-m <= s.low and s.high <= m for s in ev.equivalent)
    if below and significant:
        return "contradicted", f"{' and '.join(below)} below 0 ({p_text})"
    if all(s.low > 0 for s in ev.deciding) and significant:
        small = f"; the gain is within ±{m:g} pp" if within else ""
        return "supported", f"every deciding interval above 0 ({p_text}){small}"
    if within:
        return "no effect", f"interval within ±{m:g} pp (equivalence at {cfg.confidence:g})"
    if below or all(s.low > 0 for s in ev.deciding):
        return "inconclusive", f"interval excludes 0 but {p_text} ≥ {cfg.alpha:.2g}"
    return "inconclusive", "an interval includes 0 and is not within the margin"


def _detail(reason: str, notes: Sequence[str]) -> str:
    """The verdict's reason first, then the notes it does not already contain."""
    return "; ".join([reason, *(n for n in notes if n not in reason)])


def _row(ev: Evidence, verdict: str, reason: str, p: float, p_holm: float) -> dict[str, Any]:
    s = ev.main
    value = s.value if s is not None else ev.value
    return {"claim": ev.claim, "verdict": verdict, "value": value,
            "low": s.low if s else math.nan, "high": s.high if s else math.nan,
            "n_seeds": s.n if s else ev.n, "detail": _detail(reason, ev.notes),
            "p_value": p, "p_holm": p_holm, "mde": s.mde if s else math.nan,
            "sign_count": s.positive if s else None, "unit": s.unit if s else "share of runs",
            "statistic": s.name if s else "E3 runs with finite accuracy, NLL and ECE",
            "summary": f"{ev.summary}, {verdict}", "claim_text": CLAIM_TEXT[ev.claim]}


def _pair_rows(m: pd.DataFrame, cfg: CheckConfig) -> list[dict[str, Any]]:
    test = m[m["split"] == "test"]
    evidence = [claim_1(test, cfg), claim_2(m, cfg), claim_3(m, cfg), claim_4(test, cfg),
                claim_5(test, cfg)]
    p = [claim_p(ev) for ev in evidence]
    adjusted = holm(p)
    return [_row(ev, *decide(ev, float(q), cfg), pi, float(q))
            for ev, pi, q in zip(evidence, p, adjusted, strict=True)]


def evaluate(metrics: pd.DataFrame, compare: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset × arch × methods §1 claim (methods §6), columns ``CLAIM_COLUMNS``.

    ``metrics`` has the ``results/metrics.csv`` columns (methods §7); ``compare`` is the
    config's ``compare`` block (comparison points and test settings, see the module doc).
    """
    cfg = CheckConfig.from_compare(compare)
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics: missing columns {missing}; pass results/metrics.csv "
                         "(methods §7 tidy table)")
    rows = []
    for dataset, arch in pairs(metrics):
        for row in _pair_rows(one_pair(metrics, dataset, arch), cfg):
            rows.append({"dataset": dataset, "arch": arch, **row})
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    return table.astype({"claim": int, "n_seeds": "Int64", "sign_count": "Int64"})


# --------------------------------------------------------------------------- rendering

MARGIN_REASON = ("smaller than the smallest published first-generation SD gain (+0.6 pp, "
                 "Born-Again Networks on CIFAR-100), so *no effect* rules out gains of the "
                 "size the literature reports")


def _num(v: Any, fmt: str) -> str:
    return "–" if v is None or v is pd.NA or not np.isfinite(v) else format(v, fmt)


def _value_cell(r: Any) -> str:
    if r.claim == 5:
        return "–" if not np.isfinite(r.value) else f"{100 * r.value:.0f} % of runs"
    return "–" if not np.isfinite(r.value) else f"{r.value:+.3f} {r.unit}"


def _interval_cell(r: Any) -> str:
    return "–" if not np.isfinite(r.low) else f"[{r.low:+.3f}, {r.high:+.3f}]"


def _summary_lines(table: pd.DataFrame) -> str:
    lines = []
    for (dataset, arch), rows in table.groupby(["dataset", "arch"], sort=True):
        lines.append(f"- **{dataset} / {arch}**: " + "; ".join(rows["summary"]) + ".")
    return "\n".join(lines)


def _mde_lines(table: pd.DataFrame, margin: float) -> str:
    lines = []
    for (dataset, arch), rows in table.groupby(["dataset", "arch"], sort=True):
        parts = [f"claim {r.claim} {r.mde:.3g} {r.unit} ({r.n_seeds} seeds"
                 + (", above the margin)" if r.unit == PP and r.mde > margin else ")")
                 for r in rows.itertuples() if np.isfinite(r.mde)]
        lines.append(f"- {dataset} / {arch}: " + ("; ".join(parts) or "no statistic to size"))
    return "\n".join(lines)


def _notes(cfg: CheckConfig, table: pd.DataFrame) -> str:
    c, m = f"{100 * cfg.confidence:g} %", cfg.margin_pp
    why = MARGIN_REASON if m < 0.6 else "NOT below the smallest published SD gain (+0.6 pp)"
    return f"""## How to read the verdicts (methods §6)

- **supported**: every deciding {c} interval lies above 0 and the claim's Holm-adjusted
  p < {cfg.alpha:.2g}. **contradicted**: an interval lies entirely below 0 (the data go the
  other way) with Holm p < {cfg.alpha:.2g}. **no effect** (claims 1, 3, 4, in pp): the whole
  {c} interval lies within ±{m:g} pp, an equivalence test. **inconclusive**: anything else,
  and always with fewer than {MIN_SEEDS} paired seeds or zero spread of a per-seed statistic.
- **Statistics**: per-seed paired differences of test accuracy (pp) and per-seed
  least-squares slopes over generations 0..G (generation 0 = CE), each with its mean, a
  Student-t interval with n − 1 df and the count of seeds with a positive value. Claim 1
  needs both gen G − CE and the accuracy slope above 0; SD generation {cfg.sd_gen} significantly
  below CE contradicts it. Claim 2 needs the test-entropy slope and the train-split diversity
  slope above 0. Claim 5 is a reporting check (no test).
- **Margin** ±{m:g} pp (`compare.margin_pp`): {why}.
- **Claim 3** compares SD generation {cfg.sd_gen} with the LS/ER settings closest in seed-mean
  *validation* entropy (test accuracy plays no part in the pick). It is inconclusive when
  the sweep does not bracket SD's validation entropy or the closest setting is more than
  {cfg.entropy_tolerance:g} nats away (`compare.entropy_tolerance`).
- **Multiplicity**: Holm's step-down adjustment over claims 1-4 of each dataset × arch;
  a claim decided by two tests enters with the larger p (with the smaller p of intervals
  below 0 when it is contradicted).
- **Minimal detectable effect** (MDE) at {100 * cfg.power:g} % power and {c} confidence,
  (t_(1−α/2, n−1) + t_(power, n−1)) · s / √n: the smallest true effect these seeds would
  find with that probability. An MDE above the margin means "no effect" could not be shown
  for an effect of the margin's size. This run could detect:

{_mde_lines(table, m)}
"""


def _markdown(table: pd.DataFrame, cfg: CheckConfig) -> str:
    rows = [[r.dataset, r.arch, f"{r.claim}. {r.claim_text}", f"**{r.verdict}**",
             _value_cell(r), _interval_cell(r), _num(r.p_holm, ".2g"),
             "–" if not np.isfinite(r.mde) else f"{r.mde:.3g} {r.unit}",
             _num(r.n_seeds, "d")] for r in table.itertuples()]
    details = "\n".join(f"- {r.dataset} / {r.arch}, claim {r.claim} ({r.verdict}): {r.detail}"
                        for r in table.itertuples())
    header = ["dataset", "arch", "claim", "verdict", "value", f"{100 * cfg.confidence:g} % interval",
              "Holm p", "MDE", "seeds"]
    return ("# Claims check (methods §6)\n\n" + _summary_lines(table) + "\n\n"
            + markdown_table(header, rows, 4) + "\n## Details\n\n" + details + "\n\n"
            + _notes(cfg, table))


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in table.to_dict(orient="records"):
        out.append({k: (None if v is pd.NA else v.item() if hasattr(v, "item") else v)
                    for k, v in r.items()})
    return out


def render_claims(metrics_path: str | Path, md_out: str | Path, csv_out: str | Path,
                  sidecar: str | Path, compare: Mapping[str, Any]) -> pd.DataFrame:
    """Write ``claims.csv``, ``claims.md`` and the sidecar from :func:`evaluate` (methods §6)."""
    started = time.perf_counter()
    table = evaluate(read_metrics(metrics_path), compare)
    write_csv(csv_out, _records(table), CLAIM_COLUMNS)
    write_text(md_out, _markdown(table, CheckConfig.from_compare(compare)))
    write_sidecar(sidecar, [metrics_path], {"compare": dict(compare)}, started,
                  [md_out, csv_out])
    log.info("claims: %s", table["verdict"].value_counts().to_dict())
    return table
