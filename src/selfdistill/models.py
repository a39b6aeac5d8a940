"""Network architectures and the ``MODELS`` registry (methods §2).

Paper-scale networks are the CIFAR-style ResNet-34 and DenseNet-BC-100 of the authors'
code; ResNet-18 and the small CPU-scale networks (``mlp``, ``cnn1d``, ``cnn_digits``)
are ours. Every builder takes ``num_classes`` and the per-example ``input_shape``
(no batch dimension) and returns an ``nn.Module`` mapping ``[n, *input_shape]`` to
logits ``[n, num_classes]``. Initialisation is PyTorch's default (DenseNet: the
authors' He-normal conv init), so it is deterministic given ``torch.manual_seed``.
No module calls ``.cuda()``; 2D models work with ``channels_last`` inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- small


def mlp(num_classes: int, input_shape: tuple[int, ...], hidden: int = 128) -> nn.Module:
    """Two-hidden-layer ReLU MLP on the flattened input (ours, CPU scale).

    Width 128: width 256 cost 2x the CPU time per step (measured 5.0 vs 2.5 ms, one
    thread, batch 128), half the cost of a cnn1d step, for an E1 comparison network.
    """
    in_features = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(),  # [n, prod(input_shape)]
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),  # [n, K]
    )


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
    """
    if len(input_shape) != 2:
        raise ValueError(f"cnn1d expects input_shape (C, L), got {input_shape}")
    channels, length = input_shape
    out_length = length
    for stride in (2, 2):
        out_length = (out_length + 2 * 2 - 5) // stride + 1
    return nn.Sequential(
        *_conv1d_bn_relu(channels, width, stride=1),  # [n, width, L]
        *_conv1d_bn_relu(width, width, stride=2),  # [n, width, L/2]
        *_conv1d_bn_relu(width, width, stride=2),  # [n, width, L/4]
        nn.Flatten(),  # [n, width * L/4]
        nn.Linear(width * out_length, num_classes),  # [n, K]
    )


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
    """Small 2D CNN with BatchNorm for the 8×8 digits, input ``[n, C, 8, 8]`` (ours)."""
    channels = _image_channels(input_shape, "cnn_digits")
    return nn.Sequential(
        *_conv2d_bn_relu(channels, 32),  # [n, 32, 8, 8]
        *_conv2d_bn_relu(32, 64),  # [n, 64, 8, 8]
        nn.MaxPool2d(2),  # [n, 64, 4, 4]
        *_conv2d_bn_relu(64, 64),  # [n, 64, 4, 4]
        GlobalAvgPool2d(),  # [n, 64, 1, 1]
        nn.Flatten(),  # [n, 64]
        nn.Linear(64, num_classes),  # [n, K]
    )


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
    """

    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _resnet_stage(64, 64, blocks[0], stride=1)
        self.layer2 = _resnet_stage(64, 128, blocks[1], stride=2)
        self.layer3 = _resnet_stage(128, 256, blocks[2], stride=2)
        self.layer4 = _resnet_stage(256, 512, blocks[3], stride=2)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # [n, 64, H, W]
        out = self.layer1(out)  # [n, 64, H, W]
        out = self.layer2(out)  # [n, 128, H/2, W/2]
        out = self.layer3(out)  # [n, 256, H/4, W/4]
        out = self.layer4(out)  # [n, 512, H/8, W/8]
        out = out.mean(dim=(2, 3))  # [n, 512]; global average pool (deterministic on CUDA)
        return self.linear(out)  # [n, K]


def resnet18(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """CIFAR-style ResNet-18, BasicBlock [2, 2, 2, 2] (ours, methods §2)."""
    return ResNet((2, 2, 2, 2), num_classes, _image_channels(input_shape, "resnet18"))


def resnet34(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """CIFAR-style ResNet-34, BasicBlock [3, 4, 6, 3], ~21.3M params at K=100 (methods §2)."""
    return ResNet((3, 4, 6, 3), num_classes, _image_channels(input_shape, "resnet34"))


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
    bias starts at zero; everything else is PyTorch's default.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        growth: int = 12,
        layers_per_block: int = 16,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
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
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.conv1(x))  # [n, 342, H/4, W/4]
        out = F.relu(self.bn(out)).mean(dim=(2, 3))  # [n, 342]; global average pool
        return self.fc(out)  # [n, K]


def densenet_bc100(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """DenseNet-BC-100, growth 12, compression 0.5, ~0.8M params at K=100 (methods §2)."""
    return DenseNetBC(num_classes, _image_channels(input_shape, "densenet_bc100"))


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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
