"""Network architectures and the ``MODELS`` registry (methods §2).

Paper-scale networks are the CIFAR-style ResNet-34 and DenseNet-BC-100 of the authors'
code; ResNet-18 and the small CPU-scale networks (``mlp``, ``cnn1d``, ``cnn_digits``)
are ours. Every builder takes ``num_classes`` and the per-example ``input_shape``
(no batch dimension) and returns an ``nn.Module`` mapping ``[n, *input_shape]`` to
logits ``[n, num_classes]``. Initialisation is PyTorch's default (DenseNet: the
authors' He-normal conv init), so it is deterministic given ``torch.manual_seed``.
No module calls ``.cuda()``; 2D models work with ``channels_last`` inputs.

Every registered model splits into ``features(x) -> fmap`` (the last feature map before the
classifier's pooling or flatten) and ``head(fmap) -> logits``, and ``model(x)`` is exactly
``head(features(x))``, the same ops in the same order. :func:`dense_logits` applies the
model's own classifier at every position of that map, for Zipf's LS (methods §3.10); each
model's ``dense_kind`` says how (see :data:`DenseKind`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import islice
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS", "BasicBlock", "DenseBottleneck", "DenseKind", "DenseNetBC", "GlobalAvgPool2d",
    "ResNet", "SplitSequential", "Transition", "build_model", "cnn1d", "cnn_digits",
    "count_parameters", "dense_logits", "densenet_bc100", "mlp", "resnet18", "resnet34",
]

DenseKind = Literal["none", "flatten", "gap", "gap_upsample2x"]
"""How :func:`dense_logits` reads a model's map: ``"none"`` no spatial map (mlp);
``"flatten"`` a ``[n, C, L']`` map flattened into one Linear (cnn1d); ``"gap"`` global average
pool then Linear, the Linear at each position (cnn_digits, DenseNet-BC); ``"gap_upsample2x"``
the same after a 2x bilinear upsample of the map (ResNet, as the Zipf authors' code)."""


# --------------------------------------------------------------------------- small


class SplitSequential(nn.Sequential):
    """``nn.Sequential`` split at index ``split``: ``features`` runs layers ``[:split]``,
    ``head`` the rest, the last of which is the classifier ``nn.Linear``.

    ``forward`` is ``nn.Sequential``'s, so outputs, the module tree and the state_dict keys
    (``"0.weight"``, ...) are those of the plain ``nn.Sequential`` of the same layers.
    ``arch`` (the registry name) and ``dense_kind`` tell :func:`dense_logits` what it holds.
    """

    def __init__(self, *layers: nn.Module, split: int, arch: str, dense_kind: DenseKind) -> None:
        super().__init__(*layers)
        if not 0 < split < len(layers) or not isinstance(layers[-1], nn.Linear):
            raise ValueError(f"{arch}: split {split} must leave a head ending in nn.Linear")
        self.split, self.arch, self.dense_kind = split, arch, dense_kind

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Layers ``[:split]``: the feature map before the classifier's pooling/flatten."""
        for layer in islice(self, self.split):
            x = layer(x)
        return x

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """Layers ``[split:]``: pooling/flatten and the classifier, ``[n, K]``."""
        for layer in islice(self, self.split, None):
            fmap = layer(fmap)
        return fmap

    @property
    def classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` (layer ``[-1]``)."""
        layer = self[-1]
        assert isinstance(layer, nn.Linear)
        return layer


def mlp(num_classes: int, input_shape: tuple[int, ...], hidden: int = 128) -> nn.Module:
    """Two-hidden-layer ReLU MLP on the flattened input (ours, CPU scale).

    Width 128: width 256 cost 2x the CPU time per step (measured 5.0 vs 2.5 ms, one
    thread, batch 128), half the cost of a cnn1d step, for an E1 comparison network.
    ``features`` is the last hidden layer ``[n, hidden]`` and ``head`` the final Linear; it
    has no spatial map, so :func:`dense_logits` refuses it.
    """
    in_features = math.prod(input_shape)
    features = [
        nn.Flatten(),  # [n, prod(input_shape)]
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),  # [n, hidden]
    ]
    head = [nn.Linear(hidden, num_classes)]  # [n, K]
    return SplitSequential(*features, *head, split=len(features), arch="mlp", dense_kind="none")


def _conv1d_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv1d(c_in, c_out, kernel_size=5, stride=stride, padding=2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(),
    ]


def cnn1d(num_classes: int, input_shape: tuple[int, ...], width: int = 16) -> nn.Module:
    """Three-layer 1D CNN with BatchNorm for MNIST-1D, input ``[n, C, L]`` (ours).

    Convs of kernel 5, padding 2, strides 1/2/2, so L=40 gives a ``[n, width, 10]``
    feature map (width 16) that is flattened into the linear classifier. BatchNorm matters: the
    SD teacher runs in eval mode (methods §3.4) and the BS EMA network in train mode (§3.5).
    ``features`` ends at that ``[n, width, L/4]`` map; ``head`` is Flatten + Linear.
    """
    if len(input_shape) != 2:
        raise ValueError(f"cnn1d expects input_shape (C, L), got {input_shape}")
    channels, length = input_shape
    out_length = length
    for stride in (2, 2):
        out_length = (out_length + 2 * 2 - 5) // stride + 1
    features = [
        *_conv1d_bn_relu(channels, width, stride=1),  # [n, width, L]
        *_conv1d_bn_relu(width, width, stride=2),  # [n, width, L/2]
        *_conv1d_bn_relu(width, width, stride=2),  # [n, width, L/4]
    ]
    head = [
        nn.Flatten(),  # [n, width * L/4]
        nn.Linear(width * out_length, num_classes),  # [n, K]
    ]
    return SplitSequential(*features, *head, split=len(features), arch="cnn1d",
                           dense_kind="flatten")


def _conv2d_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


class GlobalAvgPool2d(nn.Module):
    """Mean over the spatial dims, kept as ``[n, C, 1, 1]``: ``nn.AdaptiveAvgPool2d(1)``'s
    output, but its CUDA backward is a plain deterministic broadcast (AdaptiveAvgPool2d has
    no deterministic CUDA backward, so ``execution.deterministic: true`` refused it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def cnn_digits(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Small 2D CNN with BatchNorm for the 8×8 digits, input ``[n, C, 8, 8]`` (ours).

    ``features`` ends at the ``[n, 64, 4, 4]`` map; ``head`` is GAP + Flatten + Linear.
    """
    channels = _image_channels(input_shape, "cnn_digits")
    features = [
        *_conv2d_bn_relu(channels, 32),  # [n, 32, 8, 8]
        *_conv2d_bn_relu(32, 64),  # [n, 64, 8, 8]
        nn.MaxPool2d(2),  # [n, 64, 4, 4]
        *_conv2d_bn_relu(64, 64),  # [n, 64, 4, 4]
    ]
    head = [
        GlobalAvgPool2d(),  # [n, 64, 1, 1]
        nn.Flatten(),  # [n, 64]
        nn.Linear(64, num_classes),  # [n, K]
    ]
    return SplitSequential(*features, *head, split=len(features), arch="cnn_digits",
                           dense_kind="gap")


def _image_channels(input_shape: tuple[int, ...], name: str) -> int:
    if len(input_shape) != 3:
        raise ValueError(f"{name} expects input_shape (C, H, W), got {input_shape}")
    return input_shape[0]


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers plus an identity or 1×1 conv-BN shortcut (methods §2)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # [n, c_out, H/s, W/s]
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _resnet_stage(c_in: int, c_out: int, n_blocks: int, stride: int) -> nn.Sequential:
    """``n_blocks`` BasicBlocks; only the first changes width and stride."""
    first = BasicBlock(c_in, c_out, stride)
    return nn.Sequential(first, *(BasicBlock(c_out, c_out, 1) for _ in range(n_blocks - 1)))


class ResNet(nn.Module):
    """CIFAR-style ResNet (methods §2): 3×3 stem, no max-pool, widths 64-512.

    The authors pool with a fixed 4×4 window, which equals a global average pool on the
    4×4 map of a 32 px input; we pool globally so 64 px or 224 px inputs also work.
    ``features`` ends after ``layer4`` (pre-pool ``[n, 512, H/8, W/8]``); ``head`` pools and
    applies ``linear``. ``arch`` is the registry name.
    """

    dense_kind: ClassVar[DenseKind] = "gap_upsample2x"

    def __init__(
        self, blocks: tuple[int, ...], num_classes: int, in_channels: int, arch: str = "resnet"
    ) -> None:
        super().__init__()
        self.arch = arch
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _resnet_stage(64, 64, blocks[0], stride=1)
        self.layer2 = _resnet_stage(64, 128, blocks[1], stride=2)
        self.layer3 = _resnet_stage(128, 256, blocks[2], stride=2)
        self.layer4 = _resnet_stage(256, 512, blocks[3], stride=2)
        self.linear = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the four stages: the pre-pool map ``[n, 512, H/8, W/8]``."""
        out = F.relu(self.bn1(self.conv1(x)))  # [n, 64, H, W]
        out = self.layer1(out)  # [n, 64, H, W]
        out = self.layer2(out)  # [n, 128, H/2, W/2]
        out = self.layer3(out)  # [n, 256, H/4, W/4]
        return self.layer4(out)  # [n, 512, H/8, W/8]

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global average pool (deterministic on CUDA) and ``linear``: ``[n, K]``."""
        return self.linear(fmap.mean(dim=(2, 3)))  # [n, 512] -> [n, K]

    @property
    def classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` (``linear``)."""
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # [n, K]


def resnet18(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """CIFAR-style ResNet-18, BasicBlock [2, 2, 2, 2] (ours, methods §2)."""
    return ResNet((2, 2, 2, 2), num_classes, _image_channels(input_shape, "resnet18"),
                  arch="resnet18")


def resnet34(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """CIFAR-style ResNet-34, BasicBlock [3, 4, 6, 3], ~21.3M params at K=100 (methods §2)."""
    return ResNet((3, 4, 6, 3), num_classes, _image_channels(input_shape, "resnet34"),
                  arch="resnet34")


# --------------------------------------------------------------------------- DenseNet


class DenseBottleneck(nn.Module):
    """BN-ReLU-Conv1×1(4·growth)-BN-ReLU-Conv3×3(growth), concatenated to the input."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))  # [n, 4g, H, W]
        out = self.conv2(F.relu(self.bn2(out)))  # [n, g, H, W]
        return torch.cat((x, out), dim=1)  # [n, c_in + g, H, W]


class Transition(nn.Module):
    """BN-ReLU-Conv1×1 (compression) followed by a 2×2 average pool."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)  # [n, c_out, H/2, W/2]


class DenseNetBC(nn.Module):
    """DenseNet-BC for CIFAR (methods §2): 3 dense blocks, bottlenecks, compression.

    Conv weights use the authors' He-normal init (std sqrt(2 / (k·k·c_out))), linear
    bias starts at zero; everything else is PyTorch's default. ``features`` ends after the
    final BN-ReLU (``[n, 342, H/4, W/4]``, where the authors' CIFAR DenseNet takes its dense
    votes); ``head`` pools and applies ``fc``.

    The dense blocks and transitions stay registered as the submodule ``features`` (state_dict
    keys ``features.*``), but the attribute ``self.features`` is the method, which shadows
    it: read the submodule as :attr:`blocks`. (So ``get_submodule("features")`` and other
    ``getattr``-by-name lookups of those parameters do not resolve on this class.)
    """

    dense_kind: ClassVar[DenseKind] = "gap"

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        growth: int = 12,
        layers_per_block: int = 16,
        reduction: float = 0.5,
        arch: str = "densenet_bc",
    ) -> None:
        super().__init__()
        self.arch = arch
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for block in range(3):
            stages.append(
                nn.Sequential(
                    *(DenseBottleneck(c + i * growth, growth) for i in range(layers_per_block))
                )
            )
            c += layers_per_block * growth
            if block < 2:
                c_out = int(math.floor(c * reduction))
                stages.append(Transition(c, c_out))
                c = c_out
        # registered by hand: add_module refuses a name the features() method already holds
        self._modules["features"] = nn.Sequential(*stages)  # read as self.blocks
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> nn.Module:
        """The dense blocks and transitions, the submodule registered as ``features``."""
        blocks = self._modules["features"]
        assert blocks is not None
        return blocks

    @property
    def classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` (``fc``)."""
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, dense blocks, final BN-ReLU: ``[n, 342, H/4, W/4]``."""
        out = self.blocks(self.conv1(x))  # [n, 342, H/4, W/4]
        return F.relu(self.bn(out))

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global average pool and ``fc``: ``[n, K]``."""
        return self.fc(fmap.mean(dim=(2, 3)))  # [n, 342] -> [n, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # [n, K]


def densenet_bc100(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """DenseNet-BC-100, growth 12, compression 0.5, ~0.8M params at K=100 (methods §2)."""
    return DenseNetBC(num_classes, _image_channels(input_shape, "densenet_bc100"),
                      arch="densenet_bc100")


# --------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn1d": cnn1d,
    "cnn_digits": cnn_digits,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "densenet_bc100": densenet_bc100,
}


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` and per-example ``input_shape``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, input_shape=tuple(input_shape))


_CONVOLUTIONAL = "cnn1d, cnn_digits, resnet18, resnet34, densenet_bc100"


def dense_logits(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """The model's own classifier at every position of its map ``fmap`` = ``model.features(x)``:
    logits ``[n, K, P]`` over the ``P`` positions, for Zipf's LS votes (methods §3.10).

    By the model's ``dense_kind``:

    - ``"gap"`` (cnn_digits, DenseNet-BC, ``fmap`` ``[n, C, H, W]``): the Linear at each of the
      ``P = H·W`` positions; their mean is the network's logits. DenseNet's map is taken
      after its final BN-ReLU, with no upsample, as the authors' CIFAR DenseNet.
    - ``"gap_upsample2x"`` (ResNet): ``fmap`` is first upsampled 2x (bilinear,
      ``align_corners=False``), as the authors' ResNet, so ``P = 4·H·W`` (64 at 32 px).
    - ``"flatten"`` (cnn1d, ``fmap`` ``[n, C, L']`` flattened into one Linear of ``C·L'``
      inputs, no GAP): our analogue of "the classifier at each position". With ``W_p`` the
      ``[K, C]`` slice of the weight that multiplies position p's features ``f_p``, position
      p's logits are ``L'·(W_p f_p) + b``, so the mean over the ``L'`` positions is the
      network's logits exactly (in real arithmetic).
    - ``"none"`` (mlp): no spatial map; raises ``ValueError``.

    The kind and classifier come from the model's ``dense_kind`` and ``classifier``
    attributes (every model of :data:`MODELS` has them). Nothing is detached here: the caller
    decides (the votes need no gradient).
    """
    kind = getattr(model, "dense_kind", None)
    arch = getattr(model, "arch", type(model).__name__)
    if kind == "none":
        raise ValueError(f"{arch} has no spatial feature map: Zipf's LS needs a "
                         f"convolutional network ({_CONVOLUTIONAL})")
    linear = getattr(model, "classifier", None)
    if kind not in ("flatten", "gap", "gap_upsample2x") or not isinstance(linear, nn.Linear):
        raise TypeError(f"{arch} has no dense_kind/classifier; build it with build_model")
    if kind == "flatten":
        if fmap.dim() != 3:
            raise ValueError(f"{arch}: expected a map [n, C, L'], got {tuple(fmap.shape)}")
        length = fmap.shape[2]
        weight = linear.weight.view(linear.out_features, fmap.shape[1], length)  # [K, C, L']
        per_position = torch.einsum("kcp,ncp->nkp", weight, fmap)  # [n, K, L']; W_p f_p
        return length * per_position + linear.bias[:, None]  # Flatten index c·L' + p
    if fmap.dim() != 4:
        raise ValueError(f"{arch}: expected a map [n, C, H, W], got {tuple(fmap.shape)}")
    if kind == "gap_upsample2x":
        fmap = F.interpolate(fmap, scale_factor=2, mode="bilinear", align_corners=False)
    return linear(fmap.flatten(2).transpose(1, 2)).transpose(1, 2)  # [n, P, K] -> [n, K, P]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
