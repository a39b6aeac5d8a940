"""The features/head split of every model and ``dense_logits``, the classifier at every
position of the last feature map, for Zipf's LS (methods §3.10)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfdistill.models import MODELS, build_model, dense_logits

torch.set_num_threads(1)

# name, K, per-example input shape; batch 2 throughout
SPLIT_INPUTS = [
    ("mlp", 10, (1, 40)),
    ("cnn1d", 10, (1, 40)),
    ("cnn_digits", 10, (1, 8, 8)),
    ("resnet18", 10, (3, 32, 32)),
    ("resnet34", 10, (3, 32, 32)),
    ("densenet_bc100", 10, (3, 32, 32)),
]
DENSE_INPUTS = [case for case in SPLIT_INPUTS if case[0] not in ("mlp", "resnet34")]
N = 2


def _model_and_input(name: str, k: int, shape: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(name, k, shape)
    return model, torch.randn(N, *shape)


def test_every_registry_entry_has_a_split_case() -> None:
    assert {name for name, *_ in SPLIT_INPUTS} == set(MODELS)


# ------------------------------------------------------------------ the split


@pytest.mark.parametrize(("name", "k", "shape"), SPLIT_INPUTS)
@pytest.mark.parametrize("train", [False, True])
def test_forward_is_head_of_features(name: str, k: int, shape: tuple[int, ...],
                                     train: bool) -> None:
    """Bit for bit, in both modes; the copy starts from the same BatchNorm state."""
    model, x = _model_and_input(name, k, shape)
    model.train(train)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        whole = model(x)
        split = twin.head(twin.features(x))
    assert whole.shape == (N, k)
    assert torch.equal(whole, split)
    if train:  # the same running statistics after one train-mode forward each
        for a, b in zip(model.buffers(), twin.buffers(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "k", "shape", "fmap_shape"), [
    ("cnn1d", 10, (1, 40), (16, 10)),  # width 16, strides 1/2/2
    ("cnn_digits", 10, (1, 8, 8), (64, 4, 4)),  # after the 2x2 max-pool
    ("resnet18", 10, (3, 32, 32), (512, 4, 4)),  # H/8 after layer4
    ("densenet_bc100", 10, (3, 32, 32), (342, 8, 8)),  # H/4 after two transitions
])
def test_feature_map_shape(name: str, k: int, shape: tuple[int, ...],
                           fmap_shape: tuple[int, ...]) -> None:
    model, x = _model_and_input(name, k, shape)
    with torch.no_grad():
        assert model.eval().features(x).shape == (N, *fmap_shape)


def test_sequential_models_keep_the_plain_sequential_keys_and_outputs() -> None:
    """The same layers in a plain ``nn.Sequential``: same keys, same output."""
    for name, k, shape in SPLIT_INPUTS[:3]:
        model, x = _model_and_input(name, k, shape)
        plain = nn.Sequential(*model)
        assert list(model.state_dict()) == list(plain.state_dict())
        with torch.no_grad():
            assert torch.equal(model.eval()(x), plain.eval()(x))


def test_cnn1d_keys_are_those_of_its_layer_list() -> None:
    """Conv-BN-ReLU at 0-2, 3-5, 6-8, Flatten at 9, Linear at 10 (written from the layers)."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = ["0.weight", *(f"1.{b}" for b in bn), "3.weight", *(f"4.{b}" for b in bn),
                "6.weight", *(f"7.{b}" for b in bn), "10.weight", "10.bias"]
    assert list(build_model("cnn1d", 10, (1, 40)).state_dict()) == expected


# key counts from the layers: a conv 1 key, a BatchNorm 5, a Linear 2; a BasicBlock 12 (+6
# with a conv shortcut, 3 of them); a DenseBottleneck 12, a Transition 6
RESNET_PREFIXES = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "linear"]


@pytest.mark.parametrize(("name", "prefixes", "sample", "count"), [
    ("resnet18", RESNET_PREFIXES, "layer2.0.shortcut.1.running_var", 6 + 8 * 12 + 3 * 6 + 2),
    ("resnet34", RESNET_PREFIXES, "layer3.5.conv2.weight", 6 + 16 * 12 + 3 * 6 + 2),
    ("densenet_bc100", ["conv1", "features", "bn", "fc"], "features.4.15.conv2.weight",
     1 + 48 * 12 + 2 * 6 + 5 + 2),
])
def test_class_models_keep_their_keys(name: str, prefixes: list[str], sample: str,
                                      count: int) -> None:
    keys = list(build_model(name, 10, (3, 32, 32)).state_dict())
    assert list(dict.fromkeys(key.split(".")[0] for key in keys)) == prefixes
    assert sample in keys
    assert len(keys) == count


def test_densenet_map_is_taken_after_the_final_bn_relu() -> None:
    """Where the authors' CIFAR DenseNet takes its dense votes."""
    model, x = _model_and_input("densenet_bc100", 10, (3, 32, 32))
    with torch.no_grad():
        model.eval()
        fmap = model.features(x)
        expected = F.relu(model.bn(model.blocks(model.conv1(x))))
    assert torch.equal(fmap, expected)


def test_densenet_blocks_is_the_registered_features_module() -> None:
    model = build_model("densenet_bc100", 10, (3, 32, 32))
    assert model.blocks is model._modules["features"]
    assert isinstance(model.blocks, nn.Sequential) and len(model.blocks) == 5


# ------------------------------------------------------------------ dense logits


def _positions(fmap: torch.Tensor, upsample: bool) -> int:
    """Positions of the map [n, C, *spatial], each spatial size doubled by an upsample."""
    return math.prod(size * (2 if upsample else 1) for size in fmap.shape[2:])


@pytest.mark.parametrize(("name", "k", "shape"), DENSE_INPUTS)
def test_dense_logits_shape(name: str, k: int, shape: tuple[int, ...]) -> None:
    model, x = _model_and_input(name, k, shape)
    with torch.no_grad():
        fmap = model.eval().features(x)
        dense = dense_logits(model, fmap)
    positions = _positions(fmap, upsample=name.startswith("resnet"))
    assert dense.shape == (N, k, positions)
    expected_p = {"cnn1d": 10, "cnn_digits": 16, "resnet18": 64, "densenet_bc100": 64}[name]
    assert positions == expected_p


@pytest.mark.parametrize(("name", "k", "shape"),
                         [c for c in DENSE_INPUTS if not c[0].startswith("resnet")])
def test_mean_of_positions_is_the_logits(name: str, k: int, shape: tuple[int, ...]) -> None:
    """No upsample: GAP heads are linear in the map, and cnn1d's L'·(W_p f_p) + b sums back
    to W·flatten(f) + b. Relative too: DenseNet's eval logits at init are ~1e5 (He init,
    BatchNorm running statistics still 0/1)."""
    model, x = _model_and_input(name, k, shape)
    with torch.no_grad():
        model.eval()
        fmap = model.features(x)
        dense = dense_logits(model, fmap)  # [n, K, P]
        logits = model(x)  # [n, K]
    torch.testing.assert_close(dense.mean(dim=2), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "k", "shape"),
                         [c for c in DENSE_INPUTS if not c[0].startswith("resnet")])
def test_each_position_is_the_head_on_that_position_alone(
    name: str, k: int, shape: tuple[int, ...]
) -> None:
    """Position p, from the network's own head in float64: GAP heads see f_p at every
    position; cnn1d's flatten head sees L'·f_p at position p and zeros elsewhere."""
    model, x = _model_and_input(name, k, shape)
    model = model.double().eval()
    with torch.no_grad():
        fmap = model.features(x.double())
        dense = dense_logits(model, fmap)
        flat = fmap.flatten(2)  # [n, C, P]
        p_count = flat.shape[2]
        for p in range(p_count):
            if name == "cnn1d":
                only_p = torch.zeros_like(fmap)
                only_p[:, :, p] = p_count * fmap[:, :, p]
                expected = model.head(only_p)  # [n, K]
            else:
                expected = model.head(flat[:, :, p, None, None].expand_as(fmap))
            torch.testing.assert_close(dense[:, :, p], expected, rtol=1e-10, atol=1e-10)


def test_resnet_dense_logits_upsample_then_linear() -> None:
    """The authors' ResNet votes: bilinear 2x upsample of the pre-pool map, then the final
    Linear at each of the 8x8 positions (float64 reference)."""
    model, x = _model_and_input("resnet18", 10, (3, 32, 32))
    with torch.no_grad():
        fmap = model.eval().features(x)  # [n, 512, 4, 4]
        dense = dense_logits(model, fmap)
        up = F.interpolate(fmap.double(), scale_factor=2, mode="bilinear",
                           align_corners=False)  # [n, 512, 8, 8]
        w, b = model.linear.weight.double(), model.linear.bias.double()
        expected = torch.einsum("kc,nchw->nkhw", w, up).flatten(2) + b[:, None]
    assert up.shape[2:] == (8, 8)
    torch.testing.assert_close(dense.double(), expected, rtol=0, atol=1e-5)


def test_dense_logits_keep_the_graph() -> None:
    """Nothing detached inside: the caller decides."""
    model, x = _model_and_input("cnn_digits", 10, (1, 8, 8))
    dense = dense_logits(model, model.features(x))
    assert dense.requires_grad
    dense.sum().backward()
    assert model[0].weight.grad is not None


def test_mlp_has_no_dense_logits() -> None:
    model, x = _model_and_input("mlp", 10, (1, 40))
    with pytest.raises(ValueError, match=r"mlp.*convolutional network"):
        dense_logits(model, model.features(x))


def test_a_model_outside_the_registry_is_refused() -> None:
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(TypeError, match="build_model"):
        dense_logits(plain, torch.zeros(1, 4, 2, 2))
