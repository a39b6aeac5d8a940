"""Tables rendered from the tidy metric CSVs (methods §5 E2, E3 and E6, §7).

Everything here reads ``results/metrics.csv`` (methods §7) or ``results/reliability.csv``
only, so tables re-render without retraining. Shared selection helpers (the SD chain with
CE as generation 0, the E3 comparison points) live here and are reused by
:mod:`selfdistill.plots` and :mod:`selfdistill.claims`.

E1-E5 are about the paper's five methods (``methods.PAPER_METHODS``) only: rows of the
teacher-free family (:data:`TEACHER_FREE`, methods §3.6-§3.11) in the same metrics table
enter E6 alone (:func:`teacher_free_table`), never the paper's comparisons.

Units in written tables: accuracy and ECE in percent (columns named ``*_pct_*``) or
percentage points for differences (``*_pp_*``), NLL, entropy and confidence diversity in
nats. Spread is the sample standard deviation (ddof = 1) over seeds; with one seed it is
undefined and shown as the mean alone. Intervals are Student-t intervals of the seed mean
(n − 1 df) at ``compare.confidence`` (0.95 when not given).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .grid import parse_param
from .io import write_csv, write_json, write_text
from .methods import METHODS as _REGISTRY
from .methods import PAPER_METHODS, SWEPT
from .provenance import provenance

__all__ = ["MATCHED_KEYS", "METHODS", "METHOD_NAMES", "PARAM_SYMBOLS", "TEACHER_FREE",
           "best_vs_last", "compare_runs", "literature_claims", "matched_entropy",
           "method_label", "methods_table", "pairs", "read_matched", "read_metrics",
           "read_reliability", "sd_chain", "seed_stats", "t_interval", "teacher_free_table",
           "write_matched_entropy", "write_methods", "write_sidecar", "write_teacher_free"]

log = logging.getLogger(__name__)

# From the registry (selfdistill.methods): names in table order, labels, strength symbols.
METHODS = tuple(_REGISTRY)
METHOD_NAMES = {m.name: m.label for m in _REGISTRY.values()}
PARAM_SYMBOLS = {m.name: m.symbol for m in SWEPT}
# The teacher-free family (methods §3.6-§3.11, E6): every registered method not the paper's.
TEACHER_FREE = tuple(m for m in METHODS if m not in PAPER_METHODS)
_LATEX_SYMBOLS = {"ε": r"$\varepsilon$", "β": r"$\beta$", "±": r"$\pm$", "−": "$-$"}
RUN_KEYS = ["dataset", "arch", "method", "param", "seed", "gen"]
METRIC_KEYS = ["accuracy", "nll", "ece", "entropy", "cd_entropy_max", "cd_entropy_true",
               "cd_std_max", "cd_std_true"]
RELIABILITY_KEYS = ["bin", "lower", "upper", "confidence", "accuracy", "count"]
# results/matched/matched.csv (methods §5 E2, §6 claim 3): one row per dataset × arch ×
# matched method, ``param`` the matched strength (empty when none brackets SD's entropy).
MATCHED_KEYS = ["dataset", "arch", "method", "param", "target_entropy", "val_entropy", "gap"]
DEFAULT_CONFIDENCE = 0.95


# --------------------------------------------------------------------------- reading

def _read_tidy(path: str | Path, required: Sequence[str]) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, dtype={"param": str})
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (methods §7 tidy table expected)")
    df["seed"] = df["seed"].astype(int)
    df["gen"] = df["gen"].astype(int)
    return df


def read_metrics(path: str | Path) -> pd.DataFrame:
    """``results/metrics.csv`` (methods §7); ``param`` stays a string, empty for ce and sd."""
    df = _read_tidy(path, RUN_KEYS + ["split"] + METRIC_KEYS)
    df[METRIC_KEYS] = df[METRIC_KEYS].astype(float)
    return df


def read_matched(path: str | Path) -> pd.DataFrame:
    """``results/matched/matched.csv``: ``param`` a string, the entropies and gap floats
    (NaN where not measured yet)."""
    df = pd.read_csv(path, keep_default_na=False, dtype={"param": str})
    missing = [c for c in MATCHED_KEYS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the matching rounds' "
                         f"table with columns {MATCHED_KEYS} (rerun the matching rules)")
    for col in ("target_entropy", "val_entropy", "gap"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def read_reliability(path: str | Path) -> pd.DataFrame:
    """``results/reliability.csv``: per-bin confidence, accuracy, count (methods §4)."""
    df = _read_tidy(path, RUN_KEYS + ["split"] + RELIABILITY_KEYS)
    df[["lower", "upper", "confidence", "accuracy"]] = df[
        ["lower", "upper", "confidence", "accuracy"]].astype(float)
    df["count"] = df["count"].astype(int)
    return df


# --------------------------------------------------------------------------- selection

def pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, arch) experiments present, sorted (methods §5: one block per pair)."""
    return sorted({(str(d), str(a)) for d, a in zip(df["dataset"], df["arch"], strict=True)})


def one_pair(df: pd.DataFrame, dataset: str, arch: str) -> pd.DataFrame:
    return df[(df["dataset"] == dataset) & (df["arch"] == arch)]


def param_is(params: pd.Series, value: float) -> pd.Series:
    """Rows whose string ``param`` equals the float ``value`` (``"3"`` matches ``3.0``)."""
    as_float = np.array([np.nan if (v := parse_param(p)) is None else v for p in params],
                        dtype=float)
    return pd.Series(np.isclose(as_float, float(value)), index=params.index)


def sd_chain(df: pd.DataFrame) -> pd.DataFrame:
    """CE rows as generation 0 plus the SD generations 1..G (methods §3.4, E1)."""
    ce = df[df["method"] == "ce"].assign(gen=0)
    sd = df[(df["method"] == "sd") & (df["gen"] >= 1)]
    return pd.concat([ce, sd], ignore_index=True)


def compare_runs(df: pd.DataFrame, compare: Mapping[str, Any],
                 methods: Sequence[str] = PAPER_METHODS) -> pd.DataFrame:
    """The E3/E4 comparison points (methods §5): CE, LS(ε), ER(β), SD(generation), BS(a).

    ``compare`` has the sweep key of each swept method (``ls_eps``, ``er_beta``, ``bs_a``)
    and ``sd_gen``; methods without a sweep (CE, the teacher-free family) keep every row.
    ``methods``: the methods kept, the paper's five by default (E6 passes the teacher-free
    ones too). Works on the metric and the reliability tables alike.
    """
    m = df["method"]
    keep = (m == "sd") & (df["gen"] == int(compare["sd_gen"])) & ("sd" in methods)
    for method in _REGISTRY.values():
        if method.name == "sd" or method.name not in methods:
            continue
        chosen = (param_is(df["param"], compare[method.sweep_key]) if method.sweep_key
                  else pd.Series(True, index=df.index))
        keep |= (m == method.name) & chosen
    return df[keep]


def method_label(method: str, param: str = "", gen: int = 0) -> str:
    """Human label of a run setting, e.g. ``LS (ε=0.1)``, ``SD (gen 1)``, ``CE``."""
    name = METHOD_NAMES[method]
    if method == "sd":
        return f"{name} (gen {int(gen)})"
    if method in PARAM_SYMBOLS and parse_param(param) is not None:
        return f"{name} ({PARAM_SYMBOLS[method]}={param})"
    return name


def seed_stats(df: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and seed count of ``columns`` per ``by`` group."""
    g = df.groupby(list(by), sort=True, dropna=False)
    out = g[list(columns)].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()


def t_interval(mean: pd.Series | np.ndarray, std: pd.Series | np.ndarray,
               n: pd.Series | np.ndarray,
               confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of a seed mean, mean ± t_{(1+confidence)/2, n−1}·std/√n
    (NaN with one seed)."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(n >= 2, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1))
                        * std / np.sqrt(n), np.nan)
    return mean - half, mean + half


# --------------------------------------------------------------------------- E2 matched entropy

_E2_MATCHED = ("ls", "er")  # methods §5 E2: the uncertainty-only baselines matched to SD
_E2_COLUMNS = ("entropy", "accuracy", "cd_entropy_max")
_E2_OUT = {"entropy": "entropy", "accuracy": "accuracy_pct", "cd_entropy_max": "diversity"}


def _setting_stats(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per (param, gen) of ``method``: test entropy, accuracy (%) and diversity, and the
    validation entropy (``val_entropy_*``) that the match is made on."""
    own = runs[runs["method"] == method]
    test = own[own["split"] == "test"].assign(accuracy=lambda d: 100 * d["accuracy"])
    out = seed_stats(test, ["param", "gen"], _E2_COLUMNS)
    val = seed_stats(own[own["split"] == "val"], ["param", "gen"], ["entropy"])
    val = val.rename(columns={"entropy_mean": "val_entropy_mean",
                              "entropy_std": "val_entropy_std"}).drop(columns="n_seeds")
    return out.merge(val, on=["param", "gen"], how="left")


def _match_row(prefix: str, target: float, settings: pd.DataFrame,
               matched: str | None) -> dict[str, Any]:
    """The setting whose seed-mean validation entropy is closest to ``target`` (ties:
    smaller param); ``<prefix>_matched`` marks the matched-entropy strength ``matched``."""
    row: dict[str, Any] = {f"{prefix}_param": ""}
    for col in _E2_COLUMNS:
        row[f"{prefix}_{_E2_OUT[col]}_mean"] = math.nan
        row[f"{prefix}_{_E2_OUT[col]}_std"] = math.nan
    row |= {f"{prefix}_val_entropy_mean": math.nan, f"{prefix}_val_entropy_std": math.nan,
            f"{prefix}_entropy_gap": math.nan, f"{prefix}_matched": False}
    if settings.empty:
        return row
    order = settings.assign(gap=(settings["val_entropy_mean"] - target).abs(),
                            p=settings["param"].astype(float)).sort_values(["gap", "p"])
    best = order.iloc[0]
    row[f"{prefix}_param"] = best["param"]
    for col in _E2_COLUMNS:
        row[f"{prefix}_{_E2_OUT[col]}_mean"] = float(best[f"{col}_mean"])
        row[f"{prefix}_{_E2_OUT[col]}_std"] = float(best[f"{col}_std"])
    row[f"{prefix}_val_entropy_mean"] = float(best["val_entropy_mean"])
    row[f"{prefix}_val_entropy_std"] = float(best["val_entropy_std"])
    row[f"{prefix}_entropy_gap"] = float(best["val_entropy_mean"] - target)
    row[f"{prefix}_matched"] = bool(
        matched is not None and parse_param(matched) is not None
        and math.isclose(float(best["p"]), float(parse_param(matched))))
    return row


def _matched_params(matched: pd.DataFrame | None, dataset: str, arch: str) -> dict[str, str]:
    if matched is None:
        return {}
    here = one_pair(matched, dataset, arch)
    return {str(m): str(p) for m, p in zip(here["method"], here["param"], strict=True)
            if str(p).strip()}


def matched_entropy(metrics: pd.DataFrame, matched: pd.DataFrame | None = None) -> pd.DataFrame:
    """methods §5 E2: per SD generation g ≥ 1, the LS and ER settings closest in entropy.

    Closeness is |seed-mean VALIDATION entropy of the setting − that of SD generation g|,
    as in claim 3 (methods §6), so the pick never looks at the test split; the values shown
    are test-split: entropy, accuracy in percent, diversity = ``cd_entropy_max`` (nats),
    beside ``*_val_entropy_*``. ``*_entropy_gap`` = matched setting's validation entropy −
    SD's (nats). ``*_matched`` is true where the setting is the matched-entropy strength of
    ``matched`` (results/matched/matched.csv, optional).
    """
    rows = []
    for dataset, arch in pairs(metrics):
        runs = one_pair(metrics, dataset, arch)
        sd = _setting_stats(runs, "sd")
        settings = {m: _setting_stats(runs, m) for m in _E2_MATCHED}
        chosen = _matched_params(matched, dataset, arch)
        for _, s in sd[sd["gen"] >= 1].sort_values("gen").iterrows():
            row: dict[str, Any] = {"dataset": dataset, "arch": arch, "sd_gen": int(s["gen"]),
                                   "n_seeds": int(s["n_seeds"])}
            for col in _E2_COLUMNS:
                row[f"sd_{_E2_OUT[col]}_mean"] = float(s[f"{col}_mean"])
                row[f"sd_{_E2_OUT[col]}_std"] = float(s[f"{col}_std"])
            row["sd_val_entropy_mean"] = float(s["val_entropy_mean"])
            row["sd_val_entropy_std"] = float(s["val_entropy_std"])
            for method, table in settings.items():
                row |= _match_row(method, float(s["val_entropy_mean"]), table,
                                  chosen.get(method))
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- E3 methods

_E3_METRICS = {"accuracy": ("accuracy_pct", 100.0, "max"), "nll": ("nll", 1.0, "min"),
               "ece": ("ece_pct", 100.0, "min")}
_E3_KEYS = ["dataset", "arch", "method", "param", "gen"]


def _confidence(compare: Mapping[str, Any]) -> float:
    return float(compare.get("confidence", DEFAULT_CONFIDENCE))


def _e3_order(table: pd.DataFrame) -> pd.DataFrame:
    table = table.assign(order=table["method"].map(METHODS.index))
    table = table.sort_values(["dataset", "arch", "order"]).drop(columns="order")
    table.insert(3, "label", [method_label(m, p, g) for m, p, g in
                              zip(table["method"], table["param"], table["gen"], strict=True)])
    return table.reset_index(drop=True)


def best_vs_last(metrics: pd.DataFrame, metrics_last: pd.DataFrame,
                 compare: Mapping[str, Any]) -> pd.DataFrame:
    """methods §5 E3 points, best-validation checkpoint (``metrics``) against the last
    epoch's weights (``metrics_last``, same columns), test split, paired per seed.

    Columns: the E3 keys and ``label``, ``n_seeds`` (seeds in both), ``accuracy_pct_best``
    and ``accuracy_pct_last`` (seed means, %), ``accuracy_pp_last_minus_best`` (mean of the
    per-seed differences, pp) with its Student-t interval ``accuracy_pp_low`` /
    ``accuracy_pp_high`` at ``compare.confidence``, ``nll_last_minus_best`` (nats) and
    ``ece_pp_last_minus_best`` (pp), means of per-seed differences.
    """
    keys = [*_E3_KEYS, "seed"]
    cols = ["accuracy", "nll", "ece"]
    pick = [compare_runs(m[m["split"] == "test"], compare)[keys + cols]
            for m in (metrics, metrics_last)]
    both = pick[0].merge(pick[1], on=keys, suffixes=("_best", "_last"))
    diff = both.assign(
        accuracy_pct_best=100 * both["accuracy_best"], accuracy_pct_last=100 * both["accuracy_last"],
        accuracy_pp=100 * (both["accuracy_last"] - both["accuracy_best"]),
        nll_last_minus_best=both["nll_last"] - both["nll_best"],
        ece_pp_last_minus_best=100 * (both["ece_last"] - both["ece_best"]))
    g = diff.groupby(_E3_KEYS, sort=True, dropna=False)
    out = g[["accuracy_pct_best", "accuracy_pct_last", "nll_last_minus_best",
             "ece_pp_last_minus_best"]].mean()
    out["accuracy_pp_last_minus_best"] = g["accuracy_pp"].mean()
    spread = g["accuracy_pp"].std(ddof=1)
    out["n_seeds"] = g["seed"].nunique()
    out["accuracy_pp_low"], out["accuracy_pp_high"] = t_interval(
        out["accuracy_pp_last_minus_best"], spread, out["n_seeds"], _confidence(compare))
    order = ["n_seeds", "accuracy_pct_best", "accuracy_pct_last", "accuracy_pp_last_minus_best",
             "accuracy_pp_low", "accuracy_pp_high", "nll_last_minus_best",
             "ece_pp_last_minus_best"]
    return _e3_order(out[order].reset_index())


def methods_table(metrics: pd.DataFrame, compare: Mapping[str, Any],
                  metrics_last: pd.DataFrame | None = None) -> pd.DataFrame:
    """methods §5 E3: test accuracy (%), NLL (nats), ECE (%) per method, mean ± std over
    seeds and the Student-t interval of the mean (``<metric>_low`` / ``<metric>_high``) at
    ``compare.confidence`` (0.95 when absent).

    ``best_<metric>`` marks the best seed-mean within each dataset × arch (highest
    accuracy, lowest NLL and ECE; exact ties are all marked). With ``metrics_last``
    (results/metrics_last.csv) the :func:`best_vs_last` columns are joined on.
    """
    test = compare_runs(metrics[metrics["split"] == "test"], compare)
    test = test.assign(**{out: test[col] * scale for col, (out, scale, _) in _E3_METRICS.items()})
    outs = [out for out, _, _ in _E3_METRICS.values()]
    table = _e3_order(seed_stats(test, _E3_KEYS, outs))
    for out in outs:
        table[f"{out}_low"], table[f"{out}_high"] = t_interval(
            table[f"{out}_mean"], table[f"{out}_std"], table["n_seeds"], _confidence(compare))
    for col, (out, _, sense) in _E3_METRICS.items():
        means = table.groupby(["dataset", "arch"])[f"{out}_mean"]
        best = means.transform(sense)
        table[f"best_{col}"] = np.isclose(table[f"{out}_mean"], best, rtol=0, atol=1e-12)
    if metrics_last is not None:
        extra = best_vs_last(metrics, metrics_last, compare).drop(columns=["label"])
        extra = extra.rename(columns={"n_seeds": "n_seeds_last"})
        table = table.merge(extra, on=_E3_KEYS, how="left")
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------- formatting

def pm(mean: float, std: float, digits: int) -> str:
    """``"mean ± std"``; the mean alone when std is undefined (one seed); ``–`` if no mean."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], n_text: int = 2) -> str:
    """A GitHub pipe table (cells already formatted); the first ``n_text`` columns are
    left-aligned, the rest (numbers) right-aligned."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    sep = "|" + "|".join("---" if i < n_text else "---:" for i in range(len(header))) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)]) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the Greek/± symbols used in labels to math mode."""
    out = str(text)
    for ch in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        out = out.replace(ch, "\\" + ch if ch != "\\" else r"\textbackslash{}")
    for sym, tex in _LATEX_SYMBOLS.items():
        out = out.replace(sym, tex)
    return out


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str,
                label: str, n_text: int = 2) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``); cells are
    escaped unless they are already ``\\textbf{…}``; ``n_text`` left-aligned columns."""
    def cell(c: str) -> str:
        return c if c.startswith("\\textbf") else latex_escape(c)
    align = "l" * n_text + "r" * (len(header) - n_text)
    body = [" & ".join(cell(c) for c in r) + r" \\" for r in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption)}}}",
                      f"\\label{{{label}}}", f"\\begin{{tabular}}{{{align}}}", r"\toprule",
                      " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def _bold(text: str, on: bool, style: str) -> str:
    if not on or text == "–":
        return text
    return f"**{text}**" if style == "md" else f"\\textbf{{{latex_escape(text)}}}"


# --------------------------------------------------------------------------- writers

def write_sidecar(path: str | Path, inputs: Sequence[str | Path], config: Any,
                  started: float, outputs: Sequence[str | Path]) -> None:
    """Provenance JSON beside an output: the evidence travels with the result."""
    write_json(path, provenance(config=config, inputs=[str(p) for p in inputs],
                                wall_time_s=round(time.perf_counter() - started, 3),
                                outputs=[str(p) for p in outputs]))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def _interval(low: float, high: float, digits: int) -> str:
    if low is None or not np.isfinite(low):
        return ""
    return f" [{low:.{digits}f}, {high:.{digits}f}]"


def _e2_cells(r: Mapping[str, Any]) -> list[str]:
    cells = [r["dataset"], r["arch"], str(r["sd_gen"]),
             pm(r["sd_val_entropy_mean"], r["sd_val_entropy_std"], 3)]
    for p in ("sd", *_E2_MATCHED):
        if p != "sd":
            mark = " (matched)" if r[f"{p}_matched"] else ""
            cells += [(r[f"{p}_param"] or "–") + mark,
                      "–" if not np.isfinite(r[f"{p}_entropy_gap"])
                      else f"{r[f'{p}_entropy_gap']:+.3f}"]
        cells += [pm(r[f"{p}_entropy_mean"], r[f"{p}_entropy_std"], 3),
                  pm(r[f"{p}_accuracy_pct_mean"], r[f"{p}_accuracy_pct_std"], 2),
                  pm(r[f"{p}_diversity_mean"], r[f"{p}_diversity_std"], 3)]
    return cells


def _e2_header() -> list[str]:
    """E2 column titles: SD's values, then each matched method's strength and values."""
    head = ["dataset", "arch", f"{METHOD_NAMES['sd']} gen", f"{METHOD_NAMES['sd']} val entropy"]
    for m in ("sd", *_E2_MATCHED):
        label = METHOD_NAMES[m]
        if m in PARAM_SYMBOLS:
            head += [f"{label} {PARAM_SYMBOLS[m]}", f"{label} val gap"]
        head += [f"{label} entropy", f"{label} acc. (%)", f"{label} diversity"]
    return head


_E2_HEADER = _e2_header()
_E2_NOTE = ("For each SD generation the LS (ε) and ER (β) setting whose seed-mean "
            "VALIDATION entropy is closest to SD's (as in claim 3, methods §6); *val gap* = its "
            "validation entropy − SD's (nats); *(matched)* marks the strength trained to match "
            "SD's validation entropy after the sweep. Other columns: test split, mean ± std over "
            "seeds. Entropy = average predictive entropy (nats); diversity = entropy of the "
            "histogram of max-probability confidences (cd_entropy_max, nats), methods §4.")


def write_matched_entropy(metrics_path: str | Path, csv_out: str | Path, md_out: str | Path,
                          tex_out: str | Path, sidecar: str | Path,
                          matched_path: str | Path | None = None) -> pd.DataFrame:
    """Render the E2 matched-entropy table (methods §5 E2, claim 3) as CSV, Markdown, LaTeX.

    ``matched_path``: results/matched/matched.csv, optional (None or a missing file: no
    setting is marked as matched)."""
    started = time.perf_counter()
    matched = None if matched_path is None or not Path(matched_path).is_file() else matched_path
    table = matched_entropy(read_metrics(metrics_path),
                            read_matched(matched) if matched else None)
    write_csv(csv_out, _records(table), list(table.columns) or ["dataset"])
    rows = [_e2_cells(r) for r in _records(table)]
    write_text(md_out, "# E2: SD generations vs LS / ER at matched entropy\n\n"
               + _E2_NOTE + "\n\n" + markdown_table(_E2_HEADER, rows))
    write_text(tex_out, latex_table(_E2_HEADER, rows, "SD vs LS/ER at matched validation "
                                    "entropy. " + _E2_NOTE, "tab:e2-matched-entropy"))
    write_sidecar(sidecar, [metrics_path, *([matched] if matched else [])], {}, started,
                  [csv_out, md_out, tex_out])
    log.info("E2 matched-entropy table: %d rows", len(table))
    return table


_E3_HEADER = ["dataset", "arch", "method", "seeds", "accuracy (%)", "NLL (nats)", "ECE (%)"]
_E3_LAST_HEADER = "last − best acc. (pp)"


def _e3_note(confidence: float, with_last: bool) -> str:
    last = (" *last − best*: test accuracy of the last epoch's weights minus the "
            "best-validation checkpoint's, mean of per-seed differences with its "
            f"{100 * confidence:g} % interval (results/metrics_last.csv)." if with_last else "")
    return (f"Test split, mean ± std over seeds [{100 * confidence:g} % Student-t interval of "
            "the mean, n − 1 df]; best mean per column within each dataset × arch in bold "
            "(highest accuracy, lowest NLL and ECE). ECE: 20 equal-width bins (methods §4)."
            + last)


def _e3_cells(r: Mapping[str, Any], style: str, with_last: bool) -> list[str]:
    def cell(out: str, digits: int, best: str) -> str:
        text = (pm(r[f"{out}_mean"], r[f"{out}_std"], digits)
                + _interval(r[f"{out}_low"], r[f"{out}_high"], digits))
        return _bold(text, r[best], style)

    cells = [r["dataset"], r["arch"], r["label"], str(r["n_seeds"]),
             cell("accuracy_pct", 2, "best_accuracy"), cell("nll", 3, "best_nll"),
             cell("ece_pct", 2, "best_ece")]
    if with_last:
        d = r.get("accuracy_pp_last_minus_best", math.nan)
        cells.append("–" if d is None or not np.isfinite(d)
                     else f"{d:+.2f}" + _interval(r["accuracy_pp_low"], r["accuracy_pp_high"], 2))
    return cells


def write_methods(metrics_path: str | Path, csv_out: str | Path, md_out: str | Path,
                  tex_out: str | Path, sidecar: str | Path,
                  compare: Mapping[str, Any],
                  metrics_last_path: str | Path | None = None) -> pd.DataFrame:
    """Render the E3 method comparison (methods §5 E3, claims 4-5) as CSV, Markdown, LaTeX.

    ``metrics_last_path``: results/metrics_last.csv, optional (None or a missing file: no
    best-vs-last column)."""
    started = time.perf_counter()
    last = (None if metrics_last_path is None or not Path(metrics_last_path).is_file()
            else metrics_last_path)
    table = methods_table(read_metrics(metrics_path), compare,
                          read_metrics(last) if last else None)
    records = _records(table)
    with_last = last is not None
    header = _E3_HEADER + ([_E3_LAST_HEADER] if with_last else [])
    note = _e3_note(_confidence(compare), with_last)
    write_csv(csv_out, records, list(table.columns))
    write_text(md_out, "# E3: method comparison\n\n" + note + "\n\n"
               + markdown_table(header, [_e3_cells(r, "md", with_last) for r in records], 3))
    write_text(tex_out, latex_table(header, [_e3_cells(r, "tex", with_last) for r in records],
                                    "Method comparison. " + note, "tab:e3-methods", 3))
    write_sidecar(sidecar, [metrics_path, *([last] if last else [])],
                  {"compare": dict(compare)}, started, [csv_out, md_out, tex_out])
    log.info("E3 methods table: %d rows", len(table))
    return table


# --------------------------------------------------------------------------- E6 teacher-free

# metrics.csv column -> (table column, scale, digits): accuracy and ECE in %, the rest nats.
_E6_METRICS = {"accuracy": ("accuracy_pct", 100.0, 2), "nll": ("nll", 1.0, 3),
               "ece": ("ece_pct", 100.0, 2), "entropy": ("entropy", 1.0, 3),
               "cd_entropy_max": ("cd_entropy_max", 1.0, 3)}
_E6_HEADER = ["dataset", "arch", "method", "seeds", "accuracy (%)", "NLL (nats)", "ECE (%)",
              "entropy (nats)", "diversity (nats)"]
_E6_LITERATURE = ["dataset", "arch", "claim", "claim_text", "verdict", "value", "low", "high",
                  "n_seeds", "p_holm"]


def _e6_methods(compare: Mapping[str, Any]) -> list[str]:
    """Every registered method whose comparison point ``compare`` names (a swept method
    without its key, e.g. ER without ``er_beta``, is left out), teacher-free ones included."""
    return [m for m in METHODS if (key := _REGISTRY[m].sweep_key) is None or key in compare]


def teacher_free_table(metrics: pd.DataFrame, compare: Mapping[str, Any]) -> pd.DataFrame:
    """methods §5 E6: one row per dataset × arch × setting, test split.

    Settings: the paper's comparison points (CE, SD generation ``compare.sd_gen``, LS at
    ``ls_eps``, ER at ``er_beta``, BS at ``bs_a``; those run) and each teacher-free method
    present (methods §3.6-§3.11, unswept: every row). Per metric of ``_E6_METRICS``
    (``accuracy_pct``, ``nll``, ``ece_pct``, ``entropy``, ``cd_entropy_max``): the seed mean,
    sample std (ddof = 1) and the Student-t interval of the mean (``*_low``, ``*_high``) at
    ``compare.confidence``; ``n_seeds``; ``teacher_free`` marks the family's rows. With no
    teacher-free rows the table holds the paper's settings only.
    """
    test = compare_runs(metrics[metrics["split"] == "test"], compare, _e6_methods(compare))
    outs = [out for out, _, _ in _E6_METRICS.values()]
    stats_cols = [f"{o}_{s}" for o in outs for s in ("mean", "std", "low", "high")]
    columns = [*_E3_KEYS[:3], "label", *_E3_KEYS[3:], "teacher_free", "n_seeds", *stats_cols]
    if test.empty:
        return pd.DataFrame(columns=columns)
    test = test.assign(**{out: test[col] * scale
                          for col, (out, scale, _) in _E6_METRICS.items()})
    table = _e3_order(seed_stats(test, _E3_KEYS, outs))
    for out in outs:
        table[f"{out}_low"], table[f"{out}_high"] = t_interval(
            table[f"{out}_mean"], table[f"{out}_std"], table["n_seeds"], _confidence(compare))
    table["teacher_free"] = table["method"].isin(TEACHER_FREE)
    return table[columns]


def literature_claims(claims_path: str | Path) -> pd.DataFrame:
    """The literature rows of ``figures/claims.csv`` (methods §6): every row whose
    ``claim`` is not a paper claim id (``claims.CLAIMS``), in file order."""
    from .claims import CLAIMS  # claims imports this module

    df = pd.read_csv(claims_path, dtype={"claim": str, "claim_text": str, "verdict": str})
    missing = [c for c in _E6_LITERATURE if c not in df.columns]
    if missing:
        raise ValueError(f"{claims_path}: missing columns {missing}; expected the claims "
                         "check's table (rerun rule render_claims)")
    return df[~df["claim"].isin(CLAIMS)].reset_index(drop=True)


def _e6_note(compare: Mapping[str, Any]) -> str:
    points = [f"SD generation {int(compare['sd_gen'])}"]
    points += [f"{m.label} ({m.symbol}={compare[m.sweep_key]:g})" for m in SWEPT
               if m.sweep_key in compare]
    return (f"Test split, seed mean [{100 * _confidence(compare):g} % Student-t interval of "
            "the mean, n − 1 df], for CE, " + ", ".join(points) + " and each teacher-free "
            "method run (methods §3.6-§3.11). Accuracy and ECE (20 equal-width bins) in %; "
            "NLL, entropy (average predictive entropy) and diversity (confidence diversity, "
            "cd_entropy_max) in nats (methods §4).")


def _e6_cells(r: Mapping[str, Any]) -> list[str]:
    cells = [r["dataset"], r["arch"], r["label"], str(r["n_seeds"])]
    for out, _, digits in _E6_METRICS.values():
        mean = r[f"{out}_mean"]
        cells.append("–" if mean is None or not np.isfinite(mean) else f"{mean:.{digits}f}"
                     + _interval(r[f"{out}_low"], r[f"{out}_high"], digits))
    return cells


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _literature_cells(r: Mapping[str, Any]) -> list[str]:
    unit = f" {r['unit']}" if isinstance(r.get("unit"), str) and r["unit"] else ""
    value = "–" if not _finite(r["value"]) else f"{r['value']:+.3f}{unit}"
    if _finite(r["low"]):
        value += f" [{r['low']:+.3f}, {r['high']:+.3f}]"
    return [r["dataset"], r["arch"], r["claim"], r["claim_text"], f"**{r['verdict']}**", value,
            "–" if not _finite(r["n_seeds"]) else str(int(r["n_seeds"])),
            "–" if not _finite(r["p_holm"]) else f"{r['p_holm']:.2g}"]


def _literature_section(rows: pd.DataFrame, confidence: float) -> str:
    head = ("## Literature claims (methods §6)\n\nThe claims check's rows for the literature's "
            "claims (figures/claims.csv): the seed-paired accuracy difference of method a − "
            f"method b with its {100 * confidence:g} % Student-t interval and Holm-adjusted p "
            "(its own Holm family per dataset × arch); verdicts *supported*, *contradicted*, "
            "*no effect*, *inconclusive* as for the paper's claims.\n\n")
    if rows.empty:
        return head + "No literature claim in figures/claims.csv.\n"
    header = ["dataset", "arch", "claim", "claim text", "verdict",
              f"value [{100 * confidence:g} % interval]", "seeds", "Holm p"]
    return head + markdown_table(header, [_literature_cells(r) for r in _records(rows)], 5)


def write_teacher_free(metrics_path: str | Path, csv_out: str | Path, md_out: str | Path,
                       tex_out: str | Path, sidecar: str | Path, compare: Mapping[str, Any],
                       claims_path: str | Path | None = None) -> pd.DataFrame:
    """Render the E6 table (methods §5 E6, :func:`teacher_free_table`) as CSV, Markdown,
    LaTeX. ``claims_path``: figures/claims.csv, optional (None or a missing file: no
    literature section); its literature rows (:func:`literature_claims`) become a second
    Markdown table."""
    started = time.perf_counter()
    claims_file = None if claims_path is None or not Path(claims_path).is_file() else claims_path
    table = teacher_free_table(read_metrics(metrics_path), compare)
    records = _records(table)
    note = _e6_note(compare)
    rows = [_e6_cells(r) for r in records]
    literature = ("" if claims_file is None else "\n" + _literature_section(
        literature_claims(claims_file), _confidence(compare)))
    write_csv(csv_out, records, list(table.columns))
    write_text(md_out, "# E6: the teacher-free family\n\n" + note + "\n\n"
               + markdown_table(_E6_HEADER, rows, 3) + literature)
    write_text(tex_out, latex_table(_E6_HEADER, rows, "The teacher-free family. " + note,
                                    "tab:e6-teacher-free", 3))
    write_sidecar(sidecar, [metrics_path, *([claims_file] if claims_file else [])],
                  {"compare": dict(compare)}, started, [csv_out, md_out, tex_out])
    log.info("E6 teacher-free table: %d rows (%d teacher-free)", len(table),
             int(table["teacher_free"].sum()) if len(table) else 0)
    return table
