"""Tables rendered from the tidy metric CSVs (methods §5 E2 and E3, §7).

Everything here reads ``results/metrics.csv`` (methods §7) or ``results/reliability.csv``
only, so tables re-render without retraining. Shared selection helpers (the SD chain with
CE as generation 0, the E3 comparison points) live here and are reused by
:mod:`selfdistill.plots` and :mod:`selfdistill.claims`.

Units in written tables: accuracy and ECE in percent (columns named ``*_pct_*``), NLL,
entropy and confidence diversity in nats. Spread is the sample standard deviation
(ddof = 1) over seeds; with one seed it is undefined and shown as the mean alone.
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

from .grid import parse_param
from .io import write_csv, write_json, write_text
from .methods import METHODS as _REGISTRY
from .methods import SWEPT
from .provenance import provenance

__all__ = ["METHODS", "METHOD_NAMES", "PARAM_SYMBOLS", "compare_runs", "matched_entropy", "method_label",
           "methods_table", "pairs", "read_metrics", "read_reliability", "sd_chain",
           "seed_stats", "write_matched_entropy", "write_methods", "write_sidecar"]

log = logging.getLogger(__name__)

# From the registry (selfdistill.methods): names in table order, labels, strength symbols.
METHODS = tuple(_REGISTRY)
METHOD_NAMES = {m.name: m.label for m in _REGISTRY.values()}
PARAM_SYMBOLS = {m.name: m.symbol for m in SWEPT}
_LATEX_SYMBOLS = {"ε": r"$\varepsilon$", "β": r"$\beta$", "±": r"$\pm$", "−": "$-$"}
RUN_KEYS = ["dataset", "arch", "method", "param", "seed", "gen"]
METRIC_KEYS = ["accuracy", "nll", "ece", "entropy", "cd_entropy_max", "cd_entropy_true",
               "cd_std_max", "cd_std_true"]
RELIABILITY_KEYS = ["bin", "lower", "upper", "confidence", "accuracy", "count"]


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


def compare_runs(df: pd.DataFrame, compare: Mapping[str, Any]) -> pd.DataFrame:
    """The E3/E4 comparison points (methods §5): CE, LS(ε), ER(β), SD(generation), BS(a).

    ``compare`` has the sweep key of each swept method (``ls_eps``, ``er_beta``, ``bs_a``)
    and ``sd_gen``; methods without a sweep (CE) keep every row. Works on the metric and
    the reliability tables alike.
    """
    m = df["method"]
    keep = (m == "sd") & (df["gen"] == int(compare["sd_gen"]))
    for method in _REGISTRY.values():
        if method.name == "sd":
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


# --------------------------------------------------------------------------- E2 matched entropy

_E2_MATCHED = ("ls", "er")  # methods §5 E2: the uncertainty-only baselines matched to SD
_E2_COLUMNS = ("entropy", "accuracy", "cd_entropy_max")
_E2_OUT = {"entropy": "entropy", "accuracy": "accuracy_pct", "cd_entropy_max": "diversity"}


def _setting_stats(test: pd.DataFrame, method: str) -> pd.DataFrame:
    runs = test[test["method"] == method].assign(accuracy=lambda d: 100 * d["accuracy"])
    return seed_stats(runs, ["param", "gen"], _E2_COLUMNS)


def _match_row(prefix: str, target: float, settings: pd.DataFrame) -> dict[str, Any]:
    """The setting whose seed-mean entropy is closest to ``target`` (ties: smaller param)."""
    row: dict[str, Any] = {f"{prefix}_param": ""}
    for col in _E2_COLUMNS:
        row[f"{prefix}_{_E2_OUT[col]}_mean"] = math.nan
        row[f"{prefix}_{_E2_OUT[col]}_std"] = math.nan
    row[f"{prefix}_entropy_gap"] = math.nan
    if settings.empty:
        return row
    order = settings.assign(gap=(settings["entropy_mean"] - target).abs(),
                            p=settings["param"].astype(float)).sort_values(["gap", "p"])
    best = order.iloc[0]
    row[f"{prefix}_param"] = best["param"]
    for col in _E2_COLUMNS:
        row[f"{prefix}_{_E2_OUT[col]}_mean"] = float(best[f"{col}_mean"])
        row[f"{prefix}_{_E2_OUT[col]}_std"] = float(best[f"{col}_std"])
    row[f"{prefix}_entropy_gap"] = float(best["entropy_mean"] - target)
    return row


def matched_entropy(metrics: pd.DataFrame) -> pd.DataFrame:
    """methods §5 E2: per SD generation g ≥ 1, the LS and ER settings closest in entropy.

    Closeness is |seed-mean test entropy of the setting − seed-mean test entropy of SD
    generation g|; accuracy in percent, diversity = test ``cd_entropy_max`` (nats).
    ``*_entropy_gap`` = matched setting's entropy − SD's (nats).
    """
    test = metrics[metrics["split"] == "test"]
    rows = []
    for dataset, arch in pairs(test):
        runs = one_pair(test, dataset, arch)
        sd = _setting_stats(runs, "sd")
        matched = {m: _setting_stats(runs, m) for m in _E2_MATCHED}
        for _, s in sd[sd["gen"] >= 1].sort_values("gen").iterrows():
            row: dict[str, Any] = {"dataset": dataset, "arch": arch, "sd_gen": int(s["gen"]),
                                   "n_seeds": int(s["n_seeds"])}
            for col in _E2_COLUMNS:
                row[f"sd_{_E2_OUT[col]}_mean"] = float(s[f"{col}_mean"])
                row[f"sd_{_E2_OUT[col]}_std"] = float(s[f"{col}_std"])
            for method, settings in matched.items():
                row |= _match_row(method, float(s["entropy_mean"]), settings)
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- E3 methods

_E3_METRICS = {"accuracy": ("accuracy_pct", 100.0, "max"), "nll": ("nll", 1.0, "min"),
               "ece": ("ece_pct", 100.0, "min")}


def methods_table(metrics: pd.DataFrame, compare: Mapping[str, Any]) -> pd.DataFrame:
    """methods §5 E3: test accuracy (%), NLL (nats), ECE (%) per method, mean ± std over seeds.

    ``best_<metric>`` marks the best seed-mean within each dataset × arch (highest
    accuracy, lowest NLL and ECE; exact ties are all marked).
    """
    test = compare_runs(metrics[metrics["split"] == "test"], compare)
    test = test.assign(**{out: test[col] * scale for col, (out, scale, _) in _E3_METRICS.items()})
    outs = [out for out, _, _ in _E3_METRICS.values()]
    table = seed_stats(test, ["dataset", "arch", "method", "param", "gen"], outs)
    table["order"] = table["method"].map(METHODS.index)
    table = table.sort_values(["dataset", "arch", "order"]).drop(columns="order")
    table.insert(3, "label", [method_label(m, p, g) for m, p, g in
                              zip(table["method"], table["param"], table["gen"], strict=True)])
    for col, (out, _, sense) in _E3_METRICS.items():
        means = table.groupby(["dataset", "arch"])[f"{out}_mean"]
        best = means.transform(sense)
        table[f"best_{col}"] = np.isclose(table[f"{out}_mean"], best, rtol=0, atol=1e-12)
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


def _e2_cells(r: Mapping[str, Any]) -> list[str]:
    cells = [r["dataset"], r["arch"], str(r["sd_gen"])]
    for p in ("sd", *_E2_MATCHED):
        if p != "sd":
            cells.append(r[f"{p}_param"] or "–")
        cells += [pm(r[f"{p}_entropy_mean"], r[f"{p}_entropy_std"], 3),
                  pm(r[f"{p}_accuracy_pct_mean"], r[f"{p}_accuracy_pct_std"], 2),
                  pm(r[f"{p}_diversity_mean"], r[f"{p}_diversity_std"], 3)]
    return cells


def _e2_header() -> list[str]:
    """E2 column titles: SD's values, then each matched method's strength and values."""
    head = ["dataset", "arch", f"{METHOD_NAMES['sd']} gen"]
    for m in ("sd", *_E2_MATCHED):
        label = METHOD_NAMES[m]
        if m in PARAM_SYMBOLS:
            head.append(f"{label} {PARAM_SYMBOLS[m]}")
        head += [f"{label} entropy", f"{label} acc. (%)", f"{label} diversity"]
    return head


_E2_HEADER = _e2_header()
_E2_NOTE = ("Test split, mean ± std over seeds. For each SD generation the LS (ε) and ER (β) "
            "setting whose seed-mean test entropy is closest. Entropy = average predictive "
            "entropy (nats); diversity = entropy of the histogram of max-probability "
            "confidences (cd_entropy_max, nats), methods §4.")


def write_matched_entropy(metrics_path: str | Path, csv_out: str | Path, md_out: str | Path,
                          tex_out: str | Path, sidecar: str | Path) -> pd.DataFrame:
    """Render the E2 matched-entropy table (methods §5 E2, claim 3) as CSV, Markdown, LaTeX."""
    started = time.perf_counter()
    table = matched_entropy(read_metrics(metrics_path))
    write_csv(csv_out, _records(table), list(table.columns) or ["dataset"])
    rows = [_e2_cells(r) for r in _records(table)]
    write_text(md_out, "# E2: SD generations vs LS / ER at matched entropy\n\n"
               + _E2_NOTE + "\n\n" + markdown_table(_E2_HEADER, rows))
    write_text(tex_out, latex_table(_E2_HEADER, rows, "SD vs LS/ER at matched test entropy. "
                                    + _E2_NOTE, "tab:e2-matched-entropy"))
    write_sidecar(sidecar, [metrics_path], {}, started, [csv_out, md_out, tex_out])
    log.info("E2 matched-entropy table: %d rows", len(table))
    return table


_E3_HEADER = ["dataset", "arch", "method", "seeds", "accuracy (%)", "NLL (nats)", "ECE (%)"]
_E3_NOTE = ("Test split, mean ± std over seeds; best per column within each dataset × arch "
            "in bold (highest accuracy, lowest NLL and ECE). ECE: 20 equal-width bins (methods §4).")


def _e3_cells(r: Mapping[str, Any], style: str) -> list[str]:
    return [r["dataset"], r["arch"], r["label"], str(r["n_seeds"]),
            _bold(pm(r["accuracy_pct_mean"], r["accuracy_pct_std"], 2), r["best_accuracy"], style),
            _bold(pm(r["nll_mean"], r["nll_std"], 3), r["best_nll"], style),
            _bold(pm(r["ece_pct_mean"], r["ece_pct_std"], 2), r["best_ece"], style)]


def write_methods(metrics_path: str | Path, csv_out: str | Path, md_out: str | Path,
                  tex_out: str | Path, sidecar: str | Path,
                  compare: Mapping[str, Any]) -> pd.DataFrame:
    """Render the E3 method comparison (methods §5 E3, claims 4-5) as CSV, Markdown, LaTeX."""
    started = time.perf_counter()
    table = methods_table(read_metrics(metrics_path), compare)
    records = _records(table)
    write_csv(csv_out, records, list(table.columns))
    write_text(md_out, "# E3: method comparison\n\n" + _E3_NOTE + "\n\n"
               + markdown_table(_E3_HEADER, [_e3_cells(r, "md") for r in records], 3))
    write_text(tex_out, latex_table(_E3_HEADER, [_e3_cells(r, "tex") for r in records],
                                    "Method comparison. " + _E3_NOTE, "tab:e3-methods", 3))
    write_sidecar(sidecar, [metrics_path], {"compare": dict(compare)}, started,
                  [csv_out, md_out, tex_out])
    log.info("E3 methods table: %d rows", len(table))
    return table
