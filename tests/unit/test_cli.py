"""The command line (selfdistill.cli): built without torch, every setting a flag with its
default shown, choices from the registries, --config blocks under explicit flags, every
source prepared through validate_dataset, ranges from the method registry, and errors
that name the flag and the fix."""

import dataclasses
import importlib.metadata
import json
import re
import subprocess
import sys

import pytest
import torch

from selfdistill import augment, cli
from selfdistill.methods import METHODS, SWEPT
from selfdistill.models import MODELS
from selfdistill.sources import SOURCES
from selfdistill.train import TrainConfig

BASE = ["train", "--data", "d", "--arch", "cnn1d", "--out", "o"]


def spec(*argv: str):
    return cli.run_spec(cli.parse([*BASE, *argv]))


def usage_error(argv: list[str], capsys) -> str:
    """Run the CLI expecting a usage error (exit status 2); its message, one line."""
    try:
        rc = cli.main(argv)
    except SystemExit as stop:  # argparse's own checks
        rc = stop.code
    assert rc == 2
    return " ".join(capsys.readouterr().err.split())


def subparser(name: str):
    actions = cli.build_parser()._subparsers._group_actions  # type: ignore[union-attr]
    return actions[0].choices[name]


def flag_help(name: str) -> dict[str, str]:
    """Each flag of subcommand ``name`` -> its help text."""
    return {s: a.help for a in subparser(name)._actions for s in a.option_strings}


# --------------------------------------------------------------------------- without torch


def test_building_the_parser_imports_no_torch():
    code = ("import sys; from selfdistill import cli; p = cli.build_parser(); "
            "p.format_help(); cli.parse(['train', '--data', 'd', '--arch', 'cnn1d', "
            "'--method', 'ce', '--out', 'o']); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_registries_read_without_torch_equal_the_imported_ones():
    for m in METHODS.values():
        assert cli.method_options(m) == m.options(), m.name
    want = [(f.name, str(f.type), cli.REQUIRED if f.default is dataclasses.MISSING else f.default)
            for f in dataclasses.fields(TrainConfig)]
    assert [(f.name, f.kind, f.default) for f in cli.train_fields()] == want
    assert cli.model_names() == tuple(MODELS)
    assert subparser("train")._option_string_actions["--augment"].choices == \
        augment.AUGMENTATIONS


# --------------------------------------------------------------------------- flags and help


def test_every_recipe_field_and_method_option_is_a_flag_showing_its_default():
    helps = flag_help("train")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in helps, flag
        if f.default is not dataclasses.MISSING:
            assert f"(default: {f.default})" in helps[flag], flag
    for m in METHODS.values():
        for option, default in m.options().items():
            flag = f"--{m.name}-{option}".replace("_", "-")
            assert f"(default: {default})" in helps[flag], flag
    shown = [a for a in subparser("train")._actions if not a.required and "-h" not in
             a.option_strings]
    assert all("default:" in a.help for a in shown)


def test_flags_reach_the_run_spec():
    s = spec("--method", "ls", "--param", "0.2", "--ls-spread", "uniform", "--momentum", "0.5",
             "--weight-decay", "5e-4", "--nesterov", "--gamma", "0.2", "--threads", "2",
             "--no-deterministic", "--seed", "3")
    assert (s.param, dict(s.options)) == (0.2, {"spread": "uniform"})
    assert (s.train.momentum, s.train.weight_decay, s.train.nesterov, s.train.gamma) == \
        (0.5, 5e-4, True, 0.2)
    assert (s.threads, s.train.deterministic, s.seed, s.train.seed) == (2, False, 3, 3)


def test_arch_and_source_choices_come_from_the_registries(capsys):
    assert subparser("train")._option_string_actions["--arch"].choices == tuple(MODELS)
    assert list(subparser("prepare")._option_string_actions["--source"].choices) == \
        list(SOURCES)
    err = usage_error([*BASE, "--method", "ce", "--arch", "resnet50"], capsys)
    assert "argument --arch: invalid choice: 'resnet50'" in err
    assert all(name in err for name in MODELS)


def test_version_is_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.split() == ["selfdistill",
                                                importlib.metadata.version("selfdistill")]


# --------------------------------------------------------------------------- --config FILE


def test_config_file_under_explicit_flags(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("train: {epochs: 6, milestones: [2], momentum: 0.8, weight_decay: 1e-3}\n"
                   "methods: {sd: {alpha: 0.5, temperature: 2.0}, bs: {alpha: 0.7}}\n"
                   "execution: {device: cpu, threads: 2}\n")
    s = spec("--method", "sd", "--gen", "1", "--teacher", "t.pt", "--config", str(cfg),
             "--momentum", "0.5", "--sd-temperature", "3")
    assert (s.train.epochs, s.train.milestones, s.train.weight_decay) == (6, (2,), 1e-3)
    assert s.train.momentum == 0.5  # the flag wins over the file's 0.8
    assert dict(s.options) == {**METHODS["sd"].options(), "alpha": 0.5, "temperature": 3.0}
    assert (s.device, s.threads) == ("cpu", 2)
    assert s.train.lr == TrainConfig(epochs=1, milestones=(), seed=0).lr  # neither: default


@pytest.mark.parametrize("text, named", [
    ("seeds: [0]\n", "seeds: unknown key"),
    ("train: {epochz: 3}\n", "train.epochz: unknown key (did you mean epochs?)"),
    ("methods: {kd: {alpha: 1}}\n", "methods.kd: unknown key"),
    ("methods: {sd: {alpah: 0.5}}\n", "methods.sd.alpah: unknown key (did you mean alpha?)"),
    ("execution: {bundle: seed}\n", "execution.bundle: applies to the workflow only"),
    ("resources: {runtime: 30}\n", "resources.runtime: applies to the workflow only"),
    ("train: {batch_size: 0}\n", "train.batch_size: 0 is out of range"),
    ("methods: {sd: {alpha: 2}}\n", "methods.sd.alpha: 2 is out of range"),
    ("train: [1, 2]\n", "train: expected a block of key: value lines"),
])
def test_config_file_errors_name_the_file_and_key(tmp_path, capsys, text, named):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    err = usage_error([*BASE, "--method", "sd", "--gen", "1", "--teacher", "t.pt", "--config",
                       str(cfg)], capsys)
    assert f"{cfg}: {named}" in err


def test_config_resources_give_the_checkpoint_cadence(tmp_path):
    """The workflow keeps checkpoint_every under resources (scheduling); --config reads it."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("resources: {checkpoint_every: 3}\n")
    assert spec("--method", "ce", "--config", str(cfg)).train.checkpoint_every == 3
    assert spec("--method", "ce", "--config", str(cfg), "--checkpoint-every",
                "2").train.checkpoint_every == 2


def test_config_dataset_block_gives_the_augmentation(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("datasets:\n  a: {source: mnist1d, val_size: 10, split_seed: 0, "
                   "augment: shift1d}\n  b: {source: mnist1d, val_size: 10, split_seed: 0}\n")
    assert spec("--method", "ce", "--config", str(cfg), "--dataset", "a").train.augment == \
        "shift1d"
    assert spec("--method", "ce", "--config", str(cfg), "--dataset", "b").train.augment == "none"
    with pytest.raises(cli.UsageError, match="--dataset: .*choose one"):
        spec("--method", "ce", "--config", str(cfg))


# --------------------------------------------------------------------------- ranges and checks


@pytest.mark.parametrize("m", SWEPT, ids=lambda m: m.name)
def test_strength_outside_the_registry_range_is_refused(m, capsys):
    allowed = m.ranges[m.swept]
    outside = allowed.low - 1 if allowed.high is None else allowed.high + 0.5
    inside = allowed.low + 0.5 if allowed.high is None else (allowed.low + allowed.high) / 2
    assert outside not in allowed and inside in allowed
    err = usage_error([*BASE, "--method", m.name, "--param", str(outside)], capsys)
    assert f"--param {outside}" in err and str(allowed) in err
    assert spec("--method", m.name, "--param", str(inside)).param == inside
    if allowed.low_open:  # the open end itself is outside
        assert "out of range" in usage_error([*BASE, "--method", m.name, "--param",
                                              str(allowed.low)], capsys)


def test_reported_ranges(capsys):
    """LS eps 1.5 and ER beta -1 were accepted; BS a = 0 has no Beta(a, 1)."""
    for method, value in (("ls", "1.5"), ("er", "-1"), ("bs", "0")):
        assert "out of range" in usage_error([*BASE, "--method", method, "--param", value],
                                             capsys)


@pytest.mark.parametrize("argv, named", [
    (["--method", "ce", "--batch-size", "0"], "argument --batch-size: '0' is out of range"),
    (["--method", "ce", "--epochs", "-2"], "argument --epochs: '-2' is out of range"),
    (["--method", "ce", "--threads", "two"], "argument --threads: expected a whole number"),
    (["--method", "sd", "--gen", "1", "--teacher", "t", "--sd-alpha", "1.5"],
     "argument --sd-alpha: '1.5' is out of range"),
    (["--method", "ls"], "--param: method ls needs its strength"),
    (["--method", "ce", "--param", "0.1"], "--param 0.1: method ce has no strength"),
    (["--method", "sd", "--teacher", "t"], "--gen: sd trains generation >= 1"),
    (["--method", "sd", "--gen", "1"], "--teacher: sd needs the model.pt"),
    (["--method", "ce", "--gen", "2"], "--gen 2: only sd has generations"),
    (["--method", "ce", "--epochs", "4", "--milestones", "2", "6"], "--milestones [6]: after"),
    (["--method", "ce", "--milestones", "3", "3"], "--milestones: [3] given twice"),
])
def test_bad_flags_are_named_with_the_fix(argv, named, capsys):
    assert named in usage_error([*BASE, *argv], capsys)


@pytest.mark.parametrize("epochs", [1, 2, 3, 12])
def test_default_milestones_never_drop_the_lr_twice_at_once(epochs):
    milestones = spec("--method", "ce", "--epochs", str(epochs)).train.milestones
    assert list(milestones) == sorted(set(milestones))  # each epoch once
    candidates = {round(epochs / 3), round(2 * epochs / 3)}  # methods §2 E/3 and 2E/3
    assert set(milestones) == {m for m in candidates if 0 < m < epochs}
    if epochs % 3 == 0:  # exact thirds: methods §2's rule itself
        assert milestones == (epochs // 3, 2 * epochs // 3)
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma=0.1)
    lrs = [0.1]
    for _ in range(epochs):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(b / a > 0.05 for a, b in zip(lrs, lrs[1:], strict=False))  # at most x0.1


# --------------------------------------------------------------------------- prepare


@pytest.mark.parametrize("source", list(SOURCES))
def test_prepare_checks_every_source_before_any_work(source, tmp_path, capsys):
    out = tmp_path / "out"
    err = usage_error(["prepare", "--source", source, "--out", str(out), "--val-size",
                       "100000000"], capsys)
    assert re.search(r"--val-size: 100000000 is not smaller than the \d+ training examples "
                     rf"source {source} gives", err)
    assert "choose val_size between 1 and" in err
    assert not out.exists()


@pytest.mark.parametrize("source", list(SOURCES))
def test_prepare_refuses_a_key_of_another_source(source, tmp_path, capsys):
    foreign = next(k for s in SOURCES.values() for k in s.keys if k not in SOURCES[source].keys)
    flag = "--" + foreign.replace("_", "-")
    value = [flag] if subparser("prepare")._option_string_actions[flag].nargs == 0 else \
        [flag, "1"]
    err = usage_error(["prepare", "--source", source, "--out", str(tmp_path), *value], capsys)
    assert f"{flag}: not a key of source {source}" in err


def test_prepare_config_block_under_flags(tmp_path, capsys):
    cfg = tmp_path / "data.yaml"
    cfg.write_text("datasets:\n  digits: {source: sklearn_digits, val_size: 5000, "
                   "split_seed: 0}\n")
    err = usage_error(["prepare", "--config", str(cfg), "--out", str(tmp_path / "x")], capsys)
    assert f"{cfg}: datasets.digits.val_size: 5000 is not smaller" in err
    assert "--source: missing" in usage_error(["prepare", "--out", str(tmp_path)], capsys)
    out = tmp_path / "digits"
    assert cli.main(["prepare", "--config", str(cfg), "--val-size", "100", "--out",
                     str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["params"]["val_size"]) == ("digits", 100)
    assert manifest["sizes"]["val"] == 100


# --------------------------------------------------------------------------- progress


def test_progress_gets_its_own_arguments(tmp_path, capsys):
    assert cli.main(["progress", str(tmp_path)]) == 0
    assert cli.main(["progress", str(tmp_path / "absent")]) == 1
    assert "absent" in capsys.readouterr().err
