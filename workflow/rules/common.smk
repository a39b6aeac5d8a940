# Validation, the grid, wildcard constraints, path patterns and input functions: every
# Python helper of the workflow lives here; the other .smk files hold rules only.
import difflib
import importlib.resources
import os
import re
import sys
import time

import yaml
from snakemake.sourcecache import LocalSourceFile
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import ExecMode

# Files of this workflow are found from this file's folder (workflow/rules/), not from
# workflow.basedir: used as a module, that is the folder of the user's Snakefile.
_RULES = workflow.current_basedir
_LOCAL = isinstance(_RULES, LocalSourceFile)  # else github(...): the package must be installed
# A fresh clone runs without installing the package: jobs import it from src/.
_SRC = Path(_RULES.get_path_or_uri(secret_free=True)).parents[1] / "src" if _LOCAL else None
if _SRC is not None and _SRC.is_dir():
    sys.path.insert(0, str(_SRC))
    _ENV = os.environ
    _ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), _ENV.get("PYTHONPATH")]))

from selfdistill import download as D
from selfdistill import grid as G
from selfdistill import matching as M
from selfdistill.methods import PAPER_METHODS
from selfdistill import workdir as W
from selfdistill.io import read_json
from selfdistill.methods import METHODS

STARTED = time.time()  # temporary files older than this are orphans of killed writes

# The whole config is checked before any job: numbers/booleans that arrive as text (YAML's
# 1e6, nested --config values) converted where the schema wants them, then the schema (its
# breaches one line each, naming the key; Snakemake's validate then fills the defaults),
# then the cross-key checks (every dataset block used, dataset/arch fit, compare points).
SCHEMA = "workflow/schemas/config.schema.yaml"  # in the repository; errors name it
# That file links to the package's copy (package data, so the installed CLI builds its flags
# from it): read from the imported package, as a github(...) module would fetch the link.
_SCHEMA_FILE = str(importlib.resources.files("selfdistill") / "schemas" / "config.schema.yaml")


def schema_problems(config, schema):
    """Each breach of the JSON ``schema`` by ``config`` as one line: the key, what is
    wrong, the fix of a bound and, for a bad value, the key's description (why the bound,
    what a name may hold)."""
    from jsonschema import Draft202012Validator

    def segment(p):
        if isinstance(p, int):
            return f"[{p}]"
        return f".{p}" if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f"[{p!r}]"

    lines = []
    for err in Draft202012Validator(schema).iter_errors(config):
        path = "".join(segment(p) for p in err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(known)):
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(known)}"
                where = f"{path.lstrip('.')}{segment(key)}".lstrip(".")
                lines.append(f"config key {where}: unknown key ({hint})")
            continue
        fix = {"maximum": "at most", "minimum": "at least"}.get(err.validator)
        line = f"config key {path.lstrip('.') or '(top level)'}: {err.message}"
        line += f"; write a value {fix} {err.validator_value}" if fix else ""
        leaf = err.validator in ("pattern", "maximum", "minimum", "enum", "type")
        why = err.schema.get("description") if leaf and isinstance(err.schema, dict) else None
        lines.append(line + (f" ({' '.join(why.split())})" if why else ""))
    return sorted(lines)


_SCHEMA = yaml.safe_load(Path(_SCHEMA_FILE).read_text(encoding="utf-8"))
# each methods.<name> block's schema comes from the method registry (Method.schema_block)
_SCHEMA["properties"]["methods"]["properties"] = G.method_schemas()
G.coerce_config(config, _SCHEMA)


def key_source(line):
    """The config file that sets the key a problem line names (the last --configfile
    holding that value, else the Snakefile's); None when --config set it."""
    m = re.match(r"config key ([A-Za-z0-9_.\-]+)", line)
    if not m:
        return None
    given = [Path(f) for f in workflow.overwrite_configfiles or []]  # --configfile, in order
    files = [*reversed(given), *(Path(f) for f in workflow.configfiles if Path(f) not in given)]
    for path in files:
        try:
            node = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in m.group(1).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and node == _at(config, m.group(1)):  # else --config set it
            return os.path.relpath(path)
    return None


def _at(mapping, dotted):
    for part in dotted.split("."):
        mapping = mapping.get(part) if isinstance(mapping, dict) else None
    return mapping


_PROBLEMS = [
    p + (f" (set in {key_source(p)})" if key_source(p) else "")
    for p in schema_problems(config, _SCHEMA)
]
if _PROBLEMS:
    raise ValueError(f"the config does not fit {SCHEMA}:\n  " + "\n  ".join(_PROBLEMS))
validate(config, schema=_SCHEMA_FILE)
G.validate_config(config)

# A killed run leaves Snakemake's lock behind: remove it here when provably stale (its
# recorded holder ran on this host and is gone, no Snakemake process runs in this
# directory), else say in one line what to do. Not in the jobs that a cluster run starts.
if workflow.exec_mode == ExecMode.DEFAULT and "--unlock" not in sys.argv:
    _note = W.clear_stale_lock(Path.cwd())
    if _note:
        print(_note, file=sys.stderr)


onstart:
    # runs once Snakemake holds the lock: name its holder, drop orphan temp files
    W.record_holder(Path.cwd(), local=workflow.local_exec)
    W.remove_orphan_temp_files(["results", "figures"], before=STARTED)
    # the planned networks, so `selfdistill progress` can count those not started yet
    Path("results").mkdir(exist_ok=True)
    Path(PLANNED_RUNS).write_text("".join(f"{G.run_dir(r)}\n" for r in RUNS))


onsuccess:
    W.release_holder(Path.cwd())


onerror:
    W.release_holder(Path.cwd())


RUNS = G.grid(config)
PLANNED_RUNS = "results/.planned_runs"
RUN_OF = {G.run_dir(r): r for r in RUNS}
BUNDLE = config["execution"]["bundle"]
DATASETS = sorted({r.dataset for r in RUNS})
DATA_MANIFESTS = [f"{G.data_dir(d)}/manifest.json" for d in DATASETS]
RUN_FILES = ["model.pt", "history.csv", "preds.npz", "run.json"]
# One run's directory with its wildcards, results/{dataset}/{arch}/{method}/{param}/
# seed{seed}/gen{gen}: grid.RUN_PATTERN, the template grid.run_dir fills in for a run.
RUN_DIR = G.run_pattern("results")
DATA_DIR = G.data_dir("{dataset}")  # results/data/{dataset}
# Sources of the datasets in the grid that have archives to download (download.smk).
DOWNLOAD_SOURCES = sorted({config["datasets"][d]["source"] for d in DATASETS} & set(D.SOURCES))
COLLECTED = [
    "results/metrics.csv",
    "results/metrics_last.csv",
    "results/reliability.csv",
    "results/history.csv",
]
FIGURE_FILES = (
    expand(
        "figures/{fig}.{ext}",
        fig=["e1_generations", "e2_entropy_accuracy", "e4_reliability", "e5_beta_sensitivity"],
        ext=["png", "pdf", "json"],
    )
    + expand(
        "figures/{tab}.{ext}",
        tab=["e2_matched_entropy", "e3_methods"],
        ext=["csv", "md", "tex", "json"],
    )
    + expand("figures/claims.{ext}", ext=["md", "csv", "json"])
)
# E6 (methods §5): only where an experiment lists methods beyond the paper's five
TEACHER_FREE = any(set(e["methods"]) - set(PAPER_METHODS) for e in G.experiments(config))
if TEACHER_FREE:
    FIGURE_FILES += expand("figures/e6_teacher_free.{ext}", ext=["png", "pdf", "json"]) + expand(
        "figures/e6_teacher_free_table.{ext}", ext=["csv", "md", "tex", "json"]
    )
# where `snakemake publish` copies a finished run (docs/results/ for the default)
PUBLISH_DIR = config.get("publish_dir", "docs/results")


def one_of(names):
    """A wildcard constraint matching exactly one of ``names`` (regex characters escaped)."""
    return "|".join(re.escape(n) for n in names) or "none"


wildcard_constraints:
    dataset=one_of(DATASETS),
    arch="[A-Za-z0-9_]+",
    method=one_of(METHODS),
    param=rf"{G.NO_PARAM}|[0-9][0-9.e+-]*",
    seed=r"\d+",
    gen=r"\d+",


def run_of(wildcards):
    """The grid entry a training/measure job's wildcards name (KeyError if not in config)."""
    key = G.run_dir(
        G.Run(
            wildcards.dataset,
            wildcards.arch,
            wildcards.method,
            wildcards.param,
            int(wildcards.seed),
            int(wildcards.gen),
        )
    )
    if key not in RUN_OF:
        raise ValueError(
            f"{key} is not part of the configured grid (experiments, seeds, "
            f"sweeps, generations in the config)"
        )
    return RUN_OF[key]


def teacher_input(wildcards):
    """SD generation g needs generation g-1's checkpoint of the same seed (methods §3.4)."""
    teacher = G.teacher_of(run_of(wildcards))
    return [f"{G.run_dir(teacher)}/model.pt"] if teacher else []


def run_params(wildcards):
    return G.run_params(config, run_of(wildcards))


def bundle_parts(exp):
    """Bundled training jobs of one (dataset, arch): part name -> runs with a {seed} wildcard."""
    return G.bundle_parts(exp, BUNDLE, "{seed}")


def bundle_files(exp, part, names):
    """Files ``names`` of every run of one bundle part, with a {seed} wildcard."""
    return [f"{G.run_dir(r)}/{name}" for r in bundle_parts(exp)[part] for name in names]


def bundle_outputs(exp, part):
    """Output files of one training bundle job, with a {seed} wildcard."""
    return bundle_files(exp, part, RUN_FILES)


def _part_runs(exp, part, seed):
    return G.bundle_parts(exp, BUNDLE, int(seed))[part]


def bundle_runs(exp, part):
    """Input function: wildcards of each run of one bundle, in DAG order."""

    def runs(wildcards):
        return [r.wildcards for r in _part_runs(exp, part, wildcards.seed)]

    return runs


def bundle_params(exp, part):
    """Input function: the run descriptions of one bundle, in DAG order."""

    def params(wildcards):
        return [G.run_params(config, r) for r in _part_runs(exp, part, wildcards.seed)]

    return params


def train_gpu(wildcards):
    """GPUs per training job (experiment resources.gpu)."""
    return G.find_experiment(config, wildcards.dataset, wildcards.arch)["resources"]["gpu"]


def train_mem_mb(wildcards, attempt):
    """Memory per training job; doubles on each retry (out-of-memory kills)."""
    exp = G.find_experiment(config, wildcards.dataset, wildcards.arch)
    return exp["resources"]["mem_mb"] * attempt


def train_runtime(wildcards, attempt):
    """Minutes per network (experiment resources.runtime), x attempt on retries."""
    exp = G.find_experiment(config, wildcards.dataset, wildcards.arch)
    return exp["resources"]["runtime"] * attempt


def train_checkpoint_every(wildcards):
    """Epochs between resume files (experiment resources.checkpoint_every): scheduling."""
    exp = G.find_experiment(config, wildcards.dataset, wildcards.arch)
    return exp["resources"]["checkpoint_every"]


def bundle_mem_mb(exp):
    def mem_mb(wildcards, attempt):
        return exp["resources"]["mem_mb"] * attempt

    return mem_mb


def bundle_runtime(exp, part):
    """Minutes per bundle: per-network runtime x networks in the bundle x attempt."""
    n = len(bundle_parts(exp)[part])

    def runtime(wildcards, attempt):
        return exp["resources"]["runtime"] * n * attempt

    return runtime


# --- matched-entropy runs (methods §5 E2, §6 claim 3; rules in match.smk) ---------------
# Round k of one dataset x arch (checkpoint match_entropy) reads the val entropies of its
# LS/ER sweep, SD generation compare.sd_gen and the runs of rounds 1..k-1, and names the
# strengths to train next; those runs live under results/matched/ (grid.matched_dir).
MATCH_ROUNDS = config["matching"]["rounds"]
SEEDS = config["seeds"]
MATCHED_TABLE = ["results/matched/matched.csv"] if MATCH_ROUNDS else []
COLLECTED += MATCHED_TABLE


def match_round_file(dataset, arch, k):
    return f"results/matched/{dataset}/{arch}/round{k}.json"


def matched_seed_runs(dataset, arch, method, param):
    """One matched strength of one method, on every seed."""
    return [G.Run(dataset, arch, method, param, s, 0) for s in SEEDS]


def matched_runs(dataset, arch, upto):
    """Runs rounds 1..upto of one dataset x arch asked for (reads the checkpoints' outputs,
    so the DAG grows once each round is decided)."""
    runs = []
    for k in range(1, upto + 1):
        out = checkpoints.match_entropy.get(dataset=dataset, arch=arch, round=str(k)).output
        for method, param in M.to_train(read_json(out[0])):
            runs += matched_seed_runs(dataset, arch, method, param)
    return runs


def all_matched_runs():
    """Every matched run (input functions of their own: a function that waits for a
    checkpoint hides its other inputs from the plan, so the grid's files stay static)."""
    if not MATCH_ROUNDS:
        return []
    return [
        r
        for exp in G.experiments(config)
        for r in matched_runs(exp["dataset"], exp["arch"], MATCH_ROUNDS)
    ]


def match_input(wildcards):
    """Inputs of round ``wildcards.round``: per-run metrics of the sweep, of SD's matched
    generation and of earlier rounds' runs, and the previous round's decision."""
    d, a, k = wildcards.dataset, wildcards.arch, int(wildcards.round)
    sd_gen = config["compare"]["sd_gen"]
    runs = [
        r
        for r in RUNS
        if (r.dataset, r.arch) == (d, a)
        and (r.method in M.MATCHED or (r.method == "sd" and r.gen == sd_gen))
    ]
    files = [f"{G.run_dir(r)}/metrics.csv" for r in runs]
    if k == 1:
        return {"metrics": files, "previous": []}
    files += [f"{G.matched_dir(r)}/metrics.csv" for r in matched_runs(d, a, k - 1)]
    return {"metrics": files, "previous": [match_round_file(d, a, k - 1)]}


def _matched_run(exp, wildcards):
    """The matched run of one strength and seed ({method}, {param}, {seed} wildcards)."""
    return G.Run(
        exp["dataset"],
        exp["arch"],
        wildcards.method,
        wildcards.param,
        int(wildcards.seed),
        0,
    )


def matched_files(exp, names):
    """Files ``names`` of one matched strength on one seed ({method}, {param}, {seed}
    wildcards): one job per seed, so the seeds of a round share the cores."""
    run = G.Run(exp["dataset"], exp["arch"], "{method}", "{param}", "{seed}", 0)
    return [f"{G.matched_dir(run)}/{name}" for name in names]


def matched_specs(exp):
    """Input function: the run description of one matched network (its out_dir under
    results/matched/)."""

    def specs(wildcards):
        r = _matched_run(exp, wildcards)
        return [{**G.run_params(config, r), "out_dir": G.matched_dir(r)}]

    return specs


def matched_wildcards(exp):
    def runs(wildcards):
        return [_matched_run(exp, wildcards).wildcards]

    return runs


def run_metric_files(wildcards=None):
    return [f"{G.run_dir(r)}/metrics.csv" for r in RUNS]


def matched_metric_files(wildcards=None):
    return [f"{G.matched_dir(r)}/metrics.csv" for r in all_matched_runs()]


def run_metric_last_files(wildcards=None):
    return [f"{G.run_dir(r)}/metrics_last.csv" for r in RUNS]


def matched_metric_last_files(wildcards=None):
    return [f"{G.matched_dir(r)}/metrics_last.csv" for r in all_matched_runs()]


def run_reliability_files(wildcards=None):
    return [f"{G.run_dir(r)}/reliability.csv" for r in RUNS]


def matched_reliability_files(wildcards=None):
    return [f"{G.matched_dir(r)}/reliability.csv" for r in all_matched_runs()]


def run_history_files(wildcards=None):
    return [f"{G.run_dir(r)}/history.csv" for r in RUNS]


def matched_history_files(wildcards=None):
    return [f"{G.matched_dir(r)}/history.csv" for r in all_matched_runs()]


PER_CLASS = "results/per_class_accuracy.csv"  # rule per_class_accuracy (measure.smk)


def per_class_input(wildcards=None):
    """Every network's (grid and matched) preds.npz and the run.json naming it."""
    runs = [G.run_dir(r) for r in RUNS] + [G.matched_dir(r) for r in all_matched_runs()]
    return {"preds": [f"{d}/preds.npz" for d in runs], "runs": [f"{d}/run.json" for d in runs]}


def download_input(wildcards):
    """Archives the prepare_dataset job of a dataset needs ([] for embedded sources)."""
    source = config["datasets"][wildcards.dataset]["source"]
    return D.download_outputs(source) if source in D.SOURCES else []


def run_log(root, ext):
    """Per-run log or benchmark file of a one-network rule: RUN_PATTERN under root."""
    return f"{G.run_pattern(root)}.{ext}"


def bench_out(wildcards, output):
    """The benchmark's output directory (the folder of its summary)."""
    return os.path.dirname(output.summary)


def dataset_params(wildcards):
    return dict(config["datasets"][wildcards.dataset])


def measure_params(wildcards=None):
    return {"ece_bins": config["metrics"]["ece_bins"], "cd_bins": config["metrics"]["cd_bins"]}
