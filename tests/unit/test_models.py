"""Shapes, parameter counts, determinism and trainability of the models (methods §2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from selfdistill.models import MODELS, build_model, count_parameters

torch.set_num_threads(1)

# name, K, per-example input shape, batch size
NATURAL_INPUTS = [
    ("mlp", 10, (1, 40), 4),
    ("cnn1d", 10, (1, 40), 4),
    ("cnn_digits", 10, (1, 8, 8), 4),
    ("resnet18", 100, (3, 32, 32), 2),
    ("resnet34", 100, (3, 32, 32), 2),
    ("resnet34", 200, (3, 64, 64), 2),
    ("densenet_bc100", 100, (3, 32, 32), 2),
]


def test_every_registry_entry_has_a_shape_case() -> None:
    assert {name for name, *_ in NATURAL_INPUTS} == set(MODELS)


@pytest.mark.parametrize(("name", "k", "shape", "n"), NATURAL_INPUTS)
def test_output_shape(name: str, k: int, shape: tuple[int, ...], n: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, k, shape).eval()
    with torch.no_grad():
        out = model(torch.randn(n, *shape))
    assert out.shape == (n, k)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "k", "shape", "low", "high"),
    [
        ("resnet34", 100, (3, 32, 32), 21.2e6, 21.4e6),
        ("densenet_bc100", 100, (3, 32, 32), 0.75e6, 0.85e6),
        ("resnet18", 10, (3, 32, 32), 11.1e6, 11.25e6),
        ("cnn1d", 10, (1, 40), 4e3, 5e3),  # width 16: 4,346 parameters
    ],
)
def test_parameter_count(
    name: str, k: int, shape: tuple[int, ...], low: float, high: float
) -> None:
    n_params = count_parameters(build_model(name, k, shape))
    print(f"{name} K={k}: {n_params} parameters")
    assert low <= n_params <= high


def test_count_parameters_skips_frozen() -> None:
    model = build_model("mlp", 10, (1, 40))
    total = count_parameters(model)
    model[1].weight.requires_grad_(False)  # Linear(40, 128)
    assert count_parameters(model) == total - 40 * 128


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as err:
        build_model("resnet1000", 10, (3, 32, 32))
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["cnn1d", "cnn_digits", "densenet_bc100"])
def test_init_is_determined_by_seed(name: str) -> None:
    shape = {"cnn1d": (1, 40), "cnn_digits": (1, 8, 8)}.get(name, (3, 32, 32))

    def params(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return list(build_model(name, 10, shape).state_dict().values())

    first, again, other = params(1), params(1), params(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("name", ["mlp", "cnn1d"])
def test_sgd_steps_reduce_loss(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, (1, 40))
    x, y = torch.randn(32, 1, 40), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()  # BN running stats must also have learnt the batch
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert losses[-1] < 0.8 * losses[0]
    assert final < losses[0]


@pytest.mark.parametrize("name", ["resnet34", "densenet_bc100"])
def test_channels_last_training_step(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 100, (3, 32, 32)).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = [not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)]
    assert all(changed)
