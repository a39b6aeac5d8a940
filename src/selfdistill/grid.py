"""The experiment grid: which networks a config asks for, and where each one lives.

Takes the already-loaded config mapping (the package never reads config files itself).
A run is identified by (dataset, arch, method, param, seed, gen); its directory is
``RUN_PATTERN`` filled in by :func:`run_dir`, the one spelling of a run's path (the rules'
wildcard paths are :func:`run_pattern`). SD generation g >= 1 is taught by generation g-1
of the same seed; generation 0 is the CE run (methods §3.4). Methods and their sweep keys
come from the registry :data:`selfdistill.methods.METHODS`.

"No strength" (ce, sd) is spelled once per layer: ``None`` in Python, ``none`` in paths
and wildcards (``NO_PARAM``), empty in CSVs (methods §7); :func:`path_param`,
:func:`csv_param` and :func:`parse_param` are the only conversions.

The config is checked whole before any job runs: :func:`coerce_config` turns numbers and
booleans that arrive as text into their types, then the JSON schema, then
:func:`validate_config` (cross-key checks, every dataset block used, dataset/arch fit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .methods import METHODS, PAPER_METHODS, SWEPT

__all__ = ["ARCH_SPATIAL_DIMS", "BUNDLE_MODES", "CHAIN", "MATCHED_PATTERN", "NO_PARAM",
           "RESERVED_NAMES", "RUN_PATTERN", "bundle_parts", "coerce_config", "csv_param",
           "data_dir", "experiment_runs", "experiments", "find_experiment", "grid", "matched_dir",
           "method_schemas", "parse_param", "path_param", "Run", "run_dir", "run_params",
           "run_pattern", "teacher_of", "validate_config"]

NO_PARAM = "none"
RUN_PATTERN = "{root}/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}"
# Folders of results/ that are not datasets: prepared data, matched-entropy runs, benchmark.
RESERVED_NAMES = ("bench", "data", "matched")
MATCHED_PATTERN = "{root}/matched/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}"
CHAIN = ("ce", "sd")  # methods §3.4: generation 0 (CE) and the SD generations it starts


def parse_param(text: str | float | None) -> float | None:
    """A strength from either spelling (``none`` in paths, empty in CSVs) or a number."""
    return None if text is None or text in (NO_PARAM, "") else float(text)


def path_param(value: str | float | None) -> str:
    """Path/wildcard spelling of a strength: ``0.1``, ``3``, ``1e-05``; ``none`` when absent."""
    v = parse_param(value)
    return NO_PARAM if v is None else f"{v:g}"


def csv_param(value: str | float | None) -> str:
    """CSV spelling of a strength (methods §7 ``param``): as in paths, but empty when absent."""
    v = parse_param(value)
    return "" if v is None else f"{v:g}"


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    arch: str
    method: str
    param: str  # path spelling, see path_param
    seed: int
    gen: int

    @property
    def wildcards(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "method": self.method,
                "param": self.param, "seed": self.seed, "gen": self.gen}


def run_dir(run: Run, root: str = "results") -> str:
    """The run's directory under ``root``: ``RUN_PATTERN`` filled in."""
    return RUN_PATTERN.format(root=root, **run.wildcards)


def matched_dir(run: Run, root: str = "results") -> str:
    """Directory of a matched-entropy run (methods §5 E2, :mod:`selfdistill.matching`):
    beside the grid's runs, under ``<root>/matched/``, since its strength is chosen from
    the sweep's results (never a wildcard value of the grid's rules)."""
    return MATCHED_PATTERN.format(root=root, **run.wildcards)


def run_pattern(root: str = "results") -> str:
    """``RUN_PATTERN`` under ``root`` with the run's wildcards left in (rule paths)."""
    return RUN_PATTERN.replace("{root}", root)


def teacher_of(run: Run) -> Run | None:
    """The teacher: for SD generation g-1, or the CE run for g = 1 (methods §3.4); for a
    method with a registry ``teacher`` (Tf-KD_self, methods §3.7) that method's run."""
    teacher = METHODS[run.method].teacher if run.method in METHODS else None
    if teacher is not None:  # Tf-KD_self (methods §3.7): the seed's run of that method
        return Run(run.dataset, run.arch, teacher, NO_PARAM, run.seed, 0)
    if run.method != "sd":
        return None
    if run.gen == 1:
        return Run(run.dataset, run.arch, "ce", NO_PARAM, run.seed, 0)
    return Run(run.dataset, run.arch, "sd", NO_PARAM, run.seed, run.gen - 1)


def experiments(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each experiment block with the global defaults filled in (block keys win)."""
    out = []
    for block in config["experiments"]:
        exp = {
            "dataset": block["dataset"],
            "arch": block["arch"],
            "train": {**config["train"], **block.get("train", {})},
            "sweeps": {**config["sweeps"], **block.get("sweeps", {})},
            "generations": block.get("generations", config["generations"]),
            "resources": {**config["resources"], **block.get("resources", {})},
            # methods it trains (methods §5): the paper's five unless the block lists more
            "methods": tuple(block.get("methods", PAPER_METHODS)),
        }
        out.append(exp)
    return out


def experiment_runs(exp: Mapping[str, Any], seeds: list[int]) -> list[Run]:
    """Runs of one experiment in an order that respects the DAG (teachers first): per seed
    the CE -> SD chain, then every other method the experiment lists, in registry order, at
    each of its sweep values."""
    d, a = exp["dataset"], exp["arch"]
    listed = exp.get("methods", PAPER_METHODS)
    runs = []
    for seed in seeds:
        runs.append(Run(d, a, "ce", NO_PARAM, seed, 0))
        runs += [Run(d, a, "sd", NO_PARAM, seed, g) for g in range(1, exp["generations"] + 1)]
        for m in METHODS.values():
            if m.name not in CHAIN and m.name in listed:
                values = exp["sweeps"][m.sweep_key] if m.sweep_key else [None]
                runs += [Run(d, a, m.name, path_param(v), seed, 0) for v in values]
    return runs


BUNDLE_MODES = ("none", "seed", "chain")


def bundle_parts(exp: Mapping[str, Any], mode: str, seed: int | str) -> dict[str, list[Run]]:
    """Training jobs of one (dataset, arch, seed) when networks are bundled, in DAG order.

    ``seed``: one job with every run of the seed. ``chain``: two independent jobs, the
    CE → SD generation chain and the LS/ER/BS baselines (which share only the CE
    initialisation seed, not a file), so the two halves of a seed can run side by side.
    Parts without runs are left out. ``none`` has no bundles (one job per network).
    """
    runs = experiment_runs(exp, [seed])  # type: ignore[list-item]
    if mode == "seed":
        return {"bundle": runs}
    if mode == "chain":
        chained = {r.method for r in runs if r.method in CHAIN or METHODS[r.method].teacher}
        parts = {"chain": [r for r in runs if r.method in chained],
                 "baselines": [r for r in runs if r.method not in chained]}
        return {k: v for k, v in parts.items() if v}
    raise ValueError(f"execution.bundle: {mode!r} has no bundles; known: {BUNDLE_MODES}")


def grid(config: Mapping[str, Any]) -> list[Run]:
    return [r for exp in experiments(config) for r in experiment_runs(exp, config["seeds"])]


# Inputs each architecture of selfdistill.models.MODELS takes, by the spatial dimensions of
# one example (1: signals [C, L]; 2: images [C, H, W]). Kept here, light, so the config is
# checked at parse time without importing torch; tests/workflow/test_validate.py builds
# every registered model on both kinds of input and checks this table against them.
ARCH_SPATIAL_DIMS: dict[str, tuple[int, ...]] = {
    "mlp": (1, 2), "cnn1d": (1,), "cnn_digits": (2,), "resnet18": (2,), "resnet34": (2,),
    "densenet_bc100": (2,)}
_INPUT_KIND = {1: "signals [C, L]", 2: "images [C, H, W]"}


def method_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of each ``methods.<name>`` block, derived from the registry
    (:meth:`selfdistill.methods.Method.schema_block`); the workflow adds it to the schema
    file's ``methods`` before it checks a config."""
    return {m.name: m.schema_block() for m in METHODS.values()}


def _check_method_blocks(config: Mapping[str, Any]) -> None:
    """``methods.<name>``: a registered method whose keys are its options (the registry's
    message names the unknown key and the accepted ones)."""
    for name, block in (config.get("methods") or {}).items():
        if name not in METHODS:
            raise ValueError(f"methods.{name}: no such method; known methods: "
                             f"{', '.join(METHODS)} (methods §3). Rename or remove the block.")
        METHODS[name].resolve(block)


def validate_config(config: Mapping[str, Any]) -> None:
    """Cross-key checks the JSON schema cannot express, run before any job: each experiment
    block, each dataset block it uses (:func:`selfdistill.sources.validate_dataset`) and the
    fit of its architecture to that dataset's inputs. Errors name the key and the fix."""
    from .sources import validate_dataset

    _check_method_blocks(config)
    seen: set[tuple[str, str]] = set()
    reserved = sorted(set(config["datasets"]) & set(RESERVED_NAMES))
    if reserved:
        name = reserved[0]
        raise ValueError(f"datasets.{name}: {name!r} is a folder of results/ itself "
                         f"(reserved: {', '.join(RESERVED_NAMES)}); rename the block and the "
                         f"experiments[].dataset naming it, e.g. {name}_set")
    for i, exp in enumerate(experiments(config)):
        where = f"experiments[{i}] ({exp['dataset']}/{exp['arch']})"
        if exp["dataset"] not in config["datasets"]:
            raise ValueError(f"{where}: dataset {exp['dataset']!r} is not defined under "
                             f"'datasets' (defined: {sorted(config['datasets'])}). Add it there.")
        if (exp["dataset"], exp["arch"]) in seen:
            raise ValueError(f"{where}: duplicate dataset x arch block; merge the two blocks.")
        seen.add((exp["dataset"], exp["arch"]))
        _check_experiment(config, i, exp, where)
    for name in sorted({d for d, _ in seen}):
        validate_dataset(name, config["datasets"][name])
    for i, exp in enumerate(experiments(config)):
        _check_inputs(config, exp, f"experiments[{i}] ({exp['dataset']}/{exp['arch']})")


def _check_experiment(config: Mapping[str, Any], i: int, exp: Mapping[str, Any],
                      where: str) -> None:
    """One experiment block: milestones within epochs, every compare point swept, and the
    SD generation that E3/E4 compare (methods §5) trained."""
    tr = exp["train"]
    listed = exp["methods"]
    unknown = [m for m in listed if m not in METHODS]
    missing = [m for m in PAPER_METHODS if m not in listed]
    if unknown or missing or len(set(listed)) != len(listed):
        block = f"experiments[{i}].methods"
        why = (f"unknown method(s) {unknown}; known: {', '.join(METHODS)}" if unknown else
               f"{missing} left out: the paper's tables and claims (methods §5, §6) compare "
               f"all of {', '.join(PAPER_METHODS)}, so a list adds methods to them" if missing
               else "a method is listed twice")
        raise ValueError(f"{where}: {block} = {list(listed)}: {why}. Fix the list, or remove "
                         f"it to run the paper's five.")
    bad = [m for m in tr["milestones"] if m > tr["epochs"]]
    if bad:
        raise ValueError(f"{where}: train.milestones {bad} exceed train.epochs="
                         f"{tr['epochs']}; lower them or raise epochs.")
    for m in SWEPT:
        key, want = m.sweep_key, config["compare"][m.sweep_key]
        if not any(abs(float(v) - float(want)) < 1e-12 for v in exp["sweeps"][key]):
            raise ValueError(f"{where}: compare.{key}={want} is not in sweeps.{key}="
                             f"{exp['sweeps'][key]}; E3/E4 compare {m.name} at that value, "
                             f"so add it to the sweep or change compare.{key}.")
    gens, sd_gen = exp["generations"], config["compare"]["sd_gen"]
    if sd_gen > gens:
        key = (f"experiments[{i}].generations" if "generations" in config["experiments"][i]
               else "generations")
        trains = (f"SD generations 1..{gens} only" if gens else
                  "no SD network (only the CE generation 0)")
        fix = (f"raise {key} to {sd_gen} or lower compare.sd_gen to at most {gens}" if gens
               else f"set {key} to {sd_gen} or more (methods §5 E1 uses 4)")
        raise ValueError(f"{where}: {key}={gens} trains {trains}, but E3/E4 and the claims "
                         f"check compare SD generation compare.sd_gen={sd_gen} (methods §5); "
                         f"{fix}.")


def _check_inputs(config: Mapping[str, Any], exp: Mapping[str, Any], where: str) -> None:
    """The architecture takes the kind of input the dataset's source gives (signals or
    images), decided from the source registry and ARCH_SPATIAL_DIMS without any data."""
    from .sources import SOURCES

    source = SOURCES[config["datasets"][exp["dataset"]]["source"]]
    takes = ARCH_SPATIAL_DIMS.get(exp["arch"])
    if takes is None or source.spatial_dims in takes:
        return
    fits = [a for a, dims in ARCH_SPATIAL_DIMS.items() if source.spatial_dims in dims]
    other = "a signal" if source.spatial_dims == 2 else "an image"
    raise ValueError(f"{where}: arch {exp['arch']} takes {_INPUT_KIND[takes[0]]}, but dataset "
                     f"{exp['dataset']} (source {source.name}) gives "
                     f"{_INPUT_KIND[source.spatial_dims]}; set this block's arch to one of "
                     f"{', '.join(fits)}, or its dataset to {other} dataset.")


# --------------------------------------------------------------------------- text values

# YAML 1.1 (PyYAML) reads 1e6 and 1.0e6 as text (a float needs a dot and a signed exponent),
# and Snakemake parses nested --config values with YAML's base loader: every scalar is text.
_INT = re.compile(r"[-+]?\d[\d_]*")
_FLOAT = re.compile(r"[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def coerce_config(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Turn numbers and booleans that arrive as text into their types, in place, wherever
    the JSON ``schema`` wants a number, integer or boolean (``weight_decay: 1e-4``, or
    ``--config train={epochs: 2}`` whose 2 arrives as '2'), so the schema then checks values.

    Text where the schema wants a mapping or list (a ``--config`` value YAML could not read)
    or text that is no number/boolean where one is wanted raises ValueError naming the key
    and the fix.
    """
    _coerce(config, schema, schema, "")


def _coerce(value: Any, node: Mapping[str, Any], root: Mapping[str, Any], key: str) -> Any:
    """``value`` with text converted where ``node`` (a schema node) wants another type."""
    if "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str) and types and "string" not in types:
        return _from_text(value, types, key)
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                value[k] = _coerce(v, sub, root, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list) and isinstance(node.get("items"), Mapping):
        value[:] = [_coerce(v, node["items"], root, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _from_text(text: str, types: list[str], key: str) -> Any:
    """The number or boolean ``text`` spells (for schema ``types``), or ValueError."""
    t = text.strip()
    if "integer" in types and _INT.fullmatch(t):
        return int(t.replace("_", ""))
    if ("integer" in types or "number" in types) and _FLOAT.fullmatch(t):
        number = float(t.replace("_", ""))
        if "number" in types:
            return int(number) if _INT.fullmatch(t) else number
        if number.is_integer():
            return int(number)
    if "boolean" in types and t.lower() in _BOOLS:
        return _BOOLS[t.lower()]
    if "null" in types and t in ("null", "~", ""):
        return None
    if "object" in types or "array" in types:
        kind, example = ("a mapping", "{epochs: 2}") if "object" in types else ("a list", "[0, 1]")
        top = key.split(".")[0].split("[")[0]
        raise ValueError(
            f"config key {key}: expected {kind}, got the text {text!r}. A --config value is "
            f"read as YAML, and this one does not read as {kind} ({top}={example} would). "
            f"Easiest: write the keys to a YAML file (e.g. my.yaml with `{top}: {example}`) "
            f"and add it after the default: --configfile config/config.yaml my.yaml")
    wanted = " or ".join({"integer": "a whole number", "number": "a number",
                          "boolean": "true or false", "null": "null"}.get(t_, t_)
                         for t_ in types)
    raise ValueError(f"config key {key}: expected {wanted}, got the text {text!r}; write "
                     f"{wanted} (numbers such as 1e-4 or 1.0e6 are fine).")


def data_dir(dataset: str, root: str = "results") -> str:
    return f"{root}/data/{dataset}"


def find_experiment(config: Mapping[str, Any], dataset: str, arch: str) -> dict[str, Any]:
    for exp in experiments(config):
        if exp["dataset"] == dataset and exp["arch"] == arch:
            return exp
    raise KeyError(f"no experiment block for dataset={dataset!r} arch={arch!r} in 'experiments'")


def run_params(config: Mapping[str, Any], run: Run, root: str = "results") -> dict[str, Any]:
    """Plain-dict description of one run, handed by the rules to ``selfdistill.run``.

    Exactly what the network's numbers depend on, so that as a training rule's ``params``
    (a Snakemake rerun trigger) it reruns a network only when the network would come out
    different: the methods §2 recipe, its data, seed and teacher, its own method block
    ``methods.<method>`` (not another method's settings), device, kernel switches (with
    ``execution.precision``: fp32, tf32 or bf16 change a GPU run's numbers) and
    ``execution.threads`` (CPU kernels split their sums by thread count, so another count
    changes the bits). Not in it: scheduling (``resources``: gpu, runtime, mem_mb,
    checkpoint_every; the wrappers pass gpu and checkpoint_every to
    :func:`selfdistill.run.spec_from_params`), other methods' blocks, and the config for
    provenance (the wrappers pass ``snakemake.config``).
    """
    exp = find_experiment(config, run.dataset, run.arch)
    ds = config["datasets"][run.dataset]
    ex = config["execution"]
    teacher = teacher_of(run)
    options = dict(config["methods"].get(run.method) or {})
    train = {**exp["train"], "seed": run.seed, "augment": ds.get("augment", "none"),
             "augment_padding": ds.get("augment_padding", 4),
             "channels_last": ex["channels_last"], "precision": ex["precision"],
             "compile": ex["compile"], "deterministic": ex["deterministic"]}
    return {
        "dataset": run.dataset, "dataset_dir": data_dir(run.dataset, root), "arch": run.arch,
        "method": run.method, "param": parse_param(run.param), "seed": run.seed, "gen": run.gen,
        "out_dir": run_dir(run, root),
        "teacher": f"{run_dir(teacher, root)}/model.pt" if teacher else None,
        "train": train, "options": options, "device": ex["device"],
        "threads": ex["threads"],
    }
