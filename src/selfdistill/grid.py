"""The experiment grid: which networks a config asks for, and where each one lives.

Takes the already-loaded config mapping (the package never reads config files itself).
A run is identified by (dataset, arch, method, param, seed, gen); its directory is
``results/{dataset}/{arch}/{method}/{param}/seed{seed}/gen{gen}``, with ``param`` ``none``
for ce and sd. SD generation g >= 1 is taught by generation g-1 of the same seed;
generation 0 is the CE run (SPEC §3.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BUNDLE_MODES", "NO_PARAM", "Run", "bundle_parts", "data_dir", "experiment_runs", "find_experiment", "run_params", "experiments", "format_param", "grid",
           "param_key", "run_dir", "teacher_of", "validate_config"]

NO_PARAM = "none"
SWEEP_KEYS = {"ls": "ls_eps", "er": "er_beta", "bs": "bs_a"}


def format_param(value: float | None) -> str:
    """Path/CSV spelling of a strength: ``0.1``, ``3``, ``1e-05``; ``none`` when absent."""
    return NO_PARAM if value is None else f"{float(value):g}"


def param_key(value: str) -> float | None:
    return None if value in (NO_PARAM, "") else float(value)


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    arch: str
    method: str
    param: str  # formatted, see format_param
    seed: int
    gen: int

    @property
    def wildcards(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "arch": self.arch, "method": self.method,
                "param": self.param, "seed": self.seed, "gen": self.gen}


def run_dir(run: Run, root: str = "results") -> str:
    return (f"{root}/{run.dataset}/{run.arch}/{run.method}/{run.param}/seed{run.seed}/"
            f"gen{run.gen}")


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
    """Runs of one experiment in an order that respects the DAG (teachers first)."""
    d, a = exp["dataset"], exp["arch"]
    runs = []
    for seed in seeds:
        runs.append(Run(d, a, "ce", NO_PARAM, seed, 0))
        runs += [Run(d, a, "sd", NO_PARAM, seed, g) for g in range(1, exp["generations"] + 1)]
        for method, key in SWEEP_KEYS.items():
            runs += [Run(d, a, method, format_param(v), seed, 0) for v in exp["sweeps"][key]]
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
        parts = {"chain": [r for r in runs if r.method in ("ce", "sd")],
                 "baselines": [r for r in runs if r.method not in ("ce", "sd")]}
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
        for method, key in SWEEP_KEYS.items():
            want = config["compare"][key]
            if not any(abs(float(v) - float(want)) < 1e-12 for v in exp["sweeps"][key]):
                raise ValueError(f"{where}: compare.{key}={want} is not in sweeps.{key}="
                                 f"{exp['sweeps'][key]}; E3/E4 compare {method} at that value, "
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
    """Plain-dict description of one run, handed by the rules to ``selfdistill.run``."""
    exp = find_experiment(config, run.dataset, run.arch)
    ds = config["datasets"][run.dataset]
    ex = config["execution"]
    teacher = teacher_of(run)
    train = {**exp["train"], "seed": run.seed, "augment": ds.get("augment", "none"),
             "augment_padding": ds.get("augment_padding", 4),
             "checkpoint_every": ex["checkpoint_every"], "channels_last": ex["channels_last"],
             "bf16": ex["bf16"], "compile": ex["compile"], "deterministic": ex["deterministic"]}
    return {
        "dataset": run.dataset, "dataset_dir": data_dir(run.dataset, root), "arch": run.arch,
        "method": run.method, "param": param_key(run.param), "seed": run.seed, "gen": run.gen,
        "out_dir": run_dir(run, root),
        "teacher": f"{run_dir(teacher, root)}/model.pt" if teacher else None,
        "train": train, "methods": dict(config["methods"]), "device": ex["device"],
        "threads": ex["threads"],
        "config": {"experiment": exp, "dataset": ds, "methods": config["methods"],
                   "execution": ex},
    }
