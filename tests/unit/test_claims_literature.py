"""Literature claims (methods §6, the config's ``claims`` list) on metrics tables built by hand.

Each test adds teacher-free runs with a chosen per-seed effect against CE or LS (one network
per seed, rows for the three splits, built with the helpers of test_claims) so the verdict
is known, and checks the statistics against independent computations: the t interval and
TOST p-values from the t distribution by hand, Holm by hand over the literature rows only,
the equivalence MDE against a Monte Carlo estimate of TOST's power.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from selfdistill import claims
from selfdistill.methods import METHODS

from .test_claims import (
    BASE,
    COMPARE,
    SPREAD,
    baselines,
    chain,
    exact_mde,
    runs,
    t_interval,
    with_p,
)

ALPHA, MARGIN = 1 - COMPARE["confidence"], COMPARE["margin_pp"]
NOISE = np.array([0.06, -0.04, 0.02, -0.08, 0.04])  # pp, zero-mean, |d| < 0.1


def arm(method: str, accs_pp: Sequence[float] | float, param: str = "") -> list[dict]:
    """Runs of ``method`` whose test accuracy is BASE + pp / 100 in every seed."""
    return runs(method, BASE + np.asarray(accs_pp, dtype=float) / 100, param)


def entry(cid: str, kind: str, a: dict, b: dict, text: str = "") -> dict:
    return {"id": cid, "text": text or f"claim {cid}", "source": f"paper of {cid}",
            "kind": kind, "a": a, "b": b}


def paper() -> list[dict]:
    """CE, SD generation 1 (+1 pp with spread: claim 1a testable) and LS/ER/BS."""
    return chain([0, 1.0 + SPREAD]) + baselines(bs_pp=0.5 + SPREAD)


def evaluate(rows: list[dict], literature: list[dict] | None, last: list[dict] | None = None,
             **compare) -> pd.DataFrame:
    return claims.evaluate(pd.DataFrame(rows), {**COMPARE, **compare},
                           metrics_last=None if last is None else pd.DataFrame(last),
                           literature=literature)


def lit(table: pd.DataFrame) -> pd.DataFrame:
    """The literature rows, indexed by id."""
    return table[~table["claim"].isin(claims.CLAIMS)].set_index("claim")


def hand_tost(d: np.ndarray, margin: float) -> float:
    """max of the two one-sided t-test p-values of −margin < mean < margin, by hand."""
    n, se = len(d), d.std(ddof=1) / math.sqrt(len(d))
    return max(stats.t.sf((d.mean() + margin) / se, n - 1),
               stats.t.cdf((d.mean() - margin) / se, n - 1))


def hand_p(d: np.ndarray) -> float:
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return 2 * stats.t.sf(abs(t), len(d) - 1)


def hand_holm(p: Sequence[float]) -> list[float]:
    """Holm step-down by its definition: p̃_(i) = max_{j≤i} min(1, (m − j + 1) p_(j))."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, m = [0.0] * len(p), len(p)
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank + 1))
    return out


TF_CE = ({"method": "tfkd_reg"}, {"method": "ce"})


# --------------------------------------------------------------------------- beats

def test_beats_supported_with_the_hand_interval_and_labels() -> None:
    d = 1.0 + 0.5 * SPREAD  # Tf-KD(reg) − CE, pp
    row = lit(evaluate(paper() + arm("tfkd_reg", d), [entry("tf", "beats", *TF_CE, "Tf wins")]))
    r = row.loc["tf"]
    assert r.verdict == "supported" and r.claim_text == "Tf wins" and r.unit == "pp"
    assert r.statistic == f"{METHODS['tfkd_reg'].label} − {METHODS['ce'].label}"
    assert (r.value, r.low, r.high) == pytest.approx((d.mean(), *t_interval(d)), abs=1e-9)
    assert r.p_value == pytest.approx(hand_p(d), rel=1e-6)
    assert r.p_tost == pytest.approx(hand_tost(d, MARGIN), rel=1e-6)
    assert r.n_seeds == 5 and r.sign_count == 5
    # One entry: Holm leaves its p alone and the MDE is at α / 1.
    assert r.p_holm == pytest.approx(r.p_value) and r.mde_alpha == pytest.approx(ALPHA)
    assert r.mde == pytest.approx(exact_mde(d.std(ddof=1), 5, ALPHA), rel=1e-7)


def test_beats_contradicted_below_zero() -> None:
    d = -1.0 + 0.5 * SPREAD
    r = lit(evaluate(paper() + arm("tfkd_reg", d), [entry("tf", "beats", *TF_CE)])).loc["tf"]
    assert r.verdict == "contradicted" and r.high < 0 and r.p_holm < ALPHA


def test_equal_within_the_margin_is_equivalent_and_no_effect() -> None:
    rows = paper() + arm("pskd", NOISE)
    pair = ({"method": "pskd"}, {"method": "ce"})
    t = lit(evaluate(rows, [entry("eq", "equivalent", *pair), entry("bt", "beats", *pair)]))
    tost = hand_tost(NOISE, MARGIN)
    assert t.loc["eq", "verdict"] == "supported" and t.loc["bt", "verdict"] == "no effect"
    assert t.loc["eq", "p_tost"] == pytest.approx(tost, rel=1e-6)
    # For an equivalence claim the p that enters Holm is the TOST p.
    assert t.loc["eq", "p_value"] == pytest.approx(tost, rel=1e-6)
    assert t.loc["bt", "p_value"] == pytest.approx(hand_p(NOISE), rel=1e-6)


def test_two_pp_apart_contradicts_equivalence() -> None:
    d = 2.0 + NOISE
    r = lit(evaluate(paper() + arm("zipf", d),
                     [entry("eq", "equivalent", {"method": "zipf"}, {"method": "ce"})])).loc["eq"]
    assert r.verdict == "contradicted" and r.low > MARGIN
    assert r.low == pytest.approx(t_interval(d)[0], abs=1e-9)
    assert "outside ±0.5 pp" in r.detail


def test_equivalence_overlapping_the_margin_is_inconclusive() -> None:
    d = 0.5 + 0.5 * SPREAD  # interval above 0 but straddling +0.5 pp: TOST fails
    r = lit(evaluate(paper() + arm("ols", d),
                     [entry("eq", "equivalent", {"method": "ols"}, {"method": "ce"})])).loc["eq"]
    assert 0 < t_interval(d)[0] < MARGIN < t_interval(d)[1]
    assert r.verdict == "inconclusive" and r.p_holm >= ALPHA


def test_a_setting_not_run_is_inconclusive_and_named() -> None:
    entries = [entry("tf", "beats", *TF_CE),
               entry("ls", "equivalent", {"method": "cskd"}, {"method": "ls", "param": 0.2})]
    t = lit(evaluate(paper() + arm("cskd", 1.0 + SPREAD), entries))  # no tfkd_reg, no LS(0.2)
    assert (t["verdict"] == "inconclusive").all() and t["p_value"].isna().all()
    assert "not run: tfkd_reg" in t.loc["tf", "detail"]
    assert "not run: ls (param 0.2)" in t.loc["ls", "detail"]
    assert t.loc["ls", "statistic"] == "CS-KD − LS(ε=0.2)"


def test_sd_setting_defaults_to_the_compare_generation() -> None:
    # SD generation 1 − CE as a literature entry is claim 1a's statistic exactly.
    t = evaluate(paper(), [entry("sd", "beats", {"method": "sd"}, {"method": "ce"})])
    a, r = t.set_index("claim").loc["1a"], lit(t).loc["sd"]
    assert r.statistic == "SD gen 1 − CE"
    for col in ("value", "low", "high", "p_value", "p_tost"):
        assert r[col] == pytest.approx(a[col], rel=1e-12)


def test_only_seeds_present_in_both_are_paired() -> None:
    d = 1.0 + 0.5 * SPREAD
    rows = paper() + [r for r in arm("tfkd_reg", d) if r["seed"] != 4]
    r = lit(evaluate(rows, [entry("tf", "beats", *TF_CE)])).loc["tf"]
    assert r.n_seeds == 4 and r.value == pytest.approx(d[:4].mean())


# --------------------------------------------------------------------------- Holm family

def test_holm_runs_over_the_literature_entries_only() -> None:
    rows = (paper() + arm("tfkd_reg", with_p(0.02)) + arm("cskd", with_p(0.03))
            + arm("pskd", 0.1 + NOISE))
    entries = [entry("a", "beats", *TF_CE),
               entry("b", "beats", {"method": "cskd"}, {"method": "ce"}),
               entry("c", "equivalent", {"method": "pskd"}, {"method": "ce"}),
               entry("d", "beats", {"method": "ols"}, {"method": "ce"})]  # not run: untested
    t = lit(evaluate(rows, entries))
    tested = t.loc[["a", "b", "c"]]
    assert tested["p_value"].to_numpy() == pytest.approx(
        [0.02, 0.03, hand_tost(0.1 + NOISE, MARGIN)], rel=1e-6)
    assert tested["p_holm"].to_numpy() == pytest.approx(hand_holm(list(tested["p_value"])),
                                                        rel=1e-12)
    assert math.isnan(t.loc["d", "p_holm"])
    # m = 3 tested entries: each sized at α/3; the untested one as if it entered (α/4).
    assert tested["mde_alpha"].to_numpy() == pytest.approx([ALPHA / 3] * 3)
    assert t.loc["d", "mde_alpha"] == pytest.approx(ALPHA / 4)
    d = with_p(0.02)
    assert t.loc["a", "mde"] == pytest.approx(exact_mde(d.std(ddof=1), 5, ALPHA / 3), rel=1e-6)


def test_paper_rows_are_unchanged_by_literature_entries() -> None:
    rows = paper() + arm("tfkd_reg", with_p(0.001)) + arm("pskd", NOISE)
    entries = [entry("a", "beats", *TF_CE),
               entry("b", "equivalent", {"method": "pskd"}, {"method": "ce"})]
    last = paper() + arm("tfkd_reg", -1.0 - SPREAD) + arm("pskd", NOISE)
    for lastrows in (None, last):
        without = evaluate(rows, None, lastrows)
        pd.testing.assert_frame_equal(evaluate(rows, [], lastrows), without)
        with_lit = evaluate(rows, entries, lastrows)
        assert list(with_lit["claim"]) == [*claims.CLAIMS, "a", "b"]
        assert list(with_lit.columns) == claims.CLAIM_COLUMNS
        pd.testing.assert_frame_equal(with_lit.iloc[:len(without)], without)


def test_last_epoch_fills_literature_rows() -> None:
    entries = [entry("a", "beats", *TF_CE)]
    best = paper() + arm("tfkd_reg", 1.0 + SPREAD)
    last = paper() + arm("tfkd_reg", -1.0 - SPREAD)
    r = lit(evaluate(best, entries, last)).loc["a"]
    assert r.verdict == "supported" and r.verdict_last == "contradicted"
    assert r.value_last == pytest.approx((-1.0 - SPREAD).mean())


# --------------------------------------------------------------------------- equivalence MDE

def mc_tost_power(delta: float, sd: float, n: int, margin: float, alpha: float,
                  draws: int = 200_000) -> float:
    """Monte Carlo: the share of N(delta, sd²) samples of size n that TOST declares
    equivalent (both one-sided t tests reject at alpha)."""
    x = np.random.default_rng(7).normal(delta, sd, size=(draws, n))
    mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(n)
    crit = stats.t.ppf(1 - alpha, n - 1)
    return float(((mean - crit * se > -margin) & (mean + crit * se < margin)).mean())


@pytest.mark.parametrize(("sd", "n", "alpha"), [(0.2, 5, 0.05), (0.15, 3, 0.025), (0.3, 10, 0.01)])
def test_tost_power_matches_monte_carlo(sd: float, n: int, alpha: float) -> None:
    for delta in (0.0, 0.2):
        exact = claims.tost_power(delta, sd, n, MARGIN, alpha)
        mc = mc_tost_power(delta, sd, n, MARGIN, alpha)
        assert exact == pytest.approx(mc, abs=4 * math.sqrt(0.25 / 200_000))


def test_equivalence_mde_has_the_stated_power() -> None:
    sd, n, alpha = 0.2, 5, 0.025
    size = claims.equivalence_mde(sd, n, MARGIN, alpha, 0.8)
    assert 0 < size < MARGIN
    assert mc_tost_power(size, sd, n, MARGIN, alpha) == pytest.approx(0.8, abs=0.005)
    # A larger true difference is declared equivalent less often.
    assert mc_tost_power(size + 0.05, sd, n, MARGIN, alpha) < 0.8 - 0.02
    # Too noisy for the margin: even a true 0 falls short of 80 % power.
    assert math.isnan(claims.equivalence_mde(1.0, 3, MARGIN, alpha, 0.8))
    assert math.isnan(claims.equivalence_mde(0.0, 5, MARGIN, alpha, 0.8))


def test_equivalence_row_reports_the_equivalence_mde() -> None:
    rows = paper() + arm("pskd", NOISE) + arm("tfkd_reg", 1.0 + SPREAD)
    entries = [entry("eq", "equivalent", {"method": "pskd"}, {"method": "ce"}),
               entry("tf", "beats", *TF_CE)]
    r = lit(evaluate(rows, entries)).loc["eq"]
    sd = NOISE.std(ddof=1)
    assert r.mde_alpha == pytest.approx(ALPHA / 2) and r.mde_power == COMPARE["power"]
    assert r.mde == pytest.approx(claims.equivalence_mde(sd, 5, MARGIN, ALPHA / 2, 0.8),
                                  rel=1e-6)
    assert mc_tost_power(r.mde, sd, 5, MARGIN, ALPHA / 2) == pytest.approx(0.8, abs=0.005)
    assert f"up to ±{r.mde:.3g} pp" in r.detail


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize(("entries", "pattern"), [
    ([entry("x", "beats", {"method": "tfkd"}, {"method": "ce"})],
     r"claims\[0\]\.a\.method.*'tfkd'.*tfkd_reg, tfkd_self, pskd"),
    ([entry("x", "beats", {"method": "ce"}, {"method": "tfkd_reg", "param": 0.1})],
     r"claims\[0\]\.b\.param.*no swept strength"),
    ([entry("x", "beats", {"method": "ls"}, {"method": "ce"})], r"claims\[0\]\.a\.param.*eps"),
    ([entry("x", "beats", {"method": "ls", "param": 1.5}, {"method": "ce"})],
     r"claims\[0\]\.a\.param"),
    ([entry("x", "beats", {"method": "ce", "gen": 2}, {"method": "sd"})], r"claims\[0\]\.a\.gen"),
    ([entry("x", "beats", *TF_CE), entry("x", "beats", {"method": "ols"}, {"method": "ce"})],
     r"claims\[1\]\.id.*duplicate.*claims\[0\]"),
    ([entry("1a", "beats", *TF_CE)], r"claims\[0\]\.id.*paper claim"),
    ([entry("x", "better", *TF_CE)], r"claims\[0\]\.kind.*beats, equivalent"),
    ([entry("x", "beats", {"method": "ce"}, {"method": "ce"})], r"claims\[0\].*same setting"),
    ([{k: v for k, v in entry("x", "beats", *TF_CE).items() if k != "source"}],
     r"claims\[0\].*missing.*source"),
])
def test_entries_are_validated_up_front(entries: list[dict], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        evaluate(paper(), entries)
    # Before the metrics are looked at: an empty table fails on the entry, not the columns.
    with pytest.raises(ValueError, match=pattern):
        claims.evaluate(pd.DataFrame(), COMPARE, literature=entries)


# --------------------------------------------------------------------------- claims.md

def _render(tmp: Path, name: str, literature: list[dict] | None) -> tuple[str, pd.DataFrame,
                                                                           dict]:
    rows = paper() + arm("tfkd_reg", 1.0 + SPREAD) + arm("pskd", NOISE)
    metrics = tmp / "metrics.csv"
    pd.DataFrame(rows).to_csv(metrics, index=False, float_format="%.17g")
    out = [tmp / f"{name}.{ext}" for ext in ("md", "csv", "json")]
    table = claims.render_claims(metrics, *out, compare=COMPARE, literature=literature)
    return out[0].read_text(), table, json.loads(out[2].read_text())


def test_claims_md_gets_a_literature_section_only_with_entries(tmp_path: Path) -> None:
    entries = [entry("tf", "beats", *TF_CE, "Tf-KD beats CE"),
               entry("eq", "equivalent", {"method": "pskd"}, {"method": "ce"})]
    entries[0]["source"] = "Yuan et al., CVPR 2020, Table 9"
    plain, _, side_plain = _render(tmp_path, "none", None)
    empty, _, _ = _render(tmp_path, "empty", [])
    md, table, side = _render(tmp_path, "lit", entries)
    assert empty == plain and "Literature claims" not in plain and "claims" not in side_plain["config"]
    start, end = md.index("## Literature claims"), md.index("## Details")
    section = md[start:end]
    assert md[:start] + md[end:] == plain  # the paper's part is as without entries
    for r in lit(table).itertuples():
        line = next(x for x in section.splitlines() if f"| {r.Index} |" in x)
        assert f"**{r.verdict}**" in line and f"{r.value:+.3f} [{r.low:+.3f}, {r.high:+.3f}]" in line
    assert "Yuan et al., CVPR 2020, Table 9" in section and "Tf-KD beats CE" in section
    assert side["config"]["claims"][0]["id"] == "tf"
