"""execution.precision (methods §2 arithmetic): the kernel switches of each mode, autocast for
the student only (the SD teacher and BS ranking network give fp32 logits), plain fp32 on
the CPU, and the key's path from the config to the run's identity."""

from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import validate

from selfdistill import grid as G
from selfdistill.models import build_model
from selfdistill.objectives import BetaSmoothing, SelfDistillation
from selfdistill.train import PRECISIONS, TrainConfig, autocast, set_precision

REPO = Path(__file__).resolve().parents[2]


def switches() -> tuple[bool, bool, str]:
    return (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
            torch.get_float32_matmul_precision())


@pytest.fixture
def restore_switches():
    before = switches()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before[:2]
    torch.set_float32_matmul_precision(before[2])


@pytest.mark.parametrize("precision, want", [("fp32", (False, False, "highest")),
                                             ("tf32", (True, False, "highest")),
                                             ("bf16", (True, False, "highest"))])
def test_cuda_switches_of_each_precision(precision, want, restore_switches):
    """The flags are process-wide backend settings: setting them needs no GPU. Start from
    the opposite of the wanted values so each one is really written."""
    torch.backends.cudnn.allow_tf32 = not want[0]
    torch.backends.cuda.matmul.allow_tf32 = not want[1]
    torch.set_float32_matmul_precision("medium")
    set_precision(precision, torch.device("cuda"))
    assert switches() == want


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cpu_is_plain_fp32_in_every_precision(precision, restore_switches):
    torch.backends.cudnn.allow_tf32 = False  # any state: the CPU path leaves it alone
    before = switches()
    set_precision(precision, torch.device("cpu"))
    assert switches() == before
    with autocast(precision, torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        assert build_model("mlp", 3, (1, 8))(torch.randn(2, 1, 8)).dtype == torch.float32


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="execution.precision: 'fp16' is not one of fp32, tf32"):
        TrainConfig(epochs=1, milestones=(), seed=0, precision="fp16")
    with pytest.raises(ValueError, match="execution.precision"):
        set_precision("half", torch.device("cpu"))


def _dtype_of_forward(net: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    net.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("method", ["sd", "bs"])
def test_teacher_and_ranking_network_run_outside_the_students_autocast(method):
    """Under bf16 autocast (here the CPU's, the same mechanism as CUDA's) the student's
    logits are bf16, the frozen network's are fp32: computed in fp32, not cast back."""
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 40), torch.randint(0, 10, (6,))
    student, other = build_model("cnn1d", 10, (1, 40)), build_model("cnn1d", 10, (1, 40))
    seen = _dtype_of_forward(other)
    objective = (SelfDistillation(other) if method == "sd" else
                 BetaSmoothing(other, a=3.0, generator=torch.Generator().manual_seed(0)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = student(x)
        loss = objective.loss(logits.float(), x, y)
    assert logits.dtype == torch.bfloat16 and seen == [torch.float32]
    assert torch.isfinite(loss)


def _config(*files: str) -> dict:
    cfg: dict = {}
    for name in files:
        for key, value in yaml.safe_load((REPO / name).read_text()).items():
            cfg[key] = ({**cfg[key], **value} if isinstance(value, dict)
                        and isinstance(cfg.get(key), dict) else value)
    return cfg


@pytest.mark.parametrize("files", [("config/config.yaml",),
                                   ("config/config.yaml", "config/paper.yaml"),
                                   ("config/config.yaml", "config/paper_smoke.yaml"),
                                   ("config/config.yaml", "config/fashion_mnist.yaml")])
def test_every_config_trains_in_fp32_and_run_params_carry_it(files):
    cfg = _config(*files)
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert cfg["execution"]["precision"] == "fp32"  # until a GPU measurement says otherwise
    run = G.grid(cfg)[0]
    assert G.run_params(cfg, run)["train"]["precision"] == "fp32"
    bf16 = {**cfg, "execution": {**cfg["execution"], "precision": "bf16"}}
    assert G.run_params(bf16, run)["train"]["precision"] == "bf16"  # identity: retrains
    more_gpus = {**cfg, "resources": {**cfg["resources"], "gpu": 4}}
    assert G.run_params(more_gpus, run) == G.run_params(cfg, run)  # scheduling: does not


def test_schema_default_is_fp32_and_old_bf16_key_is_refused():
    cfg = _config("config/config.yaml")
    del cfg["execution"]["precision"]
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert cfg["execution"]["precision"] == "fp32"
    cfg["execution"]["bf16"] = True
    with pytest.raises(Exception, match="bf16"):
        validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
