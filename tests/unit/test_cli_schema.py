"""The train command's flags come from the config schema and the method registry, so the
command line and the workflow cannot drift apart: every schema key of one run has exactly
one flag that accepts exactly what the schema accepts, every flag has a schema key (or a
row of the CLI-only table), and a key added to the schema is a flag with no CLI edit.

The expected bounds, choices and patterns are read here from the YAML file (and, for the
method blocks, from ``Method.schema_block`` with the imported signatures, the workflow's
schema of them); the flags are probed through the real parser at and beside each bound."""

import copy
import dataclasses
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from selfdistill import augment, cli, train
from selfdistill import grid as G
from selfdistill.train import TrainConfig

from ..conftest import REPO

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
BASE = ["train", "--data", "d", "--arch", "cnn1d", "--method", "ce", "--out", "o"]
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def run_keys(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each schema key one training run takes -> its entry: the train block, the datasets
    block's TrainConfig fields, the execution block but the workflow's bundle, and the
    resources key load_config maps into it (checkpoint_every)."""
    props = schema["properties"]
    found = dict(schema["definitions"]["train"]["properties"])
    found |= {k: v for k, v in props["datasets"]["additionalProperties"]["properties"].items()
              if k in FIELDS}
    found |= {k: v for k, v in props["execution"]["properties"].items() if k != "bundle"}
    found["checkpoint_every"] = props["resources"]["properties"]["checkpoint_every"]
    return found


def option_keys() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, option, entry) of every method option, from the workflow's method schemas."""
    for name, block in G.method_schemas().items():
        for option, entry in block["properties"].items():
            yield name, option, entry


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def actions(parser=None) -> dict[str, Any]:
    """Option string -> argparse action of the train subcommand."""
    parser = parser or cli.build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    return dict(train_parser._option_string_actions)


def accepts(flag: str, value: str, parser=None) -> bool:
    """Whether the real parser takes ``flag value`` (argparse exits on a refused value)."""
    parser = parser or cli.build_parser()
    try:
        args, rest = parser.parse_known_args([*BASE, flag, value])
    except SystemExit:
        return False
    return not rest


def probes(entry: dict[str, Any]) -> list[tuple[str, bool]]:
    """(value, whether the schema entry accepts it) at and beside each bound, written from
    the JSON-schema keywords: minimum/maximum inclusive, exclusive* open; integers whole."""
    step = 1 if entry["type"] == "integer" else 1e-6
    found = []
    for word, sign, closed in (("minimum", -1, True), ("exclusiveMinimum", -1, False),
                               ("maximum", 1, True), ("exclusiveMaximum", 1, False)):
        if word in entry:
            bound = entry[word]
            found += [(repr(bound), closed), (repr(bound + sign * step), False),
                      (repr(bound - sign * step), True)]
    if "maximum" not in entry and "exclusiveMaximum" not in entry:
        found.append(("1000000", True))
    if entry["type"] == "integer":
        found.append(("2.5", False))
    return found


# --------------------------------------------------------------------------- one flag per key


def test_the_workflow_schema_is_the_package_data_the_cli_reads():
    """workflow/schemas/ holds a relative link to the packaged file (found when installed)."""
    assert SCHEMA_PATH.is_symlink() and not os.path.isabs(os.readlink(SCHEMA_PATH))
    assert SCHEMA_PATH.resolve() == REPO / "src" / "selfdistill" / "schemas" / "config.schema.yaml"
    assert cli._config_schema() == SCHEMA
    assert 'selfdistill = ["schemas/*.yaml"]' in (REPO / "pyproject.toml").read_text()


@pytest.mark.parametrize("name", sorted(run_keys(SCHEMA)))
def test_each_schema_key_is_one_flag_accepting_what_the_schema_accepts(name):
    entry = run_keys(SCHEMA)[name]
    parser = cli.build_parser()
    found = actions(parser)
    flag = flag_of(name)
    assert flag in found, flag
    assert sum(a is found[flag] for a in found.values()) == (
        2 if entry["type"] == "boolean" else 1)  # --x and --no-x
    assert " ".join(entry["description"].split()) in found[flag].help
    if "enum" in entry:
        assert list(found[flag].choices) == entry["enum"]
    elif entry["type"] == "boolean":
        assert flag_of(f"no_{name}") in found
    elif "pattern" in entry:
        for value in ("auto", "cpu", "cuda", "cuda:3", "gpu", "cuda0", "CPU"):
            assert accepts(flag, value, parser) == bool(re.search(entry["pattern"], value)), value
    else:
        item = entry["items"] if entry["type"] == "array" else entry
        for value, ok in probes(item):
            assert accepts(flag, value, parser) == ok, (flag, value)


@pytest.mark.parametrize("method, option, entry", list(option_keys()),
                         ids=[f"{m}-{o}" for m, o, _ in option_keys()])
def test_each_method_option_is_one_flag_accepting_what_its_schema_accepts(method, option,
                                                                          entry):
    parser = cli.build_parser()
    found = actions(parser)
    flag = flag_of(f"{method}_{option}")
    assert flag in found, flag
    if "enum" in entry:
        assert list(found[flag].choices) == entry["enum"]
    elif entry["type"] == "boolean":
        assert flag_of(f"no_{method}_{option}") in found
    else:
        for value, ok in probes(entry):
            assert accepts(flag, value, parser) == ok, (flag, value)


def test_every_flag_is_a_schema_key_a_method_option_or_cli_only():
    parser = cli.build_parser()
    found = actions(parser)
    train_parser = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    run_group = next(g for g in train_parser._action_groups if g.title == "the run")
    own = {s for a in run_group._group_actions for s in a.option_strings} | {"-h", "--help"}
    names = [*run_keys(SCHEMA), *cli.CLI_ONLY, *(f"{m}_{o}" for m, o, _ in option_keys())]
    assert len(names) == len(set(names))
    known = {flag_of(n) for n in names} | {flag_of(f"no_{n}") for n in names}
    assert set(found) - own <= known, sorted(set(found) - own - known)
    assert {flag_of(n) for n in names} <= set(found)


def test_the_cli_only_table_holds_trainconfig_fields_the_schema_lacks():
    assert set(cli.CLI_ONLY) <= set(FIELDS)
    assert not set(cli.CLI_ONLY) & set(run_keys(SCHEMA))
    for name in cli.CLI_ONLY:
        assert f"(default: {FIELDS[name].default})" in actions()[flag_of(name)].help


def test_execution_settings_reach_the_run_spec(tmp_path):
    """TrainConfig fields go to the recipe, the others (device, threads, tensorboard) to
    the RunSpec; the CLI-only eval_batch_size from its flag or --config's execution block."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("execution: {eval_batch_size: 8, precision: bf16, threads: 3}\n")
    s = cli.run_spec(cli.parse([*BASE, "--config", str(cfg), "--device", "cuda:1",
                                "--tensorboard", "--no-deterministic"]))
    assert (s.device, s.threads, s.tensorboard) == ("cuda:1", 3, True)
    assert (s.train.eval_batch_size, s.train.precision, s.train.deterministic) == \
        (8, "bf16", False)
    s = cli.run_spec(cli.parse([*BASE, "--config", str(cfg), "--eval-batch-size", "5"]))
    assert s.train.eval_batch_size == 5


# --------------------------------------------------------------------------- defaults and docs


def test_schema_train_and_execution_keys_are_described_and_train_has_no_defaults():
    """Snakemake's validate fills defaults into every object, experiments[].train included,
    where they would override the global train block: train defaults are TrainConfig's."""
    train_keys = SCHEMA["definitions"]["train"]["properties"]
    assert all("default" not in e for e in train_keys.values())
    for name, entry in {**train_keys, **SCHEMA["properties"]["execution"]["properties"]}.items():
        assert entry.get("description", "").strip(), name
    assert all("methods §2" in e["description"] for e in train_keys.values())


def test_schema_defaults_of_trainconfig_fields_are_trainconfigs():
    """The workflow fills the schema's defaults, one run takes TrainConfig's: they agree."""
    for name, entry in run_keys(SCHEMA).items():
        if name in FIELDS and "default" in entry:
            assert entry["default"] == FIELDS[name].default, name


def test_schema_choices_are_the_registries():
    assert tuple(run_keys(SCHEMA)["augment"]["enum"]) == augment.AUGMENTATIONS
    assert tuple(run_keys(SCHEMA)["precision"]["enum"]) == train.PRECISIONS


@pytest.mark.parametrize("text, named", [
    ("train: {gamma: 1.5}\n", "train.gamma: 1.5 is out of range"),
    ("execution: {device: gpu}\n", "execution.device: 'gpu' does not match"),
    ("datasets: {a: {augment_padding: 65}}\n", "datasets.a.augment_padding: 65 is out of range"),
])
def test_config_file_values_meet_the_schema(tmp_path, text, named):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(text)
    with pytest.raises(cli.UsageError) as err:
        cli.run_spec(cli.parse([*BASE, "--config", str(cfg)]))
    assert f"{cfg}: {named}" in str(err.value)


# --------------------------------------------------------------------------- no drift


def patched(monkeypatch, edit, *extra_fields: cli.Field) -> None:
    """The CLI reads an edited copy of the schema (and a TrainConfig with more fields)."""
    schema = copy.deepcopy(SCHEMA)
    edit(schema)
    monkeypatch.setattr(cli, "_config_schema", lambda: schema)
    fields = (*cli.train_fields(), *extra_fields)
    monkeypatch.setattr(cli, "train_fields", lambda: fields)


def test_a_key_added_to_the_schema_is_a_flag_with_its_bounds(monkeypatch):
    def edit(schema):
        schema["definitions"]["train"]["properties"]["warmup"] = {
            "type": "integer", "minimum": 0, "maximum": 5, "description": "warm-up epochs"}
        schema["properties"]["execution"]["properties"]["pin_memory"] = {
            "type": "boolean", "default": True, "description": "pinned host memory"}
        schema["definitions"]["train"]["properties"]["momentum"]["maximum"] = 0.5

    patched(monkeypatch, edit, cli.Field("warmup", "int", 2),
            cli.Field("pin_memory", "bool", True))
    found = actions()
    assert "warm-up epochs" in found["--warmup"].help and "(default: 2)" in found["--warmup"].help
    assert [accepts("--warmup", v) for v in ("0", "5", "6", "-1")] == [True, True, False, False]
    assert "--pin-memory" in found and "--no-pin-memory" in found
    assert "(default: True)" in found["--pin-memory"].help
    assert [accepts("--momentum", v) for v in ("0.5", "0.6")] == [True, False]


@pytest.mark.parametrize("edit, named", [
    (lambda s: s["definitions"]["train"]["properties"].pop("nesterov"), "TrainConfig.nesterov"),
    (lambda s: s["definitions"]["train"]["properties"].update(
        {"warmup": {"type": "integer", "description": "x"}}), "train.warmup: not a TrainConfig"),
    (lambda s: s["properties"]["execution"]["properties"].update(
        {"lr": {"type": "number", "default": 0.1, "description": "x"}}), "lr: a key of blocks"),
    (lambda s: s["properties"]["execution"]["properties"].update(
        {"workers": {"type": "integer", "default": 2, "description": "x"}}),
     "execution.workers: neither a TrainConfig nor a RunSpec field"),
    (lambda s: s["properties"]["execution"]["properties"]["threads"].pop("default"),
     "execution.threads: a RunSpec field without a schema default"),
], ids=["field-without-key", "key-without-field", "key-in-two-blocks", "neither-field",
        "no-default"])
def test_schema_and_trainconfig_disagreeing_fails_at_parser_build(monkeypatch, edit, named):
    patched(monkeypatch, edit)
    with pytest.raises(ValueError, match="the config schema and selfdistill.train.TrainConfig"
                                         " disagree") as err:
        cli.build_parser()
    assert named in str(err.value)
