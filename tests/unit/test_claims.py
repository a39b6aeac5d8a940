"""Claims check verdicts (methods §6) on metrics tables built by hand.

Each test builds the few networks a claim needs (one per seed; seed = position in the
list of accuracies) with effects chosen so the verdict is known, and checks statistics
against independent computations (scipy's t and noncentral t distributions, Holm by hand).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from selfdistill import claims

COMPARE = {"ls_eps": 0.1, "er_beta": 0.3, "bs_a": 3, "sd_gen": 1, "confidence": 0.95,
           "margin_pp": 0.5, "entropy_tolerance": 0.05, "power": 0.8}
CFG = claims.CheckConfig.from_compare(COMPARE)
BASE = np.array([0.800, 0.812, 0.795, 0.806, 0.790])  # CE test accuracy of seeds 0..4
SPREAD = np.array([0.3, -0.2, 0.1, -0.3, 0.1])  # pp, zero-mean seed-to-seed variation


def _at(x: float | Sequence[float], seed: int) -> float:
    return float(x[seed]) if isinstance(x, (list, tuple, np.ndarray)) else float(x)


def runs(method: str, accs: Sequence[float], param: str = "", gen: int = 0,
         entropy: float | Sequence[float] = 0.5, val_entropy: float | None = None,
         div: float | Sequence[float] = 1.0, nll: float = 0.3) -> list[dict]:
    """One network per seed, rows for the train, val and test splits (methods §7 columns)."""
    rows = []
    for seed, acc in enumerate(accs):
        base = {"dataset": "toy", "arch": "net", "method": method, "param": param,
                "seed": seed, "gen": gen, "nll": nll, "ece": 0.02, "cd_entropy_true": 1.0,
                "cd_std_max": 0.2, "cd_std_true": 0.2, "accuracy": float(acc)}
        ent = _at(entropy, seed)
        for split, e in (("train", ent), ("val", ent if val_entropy is None else val_entropy),
                         ("test", ent)):
            rows.append({**base, "split": split, "entropy": e,
                         "cd_entropy_max": _at(div, seed)})
    return rows


def chain(pp_by_gen: Sequence[Sequence[float] | float], **kw) -> list[dict]:
    """CE (generation 0) and SD generations 1..G: accuracy BASE + pp_by_gen[g] / 100."""
    out = []
    for g, pp in enumerate(pp_by_gen):
        accs = BASE + np.asarray(pp, dtype=float) / 100
        args = {k: (v[g] if isinstance(v, list) else v) for k, v in kw.items()}
        out += runs("ce" if g == 0 else "sd", accs, gen=g, **args)
    return out


def baselines(ls_pp: float | Sequence[float] = 0.0, bs_pp: float | Sequence[float] = 0.0,
              er_pp: float | Sequence[float] = 0.0) -> list[dict]:
    """LS(0.1), ER(0.3), BS(3) at BASE + pp / 100; entropies not near any SD run."""
    acc = {m: BASE + np.asarray(pp, dtype=float) / 100
           for m, pp in (("ls", ls_pp), ("er", er_pp), ("bs", bs_pp))}
    return (runs("ls", acc["ls"], "0.1", entropy=0.9) + runs("er", acc["er"], "0.3", entropy=0.9)
            + runs("bs", acc["bs"], "3", entropy=0.9))


def evaluate(rows: list[dict], **compare) -> pd.DataFrame:
    return claims.evaluate(pd.DataFrame(rows), {**COMPARE, **compare}).set_index("claim")


def t_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Hand-computed Student-t interval of the mean (n − 1 df)."""
    n = len(d)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return d.mean() - half, d.mean() + half


def with_p(p: float, n: int = 5) -> np.ndarray:
    """Per-seed values whose two-sided one-sample t-test against 0 gives p (by construction)."""
    z = np.linspace(-1.0, 1.0, n)
    return stats.t.isf(p / 2, n - 1) * z.std(ddof=1) / math.sqrt(n) + z


# --------------------------------------------------------------------------- output shape

def test_columns_and_one_row_per_claim() -> None:
    t = claims.evaluate(pd.DataFrame(chain([0, 1]) + baselines()), COMPARE)
    assert list(t.columns[:10]) == ["dataset", "arch", "claim", "verdict", "value", "low",
                                    "high", "n_seeds", "detail", "p_value"]
    assert list(t["claim"]) == [1, 2, 3, 4, 5]
    assert set(t["verdict"]) <= set(claims.VERDICTS)


def test_missing_compare_key_names_the_key_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"margin_pp.*compare block"):
        claims.evaluate(pd.DataFrame(chain([0, 1])),
                        {k: v for k, v in COMPARE.items() if k != "margin_pp"})


# --------------------------------------------------------------------------- paired differences

def test_paired_uses_shared_seeds_and_the_hand_computed_t_interval() -> None:
    a = pd.Series([0.03, 0.05, 0.07], index=[0, 1, 2])
    b = pd.Series([0.02, 0.03, 0.04, 0.09], index=[0, 1, 2, 3])  # seed 3 unpaired
    s = claims.paired("a − b", a, b, CFG)
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n, d = 1, 2, 3 pp
    assert (s.value, s.n, s.unit) == (pytest.approx(2.0), 3, "pp")
    assert (s.low, s.high) == pytest.approx((2 - half, 2 + half))


def test_slopes_per_seed_drop_seeds_missing_a_generation() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 5))  # [seed, generation]
    runs = pd.DataFrame([{"seed": s, "gen": g, "y": y[s, g]} for s in range(4) for g in range(5)
                         if (s, g) != (3, 2)])
    got = claims.slopes(runs, "y", scale=100.0)
    assert list(got.index) == [0, 1, 2]
    np.testing.assert_allclose(got, [100 * np.polyfit(np.arange(5), y[s], 1)[0] for s in range(3)])


def test_supported_paired_difference_matches_hand_t_interval() -> None:
    d = 1.0 + SPREAD  # BS − LS in pp
    t = evaluate(chain([0, 1]) + baselines(bs_pp=d)).loc[4]
    low, high = t_interval(d)
    assert t.verdict == "supported"
    assert (t.value, t.low, t.high) == pytest.approx((d.mean(), low, high), abs=1e-9)
    assert t.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-6)
    assert t.n_seeds == 5 and t.sign_count == 5


def test_contradicted_when_the_interval_is_below_zero() -> None:
    t = evaluate(chain([0, 1]) + baselines(bs_pp=-1.0 - SPREAD)).loc[4]
    assert t.verdict == "contradicted" and t.high < 0 and t.sign_count == 0


def test_no_effect_when_the_interval_is_within_the_margin() -> None:
    d = 0.05 + SPREAD / 2
    t = evaluate(chain([0, 1]) + baselines(bs_pp=d)).loc[4]
    low, high = t_interval(d)
    assert -0.5 < low < 0 < high < 0.5  # the construction: includes 0, inside the margin
    assert t.verdict == "no effect"
    wide = evaluate(chain([0, 1]) + baselines(bs_pp=d), margin_pp=0.1).loc[4]
    assert wide.verdict == "inconclusive"


def test_inconclusive_when_the_interval_straddles_zero_and_the_margin() -> None:
    t = evaluate(chain([0, 1]) + baselines(bs_pp=8 * SPREAD)).loc[4]
    assert t.low < -0.5 and t.high > 0.5 and t.verdict == "inconclusive"


def test_two_seeds_are_inconclusive_even_with_a_large_effect() -> None:
    rows = [r for r in chain([0, 1]) + baselines(bs_pp=[3.0, 3.5, 0, 0, 0]) if r["seed"] < 2]
    t = evaluate(rows).loc[4]
    assert t.verdict == "inconclusive" and t.n_seeds == 2
    assert "only 2 seeds" in t.detail and math.isnan(t.p_value)
    assert np.isfinite(t.mde)  # sized all the same: what 2 seeds could detect


def test_zero_spread_is_inconclusive_not_supported() -> None:
    # Accuracies in steps of 1/1000: BS beats LS by exactly 2 test images in every seed.
    ls = np.array([800, 812, 795, 806, 790]) / 1000
    rows = (chain([0, 1]) + runs("ls", ls, "0.1") + runs("bs", ls + 2 / 1000, "3")
            + runs("er", ls, "0.3"))
    t = evaluate(rows).loc[4]
    assert t.verdict == "inconclusive" and "zero spread" in t.detail
    assert t.value == pytest.approx(0.2) and math.isnan(t.low) and math.isnan(t.mde)


def test_missing_methods_are_inconclusive() -> None:
    rows = [r for r in chain([0, 1]) + baselines(bs_pp=1 + SPREAD) if r["method"] != "bs"]
    t = evaluate(rows)
    assert t.loc[4, "verdict"] == "inconclusive" and "no BS" in t.loc[4, "detail"]
    assert t.loc[5, "verdict"] == "inconclusive" and "bs" in t.loc[5, "detail"]
    ce_only = evaluate([r for r in rows if r["method"] == "ce"])
    assert set(ce_only["verdict"]) == {"inconclusive"}


# --------------------------------------------------------------------------- claim 1

def test_claim_1_supported_needs_the_difference_and_the_trend() -> None:
    up = [0, 0.5 + SPREAD, 1.0 - SPREAD, 1.5 + SPREAD]
    t = evaluate(chain(up) + baselines()).loc[1]
    assert t.verdict == "supported" and t.value == pytest.approx(1.5, abs=1e-9)
    assert t.statistic == "SD gen 3 − CE" and "5/5 seeds positive" in t.detail
    # Same last-generation gain, but generation 1 far above it: the per-seed slopes over
    # 0..3 are (1.5·SPREAD − 2·other)/5, zero on average, so the trend is not shown.
    other = np.roll(SPREAD, 1)
    bump = [0, 4.5 + 4 * other, 0.0, 1.5 + SPREAD]
    b = evaluate(chain(bump) + baselines(), sd_gen=3).loc[1]
    assert b.low > 0  # gen 3 − CE alone would support it
    assert b.verdict == "inconclusive" and "includes 0" in b.detail


def test_claim_1_contradicted_when_sd_gen_is_below_ce() -> None:
    dip = [0, -2.0 + SPREAD / 2, 0.5 + SPREAD, 1.0 + SPREAD]
    t = evaluate(chain(dip) + baselines()).loc[1]
    assert t.verdict == "contradicted" and "SD gen 1 − CE" in t.detail


def test_claim_1_contradicted_takes_the_strongest_evidence_against() -> None:
    down = [0, -0.5 - SPREAD, -1.0 + SPREAD, -1.5 - SPREAD]
    t = evaluate(chain(down) + baselines()).loc[1]
    pp = np.array([np.broadcast_to(x, 5) for x in down], dtype=float)  # [gen, seed]
    slope = np.polyfit(np.arange(4), pp, 1)[0]
    p = [stats.ttest_1samp(d, 0).pvalue for d in (pp[3], slope, pp[1])]
    assert t.verdict == "contradicted"
    assert t.p_value == pytest.approx(min(p), rel=1e-6)


def test_claim_1_no_effect_when_generations_match_ce() -> None:
    flat = [0, SPREAD / 3, -SPREAD / 3, SPREAD / 4]
    assert evaluate(chain(flat) + baselines()).loc[1, "verdict"] == "no effect"


# --------------------------------------------------------------------------- claim 2 (trends)

def _trend_rows(entropy_step: np.ndarray, div_step: np.ndarray) -> list[dict]:
    """SD chain whose seed s gains entropy_step[s] (test) and div_step[s] (train) per gen."""
    gens = range(4)
    return chain([0.1 * g + SPREAD for g in gens],
                 entropy=[list(0.3 + g * entropy_step) for g in gens],
                 div=[list(1.0 + g * div_step) for g in gens]) + baselines()


def test_claim_2_per_seed_slopes_and_sign_count() -> None:
    ent = np.array([0.10, 0.12, 0.08, 0.11, 0.09])
    div = np.array([0.20, 0.10, 0.15, -0.01, 0.16])
    t = evaluate(_trend_rows(ent, div)).loc[2]
    assert t.verdict == "supported"
    # The row shows the binding slope, the one with the larger p: diversity here.
    assert t.statistic.startswith("slope of train-split") and t.sign_count == 4
    assert t.value == pytest.approx(div.mean()) and "4/5 seeds positive" in t.detail
    assert (t.low, t.high) == pytest.approx(t_interval(div))


def test_claim_2_contradicted_when_entropy_falls() -> None:
    ent = -np.array([0.10, 0.12, 0.08, 0.11, 0.09])
    t = evaluate(_trend_rows(ent, np.array([0.20, 0.05, 0.15, 0.02, 0.12]))).loc[2]
    assert t.verdict == "contradicted" and t.statistic == "slope of test entropy"


def test_claim_2_identical_trends_in_every_seed_are_zero_spread() -> None:
    same = np.full(5, 0.1)
    t = evaluate(_trend_rows(same, np.array([0.20, 0.05, 0.15, 0.02, 0.12]))).loc[2]
    assert t.verdict == "inconclusive" and "zero spread" in t.detail


# --------------------------------------------------------------------------- claim 3

def _claim_3_rows(ls: dict[str, tuple[float, float]], er: dict[str, tuple[float, float]],
                  sd_val: float = 0.50, ls_pp: Sequence[float] | float = -1.0,
                  er_pp: Sequence[float] | float = -1.0) -> list[dict]:
    """SD gen 1 with val entropy ``sd_val``; LS/ER settings param -> (val, test entropy);
    every LS (ER) setting at SD's accuracy + ls_pp (er_pp) pp."""
    rows = chain([0, 0.2 + SPREAD], val_entropy=[None, sd_val], entropy=[0.3, sd_val])
    sd = BASE + (0.2 + SPREAD) / 100
    for method, settings, pp in (("ls", ls, ls_pp), ("er", er, er_pp)):
        for param, (val_e, test_e) in settings.items():
            rows += runs(method, sd + np.asarray(pp, dtype=float) / 100, param,
                         entropy=test_e, val_entropy=val_e)
    return rows + runs("bs", BASE, "3")


def test_claim_3_matches_on_validation_entropy_not_test() -> None:
    # LS 0.1 is closest in VAL entropy; LS 0.2 would be closest in test entropy.
    ls = {"0.05": (0.30, 0.30), "0.1": (0.52, 0.80), "0.2": (0.70, 0.50)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=-1.0 - SPREAD, er_pp=-1.5 + SPREAD)).loc[3]
    assert "LS(0.1) matched" in t.detail and "ER(0.3) matched" in t.detail
    assert t.verdict == "supported"  # SD − LS = +1 pp, SD − ER = +1.5 pp
    assert t.statistic == "SD gen 1 − LS(0.1)"  # the binding (larger p) comparison
    p_ls, p_er = (stats.ttest_1samp(d, 0).pvalue for d in (1.0 + SPREAD, 1.5 - SPREAD))
    assert t.p_value == pytest.approx(max(p_ls, p_er), rel=1e-6)


def test_claim_3_contradicted_if_either_comparison_is_below() -> None:
    ls = {"0.05": (0.40, 0.40), "0.1": (0.52, 0.52)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=-1.0 - SPREAD, er_pp=1.0 + SPREAD)).loc[3]
    assert t.verdict == "contradicted" and t.statistic.startswith("SD gen 1 − ER")


def test_claim_3_no_effect_when_both_within_the_margin() -> None:
    ls = {"0.05": (0.40, 0.40), "0.1": (0.52, 0.52)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=SPREAD / 2, er_pp=-SPREAD / 3)).loc[3]
    assert t.verdict == "no effect"


def test_claim_3_unbracketed_sweep_is_inconclusive() -> None:
    ls = {"0.05": (0.30, 0.30), "0.1": (0.46, 0.46)}  # all below SD's 0.50
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=-2.0 - SPREAD, er_pp=-2.0 - SPREAD)).loc[3]
    assert t.verdict == "inconclusive" and "LS sweep does not bracket" in t.detail
    assert math.isnan(t.p_value) and math.isnan(t.p_holm)


def test_claim_3_gap_above_tolerance_is_inconclusive() -> None:
    ls = {"0.05": (0.30, 0.30), "0.2": (0.70, 0.70)}  # brackets 0.50, but 0.2 nats away
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    rows = _claim_3_rows(ls, er, ls_pp=-2.0 - SPREAD, er_pp=-2.0 - SPREAD)
    t = evaluate(rows).loc[3]
    assert t.verdict == "inconclusive" and "tolerance" in t.detail
    assert evaluate(rows, entropy_tolerance=0.25).loc[3, "verdict"] == "supported"


# --------------------------------------------------------------------------- Holm, MDE

def test_holm_by_hand() -> None:
    got = claims.holm([0.01, 0.04, 0.03, math.nan])
    np.testing.assert_allclose(got[:3], [0.03, 0.06, 0.06])  # 3·0.01; max(2·0.03, 1·0.04)
    assert math.isnan(got[3])


@pytest.mark.parametrize(("p1", "p4", "verdict"), [(0.02, 0.04, "supported"),
                                                   (0.03, 0.04, "inconclusive")])
def test_holm_adjusts_over_the_claims_of_one_pair(p1: float, p4: float, verdict: str) -> None:
    # Claim 1 with one generation: gen 1 − CE and the slope are the same numbers, p = p1.
    # Claim 2 has zero spread (constant entropy), claim 3 no match: only claims 1 and 4 count.
    rows = chain([0, with_p(p1)]) + baselines(bs_pp=with_p(p4))
    t = evaluate(rows)
    assert t.loc[[1, 4], "p_value"].to_numpy() == pytest.approx([p1, p4], rel=1e-6)
    small = min(p1, p4)  # Holm with m = 2: 2·p_(1), then max(2·p_(1), p_(2))
    expected = [2 * p if p == small else max(2 * small, p) for p in (p1, p4)]
    assert t.loc[[1, 4], "p_holm"].to_numpy() == pytest.approx(expected, rel=1e-6)
    assert t.loc[1, "low"] > 0 and t.loc[4, "low"] > 0  # each significant on its own
    assert list(t.loc[[1, 4], "verdict"]) == [verdict, verdict]


def test_mde_formula_and_its_power() -> None:
    d = 1.0 + SPREAD
    s = claims.seed_stat("d", "pp", d, CFG)
    n, sd = len(d), d.std(ddof=1)
    assert s.mde == pytest.approx((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1))
                                  * sd / math.sqrt(n))
    # Independent check: the two-sided t-test's power at an effect of MDE is about 80 %
    # (the formula is the usual approximation; it slightly undershoots for small n).
    ncp = s.mde * math.sqrt(n) / sd
    crit = stats.t.ppf(0.975, n - 1)
    power = stats.nct.sf(crit, n - 1, ncp) + stats.nct.cdf(-crit, n - 1, ncp)
    assert 0.75 < power < 0.85
    table = evaluate(chain([0, 1]) + baselines(bs_pp=d)).loc[4]
    assert table.mde == pytest.approx(s.mde)


# --------------------------------------------------------------------------- claim 5

def test_claim_5_reporting_check() -> None:
    rows = chain([0, 1]) + baselines()
    assert evaluate(rows).loc[5, "verdict"] == "supported"
    rows[-1]["nll"] = math.inf  # a BS test row
    t = evaluate(rows).loc[5]
    assert t.verdict == "contradicted" and math.isnan(t.p_value)
