"""Figures E1, E2, E4, E5, E6 (methods §5), drawn from the tidy CSVs only (methods §7).

Conventions shared by every figure: fixed method colours and markers
(:data:`METHOD_COLORS`, :data:`METHOD_MARKERS`), one row of panels per dataset × arch
(absolute accuracy differs between architectures, so shared axes would hide the
generation effect), mean ± sample std over seeds (ddof = 1) as line + band, accuracy and
ECE in percent, entropies in nats. Reference lines (E5's CE mean) are drawn with
``axhline`` and labelled ``_ref…``, so the data lines of a panel are exactly those whose
label does not start with ``_ref``; E1 panels hold one Line2D each (the mean line). E6
draws seed means with Student-t intervals instead (``ax.errorbar``: one ErrorbarContainer
per method, its data line's gid ``dataset/arch/method``). E1-E5 show the paper's five
methods only; the teacher-free family (methods §3.6-§3.11) appears in E6 alone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from .io import atomic_path  # noqa: E402
from .methods import METHODS  # noqa: E402
from .tables import (  # noqa: E402
    DEFAULT_CONFIDENCE,
    METHOD_NAMES,
    PARAM_SYMBOLS,
    TEACHER_FREE,
    compare_runs,
    method_label,
    one_pair,
    pairs,
    read_metrics,
    read_reliability,
    sd_chain,
    seed_stats,
    t_interval,
    write_matched_entropy,
    write_sidecar,
)

__all__ = ["E1_PANELS", "E6_SINGLE", "METHOD_COLORS", "METHOD_MARKERS", "data_lines",
           "e6_points", "figure_e1", "figure_e2", "figure_e4", "figure_e5", "figure_e6",
           "render_e1", "render_e2", "render_e4", "render_e5", "render_e6", "pool_bins",
           "save_figure"]

log = logging.getLogger(__name__)

# Fixed across all figures, from each method's registry entry (seaborn "colorblind" palette
# entries; the teacher-free family (E6) takes the palette's remaining vermillion, sky blue and
# brown, black, and Paul Tol's colour-blind-safe olive and wine, with markers of their own).
METHOD_COLORS = {m.name: m.color for m in METHODS.values()}
METHOD_MARKERS = {m.name: m.marker for m in METHODS.values()}
DPI = 150
_HALO = [patheffects.withStroke(linewidth=2.5, foreground="white")]

# (split, column, scale, y label) of the E1 panels (methods §5 E1, §4).
E1_PANELS = [
    ("test", "accuracy", 100.0, "test accuracy (%)"),
    ("test", "entropy", 1.0, "test average predictive\nentropy (nats)"),
    ("test", "cd_entropy_max", 1.0, "test confidence\ndiversity (nats)"),
    ("train", "cd_entropy_max", 1.0, "train confidence diversity\n(taught to next gen., nats)"),
]


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Seaborn whitegrid/paper look, scoped (no global rcParams change)."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.25),
          "pdf.fonttype": 42, "ps.fonttype": 42, "axes.titleweight": "bold"}
    with plt.rc_context(rc):
        yield


def save_figure(fig: Figure, png: str | Path, pdf: str | Path) -> None:
    """Write PNG (150 dpi) and PDF atomically (temp names end in .tmp: pass the format)."""
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)


def _grid(n_rows: int, n_cols: int, w: float, h: float) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False,
                             layout="constrained")
    return fig, axes


def _band(ax: Axes, x: np.ndarray, mean: np.ndarray, std: np.ndarray, color: str,
          **line_kw: Any) -> Line2D:
    """Mean line with a ± std band (fill_between: no extra Line2D)."""
    (line,) = ax.plot(x, mean, color=color, lw=1.8, **line_kw)
    ax.fill_between(x, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=color,
                    alpha=0.2, lw=0)
    return line


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set(xticks=[], yticks=[])


# --------------------------------------------------------------------------- E1

def _chain_stats(metrics: pd.DataFrame, split: str, column: str, scale: float) -> pd.DataFrame:
    chain = sd_chain(metrics[metrics["split"] == split])
    return seed_stats(chain.assign(v=chain[column] * scale), ["gen"], ["v"])


def figure_e1(metrics: pd.DataFrame) -> Figure:
    """methods §5 E1 (claims 1-2): metric vs generation, CE = generation 0, mean ± std."""
    ps = pairs(metrics)
    with _style():
        fig, axes = _grid(max(len(ps), 1), len(E1_PANELS), 3.6, 2.9)
        for i, (dataset, arch) in enumerate(ps):
            runs = one_pair(metrics, dataset, arch)
            for j, (split, col, scale, ylabel) in enumerate(E1_PANELS):
                ax = axes[i, j]
                st = _chain_stats(runs, split, col, scale)
                if st.empty:
                    _no_data(ax, "no CE/SD runs")
                    continue
                g = st["gen"].to_numpy()
                line = _band(ax, g, st["v_mean"].to_numpy(), st["v_std"].to_numpy(),
                             METHOD_COLORS["sd"], marker=METHOD_MARKERS["sd"], ms=5,
                             label="SD generations (mean ± std)")
                line.set_gid(f"{dataset}/{arch}/{split}/{col}")
                if 0 in set(g):
                    ax.scatter([0], st.loc[st["gen"] == 0, "v_mean"], s=55, zorder=3,
                               color=METHOD_COLORS["ce"], marker=METHOD_MARKERS["ce"],
                               label="CE (generation 0)")
                ax.set_xticks(g, [f"{v}\n(CE)" if v == 0 else str(v) for v in g])
                ax.set_xlim(g.min() - 0.3, g.max() + 0.3)
                ax.set(xlabel="generation", ylabel=ylabel)
                if j == 0:  # one row label; per-panel titles would overlap
                    n = int(st["n_seeds"].min())
                    ax.set_title(f"{dataset} / {arch}\n({n} seed{'s' * (n != 1)})",
                                 fontsize="medium", loc="left")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle("E1: multi-generation self-distillation (mean ± std over seeds)")
    return fig


# --------------------------------------------------------------------------- E2

E2_METHODS = ("ce", "ls", "er", "sd")


def _e2_runs(metrics: pd.DataFrame) -> pd.DataFrame:
    test = metrics[metrics["split"] == "test"]
    runs = pd.concat([test[test["method"].isin(["ls", "er"])], sd_chain(test)])
    return runs.assign(acc_pct=100 * runs["accuracy"])


def _sizes(values: pd.Series | np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return 20.0 + 180.0 * (np.asarray(values, dtype=float) - lo) / span


def _setting_text(method: str, param: str, gen: int) -> str:
    if method == "ce":
        return "CE"
    if method == "sd":
        return f"g{gen}"
    return f"{PARAM_SYMBOLS[method]}={param}"


def _e2_panel(ax: Axes, runs: pd.DataFrame, lo: float, hi: float) -> None:
    for method in E2_METHODS:
        r = runs[runs["method"] == method]
        if r.empty:
            continue
        ax.scatter(r["entropy"], r["acc_pct"], s=_sizes(r["cd_entropy_max"], lo, hi),
                   color=METHOD_COLORS[method], marker=METHOD_MARKERS[method], alpha=0.75,
                   edgecolor="white", linewidth=0.5, label=METHOD_NAMES[method])
        means = r.groupby(["param", "gen"])[["entropy", "acc_pct"]].mean().reset_index()
        for m in means.itertuples():
            ax.annotate(_setting_text(method, m.param, m.gen), (m.entropy, m.acc_pct),
                        xytext=(5, 5), textcoords="offset points", fontsize=7.5,
                        color=METHOD_COLORS[method], path_effects=_HALO)
    ax.set(xlabel="test average predictive entropy (nats)", ylabel="test accuracy (%)")


def _e2_legends(fig: Figure, methods: Sequence[str], lo: float, hi: float) -> None:
    """Two legends right of the panels: method (colour/marker) and diversity (size)."""
    names = {"ce": "CE (= SD generation 0)", "sd": "SD (g = generation)",
             "ls": "LS (ε)", "er": "ER (β)"}
    handles = [Line2D([], [], ls="", marker=METHOD_MARKERS[m], color=METHOD_COLORS[m],
                      markersize=7, label=names[m]) for m in methods]
    sizes = [Line2D([], [], ls="", marker="o", color="0.6", label=f"{v:.2f}",
                    markersize=float(np.sqrt(_sizes([v], lo, hi)[0])))
             for v in np.linspace(lo, hi, 3)]
    first = fig.legend(handles=handles, loc="outside right upper", frameon=False,
                       title="method")
    fig.legend(handles=sizes, loc="outside right lower", frameon=False,
               title="test diversity\n(cd_entropy_max, nats)")
    fig.add_artist(first)


def figure_e2(metrics: pd.DataFrame) -> Figure:
    """methods §5 E2 (claim 3): accuracy vs entropy per run; colour = method, size = test
    diversity (cd_entropy_max); labels at setting means (ε, β, SD generation g)."""
    runs = _e2_runs(metrics)
    ps = pairs(runs) if len(runs) else []
    lo, hi = (float(runs["cd_entropy_max"].min()), float(runs["cd_entropy_max"].max())) \
        if len(runs) else (0.0, 1.0)
    with _style():
        fig, axes = _grid(1, max(len(ps), 1), 4.6, 3.8)
        for ax, (dataset, arch) in zip(axes[0], ps, strict=False):
            _e2_panel(ax, one_pair(runs, dataset, arch), lo, hi)
            ax.set_title(f"{dataset} / {arch}", fontsize="medium")
        if not ps:
            _no_data(axes[0, 0], "no runs")
        present = set(runs["method"]) if len(runs) else set()
        _e2_legends(fig, [m for m in E2_METHODS if m in present], lo, hi)
        fig.suptitle("E2: test accuracy vs uncertainty, one marker per run")
    return fig


# --------------------------------------------------------------------------- E4

def pool_bins(rel: pd.DataFrame) -> pd.DataFrame:
    """Bins pooled over seeds: summed counts, count-weighted confidence and accuracy."""
    r = rel.assign(cw=rel["confidence"] * rel["count"], aw=rel["accuracy"] * rel["count"])
    g = r.groupby("bin").agg(lower=("lower", "first"), upper=("upper", "first"),
                             count=("count", "sum"), cw=("cw", "sum"), aw=("aw", "sum"))
    n = g["count"].where(g["count"] > 0)
    return g.assign(confidence=(g["cw"] / n).fillna(0.0),
                    accuracy=(g["aw"] / n).fillna(0.0)).reset_index()


def _reliability_panel(ax: Axes, cax: Axes, bins: pd.DataFrame, method: str) -> None:
    width = (bins["upper"] - bins["lower"]).to_numpy()
    used = bins["count"] > 0
    b = bins[used]
    ax.bar(b["lower"], b["accuracy"], width=width[used], align="edge",
           color=METHOD_COLORS[method], edgecolor="white", lw=0.5, label="accuracy")
    ax.bar(b["lower"], b["confidence"] - b["accuracy"], bottom=b["accuracy"],
           width=width[used], align="edge", color="none", edgecolor="#C0392B", hatch="///",
           lw=0.6, label="gap to confidence")
    ax.plot([0, 1], [0, 1], ls="--", color="0.3", lw=1, label="perfect calibration")
    total = bins["count"].sum()
    ece = float((b["count"] * (b["accuracy"] - b["confidence"]).abs()).sum() / max(total, 1))
    ax.text(0.04, 0.94, f"ECE {100 * ece:.2f} %\nn = {total}", transform=ax.transAxes,
            va="top", fontsize=8, bbox={"fc": "white", "ec": "0.8", "alpha": 0.9})
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", yticks=[0, 0.25, 0.5, 0.75, 1])
    ax.tick_params(labelbottom=False)
    cax.bar(bins["lower"], bins["count"], width=width, align="edge", color="0.55")
    cax.set(xlim=(0, 1), xlabel="confidence (max prob.)", ylabel="count", xticks=[0, 0.5, 1])
    if total > 0:
        cax.set_yscale("log")
        cax.yaxis.set_major_locator(LogLocator(base=10, numticks=4))
        cax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        cax.yaxis.set_minor_formatter(NullFormatter())


_E4_LEGEND = [
    Patch(facecolor="0.45", label="accuracy per bin (bar colour = method)"),
    Patch(facecolor="none", edgecolor="#C0392B", hatch="///", label="gap to mean confidence"),
    Line2D([], [], ls="--", color="0.3", label="perfect calibration"),
    Patch(facecolor="0.55", label="test examples per bin (log scale)"),
]


def figure_e4(rel: pd.DataFrame, compare: Mapping[str, Any]) -> Figure:
    """methods §5 E4: reliability diagrams of the E3 methods (test split, seeds pooled),
    with the bin counts below each diagram (log scale)."""
    runs = compare_runs(rel[rel["split"] == "test"], compare)
    ps = pairs(runs) if len(runs) else []
    methods = [m for m in METHOD_NAMES if m in set(runs["method"])] or ["ce"]
    with _style():
        fig = plt.figure(figsize=(2.9 * len(methods), 4.0 * max(len(ps), 1)),
                         layout="constrained")
        gs = fig.add_gridspec(2 * max(len(ps), 1), len(methods),
                              height_ratios=[3, 1] * max(len(ps), 1))
        for i, (dataset, arch) in enumerate(ps):
            pair = one_pair(runs, dataset, arch)
            for j, method in enumerate(methods):
                ax = fig.add_subplot(gs[2 * i, j])
                cax = fig.add_subplot(gs[2 * i + 1, j], sharex=ax)
                r = pair[pair["method"] == method]
                if r.empty:
                    _no_data(ax, "no runs")
                    continue
                _reliability_panel(ax, cax, pool_bins(r), method)
                if j > 0:
                    ax.set_ylabel("")
                    cax.set_ylabel("")
                first = r.iloc[0]
                ax.set_title(f"{dataset} / {arch}\n"
                             f"{method_label(method, first['param'], first['gen'])}, "
                             f"{r['seed'].nunique()} seeds", fontsize="small")
        fig.legend(handles=_E4_LEGEND, loc="outside lower center", ncols=4, frameon=False)
        fig.suptitle("E4: reliability diagrams, test split, bins pooled over seeds")
    return fig


# --------------------------------------------------------------------------- E5

E5_PANELS = [("accuracy", "test accuracy (%)"), ("ece", "test ECE (%)")]


def _e5_panel(ax: Axes, runs: pd.DataFrame, column: str, label: str) -> None:
    bs = runs[runs["method"] == "bs"]
    ce = runs[runs["method"] == "ce"]
    if bs.empty:
        _no_data(ax, "no BS runs")
        return
    st = seed_stats(bs.assign(a=bs["param"].astype(float), v=100 * bs[column]), ["a"], ["v"])
    a = st["a"].to_numpy()
    _band(ax, a, st["v_mean"].to_numpy(), st["v_std"].to_numpy(), METHOD_COLORS["bs"],
          marker=METHOD_MARKERS["bs"], ms=6, label="BS (mean ± std)")
    if len(ce):
        v = 100 * ce[column]
        ax.axhline(v.mean(), color=METHOD_COLORS["ce"], ls="--", lw=1.2, label="_ref CE mean")
        if len(ce) > 1:
            ax.axhspan(v.mean() - v.std(), v.mean() + v.std(), color=METHOD_COLORS["ce"],
                       alpha=0.1, lw=0)
    if len(a) > 1 and a.min() > 0:
        ax.set_xscale("log")
    ax.set_xticks(a, [f"{x:g}" for x in a])
    ax.minorticks_off()
    ax.set(xlabel="Beta(a, 1) shape a" + (" (log scale)" if ax.get_xscale() == "log" else ""),
           ylabel=label)


_E5_LEGEND = [
    Line2D([], [], color=METHOD_COLORS["bs"], marker=METHOD_MARKERS["bs"],
           label="BS, mean ± std over seeds"),
    Line2D([], [], color=METHOD_COLORS["ce"], ls="--", label="CE mean ± std (reference)"),
]


def figure_e5(metrics: pd.DataFrame) -> Figure:
    """methods §5 E5: BS test accuracy and ECE vs a, mean ± std; dashed = CE mean ± std.
    Only the dataset × arch pairs that have BS runs get a row."""
    test = metrics[metrics["split"] == "test"]
    bs = test[test["method"] == "bs"]
    ps = pairs(bs) if len(bs) else []
    with _style():
        fig, axes = _grid(max(len(ps), 1), len(E5_PANELS), 3.8, 2.9)
        for i, (dataset, arch) in enumerate(ps):
            runs = one_pair(test, dataset, arch)
            for j, (col, label) in enumerate(E5_PANELS):
                _e5_panel(axes[i, j], runs, col, label)
                axes[i, j].set_title(f"{dataset} / {arch}", fontsize="medium")
        if not ps:
            for ax in axes[0]:
                _no_data(ax, "no BS runs")
        fig.legend(handles=_E5_LEGEND, loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle("E5: Beta-smoothing sensitivity to a")
    return fig


# --------------------------------------------------------------------------- E6

E6_SINGLE = ("ce", "sd", "bs")  # one comparison point each; LS: its whole sweep (a line)


def e6_points(test: pd.DataFrame, compare: Mapping[str, Any]) -> pd.DataFrame:
    """The E6 points of a test-split table: per dataset × arch × (method, param, gen), the
    seed mean, sample std and Student-t interval (``*_low``, ``*_high``, level
    ``compare.confidence``) of test accuracy (``acc_pct``, %) and entropy (nats), for CE,
    SD generation ``sd_gen``, BS at ``bs_a``, every LS ε and each teacher-free method."""
    single = compare_runs(test, compare, (*E6_SINGLE, *TEACHER_FREE))
    runs = pd.concat([single, test[test["method"] == "ls"]])
    runs = runs.assign(acc_pct=100 * runs["accuracy"])
    st = seed_stats(runs, ["dataset", "arch", "method", "param", "gen"], ["acc_pct", "entropy"])
    confidence = float(compare.get("confidence", DEFAULT_CONFIDENCE))
    for col in ("acc_pct", "entropy"):
        st[f"{col}_low"], st[f"{col}_high"] = t_interval(
            st[f"{col}_mean"], st[f"{col}_std"], st["n_seeds"], confidence)
    order = st["method"].map(list(METHOD_NAMES).index)
    param = pd.to_numeric(st["param"], errors="coerce")
    return st.assign(o=order, p=param).sort_values(["dataset", "arch", "o", "p", "gen"]).drop(
        columns=["o", "p"]).reset_index(drop=True)


def _errors(r: pd.DataFrame, col: str) -> np.ndarray:
    """(2, N) distances from the mean to the interval's ends (NaN with one seed: no bar)."""
    mean = r[f"{col}_mean"].to_numpy()
    return np.vstack([mean - r[f"{col}_low"].to_numpy(), r[f"{col}_high"].to_numpy() - mean])


def _e6_text(method: str, param: str, gen: int) -> str:
    return f"{PARAM_SYMBOLS['ls']}={param}" if method == "ls" else method_label(method, param, gen)


def _e6_panel(ax: Axes, points: pd.DataFrame, dataset: str, arch: str) -> None:
    for method in METHOD_NAMES:
        r = points[points["method"] == method]
        if r.empty:
            continue
        c = ax.errorbar(r["entropy_mean"], r["acc_pct_mean"], xerr=_errors(r, "entropy"),
                        yerr=_errors(r, "acc_pct"), color=METHOD_COLORS[method],
                        marker=METHOD_MARKERS[method], ms=7, ls="-" if method == "ls" else "",
                        lw=1.4, elinewidth=1, capsize=2.5, mec="white", mew=0.5,
                        zorder=4, label=METHOD_NAMES[method])  # above the labels' halos
        c.lines[0].set_gid(f"{dataset}/{arch}/{method}")
        for m in r.itertuples():
            ax.annotate(_e6_text(method, m.param, m.gen), (m.entropy_mean, m.acc_pct_mean),
                        xytext=(5, 5), textcoords="offset points", fontsize=7.5,
                        color=METHOD_COLORS[method], path_effects=_HALO)
    ax.set(xlabel="test average predictive entropy (nats)", ylabel="test accuracy (%)")
    _e6_off_scale(ax, points)


E6_OFF_SCALE_PP = 10.0
"""A setting whose mean test accuracy is this many pp below the best setting's is drawn
off scale (an arrow at the panel's foot, its numbers in the label), so the accuracy axis
resolves the differences among the others (a collapsed run would flatten them)."""


def _e6_off_scale(ax: Axes, points: pd.DataFrame) -> None:
    acc = points["acc_pct_mean"]
    off = points[acc < acc.max() - E6_OFF_SCALE_PP]
    if off.empty:
        return
    on = points.drop(off.index)
    lo = float(np.nanmin(on["acc_pct_low"].fillna(on["acc_pct_mean"])))
    hi = float(np.nanmax(on["acc_pct_high"].fillna(on["acc_pct_mean"])))
    pad = 0.15 * (hi - lo) + 0.05
    ax.set_ylim(lo - 3 * pad, hi + pad)
    for m in off.itertuples():
        ax.annotate(f"{_e6_text(m.method, m.param, m.gen)}: {m.acc_pct_mean:.1f} % (off scale)",
                    xy=(m.entropy_mean, lo - 3 * pad), xytext=(m.entropy_mean, lo - 1.8 * pad),
                    ha="center", fontsize=7.5, color=METHOD_COLORS[m.method],
                    path_effects=_HALO, arrowprops={"arrowstyle": "->",
                                                    "color": METHOD_COLORS[m.method]})


def _e6_legend(fig: Figure, methods: Sequence[str], compare: Mapping[str, Any]) -> None:
    names = {"ls": f"LS ({PARAM_SYMBOLS['ls']} sweep)", "sd": f"SD (gen {int(compare['sd_gen'])})",
             "bs": f"BS (a={float(compare['bs_a']):g})"}
    handles = [Line2D([], [], ls="-" if m == "ls" else "", marker=METHOD_MARKERS[m],
                      color=METHOD_COLORS[m], markersize=7, label=names.get(m, METHOD_NAMES[m]))
               for m in methods]
    fig.legend(handles=handles, loc="outside right center", frameon=False, title="method")


def figure_e6(metrics: pd.DataFrame, compare: Mapping[str, Any]) -> Figure:
    """methods §5 E6: test accuracy (%) vs test average predictive entropy (nats) of the
    teacher-free family beside CE, SD generation ``sd_gen``, BS at ``bs_a`` and LS over its
    ε sweep (a line); each point a seed mean with its Student-t interval
    (``compare.confidence``) in both directions. One panel per dataset × arch that has
    teacher-free runs; without any, one panel saying so."""
    test = metrics[metrics["split"] == "test"]
    family = test[test["method"].isin(TEACHER_FREE)]
    ps = pairs(family) if len(family) else []
    points = e6_points(test, compare) if ps else pd.DataFrame()
    level = 100 * float(compare.get("confidence", DEFAULT_CONFIDENCE))
    with _style():
        fig, axes = _grid(1, max(len(ps), 1), 4.8, 4.0)
        for ax, (dataset, arch) in zip(axes[0], ps, strict=False):
            here = one_pair(points, dataset, arch)
            _e6_panel(ax, here, dataset, arch)
            n = int(here["n_seeds"].min())
            ax.set_title(f"{dataset} / {arch} ({n} seed{'s' * (n != 1)})", fontsize="medium")
        if not ps:
            _no_data(axes[0, 0], "no teacher-free runs")
        else:
            present = set(points["method"])
            _e6_legend(fig, [m for m in METHOD_NAMES if m in present], compare)
        fig.suptitle(f"E6: teacher-free family, seed mean with {level:g} % t intervals")
    return fig


# --------------------------------------------------------------------------- render (rules)

def render_e1(metrics_path: str | Path, png: str | Path, pdf: str | Path,
              sidecar: str | Path) -> None:
    """Rule render_e1: E1 figure + provenance sidecar."""
    started = time.perf_counter()
    save_figure(figure_e1(read_metrics(metrics_path)), png, pdf)
    write_sidecar(sidecar, [metrics_path], {}, started, [png, pdf])


def render_e2(metrics_path: str | Path, png: str | Path, pdf: str | Path, sidecar: str | Path,
              table_csv: str | Path, table_md: str | Path, table_tex: str | Path,
              table_sidecar: str | Path, matched_path: str | Path | None = None) -> None:
    """Rule render_e2: E2 figure and the matched-entropy table (its matched runs marked
    from ``matched_path``, results/matched/matched.csv), each with its sidecar."""
    started = time.perf_counter()
    save_figure(figure_e2(read_metrics(metrics_path)), png, pdf)
    write_sidecar(sidecar, [metrics_path], {}, started, [png, pdf])
    write_matched_entropy(metrics_path, table_csv, table_md, table_tex, table_sidecar,
                          matched_path)


def render_e4(reliability_path: str | Path, png: str | Path, pdf: str | Path,
              sidecar: str | Path, compare: Mapping[str, Any]) -> None:
    """Rule render_e4: reliability diagrams of the E3 methods + sidecar."""
    started = time.perf_counter()
    save_figure(figure_e4(read_reliability(reliability_path), compare), png, pdf)
    write_sidecar(sidecar, [reliability_path], {"compare": dict(compare)}, started, [png, pdf])


def render_e5(metrics_path: str | Path, png: str | Path, pdf: str | Path,
              sidecar: str | Path) -> None:
    """Rule render_e5: BS sensitivity figure + sidecar."""
    started = time.perf_counter()
    save_figure(figure_e5(read_metrics(metrics_path)), png, pdf)
    write_sidecar(sidecar, [metrics_path], {}, started, [png, pdf])


def render_e6(metrics_path: str | Path, png: str | Path, pdf: str | Path,
              sidecar: str | Path, compare: Mapping[str, Any]) -> None:
    """Rule render_e6: the teacher-free figure + sidecar (its table: tables.write_teacher_free)."""
    started = time.perf_counter()
    save_figure(figure_e6(read_metrics(metrics_path), compare), png, pdf)
    write_sidecar(sidecar, [metrics_path], {"compare": dict(compare)}, started, [png, pdf])


def data_lines(ax: Axes) -> Sequence[Line2D]:
    """The data lines of a panel: every Line2D not labelled ``_ref…`` (see module doc)."""
    return [ln for ln in ax.lines if not str(ln.get_label()).startswith("_ref")]
