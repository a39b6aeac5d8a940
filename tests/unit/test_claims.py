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
from scipy import optimize, stats

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


def evaluate(rows: list[dict], matched: list[dict] | None = None,
             last: list[dict] | None = None, **compare) -> pd.DataFrame:
    return claims.evaluate(pd.DataFrame(rows), {**COMPARE, **compare},
                           None if matched is None else pd.DataFrame(matched),
                           None if last is None else pd.DataFrame(last)).set_index("claim")


def t_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Hand-computed Student-t interval of the mean (n − 1 df)."""
    n = len(d)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return d.mean() - half, d.mean() + half


def with_p(p: float, n: int = 5) -> np.ndarray:
    """Per-seed values whose two-sided one-sample t-test against 0 gives p (by construction)."""
    z = np.linspace(-1.0, 1.0, n)
    return stats.t.isf(p / 2, n - 1) * z.std(ddof=1) / math.sqrt(n) + z


def exact_mde(sd: float, n: int, alpha: float, power: float = 0.8) -> float:
    """Independent solve: δ with P(noncentral t(n−1, δ√n/sd) > t_{1−α/2, n−1}) = power."""
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    root = optimize.root_scalar(lambda ncp: stats.nct.sf(crit, n - 1, ncp) - power,
                                bracket=[0.0, 100.0], method="brentq", xtol=1e-14)
    return root.root * sd / math.sqrt(n)


def without(rows: list[dict], *methods: str) -> list[dict]:
    return [r for r in rows if r["method"] not in methods]


# --------------------------------------------------------------------------- output shape

def test_columns_and_one_row_per_claim_id() -> None:
    t = claims.evaluate(pd.DataFrame(chain([0, 1]) + baselines()), COMPARE)
    assert list(t.columns[:10]) == ["dataset", "arch", "claim", "verdict", "value", "low",
                                    "high", "n_seeds", "detail", "p_value"]
    assert list(t["claim"]) == ["1a", "1b", "2", "3", "4", "5"] == list(claims.CLAIMS)
    assert set(t["verdict"]) <= set(claims.VERDICTS)
    assert set(claims.CLAIM_TEXT) == set(claims.CLAIMS)
    assert (t["verdict_last"] == "").all() and t["value_last"].isna().all()


def test_missing_compare_key_names_the_key_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"margin_pp.*compare block"):
        claims.evaluate(pd.DataFrame(chain([0, 1])),
                        {k: v for k, v in COMPARE.items() if k != "margin_pp"})


def test_matched_table_without_its_columns_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"gap.*matched\.csv"):
        claims.evaluate(pd.DataFrame(chain([0, 1])), COMPARE,
                        matched=pd.DataFrame([{"dataset": "toy", "arch": "net", "method": "ls",
                                               "param": "0.1", "target_entropy": 0.5,
                                               "val_entropy": 0.5}]))


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
    t = evaluate(chain([0, 1]) + baselines(bs_pp=d)).loc["4"]
    low, high = t_interval(d)
    assert t.verdict == "supported"
    assert (t.value, t.low, t.high) == pytest.approx((d.mean(), low, high), abs=1e-9)
    assert t.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-6)
    assert t.n_seeds == 5 and t.sign_count == 5


def test_contradicted_when_the_interval_is_below_zero() -> None:
    t = evaluate(chain([0, 1]) + baselines(bs_pp=-1.0 - SPREAD)).loc["4"]
    assert t.verdict == "contradicted" and t.high < 0 and t.sign_count == 0


def test_inconclusive_when_the_interval_straddles_zero_and_the_margin() -> None:
    t = evaluate(chain([0, 1]) + baselines(bs_pp=8 * SPREAD)).loc["4"]
    assert t.low < -0.5 and t.high > 0.5 and t.verdict == "inconclusive"


def test_two_seeds_are_inconclusive_even_with_a_large_effect() -> None:
    rows = [r for r in chain([0, 1]) + baselines(bs_pp=[3.0, 3.5, 0, 0, 0]) if r["seed"] < 2]
    t = evaluate(rows).loc["4"]
    assert t.verdict == "inconclusive" and t.n_seeds == 2
    assert "only 2 seeds" in t.detail and math.isnan(t.p_value)
    assert np.isfinite(t.mde)  # sized all the same: what 2 seeds could detect


def test_zero_spread_is_inconclusive_not_supported() -> None:
    # Accuracies in steps of 1/1000: BS beats LS by exactly 2 test images in every seed.
    ls = np.array([800, 812, 795, 806, 790]) / 1000
    rows = (chain([0, 1]) + runs("ls", ls, "0.1") + runs("bs", ls + 2 / 1000, "3")
            + runs("er", ls, "0.3"))
    t = evaluate(rows).loc["4"]
    assert t.verdict == "inconclusive" and "zero spread" in t.detail
    assert t.value == pytest.approx(0.2) and math.isnan(t.low) and math.isnan(t.mde)


def test_missing_methods_are_inconclusive() -> None:
    rows = without(chain([0, 1]) + baselines(bs_pp=1 + SPREAD), "bs")
    t = evaluate(rows)
    assert t.loc["4", "verdict"] == "inconclusive" and "no BS" in t.loc["4", "detail"]
    assert t.loc["5", "verdict"] == "inconclusive" and "bs" in t.loc["5", "detail"]
    ce_only = evaluate([r for r in rows if r["method"] == "ce"])
    assert set(ce_only["verdict"]) == {"inconclusive"}


# --------------------------------------------------------------------------- "no effect" (TOST)

def test_no_effect_is_tost_at_alpha_and_the_edge_is_at_the_margin() -> None:
    d = 0.05 + SPREAD / 2  # BS − LS, pp: its 95 % interval includes 0
    n, mean, se = len(d), d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    assert t_interval(d)[0] < 0 < t_interval(d)[1]
    # Two one-sided tests at α = 0.05 each: |mean| < margin is shown exactly when the 90 %
    # interval lies inside ±margin; the edge is the 90 % interval's farther end.
    edge = max(abs(mean - stats.t.ppf(0.95, n - 1) * se), abs(mean + stats.t.ppf(0.95, n - 1) * se))
    rows = chain([0, 1]) + baselines(bs_pp=d)
    inside = evaluate(rows, margin_pp=edge * (1 + 1e-6)).loc["4"]
    outside = evaluate(rows, margin_pp=edge * (1 - 1e-6)).loc["4"]
    assert inside.verdict == "no effect" and outside.verdict == "inconclusive"
    # The 95 % interval (a test at 0.025) would not yet be inside at the edge.
    assert t_interval(d)[1] > edge
    for margin, row in ((edge * (1 + 1e-6), inside), (edge * (1 - 1e-6), outside)):
        hand = max(stats.t.sf((mean + margin) / se, n - 1), stats.t.cdf((mean - margin) / se, n - 1))
        assert row.p_tost == pytest.approx(hand, rel=1e-9)
    assert inside.p_tost < 0.05 <= outside.p_tost
    assert "90 % interval" in inside.detail


def test_no_effect_follows_the_configured_level() -> None:
    d = 0.05 + SPREAD / 2
    n, se = len(d), d.std(ddof=1) / math.sqrt(len(d))
    edge_90 = abs(d.mean()) + stats.t.ppf(0.95, n - 1) * se
    # At confidence 0.99 TOST runs at α = 0.01 (the 98 % interval): the 90 % edge is too tight.
    t = evaluate(chain([0, 1]) + baselines(bs_pp=d), margin_pp=edge_90 * 1.001,
                 confidence=0.99).loc["4"]
    assert t.verdict == "inconclusive" and 0.01 < t.p_tost < 0.05


# --------------------------------------------------------------------------- claims 1a and 1b

def test_one_off_jump_at_generation_1_supports_1a_not_1b() -> None:
    jump = 1.0 + SPREAD
    later = [jump + np.roll(SPREAD, k) / 10 for k in (1, 2, 3)]  # flat after generation 1
    t = evaluate(chain([0, jump, *later]) + baselines())
    a, b = t.loc["1a"], t.loc["1b"]
    assert a.verdict == "supported" and a.statistic == "SD gen 1 − CE"
    assert (a.value, a.low, a.high) == pytest.approx((jump.mean(), *t_interval(jump)))
    assert b.verdict == "no effect" and b.statistic.startswith(("SD gen 4 − SD gen 1", "slope"))
    g4_g1 = later[-1] - jump
    assert "SD gen 4 − SD gen 1: " + f"{g4_g1.mean():+.3f}" in b.detail
    # The old single claim (gen G − CE and the slope over 0..G) would have said "supported":
    pp = np.array([np.zeros(5), jump, *later])
    old_slope = np.polyfit(np.arange(5), pp, 1)[0]
    assert t_interval(later[-1])[0] > 0 and t_interval(old_slope)[0] > 0


def test_steady_gain_supports_1a_and_1b() -> None:
    steady = [0.6 * g + np.roll(SPREAD, g) / 2 for g in range(5)]
    steady[0] = np.zeros(5)
    t = evaluate(chain(steady) + baselines())
    assert t.loc["1a", "verdict"] == "supported" and t.loc["1b", "verdict"] == "supported"
    pp = np.array(steady)
    slope_1_4 = np.polyfit(np.arange(1, 5), pp[1:], 1)[0]
    p = [stats.ttest_1samp(x, 0).pvalue for x in (pp[4] - pp[1], slope_1_4)]
    assert t.loc["1b", "p_value"] == pytest.approx(max(p), rel=1e-6)  # all must hold


def test_1b_needs_two_sd_generations() -> None:
    t = evaluate(chain([0, 1.0 + SPREAD]) + baselines()).loc["1b"]
    assert t.verdict == "inconclusive" and "G ≥ 2" in t.detail and math.isnan(t.p_value)


def test_claim_1a_contradicted_when_generation_1_is_below_ce() -> None:
    dip = [0, -2.0 + SPREAD / 2, 0.5 + SPREAD, 1.0 + SPREAD]
    t = evaluate(chain(dip) + baselines()).loc["1a"]
    assert t.verdict == "contradicted" and t.value < 0


@pytest.mark.parametrize(("p", "verdict"), [(0.02, "contradicted"), (0.03, "inconclusive")])
def test_contradicted_is_corrected_for_the_candidate_tests(p: float, verdict: str) -> None:
    # Claim 1b alone is testable (no CE: 1a and 2 cannot be tested, no baselines). With
    # G = 3 its two candidate tests, gen 3 − gen 1 and the slope over 1..3 (= half of it),
    # have the same p; an uncorrected rule would contradict at p = 0.03 < 0.05.
    down = -with_p(p)
    rows = without(chain([0, np.zeros(5), down / 2 + SPREAD, down]), "ce")
    t = evaluate(rows).loc["1b"]
    assert t.high < 0 and t.verdict == verdict
    assert t.p_value == pytest.approx(2 * p, rel=1e-6) == t.p_holm
    if verdict == "contradicted":
        assert "2 candidate tests, p × 2" in t.detail


def test_claim_3_contradiction_is_corrected_for_its_two_comparisons() -> None:
    ls = {"0.05": (0.40, 0.40), "0.1": (0.52, 0.52)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    # SD − ER below 0 at p = 0.03 (×2 = 0.06), SD − LS not significant. Nothing else is
    # tested: claim 4 has no BS, claims 1a/1b/2 constant SD vs identical CE accuracies.
    rows = without(_claim_3_rows(ls, er, ls_pp=-4 * SPREAD, er_pp=with_p(0.03)), "bs")
    t = evaluate(rows)
    assert t["p_value"].notna().sum() <= 2
    three = t.loc["3"]
    assert three.statistic.startswith("SD gen 1 − ER") and three.high < 0
    assert three.p_value == pytest.approx(2 * 0.03, rel=1e-6)
    assert three.verdict == "inconclusive"


# --------------------------------------------------------------------------- claim 2

def _trend_rows(entropy_step: np.ndarray, div_step: np.ndarray,
                pp: Sequence[np.ndarray] | None = None, gens: int = 4) -> list[dict]:
    """SD chain whose seed s gains entropy_step[s] (test) and div_step[s] (train) per gen;
    accuracy ``pp`` (default: a steady, seed-varying gain)."""
    pp = pp if pp is not None else [0.6 * g + np.roll(SPREAD, g) / 2 if g else np.zeros(5)
                                    for g in range(gens)]
    return chain(list(pp), entropy=[list(0.3 + g * entropy_step) for g in range(gens)],
                 div=[list(1.0 + g * div_step) for g in range(gens)]) + baselines()


ENT = np.array([0.10, 0.12, 0.08, 0.11, 0.09])
DIV = np.array([0.20, 0.10, 0.15, 0.05, 0.16])


def test_claim_2_supported_with_a_gain_and_hand_slopes() -> None:
    rows = _trend_rows(ENT, DIV)
    t = evaluate(rows).loc["2"]
    assert t.verdict == "supported"
    assert f"slope of test entropy over generations 0..3: {ENT.mean():+.3f}" in t.detail
    assert f"over generations 0..2: {DIV.mean():+.3f}" in t.detail
    # Association: per seed, slope of student accuracy (gen g+1) on teacher diversity (gen g).
    df = pd.DataFrame(rows)
    test = claims.sd_chain(df[df["split"] == "test"])
    train = claims.sd_chain(df[df["split"] == "train"])
    slope, _ = claims.teacher_association(test, train)
    acc = 100 * test.pivot_table(index="seed", columns="gen", values="accuracy")
    div = train.pivot_table(index="seed", columns="gen", values="cd_entropy_max")
    hand = [np.polyfit(div.loc[s, [0, 1, 2]], acc.loc[s, [1, 2, 3]], 1)[0] for s in range(5)]
    np.testing.assert_allclose(slope.to_numpy(), hand)


def test_claim_2_teacher_diversity_leaves_out_the_last_generation() -> None:
    rows = _trend_rows(ENT, DIV)
    for r in rows:  # generation 3 teaches no one: its collapse must not count
        if r["method"] == "sd" and r["gen"] == 3 and r["split"] == "train":
            r["cd_entropy_max"] = -5.0
    t = evaluate(rows).loc["2"]
    assert t.verdict == "supported" and f"0..2: {DIV.mean():+.3f}" in t.detail


def test_growing_entropy_without_a_gain_has_no_gain_to_explain() -> None:
    flat = [np.zeros(5), SPREAD / 3, -SPREAD / 3, SPREAD / 4]
    t = evaluate(_trend_rows(ENT, DIV, flat))
    assert t.loc["1a", "verdict"] != "supported" and t.loc["1b", "verdict"] != "supported"
    two = t.loc["2"]
    assert two.verdict == "inconclusive" and two.detail.startswith("no gain to explain")
    assert f"{ENT.mean():+.3f} nats/generation" in two.detail  # the growth is still reported
    assert np.isfinite(two.p_value)  # and its test still enters Holm


def test_a_one_off_gain_is_a_gain_to_explain() -> None:
    jump = 1.0 + SPREAD
    pp = [np.zeros(5), jump, jump + np.roll(SPREAD, 1) / 10, jump + np.roll(SPREAD, 2) / 10]
    t = evaluate(_trend_rows(ENT, DIV, pp))
    assert t.loc["1a", "verdict"] == "supported" and t.loc["1b", "verdict"] != "supported"
    assert "no gain to explain" not in t.loc["2", "detail"]


def test_claim_2_contradicted_when_entropy_falls() -> None:
    t = evaluate(_trend_rows(-ENT, DIV)).loc["2"]
    assert t.verdict == "contradicted" and t.statistic.startswith("slope of test entropy")
    assert "3 candidate tests, p × 3" in t.detail


def test_claim_2_identical_trends_in_every_seed_are_zero_spread() -> None:
    t = evaluate(_trend_rows(np.full(5, 0.1), DIV)).loc["2"]
    assert t.verdict == "inconclusive" and "zero spread" in t.detail


# --------------------------------------------------------------------------- claim 3

def _claim_3_rows(ls: dict[str, tuple[float, float]], er: dict[str, tuple[float, float]],
                  sd_val: float = 0.50, ls_pp: Sequence[float] | float = -1.0,
                  er_pp: Sequence[float] | float = -1.0) -> list[dict]:
    """SD gen 1 with val entropy ``sd_val``; LS/ER settings param -> (val, test entropy);
    every LS (ER) setting at SD's accuracy + ls_pp (er_pp) pp; ls_pp/er_pp may also map
    a param to its own pp."""
    rows = chain([0, 0.2 + SPREAD], val_entropy=[None, sd_val], entropy=[0.3, sd_val])
    sd = BASE + (0.2 + SPREAD) / 100
    for method, settings, pp in (("ls", ls, ls_pp), ("er", er, er_pp)):
        for param, (val_e, test_e) in settings.items():
            own = pp[param] if isinstance(pp, dict) else pp
            rows += runs(method, sd + np.asarray(own, dtype=float) / 100, param,
                         entropy=test_e, val_entropy=val_e)
    return rows + runs("bs", BASE, "3")


def test_claim_3_matches_on_validation_entropy_not_test() -> None:
    # LS 0.1 is closest in VAL entropy; LS 0.2 would be closest in test entropy.
    ls = {"0.05": (0.30, 0.30), "0.1": (0.52, 0.80), "0.2": (0.70, 0.50)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=-1.0 - SPREAD, er_pp=-1.5 + SPREAD)).loc["3"]
    assert "LS(0.1) matched" in t.detail and "ER(0.3) matched" in t.detail
    assert t.verdict == "supported"  # SD − LS = +1 pp, SD − ER = +1.5 pp
    assert t.statistic == "SD gen 1 − LS(0.1)"  # the binding (larger p) comparison
    p_ls, p_er = (stats.ttest_1samp(d, 0).pvalue for d in (1.0 + SPREAD, 1.5 - SPREAD))
    assert t.p_value == pytest.approx(max(p_ls, p_er), rel=1e-6)


def test_claim_3_contradicted_if_either_comparison_is_below() -> None:
    ls = {"0.05": (0.40, 0.40), "0.1": (0.52, 0.52)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=-1.0 - SPREAD, er_pp=1.0 + SPREAD)).loc["3"]
    assert t.verdict == "contradicted" and t.statistic.startswith("SD gen 1 − ER")


def test_claim_3_no_effect_when_both_within_the_margin() -> None:
    ls = {"0.05": (0.40, 0.40), "0.1": (0.52, 0.52)}
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=SPREAD / 2, er_pp=-SPREAD / 3)).loc["3"]
    assert t.verdict == "no effect"


def test_claim_3_unbracketed_sweep_is_inconclusive() -> None:
    ls = {"0.05": (0.30, 0.30), "0.1": (0.46, 0.46)}  # all below SD's 0.50
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    t = evaluate(_claim_3_rows(ls, er, ls_pp=-2.0 - SPREAD, er_pp=-2.0 - SPREAD)).loc["3"]
    assert t.verdict == "inconclusive" and "LS sweep does not bracket" in t.detail
    assert math.isnan(t.p_value) and math.isnan(t.p_holm)


def test_claim_3_gap_above_tolerance_is_inconclusive() -> None:
    ls = {"0.05": (0.30, 0.30), "0.2": (0.70, 0.70)}  # brackets 0.50, but 0.2 nats away
    er = {"0.3": (0.48, 0.48), "1": (0.90, 0.90)}
    rows = _claim_3_rows(ls, er, ls_pp=-2.0 - SPREAD, er_pp=-2.0 - SPREAD)
    t = evaluate(rows).loc["3"]
    assert t.verdict == "inconclusive" and "tolerance" in t.detail
    assert evaluate(rows, entropy_tolerance=0.25).loc["3", "verdict"] == "supported"


# Sweep points within tolerance of SD's 0.50 (LS 0.1, ER 0.3) AND matched strengths (LS
# 0.137, ER 0.42) nearer still. The sweep points beat SD by 1 pp, SD beats the matched runs.
SWEEP_LS = {"0.05": (0.30, 0.30), "0.1": (0.53, 0.53), "0.2": (0.70, 0.70)}
SWEEP_ER = {"0.3": (0.47, 0.47), "1": (0.90, 0.90)}


def _matched_rows(ls_val: float = 0.505, er_val: float = 0.495) -> list[dict]:
    ls = {**SWEEP_LS, "0.137": (ls_val, ls_val)}
    er = {**SWEEP_ER, "0.42": (er_val, er_val)}
    pp_ls = {p: (-1.0 - SPREAD if p == "0.137" else 1.0 + SPREAD) for p in ls}
    pp_er = {p: (-1.5 + SPREAD if p == "0.42" else 1.0 + SPREAD) for p in er}
    return _claim_3_rows(ls, er, ls_pp=pp_ls, er_pp=pp_er)


def _matched(ls: str = "0.137", er: str = "0.42", gap: float = math.nan) -> list[dict]:
    return [{"dataset": "toy", "arch": "net", "method": m, "param": p, "round": 1,
             "target_entropy": 0.50, "val_entropy": math.nan, "gap": gap, "status": "train"}
            for m, p in (("ls", ls), ("er", er))]


def test_claim_3_uses_the_matched_runs() -> None:
    rows = _matched_rows()
    # The sweep alone (matched runs not yet trained, no matched table): the nearest sweep
    # points LS 0.1 and ER 0.3, 0.03 nats from SD's 0.50, decide, and SD loses to both.
    unmatched = evaluate(without(rows, "ls", "er") + [
        r for r in rows if r["method"] in ("ls", "er") and r["param"] not in ("0.137", "0.42")])
    assert unmatched.loc["3", "verdict"] == "contradicted"
    assert "LS(0.1) matched" in unmatched.loc["3", "detail"]
    t = evaluate(rows, matched=_matched()).loc["3"]
    assert t.verdict == "supported"
    assert "LS(0.137) matched run, val entropy gap +0.005" in t.detail
    assert "ER(0.42) matched run, val entropy gap -0.005" in t.detail
    assert t.statistic == "SD gen 1 − LS(0.137)"


def test_claim_3_matched_strength_takes_precedence_over_a_nearer_sweep_point() -> None:
    # The matched LS strength is 0.03 away; sweep point 0.1 (0.03 too) and a new point 0.11
    # at 0.001 would win the nearest-point rule. The matched table decides.
    rows = _matched_rows(ls_val=0.53) + runs("ls", BASE, "0.11", entropy=0.501)
    t = evaluate(rows, matched=_matched()).loc["3"]
    assert "SD gen 1 − LS(0.137)" in t.detail and "LS(0.11)" not in t.detail


def test_claim_3_matched_run_beyond_tolerance_says_so() -> None:
    rows = _matched_rows(ls_val=0.58)  # the matched LS run lands 0.08 nats off
    t = evaluate(rows, matched=_matched(gap=0.08)).loc["3"]
    assert t.verdict == "inconclusive"
    assert "matched LS(0.137) still misses the 0.05-nat tolerance: val entropy gap +0.080" \
        in t.detail
    assert math.isnan(t.p_value)
    # The nearest-sweep rule alone would have found LS 0.1 within tolerance.
    assert evaluate(rows).loc["3", "verdict"] != "inconclusive"


def test_claim_3_matched_but_untrained_or_unbracketed() -> None:
    rows = [r for r in _matched_rows() if r["param"] != "0.137"]
    t = evaluate(rows, matched=_matched()).loc["3"]
    assert t.verdict == "inconclusive" and "matched LS(0.137) has no runs" in t.detail
    none = _matched(ls="")
    none[0]["status"] = "no bracket"
    t = evaluate(_matched_rows(), matched=none).loc["3"]
    assert t.verdict == "inconclusive" and "no matched LS strength (no bracket)" in t.detail


def test_claim_3_method_without_a_matched_row_falls_back_to_the_sweep() -> None:
    only_ls = [r for r in _matched() if r["method"] == "ls"]
    t = evaluate(_matched_rows(), matched=only_ls).loc["3"]
    assert "LS(0.137) matched run" in t.detail
    assert "ER(0.42) matched, val entropy gap -0.005" in t.detail  # nearest sweep point


# --------------------------------------------------------------------------- Holm, MDE

def test_holm_by_hand() -> None:
    got = claims.holm([0.01, 0.04, 0.03, math.nan])
    np.testing.assert_allclose(got[:3], [0.03, 0.06, 0.06])  # 3·0.01; max(2·0.03, 1·0.04)
    assert math.isnan(got[3])


@pytest.mark.parametrize(("p1", "p4", "verdict"), [(0.02, 0.04, "supported"),
                                                   (0.03, 0.04, "inconclusive")])
def test_holm_adjusts_over_the_claims_of_one_pair(p1: float, p4: float, verdict: str) -> None:
    # One SD generation: 1a has p1, 1b and 2 cannot be tested (G = 1), claim 3 finds no
    # match: only claims 1a and 4 count.
    rows = chain([0, with_p(p1)]) + baselines(bs_pp=with_p(p4))
    t = evaluate(rows)
    assert t.loc[["1a", "4"], "p_value"].to_numpy() == pytest.approx([p1, p4], rel=1e-6)
    assert t["p_value"].notna().sum() == 2
    small = min(p1, p4)  # Holm with m = 2: 2·p_(1), then max(2·p_(1), p_(2))
    expected = [2 * p if p == small else max(2 * small, p) for p in (p1, p4)]
    assert t.loc[["1a", "4"], "p_holm"].to_numpy() == pytest.approx(expected, rel=1e-6)
    assert t.loc["1a", "low"] > 0 and t.loc["4", "low"] > 0  # each significant on its own
    assert list(t.loc[["1a", "4"], "verdict"]) == [verdict, verdict]


@pytest.mark.parametrize("n", [3, 5, 10])
def test_mde_is_the_exact_noncentral_t_solve(n: int) -> None:
    for alpha in (0.05, 0.025, 0.01):
        assert claims.mde(0.7, n, alpha, 0.8) == pytest.approx(exact_mde(0.7, n, alpha),
                                                              rel=1e-7)
    # The normal-approximation formula with t quantiles undershoots: less than 80 % power.
    approx = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * 0.7 / math.sqrt(n)
    assert claims.mde(0.7, n, 0.05, 0.8) > approx
    assert math.isnan(claims.mde(0.7, 1, 0.05, 0.8)) and math.isnan(claims.mde(0.0, n, 0.05, 0.8))


def test_mde_in_the_table_is_at_holms_strictest_level() -> None:
    d = 1.0 + SPREAD
    # Claims 1a and 4 enter Holm (as above): m = 2, so each is sized at α/2 = 0.025.
    t = evaluate(chain([0, with_p(0.01)]) + baselines(bs_pp=d))
    row = t.loc["4"]
    assert row.mde_alpha == pytest.approx(0.025) and row.mde_power == 0.8
    assert row.mde == pytest.approx(exact_mde(d.std(ddof=1), 5, 0.025), rel=1e-7)
    # 1b (one generation: untestable) has no statistic to size.
    assert math.isnan(t.loc["1b", "mde"])
    # With more claims tested, the level is stricter and the MDE larger.
    steady = [0.6 * g + np.roll(SPREAD, g) / 2 if g else np.zeros(5) for g in range(4)]
    more = evaluate(chain(steady) + baselines(bs_pp=d))
    m = int(more["p_value"].notna().sum())
    assert m >= 3 and more.loc["4", "mde_alpha"] == pytest.approx(0.05 / m)
    assert more.loc["4", "mde"] == pytest.approx(exact_mde(d.std(ddof=1), 5, 0.05 / m), rel=1e-7)


# --------------------------------------------------------------------------- claim 5, last epoch

def test_claim_5_reporting_check() -> None:
    rows = chain([0, 1]) + baselines()
    assert evaluate(rows).loc["5", "verdict"] == "supported"
    rows[-1]["nll"] = math.inf  # a BS test row
    t = evaluate(rows).loc["5"]
    assert t.verdict == "contradicted" and math.isnan(t.p_value)


def test_last_epoch_verdicts_beside_the_best_checkpoints() -> None:
    best = chain([0, 1]) + baselines(bs_pp=1.0 + SPREAD)
    last = chain([0, 1]) + baselines(bs_pp=-1.0 - SPREAD)  # BS's last epoch falls behind LS
    t = evaluate(best, last=last)
    assert t.loc["4", "verdict"] == "supported" and t.loc["4", "verdict_last"] == "contradicted"
    assert t.loc["4", "value_last"] == pytest.approx((-1.0 - SPREAD).mean())
    assert (t["verdict_last"] != "").all()
