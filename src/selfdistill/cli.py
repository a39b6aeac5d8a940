"""Command line: prepare a dataset, train one network outside Snakemake (the rules' own code
path), watch a results tree.

    python -m selfdistill prepare --source mnist1d --out results/data/mnist1d
    python -m selfdistill train --data results/data/mnist1d --arch cnn1d --method ce \\
        --seed 0 --epochs 12 --out runs/ce0
    python -m selfdistill train --data results/data/mnist1d --arch cnn1d --method sd \\
        --gen 1 --teacher runs/ce0/model.pt --seed 0 --config my.yaml --out runs/sd1
    python -m selfdistill progress results --watch 30

Every recipe field (TrainConfig, methods §2), method option (selfdistill.methods, methods §3) and
dataset-block key (selfdistill.sources) is a flag. The train flags' types, bounds, choices and
help come from the config schema (selfdistill/schemas/config.schema.yaml, the workflow's),
which also says which block holds each; the method flags' from ``Method.schema_block``
(methods §3). ``--config FILE`` takes the blocks of
config/config.yaml that apply to one run or one dataset (train, methods, execution,
datasets); flags given explicitly override the file, the file overrides the code defaults.

Building the parser never imports torch, so ``--help`` is quick: the facts that live in
modules importing torch (method option defaults, TrainConfig and RunSpec fields, MODELS)
are read from those modules' syntax trees (see "registries without torch"); tests compare
them with the imported objects, and the schema's choices with the registries.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .methods import METHODS, SWEPT, Method, Range
from .sources.keys import REQUIRED, Invalid, Key, close_match  # torch-free, as is .sources

if TYPE_CHECKING:
    from .run import RunSpec
    from .sources import Source

__all__ = ["CLI_ONLY", "Field", "UsageError", "build_parser", "default_milestones", "main", "method_options",
           "model_names", "package_version", "parse", "prepare_block", "run_spec",
           "train_fields"]

# --------------------------------------------------------------------------- registries without torch

class _Unreadable(Exception):
    """A registry fact is not a literal in its module's source: import the module instead."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One TrainConfig field: name, annotation text (``int``, ``tuple[int, ...]``), default."""

    name: str
    kind: str
    default: Any


@functools.cache
def _tree(module: str) -> ast.Module:
    """Syntax tree of ``selfdistill.<module>``, parsed from its file (nothing is imported)."""
    spec = importlib.util.find_spec(f"selfdistill.{module}")
    if spec is None or spec.origin is None:
        raise _Unreadable(module)
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def _top(module: str, name: str) -> ast.AST:
    """The module-level function, class or assignment named ``name``."""
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    raise _Unreadable(f"{module}.{name}")


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node)  # type: ignore[arg-type]
    except (ValueError, TypeError, SyntaxError) as err:
        raise _Unreadable(ast.dump(node) if node else "None") from err


def _keyword_defaults(module: str, name: str) -> dict[str, Any]:
    """Keyword -> default of function ``name``, or of class ``name``'s ``__init__`` (that of
    its first base in the same module when it defines none), as inspect.signature has them."""
    node = _top(module, name)
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body
                     if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            return _keyword_defaults(module, bases[0]) if bases else {}
        node = init
    if not isinstance(node, ast.FunctionDef):
        raise _Unreadable(f"{module}.{name}")
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults, strict=True))
    pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
              if d is not None]
    return {arg.arg: _literal(d) for arg, d in pairs}


def method_options(m: Method) -> dict[str, Any]:
    """``m.options()`` (methods §3: the loss's keyword defaults, then the objective's), read
    without importing torch; the imported registry when a default is not a literal."""
    found: dict[str, Any] = {}
    try:
        for module, name in (("losses", m.loss_name), ("objectives", m.objective_name)):
            for key, default in _keyword_defaults(module, name).items():
                if key != m.swept:
                    found.setdefault(key, default)
    except _Unreadable:
        return m.options()
    return found


def train_fields() -> tuple[Field, ...]:
    """TrainConfig's fields (methods §2 recipe and execution switches) in declaration order."""
    try:
        node = _top("train", "TrainConfig")
        return tuple(Field(n.target.id, ast.unparse(n.annotation),
                           REQUIRED if n.value is None else _literal(n.value))
                     for n in getattr(node, "body", ())
                     if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
    except _Unreadable:
        from .train import TrainConfig

        return tuple(Field(f.name, str(f.type),
                           REQUIRED if f.default is dataclasses.MISSING else f.default)
                     for f in dataclasses.fields(TrainConfig))


def _field_names(module: str, name: str) -> tuple[str, ...]:
    """The field names of dataclass ``selfdistill.<module>.<name>``, in declaration order."""
    try:
        return tuple(n.target.id for n in getattr(_top(module, name), "body", ())
                     if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
    except _Unreadable:
        cls = getattr(importlib.import_module(f"selfdistill.{module}"), name)
        return tuple(f.name for f in dataclasses.fields(cls))


def _names(module: str, name: str) -> tuple[str, ...]:
    """Keys of the dict (or items of the tuple) ``selfdistill.<module>.<name>``."""
    try:
        value = getattr(_top(module, name), "value", None)
        if isinstance(value, ast.Dict):
            return tuple(_literal(k) for k in value.keys)
        return tuple(_literal(value))
    except _Unreadable:
        return tuple(getattr(importlib.import_module(f"selfdistill.{module}"), name))


def model_names() -> tuple[str, ...]:
    """The ``MODELS`` registry's names (selfdistill.models), without importing torch."""
    return _names("models", "MODELS")


def package_version() -> str:
    """The installed package's version, else the version in the source tree's pyproject."""
    try:
        return importlib.metadata.version("selfdistill")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'(?m)^version\s*=\s*"([^"]+)"',
                          pyproject.read_text() if pyproject.exists() else "")
        if found:
            return found.group(1)
        from . import __version__

        return __version__


# --------------------------------------------------------------------------- the config schema

# The config schema (type, bounds, choices and description of every key) is package data,
# so an installed package finds it; workflow/schemas/config.schema.yaml links to it and the
# workflow checks configs against it. The flags of one run are built from its entries:
# definitions/train (the train block), the keys of a datasets block that are TrainConfig
# fields (augmentation), the execution block and resources.checkpoint_every.
_SCHEMA_FILE = "schemas/config.schema.yaml"  # inside the package
_WORKFLOW_ONLY = {"execution": ("bundle",)}  # config.yaml keys that apply to the workflow only
_RUN_RESOURCES = ("checkpoint_every",)  # the resources keys that apply to one run
# TrainConfig fields the workflow never sets (its default is the workflow's value), so the
# schema has no key for them: flags of one run only, in --config's execution block, each
# written as a schema entry would be.
CLI_ONLY: dict[str, dict[str, Any]] = {
    "eval_batch_size": {"type": "integer", "minimum": 1,
                        "description": "batch size of the evaluation forwards"},
}
_KINDS = {"integer": "int", "number": "float", "boolean": "bool", "string": "text"}


@functools.cache
def _config_schema() -> dict[str, Any]:
    """The config's JSON schema, read from the package (yaml imports no torch)."""
    import yaml

    text = importlib.resources.files(__package__).joinpath(_SCHEMA_FILE).read_text(
        encoding="utf-8")
    return yaml.safe_load(text)


def _block_entries(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The schema entries of the settings one run may take, by the --config block that
    holds them: train (methods §2 recipe), dataset (every datasets.<name> key), execution
    (its keys but the workflow's, the run's resources keys, CLI_ONLY)."""
    props = schema["properties"]
    execution = {k: v for k, v in props["execution"]["properties"].items()
                 if k not in _WORKFLOW_ONLY["execution"]}
    execution.update({k: props["resources"]["properties"][k] for k in _RUN_RESOURCES})
    return {"train": dict(schema["definitions"]["train"]["properties"]),
            "dataset": dict(props["datasets"]["additionalProperties"]["properties"]),
            "execution": {**execution, **CLI_ONLY}}


def _schema_key(name: str, spec: Mapping[str, Any], default: Any, doc: str) -> Key:
    """The typed check of schema entry ``spec`` of key ``name``: its JSON type (an ``enum``
    makes a choice), ``minimum``/``maximum`` inclusive and ``exclusiveMinimum``/
    ``exclusiveMaximum`` open bounds; ``doc`` its description. A ``pattern`` is checked by
    :class:`_Opt`, as Key has none."""
    kind = "choice" if "enum" in spec else _KINDS.get(str(spec.get("type")))
    if kind is None:
        raise ValueError(f"config schema key {name}: type {spec.get('type')!r} has no flag; "
                         f"give it one of {', '.join(_KINDS)} or an enum")
    return Key(kind, doc, default=default,
               low=spec.get("exclusiveMinimum", spec.get("minimum")),
               high=spec.get("exclusiveMaximum", spec.get("maximum")),
               open_low="exclusiveMinimum" in spec, open_high="exclusiveMaximum" in spec,
               choices=tuple(spec.get("enum", ())))


# --------------------------------------------------------------------------- milestones


def default_milestones(epochs: int) -> tuple[int, ...]:
    """Milestones when none are given: methods §2's ResNet rule, the lr falls x gamma after
    epochs round(E/3) and round(2E/3). Decision for small E: a milestone of 0 (before any
    training) or of E (after the last epoch: no effect) is dropped, and one that both rules
    give is kept once, so the lr never falls twice at one epoch (E=2: one fall, after epoch
    1, not x0.01). The workflow's configs give milestones explicitly."""
    return tuple(sorted({m for m in (round(epochs / 3), round(2 * epochs / 3))
                         if 0 < m < epochs}))


# --------------------------------------------------------------------------- options


class UsageError(ValueError):
    """A flag or --config value is wrong; the message names it and the fix (exit status 2)."""


@dataclasses.dataclass(frozen=True)
class _Opt:
    """One setting: its key in its config block, its argparse dest, its typed check (of each
    item when ``many``) and the schema's ``pattern`` of it, and its default (shown in --help)."""

    name: str
    dest: str
    key: Key
    default: Any
    many: bool = False
    pattern: str | None = None

    @property
    def flag(self) -> str:
        return _flag(self.dest)

    def check(self, value: Any) -> Any:
        """One value (one item when ``many``) in its type, or :class:`Invalid`."""
        checked = self.key.check(value)
        if self.pattern is not None and not re.search(self.pattern, checked):
            raise Invalid(f"{value!r} does not match {self.pattern}",
                          f"write a value that does ({self.key.doc})")
        return checked


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _arg_type(opt: _Opt) -> Callable[[str], Any]:
    """argparse type from a setting's check: the error names the flag (argparse adds it)
    and the fix."""

    def convert(text: str) -> Any:
        try:
            return opt.check(text)
        except Invalid as err:
            raise argparse.ArgumentTypeError(err.what) from None  # what says what to give

    convert.__name__ = opt.key.kind
    return convert


_CLI_DEFAULTS = {"epochs": 150, "milestones": None}  # methods §2; None: default_milestones(E)


def _schema_opt(name: str, spec: Mapping[str, Any], default: Any, dest: str) -> _Opt:
    """The setting of schema entry ``spec``; an array is a flag of many items."""
    doc = " ".join(str(spec.get("description", name)).split())
    many = spec.get("type") == "array"
    item = spec["items"] if many else spec
    return _Opt(name, dest, _schema_key(name, item, None if many else default, doc), default,
                many=many, pattern=item.get("pattern"))


def _homes(fields: Mapping[str, Field], entries: Mapping[str, Mapping[str, Any]]) -> None:
    """ValueError unless every TrainConfig field has one block, every train key is a field
    and every other execution key is a RunSpec field with a schema default (else the schema
    and the dataclasses drifted apart)."""
    run_fields = _field_names("run", "RunSpec")
    homes: dict[str, list[str]] = {}
    for block, keys in entries.items():
        for name in keys:
            homes.setdefault(name, []).append(block)
    problems = [f"TrainConfig.{n}: no key in the config schema ({_SCHEMA_FILE}) nor in "
                f"cli.CLI_ONLY; add it to one" for n in fields if n not in homes]
    problems += [f"{n}: a key of blocks {' and '.join(b)}; keep it in one"
                 for n, b in homes.items() if len(b) > 1]
    problems += [f"train.{n}: not a TrainConfig field; add the field or remove the key"
                 for n in entries["train"] if n not in fields]
    problems += [f"execution.{n}: neither a TrainConfig nor a RunSpec field; add it to one or "
                 f"to cli._WORKFLOW_ONLY" for n in entries["execution"]
                 if n not in fields and n not in run_fields]
    problems += [f"execution.{n}: a RunSpec field without a schema default; give it one"
                 for n, spec in entries["execution"].items()
                 if n not in fields and n in run_fields and "default" not in spec]
    if problems:
        raise ValueError("the config schema and selfdistill.train.TrainConfig disagree:\n  "
                         + "\n  ".join(problems))


def recipe_opts() -> dict[str, tuple[_Opt, ...]]:
    """TrainConfig's fields (but the seed) and the run's own execution settings (device,
    threads, ...), by the --config block that the config schema puts them in: train
    (methods §2 recipe), dataset, execution. Defaults: TrainConfig's (the CLI's for epochs
    and milestones), else the schema's. ValueError when schema and TrainConfig disagree."""
    fields = {f.name: f for f in train_fields() if f.name != "seed"}
    entries = _block_entries(_config_schema())
    entries["dataset"] = {k: v for k, v in entries["dataset"].items() if k in fields}
    _homes(fields, entries)
    opts = {}
    for block, keys in entries.items():  # the run's own settings, then the fields in order
        names = [*(n for n in keys if n not in fields), *(n for n in fields if n in keys)]
        opts[block] = tuple(
            _schema_opt(n, keys[n], _CLI_DEFAULTS.get(n, fields[n].default) if n in fields
                        else keys[n]["default"], n) for n in names)
    return opts


def method_opts(m: Method) -> tuple[_Opt, ...]:
    """Method ``m``'s options (its block ``methods.<name>``) as flags ``--<name>-<option>``,
    each checked by ``m.schema_block`` (the workflow's schema of the block)."""
    defaults = method_options(m)
    entries = m.schema_block(defaults)["properties"]
    return tuple(_schema_opt(option, spec, defaults[option], f"{m.name}_{option}")
                 for option, spec in entries.items())


def _add_opt(group: Any, opt: _Opt) -> None:
    """One flag checked by ``opt.check``. Its default is shown, not set (the subparser's
    defaults are SUPPRESS): the namespace holds only explicit flags, which override --config."""
    key = opt.key
    shown = ("round(E/3) and round(2E/3) without 0, E and repeats (methods §2; see "
             "default_milestones)" if opt.many and opt.default is None else opt.default)
    allowed = "" if key.kind in ("bool", "choice", "text") else f": {key.expected()}"
    help_text = f"{key.doc}{allowed}{' each' if opt.many else ''} (default: {shown})"
    if key.kind == "bool":
        group.add_argument(opt.flag, dest=opt.dest, action=argparse.BooleanOptionalAction,
                           help=help_text)
    elif key.kind == "choice":
        group.add_argument(opt.flag, dest=opt.dest, choices=key.choices, help=help_text)
    else:
        group.add_argument(opt.flag, dest=opt.dest, type=_arg_type(opt), help=help_text,
                           nargs="*" if opt.many else None,
                           metavar="EPOCH" if opt.many else key.kind.upper())


def _check_value(opt: _Opt, value: Any, where: str) -> Any:
    """A --config value in its type, or UsageError naming ``where`` (file: block.key)."""
    if opt.many and not isinstance(value, list):
        raise UsageError(f"{where}: expected a list such as [4, 8], got {value!r}; write "
                         f"{opt.name}: [...] ({opt.key.doc})")
    try:
        return [opt.check(v) for v in value] if opt.many else opt.check(value)
    except Invalid as err:
        raise UsageError(f"{where}: {err.what}; {err.fix}") from None


def _resolve(opts: Sequence[_Opt], block: Mapping[str, Any], where: str,
             args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """Each setting from its flag if given, else from ``block`` (the --config block at
    ``where``), else its default; and, for messages, where each came from."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for opt in opts:
        if opt.dest in args:
            values[opt.name], origin[opt.name] = getattr(args, opt.dest), opt.flag
        elif opt.name in block:
            origin[opt.name] = f"{where}.{opt.name}"
            values[opt.name] = _check_value(opt, block[opt.name], origin[opt.name])
        elif opt.default is not REQUIRED:
            values[opt.name], origin[opt.name] = opt.default, opt.flag
    return values, origin


# --------------------------------------------------------------------------- --config FILE

BLOCKS = ("train", "methods", "execution", "datasets")


def _unknown(where: str, given: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    for key in given:
        if key not in known:
            raise UsageError(f"{where}{key}: unknown key{close_match(str(key), list(known))}; "
                             f"{what} accepts {', '.join(known) or 'none'}: remove or correct it")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A block (None: empty) as a dict, or UsageError naming it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a block of key: value lines, got "
                         f"{type(value).__name__} {value!r}; indent its keys under it")
    return value


def load_config(path: str) -> dict[str, dict[str, Any]]:
    """The blocks of a --config file, every key checked (unknown key -> UsageError naming
    it): ``train`` and ``execution`` hold settings, ``methods`` one block per method of the
    registry (methods §3), ``datasets`` one dataset block per name (checked by prepare)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"--config {path}: {err.strerror}; give an existing YAML file") from None
    except yaml.YAMLError as err:
        raise UsageError(f"--config {path}: not valid YAML ({err}); fix its syntax") from None
    cfg = _mapping(data, f"--config {path}")
    _unknown(f"{path}: ", cfg, (*BLOCKS, "resources"),
             "a --config file (blocks of config/config.yaml)")
    blocks = {b: _mapping(cfg.get(b), f"{path}: {b}") for b in BLOCKS}
    # resources: scheduling; of it only the checkpoint cadence applies to one run
    for key, value in _mapping(cfg.get("resources"), f"{path}: resources").items():
        if key not in _RUN_RESOURCES:
            raise UsageError(f"{path}: resources.{key}: applies to the workflow only (what a "
                             f"job asks of the scheduler), not to one run; remove it")
        blocks["execution"].setdefault(key, value)
    opts = recipe_opts()
    _unknown(f"{path}: train.", blocks["train"], [o.name for o in opts["train"]], "train")
    for key in _WORKFLOW_ONLY["execution"]:
        if key in blocks["execution"]:
            raise UsageError(f"{path}: execution.{key}: applies to the workflow only (how runs "
                             f"are grouped into jobs), not to one run; remove it")
    _unknown(f"{path}: execution.", blocks["execution"], [o.name for o in opts["execution"]],
             "execution")
    _unknown(f"{path}: methods.", blocks["methods"], list(METHODS), "methods")
    for name, block in list(blocks["methods"].items()):
        blocks["methods"][name] = _mapping(block, f"{path}: methods.{name}")
        _unknown(f"{path}: methods.{name}.", blocks["methods"][name],
                 list(method_options(METHODS[name])), f"method {name}")
    for name, block in blocks["datasets"].items():
        _mapping(block, f"{path}: datasets.{name}")
    return blocks


def _config(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], str]:
    """The --config blocks (all empty without --config) and the prefix of their messages."""
    if "config" not in args:
        return {b: {} for b in BLOCKS}, ""
    return load_config(args.config), f"{args.config}: "


def _dataset_entry(cfg: Mapping[str, Mapping[str, Any]], args: argparse.Namespace,
                   prefix: str) -> tuple[str | None, dict[str, Any]]:
    """(name, block) of ``datasets`` in --config: the one --dataset names, else the only one."""
    blocks = cfg["datasets"]
    wanted = getattr(args, "dataset", None)
    if not blocks:
        return wanted, {}
    if wanted is None:
        if len(blocks) > 1:
            raise UsageError(f"--dataset: {prefix}datasets holds {', '.join(blocks)}; choose "
                             f"one with --dataset NAME")
        wanted = next(iter(blocks))
    if wanted not in blocks:
        raise UsageError(f"--dataset {wanted}: not a block of {prefix}datasets (it holds "
                         f"{', '.join(blocks)}); give one of those")
    return wanted, dict(blocks[wanted] or {})


# --------------------------------------------------------------------------- train


def _nonnegative_int(text: str) -> int:
    """argparse type of --seed and --gen: a whole number >= 0."""
    if not re.fullmatch(r"\+?\d+", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0; give e.g. 0")
    return int(text)


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", allow_abbrev=False, help="train one network (methods §2 recipe, §3 methods)",
                       argument_default=argparse.SUPPRESS,
                       description="Train one network and write model.pt, history.csv, "
                                   "preds.npz and run.json into --out. Precedence: explicit "
                                   "flags, then --config FILE, then the defaults shown.")
    run = p.add_argument_group("the run")
    run.add_argument("--data", required=True, help="prepared dataset directory (manifest.json)")
    run.add_argument("--arch", required=True, choices=model_names(),
                     help="network (selfdistill.models.MODELS)")
    run.add_argument("--method", required=True, choices=list(METHODS),
                     help="objective (selfdistill.methods.METHODS, methods §3)")
    strengths = "; ".join(f"{m.name} {m.swept} ({m.symbol}) {m.ranges.get(m.swept, Range())}"
                          for m in SWEPT)
    run.add_argument("--param", type=float, metavar="VALUE",
                     help=f"the method's strength, required for those that have one: "
                          f"{strengths} (default: none)")
    run.add_argument("--seed", type=_nonnegative_int, help="run seed (default: 0)")
    run.add_argument("--gen", type=_nonnegative_int,
                     help="SD generation, >= 1 for sd, 0 otherwise (default: 0)")
    run.add_argument("--teacher", metavar="MODEL_PT",
                     help="sd: model.pt of generation gen-1 (methods §3.4); tfkd_self: the seed's "
                          "ce model.pt (methods §3.7) (default: none)")
    run.add_argument("--out", required=True, help="output run directory")
    run.add_argument("--config", metavar="FILE",
                     help="YAML with config/config.yaml's blocks train, methods, execution and "
                          "datasets (augment, augment_padding of --dataset or its only block) "
                          "(default: none)")
    run.add_argument("--dataset", metavar="NAME",
                     help="which datasets block of --config holds the augmentation "
                          "(default: its only block)")
    titles = {"train": "recipe (--config block train, methods §2)",
              "dataset": "augmentation (--config block datasets.<name>, methods §2)",
              "execution": "execution (--config block execution)"}
    for block, opts in recipe_opts().items():
        group = p.add_argument_group(titles[block])
        for opt in opts:
            _add_opt(group, opt)
    for m in METHODS.values():
        group = p.add_argument_group(f"{m.label} options (--config block methods.{m.name}, "
                                     f"methods §{m.section}; used with --method {m.name})")
        for opt in method_opts(m):
            _add_opt(group, opt)


def _check_strength(m: Method, param: float | None) -> None:
    """--param given exactly when ``m`` has a strength, inside the registry's Range."""
    if m.swept is None:
        if param is not None:
            raise UsageError(f"--param {param}: method {m.name} has no strength (methods "
                             f"§{m.section}); remove --param")
        return
    allowed = m.ranges.get(m.swept, Range())
    what = f"{m.label} {m.swept} ({m.symbol}, methods §{m.section})"
    if param is None:
        raise UsageError(f"--param: method {m.name} needs its strength {what}: add --param "
                         f"VALUE (allowed: {allowed})")
    if param not in allowed:
        raise UsageError(f"--param {param}: {what} is out of range (allowed: {allowed}); give "
                         f"--param within it")


def _check_generation(m: Method, gen: int, teacher: str | None) -> None:
    """SD (methods §3.4) trains generation gen >= 1 against generation gen-1's model.pt."""
    if m.name == "sd":
        if gen < 1:
            raise UsageError("--gen: sd trains generation >= 1 against the previous one "
                             "(generation 0 is the ce run, methods §3.4); add --gen 1 or more")
        if not teacher:
            raise UsageError("--teacher: sd needs the model.pt of generation gen-1 (methods "
                             "§3.4); add --teacher RUN_DIR/model.pt")
    elif m.teacher is not None:
        if gen != 0:
            raise UsageError(f"--gen {gen}: only sd has generations (methods §3.4); remove it")
        if not teacher:
            raise UsageError(f"--teacher: {m.name} needs the model.pt of the seed's "
                             f"{m.teacher} run (methods §{m.section}); add --teacher "
                             f"RUN_DIR/model.pt")
    elif gen != 0:
        raise UsageError(f"--gen {gen}: only sd has generations (methods §3.4); remove it or "
                         f"use --method sd")
    elif teacher:
        takes = ", ".join(["sd", *(n for n, x in METHODS.items() if x.teacher)])
        raise UsageError(f"--teacher: only {takes} take a teacher (methods §3.4); remove it or "
                         f"use one of those methods")


def _milestones(values: dict[str, Any], origin: Mapping[str, str]) -> tuple[int, ...]:
    """The given milestones, checked against the epochs; else :func:`default_milestones`."""
    given, epochs = values.pop("milestones", None), values["epochs"]
    if given is None:
        return default_milestones(epochs)
    late = [m for m in given if m > epochs]
    if late:
        raise UsageError(f"{origin['milestones']} {late}: after the last epoch "
                         f"({origin['epochs']} {epochs}); lower them or raise the epochs")
    twice = sorted({m for m in given if given.count(m) > 1})
    if twice:
        raise UsageError(f"{origin['milestones']}: {twice} given twice, so the lr would fall "
                         f"x gamma twice at that epoch; give each epoch once")
    return tuple(given)


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The :class:`~selfdistill.run.RunSpec` of a parsed ``train`` command line: every
    setting from its flag, else --config, else its default; UsageError naming the flag."""
    from .run import RunSpec
    from .train import TrainConfig

    cfg, prefix = _config(args)
    m = METHODS[args.method]
    _check_strength(m, getattr(args, "param", None))
    _check_generation(m, getattr(args, "gen", 0), getattr(args, "teacher", None))
    dataset_name, dataset_block = _dataset_entry(cfg, args, prefix)
    blocks = {"train": cfg["train"], "dataset": dataset_block, "execution": cfg["execution"]}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for block, opts in recipe_opts().items():
        where = f"{prefix}datasets.{dataset_name}" if block == "dataset" else f"{prefix}{block}"
        got, came = _resolve(opts, blocks[block], where, args)
        values.update(got)
        origin.update(came)
    options, _ = _resolve(method_opts(m), cfg["methods"].get(m.name, {}),
                          f"{prefix}methods.{m.name}", args)
    milestones = _milestones(values, origin)
    fields = {f.name for f in train_fields()}
    own = {k: values.pop(k) for k in list(values) if k not in fields}  # device, threads, ...
    train = TrainConfig(seed=getattr(args, "seed", 0), milestones=milestones, **values)
    return RunSpec(dataset_dir=args.data, arch=args.arch, method=m.name,
                   param=getattr(args, "param", None), seed=train.seed,
                   gen=getattr(args, "gen", 0), out_dir=args.out, train=train, options=options,
                   teacher=getattr(args, "teacher", None), **own,
                   config={"cli": vars(args), "config_file": cfg if prefix else None})


def _run_train(args: argparse.Namespace) -> None:
    from .run import train_run

    spec = run_spec(args)
    record = train_run(spec, caller="cli")
    print(f"{spec.describe()} best epoch {record['best_epoch']} val accuracy "
          f"{record['best_val_accuracy']:.4f} on {record['device']} in "
          f"{record['wall_time_s']:.1f} s -> {args.out}")


# --------------------------------------------------------------------------- prepare

# The dataset block requires these (selfdistill.sources.keys.COMMON); the command line
# keeps its earlier defaults for them (config/config.yaml's MNIST-1D values).
_PREPARE_DEFAULTS = {"val_size": 1000, "split_seed": 0}


def _source_keys() -> dict[str, dict[str, Key]]:
    """Every dataset-block key of any source (but ``source``) -> {source name: its Key}."""
    from .sources import SOURCES

    found: dict[str, dict[str, Key]] = {}
    for source in SOURCES.values():
        for name, key in source.keys.items():
            if name != "source":
                found.setdefault(name, {})[source.name] = key
    return found


def _agreed(keys: Mapping[str, Key], text: Callable[[Key], str]) -> str:
    """``text`` of the sources' keys: once when they agree, else per group of sources."""
    groups: dict[str, list[str]] = {}
    for source, key in keys.items():
        groups.setdefault(text(key), []).append(source)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(sources)}: {t}" for t, sources in groups.items())


def _source_key_help(name: str, keys: Mapping[str, Key]) -> str:
    """Help of a dataset-block flag: what it takes and its default, per source if they differ."""
    from .sources import SOURCES
    def default(key: Key) -> str:
        value = _PREPARE_DEFAULTS.get(name, key.default)
        return "required" if value is REQUIRED else "none" if value is None else str(value)

    where = "every source" if len(keys) == len(SOURCES) else "sources " + ", ".join(keys)
    return (f"{next(iter(keys.values())).doc}: {_agreed(keys, Key.expected)} (default: "
            f"{_agreed(keys, default)}; {where})")


def _prepare_parser(sub: Any) -> None:
    from .sources import SOURCES

    p = sub.add_parser("prepare", allow_abbrev=False, help="prepare a dataset of any source (methods §5)",
                       argument_default=argparse.SUPPRESS,
                       description="Check a dataset block (selfdistill.sources."
                                   "validate_dataset) and prepare it into --out. Precedence: "
                                   "explicit flags, then --config FILE, then the defaults.")
    p.add_argument("--source", choices=list(SOURCES),
                   help="data source (selfdistill.sources.SOURCES); required unless the "
                        "--config dataset block gives source:")
    p.add_argument("--out", required=True, help="output directory of the prepared dataset")
    p.add_argument("--config", metavar="FILE",
                   help="YAML whose datasets block holds the dataset block (config/config."
                        "yaml's shape)")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset name: its block in --config and the manifest's name "
                        "(default: the file's only block, else the source)")
    p.add_argument("--download-dir", metavar="DIR",
                   help="archives of a downloaded source (default: "
                        "resources/downloads/<source>)")
    group = p.add_argument_group("dataset block keys (datasets.<name>; each source accepts "
                                 "its own)")
    for name, keys in _source_keys().items():
        flag, help_text = _flag(name), _source_key_help(name, keys)
        if all(k.kind == "bool" for k in keys.values()):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               help=help_text)
        else:
            group.add_argument(flag, dest=name, metavar=next(iter(keys.values())).kind.upper(),
                               help=help_text)


def _checked_flags(source: Source, block: dict[str, Any], flagged: set[str]) -> None:
    """Flags of keys ``source`` lacks are refused; the others typed in ``block``, as a YAML
    block would hold them (the manifest records the block)."""
    foreign = sorted(flagged - set(source.keys))
    if foreign:
        accepted = ", ".join(_flag(k) for k in source.keys if k != "source")
        raise UsageError(f"{', '.join(map(_flag, foreign))}: not a key of source "
                         f"{source.name}; it accepts {accepted}: remove it")
    for key in flagged - {"source"}:
        try:
            block[key] = source.keys[key].check(block[key], source.files)
        except Invalid as err:
            raise UsageError(f"{_flag(key)}: {err.what}; {err.fix}") from None


def _validated(name: str, block: Mapping[str, Any], flagged: set[str], prefix: str) -> None:
    """validate_dataset (methods §2, §5), its messages naming the flag or the file's key."""
    from .sources import validate_dataset

    try:
        validate_dataset(name, block)
    except ValueError as err:
        message = str(err)
        for key in flagged:
            message = message.replace(f"datasets.{name}.{key}:", f"{_flag(key)}:")
        raise UsageError(message.replace(f"datasets.{name}.", f"{prefix}datasets.{name}.")
                         ) from None


def prepare_block(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(dataset name, dataset block) of a parsed ``prepare`` command line: --config's block,
    flags over it, checked with validate_dataset; UsageError naming the flag or file key."""
    from .sources import SOURCES, get_source

    cfg, prefix = _config(args)
    name, block = _dataset_entry(cfg, args, prefix)
    flagged = {k for k in [*_source_keys(), "source"] if k in args}
    block.update({k: getattr(args, k) for k in flagged})
    if "source" not in block:
        raise UsageError(f"--source: missing; give --source one of {', '.join(SOURCES)} (or "
                         f"source: in the --config dataset block)")
    name = name or str(block["source"])
    try:
        source = get_source(name, block)
    except ValueError as err:
        raise UsageError(f"{prefix}{err}") from None
    _checked_flags(source, block, flagged)
    for key, value in _PREPARE_DEFAULTS.items():
        if key in source.keys and key not in block:
            block[key], flagged = value, flagged | {key}
    _validated(name, block, flagged, prefix)
    return name, block


def _run_prepare(args: argparse.Namespace) -> None:
    from .data import prepare_dataset

    name, block = prepare_block(args)
    manifest = prepare_dataset(name, block, args.out, getattr(args, "download_dir", None))
    print(f"prepared {name} ({block['source']}) -> {args.out}: {manifest['sizes']}")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (imports neither torch nor anything that does)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="selfdistill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="INFO log lines on stderr (each epoch's line goes to stdout "
                             "either way; default: off)")
    sub = parser.add_subparsers(dest="command", required=True)
    _prepare_parser(sub)
    _train_parser(sub)
    sub.add_parser("progress", allow_abbrev=False, add_help=False,
                   help="summarise a results tree: done, running, failed and waiting runs, "
                        "ETA (selfdistill.progress; 'progress --help' lists its options)")
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed command line; ``progress`` keeps its own arguments in ``progress_argv``."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "progress":
        args.progress_argv = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "progress":
        from .progress import main as progress_main

        return progress_main(args.progress_argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        {"train": _run_train, "prepare": _run_prepare}[args.command](args)
    except UsageError as err:
        print(f"selfdistill {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, KeyError, OSError, FloatingPointError) as err:
        print(f"selfdistill: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
