"""The whole config is checked before any job: text numbers, --config values, dataset
blocks, dataset/arch fit, generations; each error names the key and a fix that works."""

import copy
import json
import re

import pytest
import torch
import yaml

from selfdistill import grid as G
from selfdistill.data import load_manifest, prepare_dataset
from selfdistill.models import MODELS
from selfdistill.sources import SOURCES

from ..conftest import REPO, snakemake
from .test_dag import load_config

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


@pytest.fixture
def cfg() -> dict:
    return load_config(REPO / "config" / "config.yaml", REPO / "tests" / "data" / "tiny.yaml")


def raises(cfg: dict, *patterns: str) -> str:
    with pytest.raises(ValueError) as err:
        G.validate_config(cfg)
    for p in patterns:
        assert re.search(p, str(err.value)), (p, str(err.value))
    return str(err.value)


# --------------------------------------------------------------------------- inputs fit


def test_arch_table_is_what_each_registered_model_builds_on():
    """ARCH_SPATIAL_DIMS (light, read at parse time) equals what the MODELS builders accept."""
    assert set(G.ARCH_SPATIAL_DIMS) == set(MODELS)
    schema_archs = SCHEMA["properties"]["experiments"]["items"]["properties"]["arch"]["enum"]
    assert set(schema_archs) == set(MODELS)
    for name, build in MODELS.items():
        builds = set()
        for dims, shape in ((1, (1, 40)), (2, (3, 32, 32))):
            try:
                with torch.device("meta"):
                    build(num_classes=10, input_shape=shape)
                builds.add(dims)
            except ValueError:
                pass
        assert builds == set(G.ARCH_SPATIAL_DIMS[name]), name


@pytest.mark.parametrize("name,params", [
    ("mnist1d", {"source": "mnist1d", "num_samples": 200, "val_size": 20, "split_seed": 0}),
    ("digits", {"source": "sklearn_digits", "val_size": 20, "split_seed": 0}),
])
def test_embedded_sources_declare_the_inputs_they_write(tmp_path, name, params):
    prepare_dataset(name, params, tmp_path)
    shape = load_manifest(tmp_path)["input_shape"]
    assert len(shape) - 1 == SOURCES[params["source"]].spatial_dims


def test_image_arch_on_a_signal_dataset_is_named_with_archs_that_fit(cfg):
    cfg["experiments"] = [{"dataset": "mnist1d", "arch": "cnn_digits"}]
    raises(cfg, r"experiments\[0\] \(mnist1d/cnn_digits\): arch cnn_digits takes images",
           r"gives signals", r"one of mlp, cnn1d")
    cfg["experiments"] = [{"dataset": "mnist1d", "arch": "cnn1d"}]
    G.validate_config(cfg)  # the fix it names passes


def test_signal_arch_on_an_image_dataset_is_named(cfg):
    cfg["experiments"] = [{"dataset": "digits", "arch": "cnn1d"}]
    raises(cfg, r"arch cnn1d takes signals", r"source sklearn_digits\) gives images",
           r"mlp, cnn_digits, resnet18")


# --------------------------------------------------------------------------- dataset blocks


def test_dataset_block_typo_and_bad_value_fail_before_any_job(cfg):
    cfg["datasets"]["mnist1d"]["num_sampels"] = 1000
    raises(cfg, r"datasets\.mnist1d\.num_sampels: unknown key.*did you mean num_samples")
    del cfg["datasets"]["mnist1d"]["num_sampels"]
    cfg["datasets"]["mnist1d"]["val_size"] = 5000
    raises(cfg, r"datasets\.mnist1d\.val_size: 5000 is not smaller than the 800")


def test_unused_dataset_blocks_are_not_checked(cfg):
    cfg["datasets"]["spare"] = {"source": "cifar10", "val_size": 10 ** 9, "split_seed": 0}
    G.validate_config(cfg)


# --------------------------------------------------------------------------- generations


@pytest.mark.parametrize("where", ["global", "block"])
def test_too_few_generations_get_a_fix_that_works(cfg, where):
    cfg["compare"]["sd_gen"] = 2
    target = cfg if where == "global" else cfg["experiments"][0]
    for gens in (0, 1):
        target["generations"] = gens
        msg = raises(cfg, r"compare\.sd_gen=2")
        key, value = re.search(r"(?:set|raise) (\S+) to (\d+)", msg).groups()
        assert key == ("generations" if where == "global" else "experiments[0].generations")
        fixed = copy.deepcopy(cfg)
        (fixed if where == "global" else fixed["experiments"][0])["generations"] = int(value)
        G.validate_config(fixed)


# --------------------------------------------------------------------------- text values


def test_numbers_and_booleans_written_as_text_become_typed(cfg):
    """PyYAML reads 1e-4 and 1.0e6 as text; --config nested values arrive as text."""
    cfg["train"].update(weight_decay="1e-4", lr="1.0e-1", epochs="3", nesterov="true")
    cfg["seeds"] = ["0", "1"]
    cfg["sweeps"]["bs_a"] = ["3"]
    cfg["datasets"]["mnist1d"]["val_size"] = "1e2"
    cfg["experiments"][1]["resources"] = {"runtime": "60"}
    G.coerce_config(cfg, SCHEMA)
    assert cfg["train"]["weight_decay"] == 1e-4 and cfg["train"]["lr"] == 0.1
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["nesterov"] is True
    assert cfg["seeds"] == [0, 1] and cfg["sweeps"]["bs_a"] == [3]
    assert cfg["datasets"]["mnist1d"]["val_size"] == 100
    assert cfg["experiments"][1]["resources"]["runtime"] == 60
    assert cfg["datasets"]["mnist1d"]["source"] == "mnist1d"  # text stays text


def test_text_for_a_mapping_names_the_key_and_the_configfile_fix(cfg):
    cfg["train"] = "epochs: [3"
    with pytest.raises(ValueError, match=r"config key train: expected a mapping.*--configfile"):
        G.coerce_config(cfg, SCHEMA)


def test_text_that_is_no_number_is_named(cfg):
    cfg["train"]["epochs"] = "two"
    with pytest.raises(ValueError, match=r"config key train\.epochs: expected a whole number, "
                                         r"got the text 'two'"):
        G.coerce_config(cfg, SCHEMA)


@pytest.mark.slow
def test_nested_config_on_the_command_line_and_exponent_yaml_work(workflow_dir):
    (workflow_dir / "exp.yaml").write_text("train: {weight_decay: 1e-4}\n")
    proc = snakemake(workflow_dir, "-n", "-p", "metrics", "--configfile", "config/config.yaml",
                     "tiny.yaml", "exp.yaml", "--config", "train={epochs: 3, milestones: [2]}")
    assert "train_bundle_mnist1d_cnn1d" in proc.stdout
    bad = snakemake(workflow_dir, "-n", "--config", "train=epochs: [3", check=False)
    assert bad.returncode != 0
    assert "config key train: expected a mapping" in bad.stdout + bad.stderr


# --------------------------------------------------------------------------- names, bounds

NAME_FIX = "rename the datasets block and the experiments[].dataset naming it"


def blocks(datasets: dict, experiments: list) -> str:
    """A config file that adds dataset blocks and replaces the experiments."""
    return yaml.safe_dump({"datasets": datasets, "experiments": experiments})


def mnist1d_block(**keys) -> dict:
    return {"source": "mnist1d", "num_samples": 1000, "val_size": 100, "split_seed": 0, **keys}


def test_a_dataset_name_leaving_results_is_refused_before_any_job(workflow_dir):
    """`../../../x` would put its prepared data, logs and networks outside results/ (and
    outside the working directory): the run stops at parse time, naming the key and the fix,
    and nothing is written anywhere."""
    bad = "../../../x"
    (workflow_dir / "bad.yaml").write_text(
        blocks({bad: mnist1d_block()}, [{"dataset": bad, "arch": "cnn1d"}]))
    before = sorted(workflow_dir.parent.rglob("*"))
    proc = snakemake(workflow_dir, "--cores", "1", "data", "--configfile", "config/config.yaml",
                     "tiny.yaml", "bad.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config key datasets: '{bad}' does not match" in out, out[-3000:]
    assert f"config key experiments[0].dataset: '{bad}' does not match" in out
    assert NAME_FIX in out and "Building DAG" not in out
    after = [p for p in sorted(workflow_dir.parent.rglob("*")) if ".snakemake" not in p.parts]
    assert after == [p for p in before if ".snakemake" not in p.parts]


def test_a_dataset_name_with_regex_characters_is_refused_with_the_named_error(workflow_dir):
    """`c++` used to break the dataset wildcard constraint (a MissingInputException)."""
    (workflow_dir / "bad.yaml").write_text(
        blocks({"c++": mnist1d_block()}, [{"dataset": "c++", "arch": "cnn1d"}]))
    proc = snakemake(workflow_dir, "-n", "metrics", "--configfile", "config/config.yaml",
                     "tiny.yaml", "bad.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "MissingInputException" not in out, out[-3000:]
    assert "config key datasets: 'c++' does not match '^[A-Za-z0-9][A-Za-z0-9_-]*$'" in out
    assert NAME_FIX in out


def test_wildcard_constraints_escape_the_names(workflow_dir):
    """common.smk's constraint builder matches each name literally (regex characters
    escaped), and the dataset constraint is built with it."""
    (workflow_dir / "check.smk").write_text(
        'import json\n\n\nconfigfile: "config/config.yaml"\n\n\n'
        'include: "workflow/rules/common.smk"\n\n\n'
        'print("ONE_OF", json.dumps(one_of(["c++", "a.b", "x|y"])))\n'
        'print("DATASET", json.dumps(workflow.wildcard_constraints["dataset"]))\n')
    proc = snakemake(workflow_dir, "-s", "check.smk", "--list-rules")
    printed = dict(line.split(" ", 1) for line in proc.stdout.splitlines()
                   if line.startswith(("ONE_OF ", "DATASET ")))
    one_of = json.loads(printed["ONE_OF"])
    assert all(re.fullmatch(one_of, name) for name in ("c++", "a.b", "x|y"))
    assert not any(re.fullmatch(one_of, name) for name in ("c", "ccc", "axb", "x", "y"))
    dataset = json.loads(printed["DATASET"])
    assert re.fullmatch(dataset, "mnist1d") and not re.fullmatch(dataset, "mnist1d/x")


@pytest.mark.parametrize("block,key,bound", [
    (mnist1d_block(num_samples=10 ** 9), "num_samples", 10_000_000),
    ({"source": "fashion_mnist", "val_size": 100, "split_seed": 0, "image_size": 10 ** 6},
     "image_size", 256),
    (mnist1d_block(augment_padding=10 ** 6), "augment_padding", 64),
])
def test_a_size_beyond_what_a_machine_holds_is_refused_naming_key_and_bound(
        workflow_dir, block, key, bound):
    """num_samples 10^9 used to run silently (for hours), image_size 10^6 to end in a raw
    MemoryError: the schema bounds them, and the message names the key, the bound and why."""
    arch = "cnn1d" if block["source"] == "mnist1d" else "cnn_digits"
    (workflow_dir / "big.yaml").write_text(blocks({"big": block}, [{"dataset": "big",
                                                                     "arch": arch}]))
    proc = snakemake(workflow_dir, "-n", "metrics", "--configfile", "config/config.yaml",
                     "tiny.yaml", "big.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = next((x for x in out.splitlines() if f"config key datasets.big.{key}:" in x), "")
    assert f"{block[key]} is greater than the maximum of {bound}" in line, out[-3000:]
    assert f"write a value at most {bound}" in line
    assert re.search(rf"\(.*at most ({bound}|{bound:,})(?!,?\d).*\)", line)  # and why


def schema_bounds(node: dict, path: str = "") -> list[tuple[str, dict]]:
    """Every integer (a size, a count) of the schema with a maximum, with its key path."""
    found = [(path, node)] if "maximum" in node and node.get("type") == "integer" else []
    for key, sub in node.get("properties", {}).items():
        found += schema_bounds(sub, f"{path}.{key}".lstrip("."))
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            found += schema_bounds(node[key], f"{path}[]")
    return found


def test_every_upper_bound_of_the_schema_says_why():
    """A bound a machine can hold is explained where the user reads it (the description,
    printed with the error): it names the bound and gives a reason."""
    bounded = dict(schema_bounds(SCHEMA))
    assert {"datasets[].num_samples", "datasets[].image_size", "datasets[].input_size",
            "metrics.ece_bins"} <= set(bounded)
    for path, node in bounded.items():
        n, text = node["maximum"], " ".join(node["description"].split())
        said = rf"at most ({n}|{n:,})(?!,?\d)"
        assert re.search(said, text) and len(text) > len(re.search(said, text)[0]) + 40, path


def test_schema_and_source_bounds_agree():
    """The schema repeats the dataset-block bounds the sources declare (the CLI checks the
    sources', the workflow the schema's first): both bounds are the same."""
    props = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]
    for key, node in props.items():
        for source in SOURCES.values():
            spec = source.keys.get(key)
            if spec is None or spec.kind not in ("int", "float"):
                continue
            assert spec.low == node.get("minimum"), (source.name, key)
            assert spec.high == node.get("maximum"), (source.name, key)
