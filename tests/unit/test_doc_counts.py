"""The default grid's numbers written in the docs follow config/config.yaml.

docs/results.md (rows of the tidy tables), methods §5 (the paragraph on the default),
README.md and config/README.md state how many networks, epochs, seeds, bins and examples
the default has. Each such sentence is matched below by a pattern whose named groups are
numbers; every number is compared with the value computed from the config through
``selfdistill.grid``, so a change of the config's seeds, epochs, sweeps or bins that leaves
the docs behind fails here, and so does rewording a checked sentence (it is then not found:
update its pattern with it). The report captions must name every verdict of
``selfdistill.claims.VERDICTS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from selfdistill import grid as G
from selfdistill.claims import VERDICTS
from selfdistill.prepared import SPLITS

from ..conftest import REPO

CONFIG: dict[str, Any] = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
# a number as the docs write it: 5,040 / 0.05 / 24 / three
NUMBER = re.compile(r"\d+(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?|" + "|".join(WORDS))

# (file, sentence pattern). A group named ``key`` or ``key__2`` holds the number(s) of
# ``default_counts()[key]``; \s+ where a line may wrap.
SENTENCES: list[tuple[str, str]] = [
    ("docs/results.md",
     r"one row per trained network and split, (?P<splits>\d+) rows per network:\s+"
     r"(?P<metrics_rows>[\d,]+) rows for the (?P<networks>\d+) grid networks of the default"),
    ("docs/results.md",
     r"\((?P<ece_bins>\d+) bins × (?P<splits>\d+) splits × (?P<networks>\d+) grid networks =\s+"
     r"(?P<reliability_rows>[\d,]+) rows in the default, then (?P<reliability_per_net>\d+)"
     r" for each matched network\)"),
    ("docs/results.md",
     r"\((?P<epochs>\d+) epochs × (?P<networks>\d+) grid networks = (?P<history_rows>[\d,]+)"
     r" rows in the\s+default, then (?P<epochs__2>\d+) for each matched network\)"),
    ("docs/results.md",
     r"\((?P<classes>\d+) classes × (?P<splits>\d+) splits × (?P<networks>\d+) grid networks"
     r" =\s+(?P<per_class_rows>[\d,]+) rows in the default, then (?P<per_class_per_net>\d+)"
     r" for each matched network\)"),
    ("docs/results.md", r"over the (?P<ece_bins>\d+) rows of one network and split"),
    ("docs/results.md", r"(?P<ece_bins>\d+) equal-width bins of the max probability"),
    ("docs/results.md", r"over `metrics\.cd_bins` \((?P<cd_bins>\d+)\) bins"),
    ("methods §5",
     r"At the time of writing the default is MNIST-1D with (?P<num_samples>[\d,]+) samples"
     r" \((?P<train>[\d,]+) train /\s+(?P<val>[\d,]+) validation / (?P<test>[\d,]+) test\),"
     r"\s+(?P<epochs>\d+) epochs with the rate dropped after epochs"
     r"\s+(?P<milestones>\d+(?:,\s+\d+)*\s+and\s+\d+),\s+(?P<seeds>\d+) seeds,"
     r"\s+SD generations 0-(?P<generations>\d+)"),
    ("methods §5",
     r"LS ε ∈ \{(?P<ls_eps>[^}]*)\},\s+ER β ∈ \{(?P<er_beta>[^}]*)\}\s+and\s+"
     r"BS a ∈ \{(?P<bs_a>[^}]*)\}"),
    ("methods §5",
     r"That is (?P<networks_per_seed>\d+) networks per seed \(CE, SD\s+generations"
     r" 1-(?P<generations>\d+) and (?P<sweep_points>\w+) points of each sweep\),"
     r"\s+(?P<networks>\d+) networks in all"),
    ("methods §5", r"up to (?P<rounds>\w+) matching rounds"),
    ("methods §5", r"(?P<networks>\d+)-network grid"),
    ("README.md",
     r"trained (?P<epochs>\d+) epochs, (?P<seeds>\d+) seeds, the paper's five methods"
     r" \(`ce`, `sd` generations 1-(?P<generations>\d+),\s+and (?P<sweep_points>\w+)-point"
     r" sweeps of `ls`, `er`, `bs`\): (?P<networks>\d+) networks, then up to"
     r" (?P<rounds>\w+) rounds"),
    ("config/README.md",
     r"`config/config\.yaml` \| the default:[^|\n]*?(?P<epochs>\d+) epochs,"
     r" (?P<seeds>\d+) seeds, SD generations 0-(?P<generations>\d+)"),
]


# --------------------------------------------------------------------------- the checker

def numbers(text: str) -> tuple[float, ...]:
    """The numbers of a captured phrase, in order: "8 and 16" -> (8, 16), "5,040" -> (5040,),
    "three" -> (3,)."""
    return tuple(float(WORDS.get(t) or t.replace(",", "")) for t in NUMBER.findall(text))


def default_counts(config: Mapping[str, Any]) -> dict[str, tuple[float, ...]]:
    """What the docs' sentences state, computed from a loaded config: the grid from
    ``selfdistill.grid``, the rest from its keys (one experiment's dataset)."""
    networks, seeds = len(G.grid(config)), len(config["seeds"])
    epochs, bins = config["train"]["epochs"], config["metrics"]["ece_bins"]
    exp = G.experiments(config)[0]
    data = config["datasets"][exp["dataset"]]
    pool = round(data["num_samples"] * data["train_fraction"])  # train + val
    sweeps = {k: tuple(v) for k, v in exp["sweeps"].items()}
    lengths = {len(v) for v in sweeps.values()}
    counts: dict[str, Any] = {
        "networks": networks, "networks_per_seed": networks / seeds, "seeds": seeds,
        "epochs": epochs, "milestones": tuple(config["train"]["milestones"]),
        "generations": exp["generations"], "splits": len(SPLITS),
        "metrics_rows": networks * len(SPLITS), "history_rows": networks * epochs,
        "reliability_rows": networks * len(SPLITS) * bins,
        "reliability_per_net": len(SPLITS) * bins, "ece_bins": bins,
        "cd_bins": config["metrics"]["cd_bins"], "rounds": config["matching"]["rounds"],
        "num_samples": data["num_samples"], "train": pool - data["val_size"],
        "val": data["val_size"], "test": data["num_samples"] - pool,
        "sweep_points": lengths.pop() if len(lengths) == 1 else None, **sweeps}
    classes = source_classes(data["source"])
    counts.update(classes=classes, per_class_rows=networks * len(SPLITS) * classes,
                  per_class_per_net=len(SPLITS) * classes)
    return {k: _as_numbers(v) for k, v in counts.items()}


def source_classes(source: str) -> int:
    """Classes of the default's source, from the generator itself (MNIST-1D: one per
    template of the mnist1d package)."""
    if source != "mnist1d":
        pytest.fail(f"the doc-count check knows the class count of mnist1d only, not {source}")
    from mnist1d.data import get_templates

    return len(set(get_templates()["y"]))


def _as_numbers(value: Any) -> tuple[float, ...]:
    """A count as `numbers` reads it from the docs; None (no single value) matches nothing."""
    if value is None:
        return (float("nan"),)
    return tuple(map(float, value)) if isinstance(value, tuple) else (float(value),)


def doc_texts() -> dict[str, str]:
    """The checked docs by name; "methods §5" is that section of docs/methods.md only."""
    methods = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    section = re.search(r"^## 5\. .*?(?=^## 6\. )", methods, re.M | re.S)
    assert section, "docs/methods.md has no section 5 before section 6"
    names = ("docs/results.md", "README.md", "config/README.md")
    return {"methods §5": section.group(0),
            **{n: (REPO / n).read_text(encoding="utf-8") for n in names}}


def stale_counts(texts: Mapping[str, str], counts: Mapping[str, tuple[float, ...]],
                 sentences: list[tuple[str, str]] = SENTENCES) -> list[str]:
    """One message per checked sentence that is missing or states a number other than
    ``counts``: "<doc>: <key> is <stated>, the config gives <expected>: '<sentence>'"."""
    problems = []
    for doc, pattern in sentences:
        found = list(re.finditer(pattern, texts[doc]))
        if not found:
            problems.append(f"{doc}: sentence not found: /{pattern}/")
        for match in found:
            for group, text in match.groupdict().items():
                key = group.split("__")[0]
                if numbers(text) != counts[key]:
                    problems.append(f"{doc}: {key} is {text!r}, the config gives "
                                    f"{_show(counts[key])}: {' '.join(match.group(0).split())!r}")
    return problems


def _show(value: tuple[float, ...]) -> str:
    """A count for a message: "84", "8, 16", "0.05, 0.1, 0.2"."""
    return ", ".join(f"{v:g}" for v in value)


def missing_verdicts(text: str) -> list[str]:
    """The verdicts of ``VERDICTS`` a caption does not name in emphasis (``*no effect*``)."""
    flat = " ".join(text.split())
    return [v for v in VERDICTS if f"*{v}*" not in flat]


# --------------------------------------------------------------------------- the tests

def test_docs_state_the_default_grid_counts():
    assert stale_counts(doc_texts(), default_counts(CONFIG)) == []


def test_counts_follow_the_grid_definition():
    """The grid the docs describe, counted by hand from the config: per seed CE, SD
    generations 1..G and every point of the LS, ER and BS sweeps."""
    c = default_counts(CONFIG)
    per_seed = 1 + CONFIG["generations"] + sum(len(v) for v in CONFIG["sweeps"].values())
    assert c["networks"] == (per_seed * len(CONFIG["seeds"]),)
    assert c["reliability_rows"] == (c["networks"][0] * 3 * CONFIG["metrics"]["ece_bins"],)


@pytest.mark.parametrize(("key", "value", "flagged"), [
    ("seeds", [0, 1, 2, 3, 4], {("docs/results.md", "networks"),
                                ("docs/results.md", "metrics_rows"),
                                ("docs/results.md", "history_rows"),
                                ("docs/results.md", "reliability_rows"),
                                ("docs/results.md", "per_class_rows"),
                                ("methods §5", "seeds"), ("methods §5", "networks"),
                                ("README.md", "seeds"), ("README.md", "networks"),
                                ("config/README.md", "seeds")}),
    ("epochs", 30, {("docs/results.md", "epochs"), ("docs/results.md", "history_rows"),
                    ("methods §5", "epochs"), ("README.md", "epochs"),
                    ("config/README.md", "epochs")}),
])
def test_checker_flags_counts_of_a_changed_config(monkeypatch, key, value, flagged):
    """With the loaded config's seeds or epochs changed, every doc sentence that states
    them (or a count that depends on them) is reported, and nothing else."""
    if key == "epochs":
        monkeypatch.setitem(CONFIG["train"], "epochs", value)
    else:
        monkeypatch.setitem(CONFIG, key, value)
    problems = stale_counts(doc_texts(), default_counts(CONFIG))
    reported = {(p.split(": ")[0], p.split(": ")[1].split(" is ")[0]) for p in problems}
    assert reported == flagged, problems


def test_checker_reports_a_sentence_it_cannot_find():
    texts = {**doc_texts(), "README.md": "The default has 84 networks."}
    problems = stale_counts(texts, default_counts(CONFIG))
    assert [p for p in problems if p.startswith("README.md")] == [
        f"README.md: sentence not found: /{SENTENCES[-2][1]}/"]


def test_numbers_reads_separators_lists_and_words():
    assert numbers("5,040") == (5040.0,)
    assert numbers("8 and 16") == (8.0, 16.0)
    assert numbers("0.05, 0.1, 0.2") == (0.05, 0.1, 0.2)
    assert numbers("three") == (3.0,)


@pytest.mark.parametrize("caption", ["workflow.rst", "claims.rst", "claims_md.rst"])
def test_report_captions_name_every_verdict(caption):
    text = (REPO / "workflow" / "report" / caption).read_text(encoding="utf-8")
    assert missing_verdicts(text) == []


def test_verdict_check_sees_a_missing_verdict():
    assert missing_verdicts("*supported*, *contradicted* or *inconclusive*") == ["no effect"]
