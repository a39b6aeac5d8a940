"""The claims check (methods §6): one statistic and verdict per paper claim (methods §1).

Claims have string ids: ``1a`` (SD generation 1 beats CE), ``1b`` (later generations add
to generation 1), ``2`` (the gain comes with growing entropy and teacher diversity),
``3`` (SD beats LS and ER at matched validation entropy), ``4`` (BS beats LS) and ``5``
(accuracy, NLL and ECE are reported).

The seed is the unit of replication. Every deciding statistic is a per-seed number:

- Paired difference (claims 1a, 1b, 3, 4): d_s = 100·(accuracy(A, seed s) − accuracy(B,
  seed s)) in percentage points (pp) over the seeds both settings have.
- Trend: each seed's least-squares slope of the quantity over generations (claim 1b:
  accuracy over 1..G; claim 2: test entropy over 0..G, train-split teacher diversity over
  the generations that teach, 0..G−1), per generation.
- Association (claim 2): each seed's least-squares slope of the student's test accuracy
  (generation g + 1, pp) on its teacher's train-split diversity (generation g, nats),
  g = 0..G−1, in pp per nat. A slope, not a correlation: a per-seed ρ or r saturates at ±1
  with a handful of generations, so the strongest evidence would have zero spread.

Over seeds (``scipy.stats``): the mean, the Student-t interval with n − 1 df at
``compare.confidence``, the two-sided one-sample t-test p against 0, the sign count, the
two one-sided t tests (TOST) of |mean| < ``compare.margin_pp`` at α = 1 − confidence
(equivalently, the 1 − 2α interval within ±margin), and the minimal detectable effect:
the true mean that a two-sided t test at level α/m (m: the claims that enter Holm for
this dataset × arch, Holm's strictest step) finds in its direction with probability
``compare.power``, solved exactly with the noncentral t (:func:`mde`).

Verdicts (exactly one, tried in this order):

- *inconclusive* when the claim cannot be tested (fewer than 3 seeds, zero spread of a
  deciding per-seed statistic, a method not run, claim 3 without an LS/ER run at SD's
  validation entropy); for claim 2 also whenever neither 1a nor 1b is *supported*
  ("no gain to explain": the growth is still reported);
- *contradicted*: a candidate test lies below 0 and its p, Bonferroni-corrected for the
  claim's k candidate tests (k·p, Holm's first step), is below α after Holm over claims;
- *supported*: every deciding interval lies above 0 and the claim's Holm p < α, the claim's
  p being the largest of its deciding tests (an intersection-union test: all must hold);
- *no effect* (claims 1a, 1b, 3, 4, in pp): every equivalence statistic passes TOST at α
  (its 1 − 2α interval within ±margin), the largest TOST p below α; not Holm-adjusted;
- *inconclusive* otherwise.

Claim 5 is a reporting check (see :func:`claim_5`). Comparison points are pre-specified by
``compare`` (no best-generation selection).

Literature claims (the config's ``claims`` list, :func:`parse_literature`): each entry
compares a setting ``a`` with a setting ``b`` by the paired per-seed difference of test
accuracy a − b (pp, as claims 1a and 4). The entries of one dataset × arch form their OWN
Holm family, separate from claims 1a-4, so adding an entry never changes a paper verdict.
``kind: beats`` is decided by the rules above, exactly as claims 1a and 4 (k = 1);
``kind: equivalent`` by the TOST p alone: it enters Holm, *supported* when its Holm-adjusted
value is below α, *contradicted* when the t interval lies entirely outside ±margin (not
Holm-adjusted, like *no effect*), *inconclusive* otherwise (:func:`literature_rows`). The
MDE is taken at α/m of the literature family: for ``beats`` as above, for ``equivalent``
the largest true difference that TOST at α/m still declares equivalent with probability
``compare.power`` (:func:`equivalence_mde`).
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
from scipy import integrate, optimize, stats

from .io import write_csv, write_text
from .methods import METHODS
from .tables import (
    MATCHED_KEYS,
    best_vs_last,
    markdown_table,
    one_pair,
    pairs,
    param_is,
    read_matched,
    read_metrics,
    sd_chain,
    write_sidecar,
)

__all__ = ["CLAIMS", "CLAIM_COLUMNS", "CLAIM_TEXT", "HOLM_CLAIMS", "LITERATURE_KINDS",
           "VERDICTS", "CheckConfig", "Evidence", "LiteratureClaim", "Setting", "Stat",
           "claim_1a", "claim_1b", "claim_2", "claim_3", "claim_4", "claim_5",
           "equivalence_mde", "evaluate", "holm", "literature_evidence", "literature_rows",
           "mde", "parse_literature", "render_claims", "seed_stat", "slopes",
           "teacher_association", "tost_p", "tost_power"]

log = logging.getLogger(__name__)

VERDICTS = ("supported", "contradicted", "no effect", "inconclusive")
CLAIMS = ("1a", "1b", "2", "3", "4", "5")
HOLM_CLAIMS = ("1a", "1b", "2", "3", "4")  # claim 5 has no test
CLAIM_COLUMNS = ["dataset", "arch", "claim", "verdict", "value", "low", "high", "n_seeds",
                 "detail", "p_value", "p_holm", "mde", "sign_count", "unit", "statistic",
                 "summary", "claim_text", "p_tost", "mde_alpha", "mde_power", "verdict_last",
                 "value_last"]
CLAIM_TEXT = {
    "1a": "SD generation 1 beats CE",
    "1b": "Later SD generations add to generation 1",
    "2": "The gain comes with growing uncertainty (entropy) and teacher diversity",
    "3": "SD beats LS and ER at matched average entropy",
    "4": "Beta smoothing beats label smoothing",
    "5": "Accuracy, NLL and ECE are reported",
}
LITERATURE_KINDS = ("beats", "equivalent")
METRIC_COLUMNS = ["dataset", "arch", "method", "param", "seed", "gen", "split", "accuracy",
                  "nll", "ece", "entropy", "cd_entropy_max"]
MIN_SEEDS = 3
PP = "pp"
NO_GAIN = "no gain to explain"


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


def mde(sd: float, n: int, alpha: float, power: float) -> float:
    """Minimal detectable effect (methods §6): the true mean δ > 0 at which the two-sided
    one-sample t test at level ``alpha`` rejects in δ's direction with probability
    ``power``: P(T > t_{1−α/2, n−1}) = power for T ~ noncentral t(n − 1, δ√n/σ), solved
    for δ/σ and scaled by the sample sd. NaN under 2 seeds or without spread."""
    if n < 2 or not (np.isfinite(sd) and sd > 0):
        return math.nan
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def shortfall(ncp: float) -> float:
        return float(stats.nct.sf(crit, df, ncp)) - power

    if shortfall(0.0) >= 0:
        return 0.0
    hi = crit + 4.0
    while shortfall(hi) < 0:
        hi *= 2
    ncp = optimize.brentq(shortfall, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return float(ncp * sd / math.sqrt(n))


def tost_p(s: Stat, margin: float) -> float:
    """Two one-sided t tests of −margin < mean < +margin (scipy's one-sided one-sample t
    tests): the larger of the two p-values; NaN when the statistic is unusable."""
    if not s.usable:
        return math.nan
    above = stats.ttest_1samp(s.values, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(s.values, margin, alternative="less").pvalue
    return float(max(above, below))


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
    """Mean over seeds, Student-t interval (n − 1 df), two-sided t-test p (methods §6)."""
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
    if problem.startswith("zero spread"):
        sd = 0.0
    return Stat(name, unit, d, value, low, high, p, sd, problem)


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


def teacher_association(test: pd.DataFrame, train: pd.DataFrame) -> tuple[pd.Series,
                                                                           pd.Series]:
    """Per seed, over the teacher → student steps g → g + 1 (g = 0..G−1) of the SD chains
    ``test`` and ``train`` (:func:`sd_chain` of each split): the least-squares slope of the
    student's test accuracy (pp) on the teacher's train-split ``cd_entropy_max`` (nats),
    and the Pearson r of the same points (descriptive). Seeds with fewer than two steps or
    a constant teacher diversity get NaN."""
    acc, div = 100.0 * _wide(test, "accuracy"), _wide(train, "cd_entropy_max")
    gens = sorted(set(acc.columns) & set(div.columns))
    seeds = acc.index.intersection(div.index)
    teach = [g for g in gens if g + 1 in gens]
    if len(teach) < 2 or not len(seeds):
        return pd.Series(dtype=float), pd.Series(dtype=float)
    x = div.loc[seeds, teach].to_numpy(float)
    y = acc.loc[seeds, [g + 1 for g in teach]].to_numpy(float)
    xc, yc = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    sxx, syy, sxy = (xc * xc).sum(axis=1), (yc * yc).sum(axis=1), (xc * yc).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 0, sxy / sxx, np.nan)
        r = np.where((sxx > 0) & (syy > 0), sxy / np.sqrt(sxx * syy), np.nan)
    return pd.Series(slope, index=seeds), pd.Series(r, index=seeds)


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
            f"{s.positive}/{s.n} seeds positive, p = {s.p:.2g}")


# --------------------------------------------------------------------------- claims

@dataclass
class Evidence:
    """What decides one claim: ``deciding`` must all lie above 0; any of ``deciding`` or
    ``contra`` (the k candidate tests) below 0 with k·p small contradicts; all of
    ``equivalent`` passing TOST is "no effect"; ``problems`` make it inconclusive;
    ``fixed`` is a verdict that needs no test (claim 5); ``gate`` (claim 2) keeps it
    inconclusive with that reason whatever the test says."""

    claim: str
    main: Stat | None
    deciding: list[Stat]
    notes: list[str]
    summary: str
    contra: list[Stat] = field(default_factory=list)
    equivalent: list[Stat] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixed: tuple[str, str] | None = None
    gate: str = ""
    value: float = math.nan
    n: int | None = None

    @property
    def candidates(self) -> list[Stat]:
        """The tests any one of which could contradict the claim."""
        return self.deciding + [s for s in self.contra if s not in self.deciding]


def _by_seed(runs: pd.DataFrame, column: str = "accuracy") -> pd.Series:
    return runs.groupby("seed")[column].mean()


def _binding(ev_stats: Sequence[Stat]) -> Stat:
    """The component whose p is the claim's p (weakest support or strongest contradiction)."""
    below = [s for s in ev_stats if s.usable and s.high < 0]
    if below:
        return min(below, key=lambda s: s.p)
    unusable = [s for s in ev_stats if not s.usable]
    return unusable[0] if unusable else max(ev_stats, key=lambda s: s.p)


def _chain_accuracy(test: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, pd.Series]]:
    chain = sd_chain(test)
    acc = {int(g): _by_seed(chain[chain["gen"] == g]) for g in sorted(set(chain["gen"]))}
    return chain, acc


def claim_1a(test: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 1a, "SD generation 1 beats CE" (Born-Again Networks' one-generation gain):
    accuracy(SD generation 1) − accuracy(CE), paired (pp); deciding, contradicting and
    equivalence statistic at once."""
    _, acc = _chain_accuracy(test)
    if 0 not in acc or 1 not in acc:
        return Evidence("1a", None, [], [], "SD gen 1 vs CE",
                        problems=["no SD generation 1 or no CE runs"])
    d = paired("SD gen 1 − CE", acc[1], acc[0], cfg)
    summary = f"SD gen 1 − CE {d.value:+.2f} pp ({d.positive}/{d.n} seeds)"
    return Evidence("1a", d, [d], [describe(d)], summary, equivalent=[d])


def claim_1b(test: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 1b, "later generations add to generation 1" (the multi-generational gain):
    deciding accuracy(SD gen G) − accuracy(SD gen 1), paired (pp), and, with G ≥ 3, the
    per-seed accuracy slope over generations 1..G (pp/generation); "no effect" on the
    G − 1 difference. The old G − CE difference and slope over 0..G are descriptive."""
    chain, acc = _chain_accuracy(test)
    last = max(acc) if acc else 0
    if 1 not in acc or last < 2:
        return Evidence("1b", None, [], [], "later SD generations vs generation 1",
                        problems=[f"needs SD generations 1 and G ≥ 2 (have up to {last})"])
    diff = paired(f"SD gen {last} − SD gen 1", acc[last], acc[1], cfg)
    deciding = [diff]
    if last >= 3:
        deciding.append(seed_stat(f"slope of accuracy over generations 1..{last}",
                                  "pp/generation", slopes(chain[chain["gen"] >= 1],
                                                          "accuracy", 100.0), cfg))
    notes = [describe(s) for s in deciding]
    if 0 in acc:
        notes.append("descriptive, not in the verdict: "
                     + describe(paired(f"SD gen {last} − CE", acc[last], acc[0], cfg)))
    notes += _spearman_note(chain[chain["gen"] >= 1], "accuracy", "accuracy")
    summary = (f"SD gen {last} − gen 1 {diff.value:+.2f} pp ({diff.positive}/{diff.n} "
               "seeds)")
    return Evidence("1b", _binding(deciding), deciding, notes, summary, equivalent=[diff])


def claim_2(metrics: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 2: per-seed slopes of test entropy over generations 0..G and of the train-split
    teacher diversity (cd_entropy_max, what the next student is taught with, methods §4)
    over the generations that teach, 0..G−1, and the per-seed slope of student accuracy
    on teacher diversity (:func:`teacher_association`); all three > 0 to support. The
    gate "no gain to explain" is set by :func:`evaluate` from claims 1a and 1b."""
    test = sd_chain(metrics[metrics["split"] == "test"])
    train = sd_chain(metrics[metrics["split"] == "train"])
    last = int(test["gen"].max()) if len(test) else 0
    if last < 2 or not (train["gen"] >= 1).any():
        return Evidence("2", None, [], [], "entropy and diversity",
                        problems=[f"needs CE and SD generations 1..G with G ≥ 2 (have up "
                                  f"to {last}): the teaching generations 0..G−1 need two "
                                  "points for a slope"])
    teaching = train[train["gen"] <= last - 1]
    ent = seed_stat(f"slope of test entropy over generations 0..{last}", "nats/generation",
                    slopes(test, "entropy"), cfg)
    div = seed_stat(f"slope of train-split teacher diversity (cd_entropy_max) over "
                    f"generations 0..{last - 1}", "nats/generation",
                    slopes(teaching, "cd_entropy_max"), cfg)
    slope, r = teacher_association(test, train)
    assoc = seed_stat("slope of student accuracy (gen g+1) on teacher diversity (gen g)",
                      "pp/nat", slope, cfg)
    div_test = seed_stat("slope of test diversity", "nats/generation",
                         slopes(test, "cd_entropy_max"), cfg)
    r = r.dropna()
    notes = [describe(ent), describe(div), describe(assoc),
             *_spearman_note(test, "entropy", "test entropy"),
             "descriptive, not in the verdict: " + describe(div_test)]
    if len(r):
        notes.append(f"descriptive: mean per-seed Pearson r(student accuracy, teacher "
                     f"diversity) {r.mean():+.2f} ({int((r > 0).sum())}/{len(r)} seeds > 0)")
    summary = (f"entropy {ent.value:+.3f} and teacher diversity {div.value:+.3f} nats per "
               f"generation, accuracy {assoc.value:+.2f} pp per nat of teacher diversity "
               f"({ent.positive}/{ent.n}, {div.positive}/{div.n}, {assoc.positive}/{assoc.n} "
               "seeds up)")
    deciding = [ent, div, assoc]
    return Evidence("2", _binding(deciding), deciding, notes, summary)


def _nearest(val: pd.DataFrame, method: str, target: float,
             cfg: CheckConfig) -> tuple[str | None, str, str]:
    """methods §6 claim 3 without matched runs: the ``method`` sweep setting closest to
    SD's seed-mean VALIDATION entropy ``target``. Returns (param or None, note, short
    reason); None when the sweep does not bracket the target or the closest setting is
    more than ``compare.entropy_tolerance`` away."""
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


def _matched(val: pd.DataFrame, method: str, row: Mapping[str, Any], target: float,
             cfg: CheckConfig) -> tuple[str | None, str, str]:
    """methods §6 claim 3 with a matched run (results/matched/matched.csv row ``row``):
    that strength, its gap recomputed from the val rows of ``val`` (seed-mean entropy −
    ``target``). None when there is no strength, it has no runs yet, or it misses the
    tolerance; the note says which."""
    name, param = method.upper(), str(row.get("param", "") or "").strip()
    status = str(row.get("status", "") or "")
    if param in ("", "nan", "none"):
        why = f" ({status})" if status else ""
        return None, (f"no matched {name} strength{why}: the {name} points do not bracket "
                      f"SD's val entropy {target:.3f} nats; widen the sweep"), \
            f"no matched {name} strength"
    runs = val[(val["method"] == method) & param_is(val["param"], float(param))]
    if runs.empty:
        return None, (f"matched {name}({param}) has no runs on the val split yet: train it "
                      "(results/matched/)"), f"matched {name}({param}) not trained"
    g = float(_by_seed(runs, "entropy").mean()) - target
    if abs(g) > cfg.entropy_tolerance:
        return None, (f"matched {name}({param}) still misses the {cfg.entropy_tolerance:g}-nat "
                      f"tolerance: val entropy gap {g:+.3f} nats"), \
            f"matched {name} gap {g:+.2f} nats"
    return param, f"{name}({param}) matched run, val entropy gap {g:+.3f} nats", ""


def claim_3(metrics: pd.DataFrame, cfg: CheckConfig,
            matched: pd.DataFrame | None = None) -> Evidence:
    """Claim 3: SD gen ``sd_gen`` vs LS and vs ER at SD's seed-mean VALIDATION entropy
    (test accuracy never enters the pick); paired test-accuracy differences SD − LS and
    SD − ER (pp), both > 0 to support, either below 0 (k = 2 candidates) contradicts,
    both passing TOST is "no effect". A method with a row in ``matched`` (this dataset ×
    arch's rows of results/matched/matched.csv) uses that matched strength
    (:func:`_matched`); otherwise the nearest sweep point (:func:`_nearest`)."""
    val, test = (metrics[metrics["split"] == s] for s in ("val", "test"))
    k = cfg.sd_gen
    sd_val = val[(val["method"] == "sd") & (val["gen"] == k)]
    if sd_val.empty:
        return Evidence("3", None, [], [], "SD vs LS/ER at matched entropy",
                        problems=[f"no SD gen {k} runs on the val split"])
    target = float(_by_seed(sd_val, "entropy").mean())
    sd = _by_seed(test[(test["method"] == "sd") & (test["gen"] == k)])
    rows = {} if matched is None else {str(r["method"]): r
                                       for r in matched.to_dict(orient="records")}
    tests, notes, problems, short = [], [], [], []
    for m in ("ls", "er"):
        param, note, brief = (_matched(val, m, rows[m], target, cfg) if m in rows
                              else _nearest(val, m, target, cfg))
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
    return Evidence("3", main, tests, notes, summary, equivalent=tests, problems=problems)


def claim_4(test: pd.DataFrame, cfg: CheckConfig) -> Evidence:
    """Claim 4: accuracy(BS, a = bs_a) − accuracy(LS, ε = ls_eps), paired (pp). BS − SD
    (gen ``sd_gen``) is reported (reviewers' note) but is not part of the verdict."""
    m = test["method"]
    bs = test[(m == "bs") & param_is(test["param"], cfg.bs_a)]
    ls = test[(m == "ls") & param_is(test["param"], cfg.ls_eps)]
    sd = test[(m == "sd") & (test["gen"] == cfg.sd_gen)]
    missing = [n for n, r in (("BS", bs), ("LS", ls)) if r.empty]
    if missing:
        return Evidence("4", None, [], [], "BS vs LS",
                        problems=[f"no {' or '.join(missing)} runs at the compare point"])
    main = paired(f"BS(a={cfg.bs_a:g}) − LS(ε={cfg.ls_eps:g})", _by_seed(bs), _by_seed(ls), cfg)
    vs_sd = paired(f"BS − SD(gen {cfg.sd_gen})", _by_seed(bs), _by_seed(sd), cfg)
    notes = [describe(main), f"descriptive, not in the verdict: {describe(vs_sd)}"]
    summary = f"BS − LS {main.value:+.2f} pp ({main.positive}/{main.n} seeds)"
    return Evidence("4", main, [main], notes, summary, equivalent=[main])


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
    ev = Evidence("5", None, [], [], "accuracy, NLL, ECE reported", fixed=fixed)
    ev.value = float(finite.mean()) if len(runs) else math.nan
    ev.n = int(runs.groupby("method")["seed"].nunique().min()) if len(runs) else None
    return ev


# --------------------------------------------------------------------------- verdicts

def _testable(ev: Evidence) -> bool:
    return not (ev.fixed or ev.problems or not ev.deciding
                or not all(s.usable for s in ev.deciding))


def _below(ev: Evidence) -> list[Stat]:
    return [s for s in ev.candidates if s.usable and s.high < 0]


def claim_p(ev: Evidence) -> float:
    """The p-value entering Holm: NaN if the claim cannot be tested; with a candidate
    interval below 0, k·(smallest p among those), capped at 1 (Bonferroni over the k
    candidate tests, Holm's first step); otherwise the largest p of the deciding tests."""
    if not _testable(ev):
        return math.nan
    below = _below(ev)
    if below:
        return min(1.0, len(ev.candidates) * min(s.p for s in below))
    return max(s.p for s in ev.deciding)


def equivalence_p(ev: Evidence, cfg: CheckConfig) -> float:
    """The claim's TOST p: the largest over its equivalence statistics (all must pass)."""
    if not _testable(ev) or not ev.equivalent:
        return math.nan
    return max(tost_p(s, cfg.margin_pp) for s in ev.equivalent)


def _rule(ev: Evidence, p_holm: float, p_tost: float, cfg: CheckConfig) -> tuple[str, str]:
    unusable = [describe(s) for s in ev.deciding if not s.usable]
    if ev.problems or unusable or not ev.deciding:
        return "inconclusive", "; ".join(ev.problems or unusable or ["nothing to test"])
    significant = p_holm < cfg.alpha
    below = [s.name for s in _below(ev)]
    k = len(ev.candidates)
    p_text = f"Holm p = {p_holm:.2g}"
    m, level = cfg.margin_pp, 100 * (1 - 2 * cfg.alpha)
    within = np.isfinite(p_tost) and p_tost < cfg.alpha
    if below and significant:
        corrected = f"{k} candidate tests, p × {k}, " if k > 1 else ""
        return "contradicted", f"{' and '.join(below)} below 0 ({corrected}{p_text})"
    if all(s.low > 0 for s in ev.deciding) and significant:
        small = f"; the gain is within ±{m:g} pp (TOST p = {p_tost:.2g})" if within else ""
        return "supported", f"every deciding interval above 0 ({p_text}){small}"
    if within:
        return "no effect", (f"TOST p = {p_tost:.2g} < {cfg.alpha:.2g}: the {level:g} % "
                             f"interval lies within ±{m:g} pp")
    if below or all(s.low > 0 for s in ev.deciding):
        return "inconclusive", f"interval excludes 0 but {p_text} ≥ {cfg.alpha:.2g}"
    return "inconclusive", "an interval includes 0 and is not within the margin"


def decide(ev: Evidence, p_holm: float, cfg: CheckConfig,
           p_tost: float = math.nan) -> tuple[str, str]:
    """(verdict, reason), methods §6 rules in order: fixed, untestable, contradicted,
    supported, no effect, inconclusive; a gate (claim 2 without a gain) overrides the
    verdict with ``inconclusive`` and keeps what the rule found in the reason."""
    if ev.fixed:
        return ev.fixed
    verdict, reason = _rule(ev, p_holm, p_tost, cfg)
    if ev.gate:
        return "inconclusive", f"{ev.gate} (the growth test alone: {verdict}, {reason})"
    return verdict, reason


# --------------------------------------------------------------------------- literature claims

_ENTRY_KEYS = ("id", "text", "source", "kind", "a", "b")
_SETTING_KEYS = ("method", "param", "gen")


@dataclass(frozen=True)
class Setting:
    """One arm of a literature claim (config ``claims[i].a`` / ``.b``): a method of
    ``METHODS``, its swept strength ``param`` (LS ε, ER β, BS a; None for an unswept
    method) and its generation ``gen`` (SD: 1..G, ``compare.sd_gen`` when not given;
    every other method: 0)."""

    method: str
    param: float | None
    gen: int

    @property
    def label(self) -> str:
        """Display form: ``Tf-KD(reg)``, ``LS(ε=0.1)``, ``SD gen 1``."""
        m = METHODS[self.method]
        text = m.label + ("" if self.param is None else f"({m.symbol}={self.param:g})")
        return text + (f" gen {self.gen}" if self.method == "sd" else "")

    @property
    def spelled(self) -> str:
        """Config form for messages: ``tfkd_reg``, ``ls (param 0.1)``, ``sd (gen 2)``."""
        extra = ([] if self.param is None else [f"param {self.param:g}"]) + (
            [f"gen {self.gen}"] if self.method == "sd" else [])
        return self.method + (f" ({', '.join(extra)})" if extra else "")

    def runs(self, test: pd.DataFrame) -> pd.DataFrame:
        """This setting's rows of a (test-split) metrics table."""
        keep = (test["method"] == self.method) & (test["gen"] == self.gen)
        if self.param is not None:
            keep &= param_is(test["param"], self.param)
        return test[keep]


@dataclass(frozen=True)
class LiteratureClaim:
    """One validated entry of the config's ``claims`` list (methods §6)."""

    id: str
    text: str
    source: str
    kind: str  # one of LITERATURE_KINDS
    a: Setting
    b: Setting

    @property
    def statistic(self) -> str:
        return f"{self.a.label} − {self.b.label}"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def _setting(raw: Any, where: str, sd_gen: int) -> Setting:
    """Validate one arm; errors name the key (``claims[0].a.param``) and the fix."""
    if not isinstance(raw, Mapping) or "method" not in raw:
        raise ValueError(f"{where}: a setting is a mapping with a method, e.g. "
                         "{method: ce} or {method: ls, param: 0.1}")
    unknown = sorted(set(raw) - set(_SETTING_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; a setting has "
                         f"{list(_SETTING_KEYS)}")
    name = raw["method"]
    if name not in METHODS:
        raise ValueError(f"{where}.method: unknown method {name!r}; known methods: "
                         f"{', '.join(METHODS)}")
    m, param, gen = METHODS[name], raw.get("param"), raw.get("gen")
    if m.swept is None and param is not None:
        raise ValueError(f"{where}.param: {name} has no swept strength (methods "
                         f"§{m.section}); remove param")
    if m.swept is not None:
        if param is None:
            raise ValueError(f"{where}.param: {name} is swept over {m.swept} ({m.symbol}, "
                             f"methods §{m.section}); give the strength, e.g. the "
                             f"compare.{m.sweep_key} value")
        allowed = m.ranges.get(m.swept)
        if not _is_number(param) or (allowed is not None and float(param) not in allowed):
            raise ValueError(f"{where}.param: {param!r} is not a valid {m.swept} "
                             f"({allowed or 'a number'})")
    if name == "sd":
        gen = sd_gen if gen is None else gen
        if not _is_int(gen) or gen < 1:
            raise ValueError(f"{where}.gen: SD generations are 1, 2, ... (got {gen!r}); "
                             "generation 0 is method ce")
    elif gen is not None and not (_is_int(gen) and gen == 0):
        raise ValueError(f"{where}.gen: only sd has generations; {name} runs are "
                         f"generation 0 (got {gen!r}); remove gen")
    return Setting(str(name), None if param is None else float(param), int(gen or 0))


def _entry(raw: Any, i: int, sd_gen: int) -> LiteratureClaim:
    where = f"claims[{i}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: an entry is a mapping with keys {list(_ENTRY_KEYS)}")
    missing = [k for k in _ENTRY_KEYS if k not in raw]
    unknown = sorted(set(raw) - set(_ENTRY_KEYS))
    if missing or unknown:
        raise ValueError(f"{where}: missing key(s) {missing}, unknown key(s) {unknown}; an "
                         f"entry has exactly {list(_ENTRY_KEYS)}")
    for key in ("id", "text", "source"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ValueError(f"{where}.{key}: must be a non-empty string")
    if raw["id"] in CLAIMS:
        raise ValueError(f"{where}.id: {raw['id']!r} is a paper claim id ({', '.join(CLAIMS)}); "
                         "choose another")
    if raw["kind"] not in LITERATURE_KINDS:
        raise ValueError(f"{where}.kind: {raw['kind']!r} is not one of "
                         f"{', '.join(LITERATURE_KINDS)}")
    a, b = (_setting(raw[k], f"{where}.{k}", sd_gen) for k in ("a", "b"))
    if a == b:
        raise ValueError(f"{where}: a and b are the same setting ({a.spelled})")
    return LiteratureClaim(raw["id"], raw["text"], raw["source"], raw["kind"], a, b)


def parse_literature(entries: Sequence[Mapping[str, Any]] | None,
                     cfg: CheckConfig) -> list[LiteratureClaim]:
    """The config's ``claims`` list, validated up front (methods §6); None or [] gives [].

    ValueError, naming the key, for: an unknown method (``claims[i].a.method``, with the
    known names), ``param`` given for an unswept method or missing for a swept one
    (``claims[i].b.param``), ``gen`` other than 0 for a method that is not SD, an unknown
    ``kind``, a or b the same setting, an id that repeats or is a paper claim id."""
    out: list[LiteratureClaim] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(entries or []):
        claim = _entry(raw, i, cfg.sd_gen)
        if claim.id in seen:
            raise ValueError(f"claims[{i}].id: duplicate id {claim.id!r} (also "
                             f"claims[{seen[claim.id]}]); ids must be unique")
        seen[claim.id] = i
        out.append(claim)
    return out


def tost_power(delta: float, sd: float, n: int, margin: float, alpha: float) -> float:
    """P(TOST at level ``alpha`` declares |mean| < ``margin``) for n per-seed values drawn
    from N(``delta``, ``sd``²), exact: with S the sample sd, the mean is N(δ, σ²/n)
    independent of U = √(n − 1)·S/σ ~ χ(n − 1), and TOST rejects iff
    |mean| < margin − t_{1−α, n−1}·S/√n; the probability over the mean is integrated
    against the χ density of U (``scipy.integrate.quad``)."""
    df, se = n - 1, sd / math.sqrt(n)
    crit = float(stats.t.ppf(1 - alpha, df))
    u_max = math.sqrt(df) * margin / (crit * se)  # beyond it the TOST region is empty

    def inner(u: float) -> float:
        half = margin - crit * se * u / math.sqrt(df)
        inside = stats.norm.cdf((half - delta) / se) - stats.norm.cdf((-half - delta) / se)
        return float(inside * stats.chi.pdf(u, df))

    return float(integrate.quad(inner, 0.0, u_max, epsabs=1e-13, epsrel=1e-11,
                                limit=200)[0])


def equivalence_mde(sd: float, n: int, margin: float, alpha: float, power: float) -> float:
    """The equivalence analogue of :func:`mde` (methods §6, literature ``equivalent``):
    the largest true |mean| δ < ``margin`` that TOST at level ``alpha`` (each one-sided
    test) still declares equivalent with probability ``power`` (:func:`tost_power`, σ the
    sample sd). NaN under 2 seeds, without spread, or when even δ = 0 falls short of
    ``power`` (too few seeds or too much noise to show equivalence at this margin)."""
    if n < 2 or not (np.isfinite(sd) and sd > 0) or margin <= 0:
        return math.nan

    def excess(delta: float) -> float:
        return tost_power(delta, sd, n, margin, alpha) - power

    if excess(0.0) < 0:
        return math.nan
    if excess(margin) >= 0:
        return float(margin)
    return float(optimize.brentq(excess, 0.0, margin, xtol=1e-12, rtol=1e-12))


def literature_evidence(test: pd.DataFrame, claim: LiteratureClaim,
                        cfg: CheckConfig) -> Evidence:
    """The paired per-seed difference of test accuracy a − b (pp) on the seeds both
    settings have (:func:`paired`, as claims 1a and 4); deciding, contradicting and
    equivalence statistic at once. A setting without runs makes it untestable with the
    problem "not run: <setting>"."""
    runs = {"a": claim.a.runs(test), "b": claim.b.runs(test)}
    d = paired(claim.statistic, _by_seed(runs["a"]), _by_seed(runs["b"]), cfg)
    absent = [s.spelled for s, k in ((claim.a, "a"), (claim.b, "b")) if runs[k].empty]
    if absent:
        return Evidence(claim.id, d, [d], [], f"{claim.id}: {claim.statistic} not run",
                        equivalent=[d], problems=[f"not run: {', '.join(absent)}"])
    summary = f"{claim.id}: {claim.statistic} {d.value:+.2f} pp ({d.positive}/{d.n} seeds)"
    return Evidence(claim.id, d, [d], [describe(d)], summary, equivalent=[d])


def _equivalent_rule(ev: Evidence, p_holm: float, p_tost: float,
                     cfg: CheckConfig) -> tuple[str, str]:
    """``kind: equivalent``: supported when the Holm-adjusted TOST p < α; contradicted
    when the t interval lies entirely outside ±margin (low > margin or high < −margin);
    inconclusive otherwise, and whenever the difference cannot be tested."""
    s, m, c = ev.main, cfg.margin_pp, f"{100 * cfg.confidence:g} %"
    if s is None:
        return "inconclusive", "nothing to test"
    if ev.problems or not s.usable:
        return "inconclusive", "; ".join(ev.problems) or describe(s)
    if p_holm < cfg.alpha:
        return "supported", (f"Holm-adjusted TOST p = {p_holm:.2g} < {cfg.alpha:.2g}: "
                             f"within ±{m:g} pp (TOST p = {p_tost:.2g})")
    if s.low > m or s.high < -m:
        return "contradicted", (f"the {c} interval [{s.low:+.3f}, {s.high:+.3f}] lies "
                                f"outside ±{m:g} pp")
    return "inconclusive", (f"Holm-adjusted TOST p = {p_holm:.2g} ≥ {cfg.alpha:.2g} and the "
                            f"{c} interval overlaps ±{m:g} pp")


def _equivalence_note(s: Stat, size_alpha: float, size: float, cfg: CheckConfig) -> str:
    power = f"{100 * cfg.power:g} %"
    if np.isfinite(size):
        return (f"TOST at α = {size_alpha:.2g} declares equivalence with {power} power for "
                f"true differences up to ±{size:.3g} pp")
    return (f"TOST at α = {size_alpha:.2g} cannot reach {power} power at ±{cfg.margin_pp:g} "
            f"pp with these {s.n} seeds and this spread, even at a true difference of 0")


def literature_rows(metrics: pd.DataFrame, literature: Sequence[LiteratureClaim],
                    cfg: CheckConfig) -> list[dict[str, Any]]:
    """Rows of the literature claims of one dataset × arch (methods §6), in entry order.

    Their p-values form their own Holm family, separate from claims 1a-4. The p entering
    Holm (``p_value``): for ``beats`` the claim's p as for claims 1a/4 (:func:`claim_p`),
    for ``equivalent`` the TOST p; NaN for an untestable entry. ``beats`` is decided by
    :func:`decide` (supported / contradicted / no effect / inconclusive, as claims 1a and
    4), ``equivalent`` by :func:`_equivalent_rule`. ``mde`` at Holm's strictest level
    α/m (m: the testable entries here, plus the row's own when untestable): for ``beats``
    :func:`mde`, for ``equivalent`` :func:`equivalence_mde` (the largest true difference
    still declared equivalent with probability ``compare.power``)."""
    test = metrics[metrics["split"] == "test"]
    evidence = [literature_evidence(test, c, cfg) for c in literature]
    tost = [equivalence_p(ev, cfg) for ev in evidence]
    p = [t if c.kind == "equivalent" else claim_p(ev)
         for c, ev, t in zip(literature, evidence, tost, strict=True)]
    adjusted = holm(p)
    tested = int(np.isfinite(p).sum())
    rows = []
    for c, ev, pi, q, t in zip(literature, evidence, p, adjusted, tost, strict=True):
        size_alpha = cfg.alpha / (tested + (0 if np.isfinite(pi) else 1))
        if c.kind == "beats":
            verdict, reason = decide(ev, float(q), cfg, t)
            rows.append(_row(ev, verdict, reason, pi, float(q), t, size_alpha, cfg, c.text))
            continue
        s = ev.main
        size = (equivalence_mde(s.sd, s.n, cfg.margin_pp, size_alpha, cfg.power)
                if s is not None and s.usable else math.nan)
        if s is not None and s.usable:
            ev.notes.append(_equivalence_note(s, size_alpha, size, cfg))
        verdict, reason = _equivalent_rule(ev, float(q), t, cfg)
        rows.append({**_row(ev, verdict, reason, pi, float(q), t, size_alpha, cfg, c.text),
                     "mde": size})
    return rows


def _detail(reason: str, notes: Sequence[str]) -> str:
    """The verdict's reason first, then the notes it does not already contain."""
    return "; ".join([reason, *(n for n in notes if n not in reason)])


def _row(ev: Evidence, verdict: str, reason: str, p: float, p_holm: float, p_tost: float,
         size_alpha: float, cfg: CheckConfig, text: str = "") -> dict[str, Any]:
    s = ev.main
    value = s.value if s is not None else ev.value
    size = mde(s.sd, s.n, size_alpha, cfg.power) if s is not None else math.nan
    return {"claim": ev.claim, "verdict": verdict, "value": value,
            "low": s.low if s else math.nan, "high": s.high if s else math.nan,
            "n_seeds": s.n if s else ev.n, "detail": _detail(reason, ev.notes),
            "p_value": p, "p_holm": p_holm, "mde": size,
            "sign_count": s.positive if s else None, "unit": s.unit if s else "share of runs",
            "statistic": s.name if s else "E3 runs with finite accuracy, NLL and ECE",
            "summary": f"{ev.summary}, {verdict}",
            "claim_text": text or CLAIM_TEXT[ev.claim],
            "p_tost": p_tost, "mde_alpha": size_alpha if s is not None else math.nan,
            "mde_power": cfg.power if s is not None else math.nan,
            "verdict_last": "", "value_last": math.nan}


def _evidence(m: pd.DataFrame, cfg: CheckConfig,
              matched: pd.DataFrame | None) -> list[Evidence]:
    test = m[m["split"] == "test"]
    return [claim_1a(test, cfg), claim_1b(test, cfg), claim_2(m, cfg),
            claim_3(m, cfg, matched), claim_4(test, cfg), claim_5(test, cfg)]


def _pair_rows(m: pd.DataFrame, cfg: CheckConfig,
               matched: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Claims of one dataset × arch: Holm over the p-values of 1a-4, the MDE at Holm's
    strictest level α/m, then the verdicts (claim 2 gated on 1a/1b's)."""
    evidence = _evidence(m, cfg, matched)
    p = [claim_p(ev) if ev.claim in HOLM_CLAIMS else math.nan for ev in evidence]
    adjusted = holm(p)
    tost = [equivalence_p(ev, cfg) for ev in evidence]
    tested = int(np.isfinite(p).sum())
    verdicts: dict[str, tuple[str, str]] = {}
    for ev, q, t in zip(evidence, adjusted, tost, strict=True):
        if ev.claim == "2" and not any(verdicts[c][0] == "supported" for c in ("1a", "1b")):
            ev.gate = f"{NO_GAIN}: neither claim 1a nor claim 1b is supported"
        verdicts[ev.claim] = decide(ev, float(q), cfg, t)
    rows = []
    for ev, pi, q, t in zip(evidence, p, adjusted, tost, strict=True):
        m_c = tested + (0 if np.isfinite(pi) else 1)  # untested: as if it entered Holm
        rows.append(_row(ev, *verdicts[ev.claim], pi, float(q), t, cfg.alpha / m_c, cfg))
    return rows


def _check_metrics(metrics: pd.DataFrame, what: str) -> None:
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; pass results/{what}.csv "
                         "(methods §7 tidy table)")


def _table(metrics: pd.DataFrame, cfg: CheckConfig, matched: pd.DataFrame | None,
           literature: Sequence[LiteratureClaim] = ()) -> pd.DataFrame:
    """The paper's rows of every dataset × arch, then (when given) the literature rows of
    every dataset × arch in the same order: the paper's rows are a prefix of the table."""
    rows = []
    for dataset, arch in pairs(metrics):
        here = None if matched is None else one_pair(matched, dataset, arch)
        for row in _pair_rows(one_pair(metrics, dataset, arch), cfg, here):
            rows.append({"dataset": dataset, "arch": arch, **row})
    for dataset, arch in pairs(metrics) if literature else []:
        for row in literature_rows(one_pair(metrics, dataset, arch), literature, cfg):
            rows.append({"dataset": dataset, "arch": arch, **row})
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    return table.astype({"claim": str, "n_seeds": "Int64", "sign_count": "Int64"})


def evaluate(metrics: pd.DataFrame, compare: Mapping[str, Any],
             matched: pd.DataFrame | None = None,
             metrics_last: pd.DataFrame | None = None, *,
             literature: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per dataset × arch × methods §1 claim (methods §6), columns ``CLAIM_COLUMNS``,
    ``claim`` one of ``CLAIMS``; then one row per dataset × arch × literature entry.

    ``metrics`` has the ``results/metrics.csv`` columns (methods §7, best-validation
    checkpoints); ``compare`` is the config's ``compare`` block. ``matched`` (optional):
    results/matched/matched.csv, one row per dataset × arch × method (``ls``/``er``) with
    ``param`` the matched strength; claim 3 then compares SD with those runs (ordinary rows
    of ``metrics``) instead of the nearest sweep point. ``metrics_last`` (optional):
    results/metrics_last.csv; the same rules on the last epoch's weights fill
    ``verdict_last`` and ``value_last`` (empty and NaN without it).

    ``literature`` (optional): the config's ``claims`` list, validated up front by
    :func:`parse_literature` (ValueError naming the key). Its rows follow all the paper's
    rows, ``claim`` the entry's id, ``claim_text`` its text, ``statistic`` "a − b" with
    the methods' labels; they are decided by :func:`literature_rows` in their own Holm
    family per dataset × arch, so the paper's rows, Holm p-values and verdicts are the
    same with or without entries. None or [] gives exactly the paper's table.
    """
    cfg = CheckConfig.from_compare(compare)
    entries = parse_literature(literature, cfg)
    _check_metrics(metrics, "metrics")
    if matched is not None:
        missing = [c for c in MATCHED_KEYS if c not in matched.columns]
        if missing:
            raise ValueError(f"matched: missing columns {missing}; pass "
                             "results/matched/matched.csv (written by the matching rounds)")
    table = _table(metrics, cfg, matched, entries)
    if metrics_last is not None:
        _check_metrics(metrics_last, "metrics_last")
        last = _table(metrics_last, cfg, matched, entries).set_index(["dataset", "arch", "claim"])
        key = pd.MultiIndex.from_frame(table[["dataset", "arch", "claim"]])
        table["verdict_last"] = last["verdict"].reindex(key).fillna("").to_numpy()
        table["value_last"] = last["value"].reindex(key).to_numpy(float)
    return table


# --------------------------------------------------------------------------- rendering

MARGIN_REASON = ("smaller than the smallest published first-generation SD gain (+0.6 pp, "
                 "Born-Again Networks on CIFAR-100), so *no effect* rules out gains of the "
                 "size the literature reports")


def _num(v: Any, fmt: str) -> str:
    return "–" if v is None or v is pd.NA or not np.isfinite(v) else format(v, fmt)


def _value_cell(r: Any) -> str:
    if r.claim == "5":
        return "–" if not np.isfinite(r.value) else f"{100 * r.value:.0f} % of runs"
    return "–" if not np.isfinite(r.value) else f"{r.value:+.3f} {r.unit}"


def _interval_cell(r: Any) -> str:
    return "–" if not np.isfinite(r.low) else f"[{r.low:+.3f}, {r.high:+.3f}]"


def _mde_cell(r: Any) -> str:
    if not np.isfinite(r.mde):
        return "–"
    return f"{r.mde:.3g} {r.unit} (α = {r.mde_alpha:.2g}, power {100 * r.mde_power:g} %)"


def _summary_lines(table: pd.DataFrame) -> str:
    lines = []
    for (dataset, arch), rows in table.groupby(["dataset", "arch"], sort=True):
        lines.append(f"- **{dataset} / {arch}**: " + "; ".join(rows["summary"]) + ".")
    return "\n".join(lines)


def _mde_lines(table: pd.DataFrame, margin: float) -> str:
    lines = []
    for (dataset, arch), rows in table.groupby(["dataset", "arch"], sort=True):
        parts = [f"claim {r.claim} {r.mde:.3g} {r.unit} at α = {r.mde_alpha:.2g} "
                 f"({r.n_seeds} seeds" + (", above the margin)" if r.unit == PP
                                          and r.mde > margin else ")")
                 for r in rows.itertuples() if np.isfinite(r.mde)]
        lines.append(f"- {dataset} / {arch}: " + ("; ".join(parts) or "no statistic to size"))
    return "\n".join(lines)


def _notes(cfg: CheckConfig, table: pd.DataFrame) -> str:
    c, m, a = f"{100 * cfg.confidence:g} %", cfg.margin_pp, cfg.alpha
    eq = f"{100 * (1 - 2 * a):g} %"
    why = MARGIN_REASON if m < 0.6 else "NOT below the smallest published SD gain (+0.6 pp)"
    return f"""## How to read the verdicts (methods §6)

- **supported**: every deciding {c} interval lies above 0 and the claim's Holm-adjusted
  p < {a:.2g}, the claim's p being the largest of its deciding tests (all must hold).
  **contradicted**: a candidate test lies below 0 and k·p (k = the claim's candidate
  tests: 1 for 1a and 4, 2 for 1b and 3, 3 for 2) is below {a:.2g} after Holm.
  **no effect** (claims 1a, 1b, 3, 4, in pp): two one-sided t tests (TOST) at
  α = {a:.2g} each reject |mean| ≥ {m:g} pp, i.e. the {eq} interval lies within ±{m:g} pp
  (TOST p in the table; not adjusted across claims). **inconclusive**: anything else, and
  always with fewer than {MIN_SEEDS} paired seeds or zero spread of a per-seed statistic.
- **Statistics**: per-seed paired differences of test accuracy (pp) and per-seed
  least-squares slopes, each with its mean, a Student-t interval with n − 1 df and the count
  of seeds with a positive value. Claim 1a: SD generation 1 − CE. Claim 1b: SD generation
  G − generation 1 and, with G ≥ 3, the accuracy slope over generations 1..G. Claim 2: the
  test-entropy slope over 0..G, the train-split teacher-diversity slope over the teaching
  generations 0..G−1 and the per-seed slope of each student's accuracy on its teacher's
  diversity (pp/nat), all above 0; *inconclusive* ("{NO_GAIN}") whenever neither 1a nor 1b
  is supported. Claim 5 is a reporting check (no test).
- **Margin** ±{m:g} pp (`compare.margin_pp`): {why}.
- **Claim 3** compares SD generation {cfg.sd_gen} with the LS and ER runs at SD's seed-mean
  *validation* entropy (test accuracy plays no part in the pick): the matched strengths
  trained after the sweep (results/matched/matched.csv) where they exist, else the closest
  sweep point. It is inconclusive when no strength brackets SD's validation entropy or the
  run used is more than {cfg.entropy_tolerance:g} nats away (`compare.entropy_tolerance`).
- **Multiplicity**: Holm's step-down adjustment over claims 1a-4 of each dataset × arch.
- **Minimal detectable effect** (MDE): the true mean that the two-sided t test at Holm's
  strictest level α/m (m = the claims that enter Holm here) finds in its direction with
  {100 * cfg.power:g} % power, solved with the noncentral t distribution and scaled by the
  sample sd of the per-seed statistic. A claim that needs several tests at once has at most
  this power. An MDE above the margin means "no effect" could not be shown for an effect of
  the margin's size. This run could detect:

{_mde_lines(table, m)}
"""


def _best_last_section(best_last: pd.DataFrame | None, cfg: CheckConfig) -> str:
    if best_last is None:
        return ""
    if best_last.empty:
        return "## Best vs last epoch\n\nNo network has both a best and a last-epoch row.\n\n"
    rows = [[r.dataset, r.arch, r.label, str(r.n_seeds), _num(r.accuracy_pct_best, ".2f"),
             _num(r.accuracy_pct_last, ".2f"),
             f"{r.accuracy_pp_last_minus_best:+.2f}" + (
                 f" [{r.accuracy_pp_low:+.2f}, {r.accuracy_pp_high:+.2f}]"
                 if np.isfinite(r.accuracy_pp_low) else ""),
             _num(r.nll_last_minus_best, "+.3f"), _num(r.ece_pp_last_minus_best, "+.2f")]
            for r in best_last.itertuples()]
    header = ["dataset", "arch", "method", "seeds", "acc. best (%)", "acc. last (%)",
              f"last − best (pp, {100 * cfg.confidence:g} % interval)", "NLL last − best",
              "ECE last − best (pp)"]
    return ("## Best vs last epoch\n\nTest split, E3 methods: the best-validation checkpoint "
            "(results/metrics.csv, what the verdicts use) against the last epoch's weights "
            "(results/metrics_last.csv), paired per seed. The table's *last epoch* verdict "
            "applies the same rules to the last epoch's weights.\n\n"
            + markdown_table(header, rows, 3) + "\n")


def _difference_cell(r: Any) -> str:
    if not np.isfinite(r.value):
        return "–"
    return f"{r.value:+.3f}" + (f" [{r.low:+.3f}, {r.high:+.3f}]" if np.isfinite(r.low) else "")


def _literature_section(table: pd.DataFrame, literature: Sequence[LiteratureClaim],
                        cfg: CheckConfig, with_last: bool) -> str:
    """claims.md's "Literature claims" section (methods §6); empty without entries."""
    if not literature:
        return ""
    by_id = {c.id: c for c in literature}
    c, m, a = f"{100 * cfg.confidence:g} %", cfg.margin_pp, cfg.alpha
    rows = [[r.dataset, r.arch, r.claim, r.claim_text, by_id[r.claim].source,
             f"**{r.verdict}**", *([r.verdict_last or "–"] if with_last else []),
             _difference_cell(r), _num(r.n_seeds, "d"), _num(r.p_holm, ".2g"),
             _num(r.p_tost, ".2g")] for r in table.itertuples()]
    header = ["dataset", "arch", "id", "claim", "source", "verdict",
              *(["last epoch"] if with_last else []), f"a − b (pp, {c} interval)", "seeds",
              "Holm p", "TOST p"]
    details = "\n".join(
        f"- {r.dataset} / {r.arch}, {r.claim} ({by_id[r.claim].kind}: {r.statistic}, "
        f"{r.verdict}): {r.detail}"
        + (f"; MDE {_mde_cell(r)}" if by_id[r.claim].kind == "beats"
           and np.isfinite(r.mde) else "") for r in table.itertuples())
    return f"""## Literature claims

The config's `claims` entries (methods §6): the paired per-seed difference of test accuracy
a − b (pp) on the seeds both settings have. The entries of one dataset × arch form their
own Holm family, apart from claims 1a-4, whose verdicts they never change.
**beats**, as claims 1a and 4: *supported* when the {c} interval lies above 0 and the Holm p
< {a:.2g}, *contradicted* when it lies below 0 and the Holm p < {a:.2g}, *no effect* when
TOST p < {a:.2g} (the {100 * (1 - 2 * a):g} % interval within ±{m:g} pp), else
*inconclusive*. **equivalent**: the TOST p enters Holm; *supported* when its Holm-adjusted
value is below {a:.2g}, *contradicted* when the {c} interval lies entirely outside ±{m:g} pp,
else *inconclusive*. A setting that was not run leaves an entry *inconclusive*.

{markdown_table(header, rows, 6 + with_last)}
{details}

"""


def _markdown(table: pd.DataFrame, cfg: CheckConfig,
              best_last: pd.DataFrame | None = None,
              literature: Sequence[LiteratureClaim] = ()) -> str:
    with_last = best_last is not None
    is_paper = table["claim"].isin(CLAIMS)
    table, lit_table = table[is_paper], table[~is_paper]
    rows = [[r.dataset, r.arch, f"{r.claim}. {r.claim_text}", f"**{r.verdict}**",
             *([r.verdict_last or "–"] if with_last else []),
             _value_cell(r), _interval_cell(r), _num(r.p_holm, ".2g"), _num(r.p_tost, ".2g"),
             _mde_cell(r), _num(r.n_seeds, "d")] for r in table.itertuples()]
    details = "\n".join(f"- {r.dataset} / {r.arch}, claim {r.claim} ({r.verdict}): {r.detail}"
                        for r in table.itertuples())
    header = ["dataset", "arch", "claim", "verdict", *(["last epoch"] if with_last else []),
              "value", f"{100 * cfg.confidence:g} % interval", "Holm p", "TOST p", "MDE",
              "seeds"]
    return ("# Claims check (methods §6)\n\n" + _summary_lines(table) + "\n\n"
            + markdown_table(header, rows, 4) + "\n" + _best_last_section(best_last, cfg)
            + _literature_section(lit_table, literature, cfg, with_last)
            + "## Details\n\n" + details + "\n\n" + _notes(cfg, table))


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in table.to_dict(orient="records"):
        out.append({k: (None if v is pd.NA else v.item() if hasattr(v, "item") else v)
                    for k, v in r.items()})
    return out


def _given(path: str | Path | None) -> Path | None:
    """An optional input: None when not given or the file does not exist."""
    return None if path is None or not Path(path).is_file() else Path(path)


def render_claims(metrics_path: str | Path, md_out: str | Path, csv_out: str | Path,
                  sidecar: str | Path, compare: Mapping[str, Any],
                  matched_path: str | Path | None = None,
                  metrics_last_path: str | Path | None = None,
                  literature: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Write ``claims.csv``, ``claims.md`` and the sidecar from :func:`evaluate` (methods §6).

    ``matched_path`` (results/matched/matched.csv) and ``metrics_last_path``
    (results/metrics_last.csv) are optional: None or a missing file means not given.
    ``literature``: the config's ``claims`` list (passed to :func:`evaluate`); with entries
    claims.md gains a "Literature claims" section and the sidecar records them; None or
    [] leaves every output as without it.
    """
    started = time.perf_counter()
    cfg = CheckConfig.from_compare(compare)
    entries = parse_literature(literature, cfg)
    matched, last = _given(matched_path), _given(metrics_last_path)
    metrics = read_metrics(metrics_path)
    last_df = read_metrics(last) if last else None
    table = evaluate(metrics, compare, read_matched(matched) if matched else None, last_df,
                     literature=literature)
    best_last = best_vs_last(metrics, last_df, compare) if last_df is not None else None
    write_csv(csv_out, _records(table), CLAIM_COLUMNS)
    write_text(md_out, _markdown(table, cfg, best_last, entries))
    inputs = [metrics_path, *(p for p in (last, matched) if p)]
    params: dict[str, Any] = {"compare": dict(compare)}
    if entries:
        params["claims"] = [{k: dict(v) if isinstance(v, Mapping) else v for k, v in e.items()}
                            for e in literature or []]
    write_sidecar(sidecar, inputs, params, started, [md_out, csv_out])
    log.info("claims: %s", table["verdict"].value_counts().to_dict())
    return table
