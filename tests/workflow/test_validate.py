"""The whole config is checked before any job: text numbers, --config values, dataset
blocks, dataset/arch fit, generations; each error names the key and a fix that works."""

import copy
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
