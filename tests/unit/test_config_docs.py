"""config/README.md documents every configuration key, so it cannot fall behind the code.

The convention: a key is documented when a Markdown table row's first cell is its full path
in backticks, e.g. ``| `train.epochs` | ...``. A mention in prose does not count. Paths:

- nested keys are joined with dots (``methods.sd.alpha``);
- a dataset block's name is the user's, so it is written ``<name>``
  (``datasets.<name>.val_size``);
- the keys of a list item are ``list[].key`` (``experiments[].arch``); a block inside an
  experiment named like a top-level block takes that block's keys, so its keys are the
  top-level paths (``experiments[].train`` holds ``train.epochs``);
- a top-level block (``train``) is documented by a heading naming it in backticks.

Keys come from the shipped configs (config/*.yaml), the schema's properties (recursively,
``$ref`` resolved), every data source's declared keys and the method registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from selfdistill.methods import METHODS
from selfdistill.sources import SOURCES

from ..conftest import REPO
from .test_docs import broken_links

CONFIG_DOC = REPO / "config" / "README.md"
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
SHIPPED = sorted((REPO / "config").glob("*.yaml"))
NAME = "<name>"  # the path segment of a name the user chooses (a dataset block)
NAMED_BLOCKS = ("datasets",)  # blocks whose keys are such names
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.M)
TICKED = re.compile(r"`([^`]+)`")


# --------------------------------------------------------------------------- the checker

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _scope(path: str, key: str, child: str, top: tuple[str, ...]) -> str:
    """Where the keys below ``child`` are documented: inside a list item, a block named
    like a top-level block takes that block's keys (an experiment's ``train``)."""
    return key if path.endswith("[]") and key in top else child


def config_paths(node: Any, top: tuple[str, ...], path: str = "") -> Iterator[str]:
    """Every key path of a loaded config (or of one of its blocks below ``path``)."""
    if isinstance(node, Mapping):
        for key in node:
            seg = NAME if path in NAMED_BLOCKS else str(key)
            child = _join(path, seg)
            yield child
            yield from config_paths(node[key], top, _scope(path, seg, child, top))
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, Mapping):
                yield from config_paths(item, top, f"{path}[]")


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with a local ``$ref`` ("#/definitions/train") followed."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def schema_paths(node: Mapping[str, Any], root: Mapping[str, Any],
                 path: str = "") -> Iterator[str]:
    """Every key path a JSON schema names: its properties, recursively; a mapping of
    user-named blocks (``additionalProperties`` with properties) as ``<name>``; the
    properties of list items as ``list[].key``."""
    node = _resolve(node, root)
    top = tuple(root.get("properties", {}))
    for key, sub in node.get("properties", {}).items():
        child = _join(path, key)
        yield child
        yield from schema_paths(sub, root, _scope(path, key, child, top))
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and "properties" in _resolve(extra, root):
        child = _join(path, NAME)
        yield child
        yield from schema_paths(extra, root, child)
    items = node.get("items")
    if isinstance(items, Mapping):
        yield from schema_paths(items, root, f"{path}[]")


def documented(markdown: str) -> set[str]:
    """The key paths that have a table row (first cell: the path in backticks)."""
    return set(ROW.findall(markdown))


def undocumented(paths: set[str], markdown: str, top: tuple[str, ...]) -> list[str]:
    """Paths without a row, and top-level blocks without a heading naming them."""
    headings = set(TICKED.findall("\n".join(re.findall(r"^#+ .*$", markdown, re.M))))
    missing = [p for p in paths - set(top) if p not in documented(markdown)]
    missing += [f"heading for {t}" for t in top if t in paths and t not in headings]
    return sorted(missing)


def source_row_problems(markdown: str, keys: Mapping[str, set[str]]) -> list[str]:
    """Each source's row (first cell: its name) must list exactly the keys it declares
    beyond those every source takes."""
    common = set.intersection(*keys.values())
    rows = {m.group(1): line for line in markdown.splitlines() if (m := ROW.match(line))}
    problems = []
    for name, declared in sorted(keys.items()):
        if name not in rows:
            problems.append(f"{name}: no row")
            continue
        listed = set(TICKED.findall(rows[name].split("|", 3)[2]))
        want = declared - common
        problems += [f"{name}: {k} not listed" for k in sorted(want - listed)]
        problems += [f"{name}: {k} listed but not declared" for k in sorted(listed - want)]
    return problems


# --------------------------------------------------------------------------- the keys

def required_paths() -> set[str]:
    """Key paths of the shipped configs, the schema, the sources and the swept strengths."""
    top = tuple(SCHEMA["properties"])
    paths = set(schema_paths(SCHEMA, SCHEMA))
    for path in SHIPPED:
        paths |= set(config_paths(yaml.safe_load(path.read_text()), top))
    paths |= {f"datasets.{NAME}.{key}" for source in SOURCES.values() for key in source.keys}
    # a method's options are documented in its methods §3 section (tests/unit/test_methods.py);
    # here only the blocks a shipped config sets (above) and the swept strengths' keys
    for m in METHODS.values():
        if m.sweep_key:
            paths |= {f"sweeps.{m.sweep_key}", f"compare.{m.sweep_key}"}
    return paths


def test_every_configuration_key_has_a_row():
    top = tuple(SCHEMA["properties"])
    missing = undocumented(required_paths(), CONFIG_DOC.read_text(encoding="utf-8"), top)
    assert not missing, ("config/README.md lacks a table row (first cell `the.key.path`) "
                         "for:\n" + "\n".join(missing))


def test_every_source_row_lists_its_declared_keys():
    keys = {name: set(source.keys) for name, source in SOURCES.items()}
    problems = source_row_problems(CONFIG_DOC.read_text(encoding="utf-8"), keys)
    assert not problems, "config/README.md source table:\n" + "\n".join(problems)


def test_every_shipped_config_is_listed():
    rows = documented(CONFIG_DOC.read_text(encoding="utf-8"))
    missing = [p.name for p in SHIPPED if f"config/{p.name}" not in rows]
    assert SHIPPED and not missing, f"config/README.md does not list {missing}"


def test_links_resolve():
    assert not broken_links(CONFIG_DOC, REPO)


# --------------------------------------------------------------------------- planted

PLANTED_DOC = """# Config

## `train`

| key | meaning |
|---|---|
| `train.epochs` | epochs |
| `datasets.<name>` | a block |
| `datasets.<name>.source` | its source |
| `experiments[].dataset` | the dataset |
| `experiments[].train` | train keys |

The learning rate `train.lr` is mentioned in prose only.
"""
PLANTED_TOP = ("datasets", "train", "experiments")


def test_checker_names_the_keys_without_a_row():
    config = {"train": {"epochs": 2, "lr": 0.1},
              "datasets": {"mine": {"source": "mnist1d", "val_size": 10}},
              "experiments": [{"dataset": "mine", "train": {"gamma": 0.5}}]}
    paths = set(config_paths(config, PLANTED_TOP))
    assert {"datasets.<name>.val_size", "train.gamma", "experiments[].train"} <= paths
    assert not any("mine" in p or "experiments[].train." in p for p in paths)
    assert undocumented(paths, PLANTED_DOC, PLANTED_TOP) == [
        "datasets.<name>.val_size", "heading for datasets", "heading for experiments",
        "train.gamma", "train.lr"]
    full = PLANTED_DOC.replace("## `train`", "## `train`, `datasets`, `experiments`")
    rows = "".join(f"| `{p}` | x |\n" for p in ("train.lr", "train.gamma",
                                                 "datasets.<name>.val_size"))
    assert undocumented(paths, full + rows, PLANTED_TOP) == []


def test_schema_walk_follows_refs_named_blocks_and_list_items():
    schema = {
        "definitions": {"train": {"properties": {"epochs": {}, "milestones": {
            "type": "array", "items": {"type": "integer"}}}}},
        "properties": {
            "train": {"$ref": "#/definitions/train"},
            "datasets": {"additionalProperties": {"properties": {"source": {}}}},
            "hashes": {"additionalProperties": {"type": "string"}},
            "experiments": {"items": {"properties": {
                "arch": {}, "train": {"$ref": "#/definitions/train"}}}}}}
    assert sorted(schema_paths(schema, schema)) == [
        "datasets", "datasets.<name>", "datasets.<name>.source", "experiments",
        "experiments[].arch", "experiments[].train", "hashes", "train", "train.epochs",
        "train.epochs", "train.milestones", "train.milestones"]


def test_source_rows_must_list_exactly_the_declared_keys():
    keys = {"a": {"source", "val_size", "num"}, "b": {"source", "val_size", "size", "url"},
            "c": {"source", "val_size"}}
    doc = ("| source | keys |\n|---|---|\n| `a` | `num` |\n"
           "| `b` | `size`, `extra` |\n")
    assert source_row_problems(doc, keys) == [
        "b: url not listed", "b: extra listed but not declared", "c: no row"]
