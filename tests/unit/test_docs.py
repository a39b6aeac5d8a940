"""The documentation a stranger relies on: citations of docs/methods.md resolve to a numbered
section, relative Markdown links resolve, no file points outside the repository, and
CITATION.cff is valid and names the paper."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import tomllib
import yaml

from ..conftest import REPO

METHODS_DOC = REPO / "docs" / "methods.md"
THIS_FILE = Path(__file__).resolve()
TEXT_SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md", ".rst", ".toml", ".cff"}
TEXT_NAMES = {"Snakefile"}

# "## 3. Methods", "### 3.4 Self-distillation (SD)": the number is the section's citation key.
HEADING = re.compile(r"^#{1,6}[ \t]+(\d+(?:\.\d+)*)\.?[ \t]", re.M)
# "methods §3.4", also "methods §3.4, §3.5" / "methods §1-§7" / "methods §3.2 and §3.5".
_NUM = r"\d+(?:\.\d+)*"
CITATION = re.compile(rf"\bmethods §({_NUM})((?:\s*(?:,|-|–|and|or)\s*§{_NUM})*)")
FOLLOWING = re.compile(rf"§({_NUM})")
# The fact sheet outside the repository, by its name (spelled in two parts so that this file
# names it nowhere), its file name, or a "shared/..." / "../shared/..." path.
_SHEET = "SP" + "EC"
EXTERNAL = re.compile(rf"\b{_SHEET}\b|(?<![\w/.-])(?:\.\./)?shared/")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


# --------------------------------------------------------------------------- helpers

def repo_text_files(root: Path = REPO) -> list[Path]:
    """Text files of the repository (tracked, or new and not ignored), without this file."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    paths = {root / p for p in out.split("\0") if p}
    return sorted(p for p in paths if p.is_file() and p.resolve() != THIS_FILE
                  and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES))


def section_numbers(markdown: str) -> set[str]:
    """Numbers of the numbered headings ("## 3. Methods" -> "3", "### 3.4 SD" -> "3.4")."""
    return set(HEADING.findall(markdown))


def citations(text: str) -> list[tuple[int, str]]:
    """(line, section) of every methods-section citation in ``text``, lists expanded."""
    found = []
    for m in CITATION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        found += [(line, m.group(1))] + [(line, s) for s in FOLLOWING.findall(m.group(2))]
    return found


def unresolved_citations(paths: list[Path], sections: set[str], root: Path) -> list[str]:
    """``file:line: methods §N`` for each citation whose section has no heading."""
    bad = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for line, section in citations(text):
            if section not in sections:
                bad.append(f"{path.relative_to(root)}:{line}: methods §{section}")
    return bad


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", FENCE.sub("", markdown), re.M):
        slug = github_anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(md_file: Path, root: Path) -> list[str]:
    """Relative links (and their #anchors) of ``md_file`` that point nowhere."""
    text = FENCE.sub("", md_file.read_text(encoding="utf-8"))
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (md_file.parent / path_part).resolve() if path_part else md_file
        where = f"{md_file.relative_to(root)}: ({target})"
        if not dest.exists():
            bad.append(f"{where}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text("utf-8")):
            bad.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return bad


# --------------------------------------------------------------------------- methods.md

def test_methods_doc_has_the_cited_numbering():
    """The section numbers that code and configs cite exist as headings, each once."""
    text = METHODS_DOC.read_text(encoding="utf-8")
    numbers = HEADING.findall(text)
    assert len(numbers) == len(set(numbers)), f"duplicate section numbers: {sorted(numbers)}"
    want = {str(i) for i in range(1, 9)} | {f"3.{i}" for i in range(1, 6)}
    assert want <= set(numbers), f"missing sections: {sorted(want - set(numbers))}"


def test_every_methods_citation_resolves():
    sections = section_numbers(METHODS_DOC.read_text(encoding="utf-8"))
    bad = unresolved_citations(repo_text_files(), sections, REPO)
    assert not bad, "citations of missing sections of docs/methods.md:\n" + "\n".join(bad)


def test_checker_names_file_line_and_section_of_a_bad_citation(tmp_path):
    doc = "# Methods\n\n## 3. Methods\n\n### 3.4 Self-distillation (SD)\n\n## 7. Names\n"
    sections = section_numbers(doc)
    assert sections == {"3", "3.4", "7"}
    cite = "methods " + "§"  # split so that this file holds no citation itself
    src = tmp_path / "pkg" / "mod.py"
    src.parent.mkdir()
    src.write_text(f'"""SD loss ({cite}3.4).\n\nSee {cite}3.4, §3.9 and {cite}9.1.\n"""\n'
                   f"# ends a sentence: {cite}7.\n# range: {cite}3-§8\n", encoding="utf-8")
    bad = unresolved_citations([src], sections, tmp_path)
    assert bad == [f"pkg/mod.py:3: {cite}3.9", f"pkg/mod.py:3: {cite}9.1",
                   f"pkg/mod.py:6: {cite}8"]


def test_no_file_points_to_the_external_fact_sheet():
    """Everything a reader needs is in the repository: no path or name of the outside fact
    sheet, no shared/ paths."""
    bad = []
    for path in repo_text_files():
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            if EXTERNAL.search(line):
                bad.append(f"{path.relative_to(REPO)}:{i + 1}: {line.strip()[:100]}")
    assert not bad, f"{len(bad)} lines cite the fact sheet outside the repository:\n" + \
        "\n".join(bad[:40])


def test_external_pattern_catches_each_form():
    for line in (f"see {_SHEET} §3.4", f"the fact sheet {_SHEET}.md", "beside it in `shared/`",
                 "cp ../shared/recipes/x.sh ."):
        assert EXTERNAL.search(line), line
    for line in ("spec=run_params", "RunSpec(...)", "methods §3.4", "torch/shared/lib"):
        assert not EXTERNAL.search(line), line


# --------------------------------------------------------------------------- links

def test_relative_markdown_links_resolve():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    bad = [b for f in files for b in broken_links(f, REPO)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_link_checker_flags_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## 3. Methods\n\n## Résumé `x.y`\n",
                                            encoding="utf-8")
    md = tmp_path / "README.md"
    md.write_text("[ok](docs/a.md) [ok](docs/a.md#3-methods) [ok](docs/a.md#résumé-xy) "
                  "[web](https://example.org/x) [self](#top)\n# Top\n"
                  "[gone](docs/b.md) [bad anchor](docs/a.md#4-metrics)\n"
                  "```\n[in a code block](nowhere.md)\n```\n", encoding="utf-8")
    bad = broken_links(md, tmp_path)
    assert len(bad) == 2, bad
    assert "(docs/b.md): no file" in bad[0]
    assert "no heading with anchor #4-metrics in a.md" in bad[1]


# --------------------------------------------------------------------------- citation

def test_citation_file_is_valid_and_names_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert str(cff["cff-version"]) == "1.2.0"
    for key in ("message", "title", "authors"):  # required by CFF 1.2.0
        assert cff.get(key), f"CITATION.cff: required key {key!r} missing or empty"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert cff["title"] == project["name"]
    assert str(cff["version"]) == project["version"], "CITATION.cff version != pyproject.toml"
    assert cff["license"] == "MIT"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    papers = [cff["preferred-citation"], *cff["references"]]
    for paper in papers:
        assert paper["title"] == "Self-Distillation as Instance-Specific Label Smoothing"
        assert [a["family-names"] for a in paper["authors"]] == ["Zhang", "Sabuncu"]
        assert paper["year"] == 2020 and paper["volume"] == 33
        assert "NeurIPS 2020" in paper["collection-title"]
        assert any("2006.05065" in str(i["value"]) for i in paper["identifiers"])


# --------------------------------------------------------------------------- method lists


def _missing_methods(text: str) -> list[str]:
    """Registered method names not written (as `name`) in ``text``."""
    from selfdistill.methods import METHODS

    return [name for name in METHODS if f"`{name}`" not in text]


def test_docs_name_every_registered_method():
    """README, docs/results.md (the `method` column) and methods §7 (the tidy table) list the
    registry's methods: a method added to selfdistill.methods.METHODS fails here until its
    name is written there."""
    methods = METHODS_DOC.read_text(encoding="utf-8")
    section7 = methods[methods.index("## 7."):methods.index("## 8.")]
    for where, text in (("README.md", (REPO / "README.md").read_text(encoding="utf-8")),
                        ("docs/results.md",
                         (REPO / "docs" / "results.md").read_text(encoding="utf-8")),
                        ("docs/methods.md §7", section7)):
        assert not _missing_methods(text), f"{where} does not name {_missing_methods(text)}"


def test_method_list_check_sees_a_missing_name():
    assert _missing_methods("`ce` `sd` `ls` `er` `bs`") == ["tfkd_reg", "tfkd_self", "pskd",
                                                            "cskd", "zipf", "ols"]


# --------------------------------------------------------------------------- CSV columns


def documented_columns(markdown: str, heading: str) -> list[str]:
    """The column names of the table under ``## `<heading>` `` in docs/results.md, in order:
    each row's backticked names in its first cell; "`dataset` … `gen`" stands for the run
    columns (selfdistill.measure.RUN_COLUMNS)."""
    from selfdistill.measure import RUN_COLUMNS

    start = markdown.index(f"## `{heading}`")
    end = markdown.find("\n## ", start + 1)
    names: list[str] = []
    for line in markdown[start:end if end > 0 else None].splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        found = re.findall(r"`([^`]+)`", cell)
        names += RUN_COLUMNS if "…" in cell else found
    return names


def test_results_doc_lists_every_csv_column_in_order(data_dir, tmp_path):
    """docs/results.md's tables of metrics.csv, history.csv and per_class_accuracy.csv name
    the columns the code writes, in their order: a column added to the code fails here
    until it is documented (and one removed, until its row goes)."""
    import csv

    from selfdistill.measure import METRIC_COLUMNS, PER_CLASS_COLUMNS, RUN_COLUMNS, per_class_table
    from selfdistill.run import RunSpec, train_run
    from selfdistill.train import TrainConfig

    doc = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    out = tmp_path / "run"
    train_run(RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method="ce", param=None,
                      seed=0, gen=0, out_dir=str(out), dataset="mnist1d", device="cpu",
                      train=TrainConfig(epochs=1, milestones=(), seed=0)))
    with open(out / "history.csv", newline="") as fh:
        history = next(csv.reader(fh))
    per_class_table([out / "preds.npz"], [{"dataset": "mnist1d", "arch": "cnn1d",
                                           "method": "ce", "param": None, "seed": 0,
                                           "gen": 0}], tmp_path / "pc.csv")
    with open(tmp_path / "pc.csv", newline="") as fh:
        per_class = next(csv.reader(fh))
    assert per_class == RUN_COLUMNS + ["split"] + PER_CLASS_COLUMNS
    for heading, written in (("results/metrics.csv", RUN_COLUMNS + ["split", "n"]
                              + METRIC_COLUMNS),
                             ("results/history.csv", history),
                             ("results/per_class_accuracy.csv", per_class)):
        assert documented_columns(doc, heading) == written, heading


def test_column_reader_sees_a_missing_row():
    doc = "## `x.csv`\n\n| column | meaning |\n|---|---|\n| `a`, `b` | two |\n| `c` | one |\n"
    assert documented_columns(doc, "x.csv") == ["a", "b", "c"]
    assert documented_columns(doc.replace("| `c` | one |\n", ""), "x.csv") == ["a", "b"]
