"""Figures, tables and the claims check from synthetic tidy CSVs (methods §5, §6, §7).

Two synthetic experiments with known answers: ``toy/cnn`` where SD beats CE, LS, ER and
BS beats LS, and ``toy/mlp`` where everything goes the other way. Entropies are exact seed
means, so the E2 matches are known. The claims verdicts themselves are tested on
hand-built tables in test_claims.py; here the claims check runs on the render path.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from selfdistill import claims, plots, tables
from selfdistill.io import sha256_file

SEEDS = (0, 1, 2)
G = 3
COMPARE = {"ls_eps": 0.1, "er_beta": 0.3, "bs_a": 3, "sd_gen": 1}
CHECK = {**COMPARE, "confidence": 0.95, "margin_pp": 0.5, "entropy_tolerance": 0.05,
         "power": 0.8}  # the config's compare block with the claims-check settings
NLL = {"ce": 0.60, "ls": 0.55, "er": 0.57, "sd": 0.50, "bs": 0.45}  # best: BS
ECE = {"ce": 0.05, "ls": 0.02, "er": 0.04, "sd": 0.03, "bs": 0.025}  # best: LS
# (accuracy, entropy) per swept setting; SD chain: CE + step * gen.
SWEEPS = {
    "cnn": {"ls": {"0.05": (0.805, 0.35), "0.1": (0.81, 0.52), "0.2": (0.80, 0.78)},
            "er": {"0.1": (0.802, 0.43), "0.3": (0.806, 0.62), "1": (0.79, 0.90)},
            "bs": {"1": (0.812, 0.4), "3": (0.818, 0.4), "10": (0.81, 0.4)}},
    "mlp": {"ls": {"0.05": (0.71, 0.66), "0.1": (0.715, 0.75), "0.2": (0.705, 0.95)},
            "er": {"0.1": (0.708, 0.72), "0.3": (0.712, 0.85), "1": (0.70, 1.1)},
            "bs": {"1": (0.69, 0.6), "3": (0.695, 0.6), "10": (0.685, 0.6)}},
}
# CE (accuracy, entropy, test diversity, train diversity) and the per-generation step.
CHAIN = {"cnn": ((0.80, 0.30, 1.0, 0.8), (0.02, 0.10, 0.2, 0.25)),
         "mlp": ((0.70, 0.80, 1.5, 1.4), (-0.02, -0.10, -0.2, -0.2))}
# Expected E2 matches for toy/cnn: SD gen -> (LS eps, ER beta) closest in entropy.
CNN_MATCHES = {1: ("0.05", "0.1"), 2: ("0.1", "0.1"), 3: ("0.1", "0.3")}
# Last-epoch weights: test accuracy of the best-validation checkpoint + this many pp, plus a
# zero-mean per-seed wobble (LAST_WOBBLE · (i − 1) pp), so best − last means are known.
LAST_SHIFT = {"ce": -0.3, "ls": 0.0, "er": -0.1, "sd": -0.5, "bs": 0.2}
LAST_WOBBLE = 0.1


def _settings(arch: str) -> list[tuple[str, str, int, float, float, float, float]]:
    """(method, param, gen, accuracy, entropy, test diversity, train diversity)."""
    (acc, ent, div, tdiv), (da, de, dd, dt) = CHAIN[arch]
    out = [("ce", "", 0, acc, ent, div, tdiv)]
    out += [("sd", "", g, acc + da * g, ent + de * g, div + dd * g, tdiv + dt * g)
            for g in range(1, G + 1)]
    for method, points in SWEEPS[arch].items():
        low = 0.5 if method == "ls" else 0.7  # LS/ER give little diversity
        out += [(method, p, 0, a, e, low, low) for p, (a, e) in points.items()]
    return out


def _metric_rows(arch: str, rng: np.random.Generator) -> list[dict]:
    rows = []
    for method, param, gen, acc, ent, div, tdiv in _settings(arch):
        for i, seed in enumerate(SEEDS):
            offset = (i - 1) * 0.004  # zero-mean over seeds: seed means are exact
            run = {"dataset": "toy", "arch": arch, "method": method, "param": param,
                   "seed": seed, "gen": gen, "n": 1000}
            test = {"accuracy": acc + 0.0005 * rng.standard_normal(), "nll": NLL[method],
                    "ece": ECE[method], "entropy": ent + offset, "cd_entropy_max": div,
                    "cd_entropy_true": div + 0.1, "cd_std_max": 0.2, "cd_std_true": 0.25}
            train = {**test, "accuracy": min(acc + 0.1, 1.0), "entropy": 0.8 * ent,
                     "cd_entropy_max": tdiv}
            for split, values in (("train", train), ("val", test), ("test", test)):
                rows.append({**run, "split": split, **values})
    return rows


def _reliability_rows(metrics: pd.DataFrame) -> list[dict]:
    rows = []
    for r in metrics.itertuples():
        for b in range(20):
            lower, upper = b / 20, (b + 1) / 20
            count = 0 if b < 8 else int(3 * 1.4 ** (b - 8)) + r.seed
            conf = (lower + upper) / 2 if count else 0.0
            acc = float(np.clip(conf - 2 * r.ece * (b % 3 - 0.5), 0, 1)) if count else 0.0
            rows.append({"dataset": r.dataset, "arch": r.arch, "method": r.method,
                         "param": r.param, "seed": r.seed, "gen": r.gen, "split": r.split,
                         "bin": b, "lower": lower, "upper": upper, "confidence": conf,
                         "accuracy": acc, "count": count})
    return rows


def write_synthetic(root: Path, seeds: tuple[int, ...] = SEEDS) -> tuple[Path, Path]:
    """Write ``metrics.csv``, ``metrics_last.csv`` (last epoch: ``LAST_SHIFT``) and
    ``reliability.csv`` in the collect rule's format."""
    rng = np.random.default_rng(0)
    metrics = pd.DataFrame(_metric_rows("cnn", rng) + _metric_rows("mlp", rng))
    metrics = metrics[metrics["seed"].isin(seeds)]
    root.mkdir(parents=True, exist_ok=True)
    m_path, r_path = root / "metrics.csv", root / "reliability.csv"
    metrics.to_csv(m_path, index=False, float_format="%.17g")
    shift = metrics["method"].map(LAST_SHIFT) + LAST_WOBBLE * (metrics["seed"] - 1)
    last = metrics.assign(accuracy=metrics["accuracy"] + shift / 100)
    last.to_csv(root / "metrics_last.csv", index=False, float_format="%.17g")
    pd.DataFrame(_reliability_rows(metrics)).to_csv(r_path, index=False)
    return m_path, r_path


def render_all(m_path: Path, r_path: Path, out: Path) -> dict[str, list[Path]]:
    """Every render function, as the rules call them; returns outputs per stem."""
    f = {stem: [out / f"{stem}.{ext}" for ext in exts] for stem, exts in {
        "e1_generations": ("png", "pdf", "json"), "e2_entropy_accuracy": ("png", "pdf", "json"),
        "e2_matched_entropy": ("csv", "md", "tex", "json"),
        "e3_methods": ("csv", "md", "tex", "json"), "e4_reliability": ("png", "pdf", "json"),
        "e5_beta_sensitivity": ("png", "pdf", "json"), "claims": ("md", "csv", "json")}.items()}
    plots.render_e1(m_path, *f["e1_generations"])
    last = m_path.parent / "metrics_last.csv"
    plots.render_e2(m_path, *f["e2_entropy_accuracy"], *f["e2_matched_entropy"])
    tables.write_methods(m_path, *f["e3_methods"], compare=COMPARE, metrics_last_path=last)
    plots.render_e4(r_path, *f["e4_reliability"], compare=COMPARE)
    plots.render_e5(m_path, *f["e5_beta_sensitivity"])
    claims.render_claims(m_path, *f["claims"], compare=CHECK, metrics_last_path=last,
                         matched_path=out / "absent" / "matched.csv")
    return f


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_synthetic(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def rendered(synthetic, tmp_path_factory) -> dict[str, list[Path]]:
    return render_all(*synthetic, tmp_path_factory.mktemp("figures"))


@pytest.fixture(scope="module")
def metrics(synthetic) -> pd.DataFrame:
    return tables.read_metrics(synthetic[0])


@pytest.mark.slow
def test_every_output_exists_and_pngs_open(rendered) -> None:
    for paths in rendered.values():
        for p in paths:
            assert p.is_file() and p.stat().st_size > 0, p
            if p.suffix == ".png":
                h, w = mpimg.imread(p).shape[:2]
                assert 300 < h < 4000 and 400 < w < 5000, (p, h, w)
    assert not list(rendered["claims"][0].parent.glob("*.tmp")), "temp files left behind"


@pytest.mark.slow
def test_sidecars_record_inputs_config_and_provenance(rendered, synthetic) -> None:
    m_path, r_path = synthetic
    last = m_path.parent / "metrics_last.csv"
    for stem, paths in rendered.items():
        side = json.loads(paths[-1].read_text())
        expected = {r_path} if stem == "e4_reliability" else {m_path}
        if stem in ("claims", "e3_methods"):  # the absent matched.csv is not an input
            expected.add(last)
        assert side["inputs"] == {str(p): sha256_file(p) for p in expected}, stem
        assert set(side["git"]) == {"commit", "dirty"}
        assert side["versions"]["matplotlib"] and side["versions"]["pandas"]
        assert side["wall_time_s"] >= 0
        assert {str(p) for p in paths[:-1]} <= set(side["outputs"])
    assert json.loads(rendered["claims"][-1].read_text())["config"] == {"compare": CHECK}
    assert json.loads(rendered["e3_methods"][-1].read_text())["config"] == {"compare": COMPARE}


def test_e1_panels_have_one_line_per_pair_with_all_generations(metrics) -> None:
    fig = plots.figure_e1(metrics)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2 * len(plots.E1_PANELS)  # one row per dataset x arch
    seen, rows = set(), {}
    for ax in panels:
        assert len(ax.lines) == 1
        line = ax.lines[0]
        np.testing.assert_array_equal(line.get_xdata(), np.arange(G + 1))
        seen.add(line.get_gid())
        rows.setdefault(ax.get_subplotspec().rowspan.start, []).append(ax)
    assert len(seen) == len(panels)
    for row in rows.values():  # one pair per row, named once, on the row's first panel
        pairs = {"/".join(ax.lines[0].get_gid().split("/")[:2]) for ax in row}
        first = min(row, key=lambda ax: ax.get_subplotspec().colspan.start)
        assert len(pairs) == 1 and pairs.pop().replace("/", " / ") in first.get_title("left")
        assert all(ax.get_title("left") == "" for ax in row if ax is not first)
    acc = next(ax for ax in panels if ax.lines[0].get_gid() == "toy/cnn/test/accuracy")
    np.testing.assert_allclose(acc.lines[0].get_ydata(), [80, 82, 84, 86], atol=0.1)


def test_e5_panels_have_one_data_line_and_a_ce_reference(metrics) -> None:
    fig = plots.figure_e5(metrics)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 4
    for ax in panels:
        (line,) = plots.data_lines(ax)
        np.testing.assert_array_equal(line.get_xdata(), [1, 3, 10])
        assert len(ax.lines) == 2  # + the "_ref" CE line


@pytest.mark.slow
def test_e3_marks_the_best_method_per_column(metrics, rendered) -> None:
    t = tables.methods_table(metrics, COMPARE)
    assert len(t) == 10
    best = {(r.arch, col): r.method for r in t.itertuples() for col in ("accuracy", "nll", "ece")
            if getattr(r, f"best_{col}")}
    assert best == {("cnn", "accuracy"): "sd", ("cnn", "nll"): "bs", ("cnn", "ece"): "ls",
                    ("mlp", "accuracy"): "ls", ("mlp", "nll"): "bs", ("mlp", "ece"): "ls"}
    csv_path, md_path, tex_path, _ = rendered["e3_methods"]
    assert pd.read_csv(csv_path)["best_accuracy"].sum() == 2
    md = md_path.read_text()
    assert md.count("**") == 12 and "**82.0" in md
    assert tex_path.read_text().count("\\textbf{") == 6


def _hand_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_e3_intervals_are_student_t_over_seeds(metrics) -> None:
    t = tables.methods_table(metrics, COMPARE).set_index(["arch", "method"])
    test = metrics[metrics["split"] == "test"]
    sd = test[(test["arch"] == "cnn") & (test["method"] == "sd") & (test["gen"] == 1)]
    acc = 100 * sd.sort_values("seed")["accuracy"].to_numpy()
    row = t.loc[("cnn", "sd")]
    assert (row.accuracy_pct_low, row.accuracy_pct_high) == pytest.approx(_hand_interval(acc))
    wider = tables.methods_table(metrics, {**COMPARE, "confidence": 0.99}).set_index(
        ["arch", "method"]).loc[("cnn", "sd")]
    assert wider.accuracy_pct_low < row.accuracy_pct_low
    assert (wider.accuracy_pct_low, wider.accuracy_pct_high) == pytest.approx(
        _hand_interval(acc, 0.99))


@pytest.mark.slow
def test_best_vs_last_per_method(synthetic, metrics, rendered) -> None:
    last = tables.read_metrics(synthetic[0].parent / "metrics_last.csv")
    t = tables.best_vs_last(metrics, last, COMPARE)
    assert len(t) == 10 and set(t["n_seeds"]) == {len(SEEDS)}
    wobble = LAST_WOBBLE * (np.array(SEEDS) - 1)
    for r in t.itertuples():
        d = LAST_SHIFT[r.method] + wobble
        assert r.accuracy_pp_last_minus_best == pytest.approx(d.mean(), abs=1e-9), r.label
        assert (r.accuracy_pp_low, r.accuracy_pp_high) == pytest.approx(_hand_interval(d))
        assert r.accuracy_pct_last - r.accuracy_pct_best == pytest.approx(d.mean(), abs=1e-9)
    e3 = pd.read_csv(rendered["e3_methods"][0])
    assert {"accuracy_pp_last_minus_best", "accuracy_pp_low", "accuracy_pct_low"} <= set(e3)
    assert "last − best acc. (pp)" in rendered["e3_methods"][1].read_text()
    md = rendered["claims"][0].read_text()
    assert "## Best vs last epoch" in md and "| last epoch |" in md
    sd_line = next(x for x in md.splitlines() if "| SD (gen 1) |" in x and "| cnn |" in x)
    assert f"{LAST_SHIFT['sd']:+.2f} [" in sd_line


@pytest.mark.slow
def test_e2_matches_the_closest_entropy_setting(metrics, rendered) -> None:
    t = tables.matched_entropy(metrics)
    cnn = t[t["arch"] == "cnn"].set_index("sd_gen")
    assert {g: (r.ls_param, r.er_param) for g, r in cnn.iterrows()} == CNN_MATCHES
    assert cnn.loc[1, "ls_entropy_gap"] == pytest.approx(0.35 - 0.40)
    assert cnn.loc[1, "sd_accuracy_pct_mean"] == pytest.approx(82.0, abs=0.1)
    assert not t["ls_matched"].any() and not t["er_matched"].any()
    written = pd.read_csv(rendered["e2_matched_entropy"][0], dtype={"ls_param": str})
    assert len(written) == 2 * G and {"sd_entropy_mean", "er_diversity_std",
                                      "ls_val_entropy_mean", "ls_matched"} <= set(written)


def test_e2_matches_on_validation_entropy_and_marks_matched_runs(metrics, tmp_path) -> None:
    # Move LS 0.2's VALIDATION entropy next to SD gen 1's (0.40); its test entropy stays
    # 0.78, far from it. The test-entropy match would be LS 0.05 (0.35).
    m = metrics.copy()
    move = ((m["arch"] == "cnn") & (m["method"] == "ls") & (m["param"] == "0.2")
            & (m["split"] == "val"))
    m.loc[move, "entropy"] = m.loc[move, "entropy"] - 0.78 + 0.41
    t = tables.matched_entropy(m).set_index(["arch", "sd_gen"])
    row = t.loc[("cnn", 1)]
    assert row.ls_param == "0.2" and row.ls_entropy_gap == pytest.approx(0.01)
    assert row.ls_entropy_mean == pytest.approx(0.78)  # shown: the test entropy
    matched = pd.DataFrame([{"dataset": "toy", "arch": "cnn", "method": "ls", "param": "0.2",
                             "target_entropy": 0.40, "val_entropy": 0.41, "gap": 0.01}])
    marked = tables.matched_entropy(m, matched).set_index(["arch", "sd_gen"])
    assert marked.loc[("cnn", 1), "ls_matched"] and not marked.loc[("cnn", 1), "er_matched"]
    assert not marked.loc[("mlp", 1), "ls_matched"]
    m_path, matched_path = tmp_path / "metrics.csv", tmp_path / "matched.csv"
    m.to_csv(m_path, index=False, float_format="%.17g")
    matched.to_csv(matched_path, index=False)
    out = [tmp_path / f"e2.{x}" for x in ("csv", "md", "tex", "json")]
    tables.write_matched_entropy(m_path, *out, matched_path=matched_path)
    assert "| 0.2 (matched) |" in out[1].read_text()


@pytest.mark.slow
def test_claim_verdicts_follow_the_constructed_effects(rendered) -> None:
    t = pd.read_csv(rendered["claims"][1], dtype={"claim": str})
    assert list(t.columns[:10]) == ["dataset", "arch", "claim", "verdict", "value", "low",
                                    "high", "n_seeds", "detail", "p_value"]
    assert list(t["claim"]) == list(claims.CLAIMS) * 2
    got = {(r.arch, r.claim): r.verdict for r in t.itertuples()}
    for claim in ("1a", "1b", "4"):
        assert got[("cnn", claim)] == "supported", claim
        assert got[("mlp", claim)] == "contradicted", claim
    # Every seed's entropy and diversity rise by exactly the same step: zero spread (cnn);
    # the mlp has no gain, so there is nothing for claim 2 to explain.
    two = t[t["claim"] == "2"].set_index("arch")
    assert set(two["verdict"]) == {"inconclusive"}
    assert "zero spread" in two.loc["cnn", "detail"]
    assert two.loc["mlp", "detail"].startswith("no gain to explain")
    # SD gen 1's val entropy lies below every ER setting of both sweeps.
    three = t[t["claim"] == "3"]
    assert set(three["verdict"]) == {"inconclusive"}
    assert three["detail"].str.contains("ER sweep does not bracket").all()
    assert got[("cnn", "5")] == got[("mlp", "5")] == "supported"
    c1 = t[(t["arch"] == "cnn") & (t["claim"] == "1a")].iloc[0]
    assert c1.value == pytest.approx(2.0, abs=0.2) and c1.n_seeds == 3  # gen 1 - CE, pp
    # The last epoch's weights (every SD accuracy −0.5 pp, CE −0.3 pp) keep these verdicts.
    assert (t["verdict_last"] == t["verdict"]).all()
    assert (t["mde_power"].dropna() == 0.8).all() and t["mde_power"].notna().sum() >= 6


@pytest.mark.slow
def test_claims_md_opens_with_one_summary_line_per_pair(rendered) -> None:
    lines = rendered["claims"][0].read_text().splitlines()
    assert lines[0].startswith("# Claims check")
    summary = [x for x in lines[1:4] if x]
    assert [x.split("**")[1] for x in summary] == ["toy / cnn", "toy / mlp"]
    assert "supported" in summary[0] and summary[0].count(";") >= 5  # a phrase per claim
    text = "\n".join(lines)
    for needle in ("| verdict |", "Holm p", "TOST p", "MDE", "±0.5 pp", "0.05 nats",
                   "## Details", "90 % interval", "power 80 %"):
        assert needle in text, needle


def test_one_seed_is_always_inconclusive(tmp_path) -> None:
    m_path, _ = write_synthetic(tmp_path, seeds=(0,))
    t = claims.evaluate(tables.read_metrics(m_path), CHECK)
    assert set(t.loc[t["claim"] != "5", "verdict"]) == {"inconclusive"}


def test_pool_bins_sums_counts_and_weights_means() -> None:
    rel = pd.DataFrame({"bin": [0, 0, 1, 1], "lower": [0, 0, 0.5, 0.5],
                        "upper": [0.5, 0.5, 1, 1], "count": [1, 3, 0, 0],
                        "confidence": [0.2, 0.4, 0, 0], "accuracy": [1.0, 0.0, 0, 0]})
    pooled = plots.pool_bins(rel).set_index("bin")
    assert pooled.loc[0, "count"] == 4 and pooled.loc[1, "count"] == 0
    assert pooled.loc[0, "confidence"] == pytest.approx(0.35)
    assert pooled.loc[0, "accuracy"] == pytest.approx(0.25)
