"""docs/reliability.md "What is trusted" says what a user runs and what is safe to read;
each claim that the code or Snakemake makes true is checked here against them."""

import ast
import re

from ..conftest import REPO, snakemake

DOC = REPO / "docs" / "reliability.md"
PACKAGE = REPO / "src" / "selfdistill"


def trusted_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"^## What is trusted\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"{DOC} has no '## What is trusted' section"
    return " ".join(m.group(1).split())


def calls(name: str, attr: str) -> list[tuple[str, ast.Call]]:
    """Every call ``name.attr(...)`` in the package, with its file and line."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == attr and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == name):
                found.append((f"{path.relative_to(REPO)}:{node.lineno}", node))
    return found


def keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def test_the_section_names_config_files_as_code_and_the_trust_anchor():
    text = trusted_section()
    for claim in ("Config files are code", "__use_yte__: true", "profile",
                  "pinned hashes are the trust anchor", "Overriding `sha256:` or `md5:`",
                  "safe to read", "weights_only=True"):
        assert claim in text, claim


def test_a_yte_config_file_runs_python_when_snakemake_reads_it(workflow_dir):
    """The warning is true: a --configfile with __use_yte__ evaluates an expression (here
    one that writes a file) while Snakemake merely parses the workflow (a dry run)."""
    marker = workflow_dir / "ran"
    (workflow_dir / "yte.yaml").write_text(
        "__use_yte__: true\n"
        f"seeds: ?[0] if __import__('pathlib').Path({str(marker)!r}).write_text('x') else [0]\n")
    assert "__use_yte__: true" in trusted_section()
    snakemake(workflow_dir, "-n", "metrics", "--configfile", "config/config.yaml", "tiny.yaml",
              "yte.yaml")
    assert marker.read_text() == "x"


def test_every_torch_load_of_the_package_refuses_arbitrary_objects():
    """'Every torch.load of the package uses weights_only=True'."""
    assert "Every `torch.load` of the package uses `weights_only=True`" in trusted_section()
    loads = calls("torch", "load")
    assert loads, "no torch.load found: the section's claim needs rewording"
    unsafe = [where for where, call in loads if keyword(call, "weights_only") is not True]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"


def test_every_npz_of_a_results_tree_is_read_without_pickle():
    """'.npz files read without pickle': np.load keeps its default allow_pickle=False."""
    assert "`.npz` files read without pickle" in trusted_section()
    loads = calls("np", "load")
    assert loads
    assert not [where for where, call in loads if keyword(call, "allow_pickle") not in (None,
                                                                                       False)]
