"""The method registry (methods §3): the one source of method names, options and sweep keys.

The schema, the configs, the grid, the CLI and the objectives are checked against it here,
so they cannot drift apart.
"""

import copy
import re
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from selfdistill import cli
from selfdistill import grid as G
from selfdistill.methods import METHODS, SWEPT, get_method
from selfdistill.objectives import Objective

from ..conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIGS = [REPO / "config" / n for n in ("config.yaml", "paper.yaml", "fashion_mnist.yaml")]
CONFIGS.append(REPO / "tests" / "data" / "tiny.yaml")


def test_unknown_method_fails_loudly_listing_the_known():
    with pytest.raises(KeyError) as err:
        get_method("kd")
    assert "'kd'" in str(err.value)
    assert all(name in str(err.value) for name in METHODS)


def test_schema_method_blocks_are_derived_from_the_registry():
    """The schema file writes no per-method block; the workflow's are the registry's
    (Method.schema_block): per method exactly the options read from the signatures, typed by
    their defaults and bounded by the registry's ranges, no defaults (the code holds them)."""
    assert "properties" not in SCHEMA["properties"]["methods"]
    blocks = G.method_schemas()
    assert set(blocks) == set(METHODS)
    for name, block in blocks.items():
        props = block["properties"]
        assert set(props) == set(METHODS[name].options()), name
        assert all("default" not in spec for spec in props.values())
        for option, default in METHODS[name].options().items():
            kind = ("boolean" if isinstance(default, bool) else
                    "string" if isinstance(default, str) else "number")
            assert props[option]["type"] == kind, (name, option)
    assert blocks["ls"]["properties"]["spread"]["enum"] == ["others", "uniform"]
    assert blocks["sd"]["properties"]["temperature"]["exclusiveMinimum"] == 0
    assert blocks["sd"]["properties"]["alpha"]["maximum"] == 1


def test_workflow_checks_method_blocks_against_the_registry():
    """A wrong type or bound is the schema's (derived) error; an unknown method or key the
    registry's, naming the accepted ones."""
    from jsonschema import Draft202012Validator

    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["methods"]["properties"] = G.method_schemas()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(cfg))
    bad = copy.deepcopy(cfg)
    bad["methods"]["pskd"] = {"alpha_T": 2}
    assert [e.message for e in Draft202012Validator(schema).iter_errors(bad)] == [
        "2 is greater than the maximum of 1"]
    for block, words in (({"kd": {}}, ["methods.kd", "known methods", "tfkd_reg"]),
                         ({"zipf": {"lamda": 1}}, ["methods.zipf", "['lamda']", "lam"])):
        bad = copy.deepcopy(cfg)
        bad["methods"].update(block)
        with pytest.raises(ValueError) as err:
            G.validate_config(bad)
        assert all(w in str(err.value) for w in words), str(err.value)


def test_every_option_is_named_in_its_methods_section():
    """docs/methods.md §3.x documents each method's options (the one place a new method's
    options must be written besides its signature)."""
    text = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    for m in METHODS.values():
        start = text.index(f"### {m.section} ")
        end = text.find("\n### ", start + 1)
        section = text[start:end if end > 0 else None]
        for option in m.options():
            assert option in section, f"methods §{m.section} does not name {m.name}'s {option}"


def test_sweep_keys_are_the_schemas_sweep_and_compare_keys():
    keys = {m.sweep_key for m in SWEPT}
    assert keys == set(SCHEMA["definitions"]["sweeps"]["properties"])
    assert keys <= set(SCHEMA["properties"]["compare"]["properties"])
    for m in METHODS.values():
        assert (m.sweep_key is None) == (m.swept is None)
        assert m.sweep_key is None or m.sweep_key == f"{m.name}_{m.swept}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_method_blocks_hold_known_options(path):
    methods = yaml.safe_load(path.read_text()).get("methods", {})
    for name, block in methods.items():
        resolved = get_method(name).resolve(block)
        assert resolved == {**get_method(name).options(), **(block or {})}


def test_options_hold_the_spec_defaults():
    """methods §3.4 (alpha 0.4, T 4, options off), §3.5 (alpha 0.6, EMA cap 0.999), §3.2 (ε/(K-1))."""
    assert get_method("sd").options() == {"alpha": 0.4, "temperature": 4.0,
                                          "student_temperature": False, "t_squared": False}
    assert get_method("bs").options() == {"alpha": 0.6, "ema_cap": 0.999}
    assert get_method("ls").options() == {"spread": "others"}
    assert get_method("ce").options() == get_method("er").options() == {}


def test_unknown_option_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"methods\.sd: unknown option\(s\) \['alfa'\].*alpha"):
        get_method("sd").resolve({"alfa": 0.3})


def test_swept_method_without_param_is_refused():
    with pytest.raises(ValueError, match="ls needs its strength eps"):
        get_method("ls").build(None, {})


def _built_and_direct(name, param, options):
    """(objective loss, the registered loss function called directly) on one batch."""
    torch.manual_seed(0)
    net = nn.Linear(6, 4)
    x, y, logits = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0]), torch.randn(5, 4)
    m = get_method(name)
    state = {"teacher": net, "ema_model": net, "generator": torch.Generator().manual_seed(3)}
    obj = m.build(param, options, **{k: state[k] for k in m.requires()})
    assert isinstance(obj, Objective) and type(obj) is m.objective
    got = obj.loss(logits, x, y)
    args = {"ce": list, "ls": lambda: [param], "er": lambda: [param], "sd": lambda: [net(x)],
            "bs": lambda: [net(x), torch.rand(5, generator=torch.Generator().manual_seed(3),
                                              dtype=torch.float64).pow(1 / param).float()]}
    ema_cap = options.pop("ema_cap", None)  # the objective's own option (methods §3.5)
    want = m.loss(logits, y, *args[name](), **options)
    assert ema_cap is None or obj.ema_cap == ema_cap
    return got, want


@pytest.mark.parametrize("name,param,options", [
    ("ce", None, {}),
    ("ls", 0.2, {"spread": "uniform"}),
    ("er", 0.5, {}),
    ("sd", None, {"alpha": 0.3, "temperature": 2.0, "student_temperature": True,
                  "t_squared": True}),
    ("bs", 3.0, {"alpha": 0.25, "ema_cap": 0.99}),
])
def test_registry_builds_objectives_that_pass_options_to_their_loss(name, param, options):
    got, want = _built_and_direct(name, param, dict(options))
    assert torch.equal(got, want)


def test_non_default_options_change_the_loss():
    """The options really reach the objective's loss, not only the direct call above."""
    low, _ = _built_and_direct("sd", None, {"alpha": 0.1})
    high, _ = _built_and_direct("sd", None, {"alpha": 0.9})
    assert not torch.equal(low, high)


def test_run_params_carry_only_the_runs_method_block():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ce = G.Run("mnist1d", "cnn1d", "ce", G.NO_PARAM, 0, 0)
    sd = G.Run("mnist1d", "cnn1d", "sd", G.NO_PARAM, 0, 1)
    assert G.run_params(cfg, ce)["options"] == {}
    assert G.run_params(cfg, sd)["options"] == cfg["methods"]["sd"]
    changed = copy.deepcopy(cfg)
    changed["methods"]["sd"]["alpha"] = 0.9
    assert G.run_params(changed, ce) == G.run_params(cfg, ce)
    assert G.run_params(changed, sd)["options"]["alpha"] == 0.9


@pytest.mark.parametrize("value", [None, 0.1, 3.0, 1e-05, 10.0])
def test_no_param_spellings_convert_both_ways(value):
    assert G.parse_param(G.path_param(value)) == value
    assert G.parse_param(G.csv_param(value)) == value
    assert G.path_param(G.path_param(value)) == G.path_param(value)
    assert (G.path_param(value) == G.NO_PARAM) == (value is None)
    assert (G.csv_param(value) == "") == (value is None)


def test_cli_has_one_flag_per_option_with_the_registry_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for m in METHODS.values():
        for option, default in m.options().items():
            flag = f"--{m.name}-{option}".replace("_", "-")
            assert flag in text
            shown = re.search(rf"{re.escape(m.label)} {option} \(methods §{m.section}\).*?\(default: ([^)]*)\)",
                              text)
            assert shown and shown.group(1) == str(default)
    assert "--method {" + ",".join(METHODS) + "}" in text


def test_cli_method_options_reach_the_run_spec():
    args = cli.parse(["train", "--data", "d", "--arch", "cnn1d", "--method", "sd", "--gen", "1",
                      "--teacher", "t.pt", "--out", "o", "--sd-alpha", "0.3", "--sd-t-squared"])
    assert cli.run_spec(args).options == {**get_method("sd").options(), "alpha": 0.3,
                                          "t_squared": True}


def test_registry_and_grid_import_without_torch():
    code = ("import sys; from selfdistill.methods import METHODS, SWEPT; "
            "from selfdistill import grid; "
            "print([m.sweep_key for m in SWEPT], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.endswith("False")
