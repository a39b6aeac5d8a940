"""The experiment grid: which networks a config asks for, and where each one lives.

Takes the already-loaded config mapping (the package never reads config files itself).
A run is identified by (dataset, arch, method, param, seed, gen); its directory is
``RUN_PATTERN`` filled in by :func:`run_dir`, the one spelling of a run's path (the rules'
wildcard paths are :func:`run_pattern`). SD generation g >= 1 is taught by generation g-1
of the same seed; generation 0 is the CE run (SPEC §3.4). Methods and their sweep keys
come from the registry :data:`selfdistill.methods.METHODS`.

"No strength" (ce, sd) is spelled once per layer: ``None`` in Python, ``none`` in paths
and wildcards (``NO_PARAM``), empty in CSVs (SPEC §7); :func:`path_param`,
:func:`csv_param` and :func:`parse_param` are the only conversions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .methods import METHODS, SWEPT

__all__ = ["BUNDLE_MODES", "CHAIN", "NO_PARAM", "RUN_PATTERN", "Run", "bundle_parts",
           "csv_param", "data_dir", "experiment_runs", "experiments", "find_experiment", "grid",
           "parse_param", "path_param", "run_dir", "run_params", "run_pattern", "teacher_of",
           "validate_config"]

NO_PARAM = "none"
RUN_PATTERN = "{root}/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}"
CHAIN = ("ce", "sd")  # SPEC §3.4: generation 0 (CE) and the SD generations it starts


def parse_param(text: str | float | None) -> float | None:
    """A strength from either spelling (``none`` in paths, empty in CSVs) or a number."""
    return None if text is None or text in (NO_PARAM, "") else float(text)


def path_param(value: str | float | None) -> str:
    """Path/wildcard spelling of a strength: ``0.1``, ``3``, ``1e-05``; ``none`` when absent."""
    v = parse_param(value)
    return NO_PARAM if v is None else f"{v:g}"


def csv_param(value: str | float | None) -> str:
    """CSV spelling of a strength (SPEC §7 ``param``): as in paths, but empty when absent."""
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


def run_pattern(root: str = "results") -> str:
    """``RUN_PATTERN`` under ``root`` with the run's wildcards left in (rule paths)."""
    return RUN_PATTERN.replace("{root}", root)


def teacher_of(run: Run) -> Run | None:
    """The SD teacher: generation g-1 of SD, or the CE run for g = 1 (SPEC §3.4)."""
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
        }
        out.append(exp)
    return out


def experiment_runs(exp: Mapping[str, Any], seeds: list[int]) -> list[Run]:
    """Runs of one experiment in an order that respects the DAG (teachers first): per seed
    the CE -> SD chain, then every other registry method at each of its sweep values."""
    d, a = exp["dataset"], exp["arch"]
    runs = []
    for seed in seeds:
        runs.append(Run(d, a, "ce", NO_PARAM, seed, 0))
        runs += [Run(d, a, "sd", NO_PARAM, seed, g) for g in range(1, exp["generations"] + 1)]
        for m in METHODS.values():
            if m.name not in CHAIN:
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
        parts = {"chain": [r for r in runs if r.method in CHAIN],
                 "baselines": [r for r in runs if r.method not in CHAIN]}
        return {k: v for k, v in parts.items() if v}
    raise ValueError(f"execution.bundle: {mode!r} has no bundles; known: {BUNDLE_MODES}")


def grid(config: Mapping[str, Any]) -> list[Run]:
    return [r for exp in experiments(config) for r in experiment_runs(exp, config["seeds"])]


def validate_config(config: Mapping[str, Any]) -> None:
    """Cross-key checks the JSON schema cannot express; errors name the key and the fix."""
    seen = set()
    for i, exp in enumerate(experiments(config)):
        where = f"experiments[{i}] ({exp['dataset']}/{exp['arch']})"
        if exp["dataset"] not in config["datasets"]:
            raise ValueError(f"{where}: dataset {exp['dataset']!r} is not defined under "
                             f"'datasets' (defined: {sorted(config['datasets'])}). Add it there.")
        if (exp["dataset"], exp["arch"]) in seen:
            raise ValueError(f"{where}: duplicate dataset x arch block; merge the two blocks.")
        seen.add((exp["dataset"], exp["arch"]))
        tr = exp["train"]
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
        if config["compare"]["sd_gen"] > exp["generations"]:
            raise ValueError(f"{where}: compare.sd_gen={config['compare']['sd_gen']} > "
                             f"generations={exp['generations']}; lower compare.sd_gen.")


def data_dir(dataset: str, root: str = "results") -> str:
    return f"{root}/data/{dataset}"


def find_experiment(config: Mapping[str, Any], dataset: str, arch: str) -> dict[str, Any]:
    for exp in experiments(config):
        if exp["dataset"] == dataset and exp["arch"] == arch:
            return exp
    raise KeyError(f"no experiment block for dataset={dataset!r} arch={arch!r} in 'experiments'")


def run_params(config: Mapping[str, Any], run: Run, root: str = "results") -> dict[str, Any]:
    """Plain-dict description of one run, handed by the rules to ``selfdistill.run``.

    It carries only the run's own method block ``methods.<method>`` (its keyword options),
    so a run does not depend on another method's settings.
    """
    exp = find_experiment(config, run.dataset, run.arch)
    ds = config["datasets"][run.dataset]
    ex = config["execution"]
    teacher = teacher_of(run)
    options = dict(config["methods"].get(run.method) or {})
    train = {**exp["train"], "seed": run.seed, "augment": ds.get("augment", "none"),
             "augment_padding": ds.get("augment_padding", 4),
             "checkpoint_every": ex["checkpoint_every"], "channels_last": ex["channels_last"],
             "bf16": ex["bf16"], "compile": ex["compile"], "deterministic": ex["deterministic"]}
    return {
        "dataset": run.dataset, "dataset_dir": data_dir(run.dataset, root), "arch": run.arch,
        "method": run.method, "param": parse_param(run.param), "seed": run.seed, "gen": run.gen,
        "out_dir": run_dir(run, root),
        "teacher": f"{run_dir(teacher, root)}/model.pt" if teacher else None,
        "train": train, "options": options, "device": ex["device"],
        "threads": ex["threads"],
        "config": {"experiment": exp, "dataset": ds, "methods": {run.method: options},
                   "execution": ex},
    }
