"""E6, the teacher-free family (methods §5 E6), from synthetic tidy CSVs.

The synthetic experiments of test_render.py (``toy/cnn``, ``toy/mlp``: CE, the SD chain,
LS/ER/BS sweeps) plus rows of the six teacher-free methods (methods §3.6-§3.11) with
seed-to-seed noise, so every interval has a width. Expected numbers are recomputed here
from the CSV rows in float64 with ``scipy.stats`` (t.interval of the mean, sem with
ddof = 1), never through the package's helpers. The same rows also check that E1-E5 do not
change when a metrics table holds teacher-free runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from selfdistill import plots, tables
from selfdistill.io import sha256_file
from selfdistill.methods import METHODS, PAPER_METHODS

from .test_render import COMPARE, SEEDS, write_synthetic

CONFIDENCE = 0.9  # not the default 0.95, so a helper that ignores compare.confidence fails
CMP = {**COMPARE, "confidence": CONFIDENCE}
FAMILY = tuple(m for m in METHODS if m not in PAPER_METHODS)
# Per teacher-free method: (accuracy, entropy) shift from CE's seed values.
SHIFT = {name: (0.003 * (k + 1), 0.04 * (k + 1)) for k, name in enumerate(FAMILY)}
COLUMNS = {"accuracy": ("accuracy_pct", 100.0), "nll": ("nll", 1.0), "ece": ("ece_pct", 100.0),
           "entropy": ("entropy", 1.0), "cd_entropy_max": ("cd_entropy_max", 1.0)}


def add_teacher_free(metrics: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """``metrics`` plus one row per CE row for each teacher-free method (empty param,
    gen 0), shifted by ``SHIFT`` with per-row noise on every metric."""
    rng = np.random.default_rng(seed)
    ce = metrics[metrics["method"] == "ce"]
    parts = [metrics]
    for name, (da, de) in SHIFT.items():
        def noise(scale: float) -> np.ndarray:
            return scale * rng.standard_normal(len(ce))
        parts.append(ce.assign(method=name, accuracy=ce["accuracy"] + da + noise(0.002),
                               nll=ce["nll"] + noise(0.01), ece=ce["ece"] + 0.01 + noise(0.002),
                               entropy=ce["entropy"] + de + noise(0.01),
                               cd_entropy_max=ce["cd_entropy_max"] + noise(0.05)))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(metrics.csv of the paper's methods only, the same plus teacher-free rows)."""
    root = tmp_path_factory.mktemp("results")
    plain, _ = write_synthetic(root)
    raw = pd.read_csv(plain, keep_default_na=False, dtype={"param": str})
    with_tf = root / "metrics_tf.csv"
    add_teacher_free(raw).to_csv(with_tf, index=False, float_format="%.17g")
    return plain, with_tf


@pytest.fixture(scope="module")
def metrics(paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tables.read_metrics(paths[0]), tables.read_metrics(paths[1])


# --------------------------------------------------------------------------- references

def _select(test: pd.DataFrame, method: str, param: str, gen: int) -> pd.DataFrame:
    """The test rows of one setting, compared on floats (``"3"`` is ``3.0``)."""
    r = test[(test["method"] == method) & (test["gen"] == gen)]
    if param:
        r = r[np.isclose(pd.to_numeric(r["param"]), float(param))]
    return r.sort_values("seed")


def _reference(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=np.float64)
    if np.ptp(x) == 0:  # zero spread: the interval is the mean itself
        return float(x.mean()), float(x.mean()), float(x.mean())
    low, high = stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return float(x.mean()), float(low), float(high)


def _figure_settings(test: pd.DataFrame, arch: str) -> dict[str, list[tuple[str, int]]]:
    """Per method, the (param, gen) points E6's figure should draw, LS in ε order."""
    pair = test[test["arch"] == arch]
    ls = sorted(set(pair.loc[pair["method"] == "ls", "param"]), key=float)
    return {"ce": [("", 0)], "ls": [(p, 0) for p in ls],
            "sd": [("", int(CMP["sd_gen"]))], "bs": [(f"{CMP['bs_a']:g}", 0)],
            **{m: [("", 0)] for m in FAMILY}}


def _bars(container, horizontal: bool) -> list[np.ndarray]:
    """The error-bar segments of one direction (x: horizontal), one per point in order."""
    for coll in container.lines[2]:
        segs = [np.asarray(seg) for seg in coll.get_segments()]
        if bool(np.isclose(segs[0][0, 1], segs[0][1, 1])) == horizontal:
            return segs
    return []


# --------------------------------------------------------------------------- figure

def test_colours_and_markers_cover_every_method_and_are_distinct() -> None:
    for table in (plots.METHOD_COLORS, plots.METHOD_MARKERS):
        assert set(table) == set(METHODS)
        assert len(set(table.values())) == len(table)
    assert tables.TEACHER_FREE == FAMILY


def test_figure_has_one_point_per_setting_at_the_seed_mean_with_t_intervals(metrics) -> None:
    m = metrics[1]
    test = m[m["split"] == "test"]
    fig = plots.figure_e6(m, CMP)
    panels = [ax for ax in fig.axes if ax.containers]
    assert len(panels) == 2
    for ax in panels:
        by_method = {c.lines[0].get_gid().split("/")[2]: c for c in ax.containers}
        arch = {c.lines[0].get_gid().split("/")[1] for c in ax.containers}.pop()
        expected = _figure_settings(test, arch)
        assert set(by_method) == set(expected)  # no ER, every teacher-free method
        for method, settings in expected.items():
            c = by_method[method]
            xs, ys = c.lines[0].get_xdata(), c.lines[0].get_ydata()
            assert len(xs) == len(settings), method
            xbars, ybars = _bars(c, horizontal=True), _bars(c, horizontal=False)
            assert len(xbars) == len(ybars) == len(settings), method
            for i, (param, gen) in enumerate(settings):
                rows = _select(test[test["arch"] == arch], method, param, gen)
                assert len(rows) == len(SEEDS)
                ent, ent_lo, ent_hi = _reference(rows["entropy"].to_numpy())
                acc, acc_lo, acc_hi = _reference(100 * rows["accuracy"].to_numpy())
                assert (xs[i], ys[i]) == pytest.approx((ent, acc), abs=1e-9), (method, param)
                assert sorted(xbars[i][:, 0]) == pytest.approx([ent_lo, ent_hi], abs=1e-9)
                assert sorted(ybars[i][:, 1]) == pytest.approx([acc_lo, acc_hi], abs=1e-9)
        # only LS is drawn as a connected line; every point carries a text label
        assert by_method["ls"].lines[0].get_linestyle() == "-"
        assert all(by_method[x].lines[0].get_linestyle() == "None" for x in FAMILY)
        labels = {t.get_text() for t in ax.texts}
        assert {METHODS[x].label for x in FAMILY} <= labels
        assert sum(len(s) for s in expected.values()) == len(ax.texts)
    plt.close(fig)


def test_figure_without_teacher_free_runs_says_so(metrics) -> None:
    fig = plots.figure_e6(metrics[0], CMP)
    assert len(fig.axes) == 1 and not fig.axes[0].containers
    assert [t.get_text() for t in fig.axes[0].texts] == ["no teacher-free runs"]
    plt.close(fig)


def test_render_e6_writes_figure_and_sidecar(paths, tmp_path) -> None:
    png, pdf, side = (tmp_path / f"e6.{x}" for x in ("png", "pdf", "json"))
    plots.render_e6(paths[1], png, pdf, side, CMP)
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    record = json.loads(side.read_text())
    assert record["inputs"] == {str(paths[1]): sha256_file(paths[1])}
    assert record["config"] == {"compare": CMP}


# --------------------------------------------------------------------------- table

def _table_settings() -> list[tuple[str, str, int]]:
    return [("ce", "", 0), ("ls", f"{CMP['ls_eps']:g}", 0), ("er", f"{CMP['er_beta']:g}", 0),
            ("sd", "", int(CMP["sd_gen"])), ("bs", f"{CMP['bs_a']:g}", 0),
            *((m, "", 0) for m in FAMILY)]


def _write(path: Path, out: Path, compare=CMP, claims: Path | None = None) -> list[Path]:
    files = [out / f"e6_table.{x}" for x in ("csv", "md", "tex", "json")]
    tables.write_teacher_free(path, *files, compare=compare, claims_path=claims)
    return files


def test_table_rows_are_seed_means_with_t_intervals(paths, metrics, tmp_path) -> None:
    csv_out, md_out, tex_out, _ = _write(paths[1], tmp_path)
    written = pd.read_csv(csv_out, keep_default_na=False, dtype={"param": str})
    test = metrics[1][metrics[1]["split"] == "test"]
    assert len(written) == 2 * len(_table_settings())
    for arch in ("cnn", "mlp"):
        for method, param, gen in _table_settings():
            got = written[(written["arch"] == arch) & (written["method"] == method)]
            assert len(got) == 1, (arch, method)
            got = got.iloc[0]
            assert float(got["param"] or 0) == pytest.approx(float(param or 0))
            assert int(got["gen"]) == gen and int(got["n_seeds"]) == len(SEEDS)
            assert str(got["teacher_free"]) == str(method in FAMILY)
            rows = _select(test[test["arch"] == arch], method, param, gen)
            for col, (out, scale) in COLUMNS.items():
                x = scale * rows[col].to_numpy()
                mean, low, high = _reference(x)
                assert float(got[f"{out}_mean"]) == pytest.approx(mean, abs=1e-9)
                assert float(got[f"{out}_std"]) == pytest.approx(x.std(ddof=1), abs=1e-9)
                assert (float(got[f"{out}_low"]), float(got[f"{out}_high"])) == \
                    pytest.approx((low, high), abs=1e-9), (arch, method, col)
    md, tex = md_out.read_text(), tex_out.read_text()
    assert md.count("\n| toy |") == len(written) and "Literature claims" not in md
    assert "90 % Student-t interval" in md
    ols = written[(written["arch"] == "cnn") & (written["method"] == "ols")].iloc[0]
    cell = f"{ols['accuracy_pct_mean']:.2f} [{ols['accuracy_pct_low']:.2f}, " \
           f"{ols['accuracy_pct_high']:.2f}]"
    assert f"| toy | cnn | OLS | {len(SEEDS)} | {cell} |" in md
    assert "\\begin{tabular}" in tex and tex.count("OLS") == 2


def test_table_without_teacher_free_runs_holds_the_paper_settings(paths, tmp_path) -> None:
    written = pd.read_csv(_write(paths[0], tmp_path)[0])
    assert len(written) == 2 * len(PAPER_METHODS) and not written["teacher_free"].any()
    assert set(written["method"]) == set(PAPER_METHODS)
    no_er = {k: v for k, v in CMP.items() if k != "er_beta"}
    t = tables.teacher_free_table(tables.read_metrics(paths[1]), no_er)
    assert "er" not in set(t["method"]) and len(t) == 2 * (len(PAPER_METHODS) - 1 + len(FAMILY))


def _claims_csv(path: Path) -> pd.DataFrame:
    """A claims.csv with paper rows (ids of claims.CLAIMS) and two literature rows."""
    base = {"dataset": "toy", "verdict": "supported", "unit": "pp", "detail": "",
            "p_value": 0.01}
    rows = [{**base, "arch": "cnn", "claim": "1a", "claim_text": "SD generation 1 beats CE",
             "value": 2.0, "low": 1.0, "high": 3.0, "n_seeds": 3, "p_holm": 0.02},
            {**base, "arch": "cnn", "claim": "5", "claim_text": "Accuracy, NLL and ECE are "
             "reported", "value": 1.0, "low": np.nan, "high": np.nan, "n_seeds": 3,
             "p_holm": np.nan},
            {**base, "arch": "cnn", "claim": "tfkd_reg_beats_ce", "claim_text":
             "Tf-KD_reg beats CE", "verdict": "inconclusive", "value": 0.4321, "low": -0.25,
             "high": 1.125, "n_seeds": 3, "p_holm": 0.3456},
            {**base, "arch": "mlp", "claim": "pskd_beats_ls", "claim_text":
             "PS-KD beats label smoothing", "verdict": "contradicted", "value": -1.5,
             "low": -2.75, "high": -0.5, "n_seeds": 3, "p_holm": 0.0123}]
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False)
    return df


def test_literature_rows_come_from_claims_csv(paths, tmp_path) -> None:
    claims_path = tmp_path / "claims.csv"
    source = _claims_csv(claims_path)
    literature = source[~source["claim"].isin(["1a", "1b", "2", "3", "4", "5"])]
    got = tables.literature_claims(claims_path)
    assert list(got["claim"]) == list(literature["claim"])
    _, md_out, _, side = _write(paths[1], tmp_path, claims=claims_path)
    md = md_out.read_text()
    section = md.split("## Literature claims")[1]
    lines = [x for x in section.splitlines() if x.startswith("| toy |")]
    assert len(lines) == len(literature)
    for line, r in zip(lines, literature.itertuples(), strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:5] == ["toy", r.arch, r.claim, r.claim_text, f"**{r.verdict}**"]
        assert cells[5] == f"{r.value:+.3f} pp [{r.low:+.3f}, {r.high:+.3f}]"
        assert cells[6:] == [str(r.n_seeds), f"{r.p_holm:.2g}"]
    assert "SD generation 1 beats CE" not in md
    record = json.loads(side.read_text())
    assert set(record["inputs"]) == {str(paths[1]), str(claims_path)}
    _, md_absent, _, _ = _write(paths[1], tmp_path, claims=tmp_path / "absent.csv")
    assert "Literature claims" not in md_absent.read_text()


# --------------------------------------------------------------------------- E1-E5 unchanged

def test_paper_tables_ignore_teacher_free_rows(metrics) -> None:
    plain, with_tf = metrics
    assert len(with_tf) > len(plain)
    pd.testing.assert_frame_equal(tables.methods_table(plain, CMP),
                                  tables.methods_table(with_tf, CMP))
    pd.testing.assert_frame_equal(tables.compare_runs(plain, CMP),
                                  tables.compare_runs(with_tf, CMP))
    pd.testing.assert_frame_equal(plots._e2_runs(plain), plots._e2_runs(with_tf))
    pd.testing.assert_frame_equal(tables.matched_entropy(plain),
                                  tables.matched_entropy(with_tf))
    pd.testing.assert_frame_equal(tables.best_vs_last(plain, plain, CMP),
                                  tables.best_vs_last(with_tf, with_tf, CMP))
    assert set(tables.compare_runs(with_tf, CMP)["method"]) == set(PAPER_METHODS)


def test_paper_figures_ignore_teacher_free_rows(metrics) -> None:
    def drawn(fig) -> list[tuple[str, np.ndarray, np.ndarray]]:
        out = [(str(ln.get_label()), np.asarray(ln.get_xdata(), float),
                np.asarray(ln.get_ydata(), float)) for ax in fig.axes for ln in ax.lines]
        out += [(str(c.get_label()), np.asarray(c.get_offsets(), float), np.array([]))
                for ax in fig.axes for c in ax.collections]
        plt.close(fig)
        return out
    for figure in (plots.figure_e1, plots.figure_e2, plots.figure_e5):
        a, b = drawn(figure(metrics[0])), drawn(figure(metrics[1]))
        assert len(a) == len(b), figure.__name__
        for (la, xa, ya), (lb, xb, yb) in zip(a, b, strict=True):
            assert la == lb
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_e3_files_are_byte_identical_with_teacher_free_rows(paths, tmp_path) -> None:
    written = []
    for i, path in enumerate(paths):
        out = [tmp_path / f"e3_{i}.{x}" for x in ("csv", "md", "tex", "json")]
        tables.write_methods(path, *out, compare=CMP)
        written.append([p.read_bytes() for p in out[:3]])
    assert written[0] == written[1]
