"""CPU stand-in for ``execution.deterministic: true`` on CUDA: no registered model may use
an operation that ``torch.use_deterministic_algorithms(True)`` refuses on CUDA (it raises
at the first forward or backward pass there, never on the CPU).

The list comes from the installed torch's own documentation: the docstring of
``torch.use_deterministic_algorithms``, section "The following normally-nondeterministic
operations will throw a RuntimeError when mode=True". It is read at test time, so a torch
upgrade that adds or drops an entry changes what is checked; an entry this file cannot map
fails :func:`test_every_listed_entry_is_checked` until it is mapped.

Two scans per model, on a small input, forward and backward:

- modules: every ``nn.Module`` class the list names (``AdaptiveAvgPool2d``,
  ``ReflectionPad2d``, ...) found by ``isinstance`` among ``model.modules()``;
- operations: the ATen operators the forward and backward actually dispatch (a
  ``TorchDispatchMode``), against the operators behind each listed entry
  (``_OPS``: ``interpolate(mode="bilinear")`` is ``upsample_bilinear2d_backward`` ...), which
  also catches a functional call (``F.interpolate``) that no module scan can see.

The module scan is the documentation's own granularity and the stricter one: ATen computes
``AdaptiveAvgPool2d(1)`` as a mean, whose backward is deterministic, yet the documentation
names the module, so a model must not rely on that detail of the implementation.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from selfdistill.models import MODELS, build_model

# The section's first and next headings (whitespace may wrap differently between versions).
_SECTION = (r"will\s+throw\s+a\s+:class:`RuntimeError`\s+when\s+``mode=True``:",
            r"In\s+addition,")


def refused_entries() -> list[str]:
    """The bullet entries of the docstring section of operations that raise when
    deterministic mode is on, as written there (``torch.nn.AdaptiveAvgPool2d when ...``)."""
    doc = torch.use_deterministic_algorithms.__doc__ or ""
    head, tail = re.search(_SECTION[0], doc), re.search(_SECTION[1], doc)
    if head is None or tail is None or tail.start() < head.end():
        raise AssertionError("torch.use_deterministic_algorithms.__doc__ no longer has the "
                             "section of operations that throw in deterministic mode: update "
                             "_SECTION in this file")
    section = doc[head.end():tail.start()]
    entries, current = [], None
    for line in section.splitlines():
        bullet = re.match(r"\s*\* (.*)", line)
        if bullet:
            current = bullet.group(1)
            entries.append(current)
        elif current is not None and line.strip():
            entries[-1] += " " + line.strip()
    return [re.sub(r":(class|func):`([^`]+)`", r"\2", e).replace("``", "") for e in entries]


def refused_module_classes() -> list[type[nn.Module]]:
    """The ``torch.nn`` module classes among :func:`refused_entries`."""
    found = []
    for entry in refused_entries():
        name = entry.split()[0]
        if name.startswith("torch.nn.") and name.count(".") == 2:
            cls = getattr(nn, name.rsplit(".", 1)[1], None)
            if isinstance(cls, type) and issubclass(cls, nn.Module):
                found.append(cls)
    return found


# Each documented entry -> the ATen operators (name prefixes, as the dispatcher prints them)
# that it stands for on this path: forward or backward, whichever the entry names. Entries
# whose refusal needs a tensor kind our models never make (quantized, sparse) map to ().
_OPS: dict[str, tuple[str, ...]] = {
    "torch.nn.AvgPool3d": ("aten.avg_pool3d_backward",),
    "torch.nn.AdaptiveAvgPool2d": ("aten._adaptive_avg_pool2d_backward",),
    "torch.nn.AdaptiveAvgPool3d": ("aten._adaptive_avg_pool3d_backward",),
    "torch.nn.AdaptiveMaxPool2d": ("aten.adaptive_max_pool2d_backward",),
    "torch.nn.FractionalMaxPool2d": ("aten.fractional_max_pool2d_backward",),
    "torch.nn.FractionalMaxPool3d": ("aten.fractional_max_pool3d_backward",),
    "torch.nn.MaxUnpool1d": ("aten.max_unpool2d",),  # 1d is computed by the 2d kernel
    "torch.nn.MaxUnpool2d": ("aten.max_unpool2d",),
    "torch.nn.MaxUnpool3d": ("aten.max_unpool3d",),
    "torch.nn.functional.interpolate": (
        "aten.upsample_linear1d_backward", "aten.upsample_bilinear2d_backward",
        "aten.upsample_bicubic2d_backward", "aten.upsample_trilinear3d_backward",
        "aten._upsample_bilinear2d_aa_backward", "aten._upsample_bicubic2d_aa_backward"),
    "torch.nn.ReflectionPad1d": ("aten.reflection_pad1d_backward",),
    "torch.nn.ReflectionPad2d": ("aten.reflection_pad2d_backward",),
    "torch.nn.ReflectionPad3d": ("aten.reflection_pad3d_backward",),
    "torch.nn.NLLLoss": ("aten.nll_loss2d_forward",),  # the [n, C, H, W] kernel only
    "torch.nn.CTCLoss": ("aten._ctc_loss_backward",),
    "torch.nn.EmbeddingBag": ("aten._embedding_bag_backward", "aten._embedding_bag_dense"),
    "torch.Tensor.put_": ("aten.put",),
    "torch.histc": ("aten.histc",),
    "torch.bincount": ("aten.bincount",),
    "torch.median": ("aten.median.dim",),
    "torch.nn.functional.grid_sample": ("aten.grid_sampler_2d_backward",
                                        "aten.grid_sampler_3d_backward"),
    "torch.Tensor.scatter_reduce": ("aten.scatter_reduce",),
    "torch.Tensor.resize_": (),  # quantized tensors only
}


def refused_ops() -> dict[str, str]:
    """ATen operator prefix -> the documented entry it comes from."""
    return {op: entry.split()[0] for entry in refused_entries()
            for op in _OPS.get(entry.split()[0], ())}


class OpRecorder(TorchDispatchMode):
    """Names of the ATen operators dispatched while active (forward and autograd's backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


# Per-example input shapes that every registered model accepts, small enough for the CPU.
SHAPES = {"mlp": (1, 40), "cnn1d": (1, 40), "cnn_digits": (1, 8, 8), "resnet18": (3, 16, 16),
          "resnet34": (3, 16, 16), "densenet_bc100": (3, 8, 8)}


def forward_backward_ops(model: nn.Module, shape: tuple[int, ...]) -> set[str]:
    x = torch.randn(2, *shape, requires_grad=True)
    with OpRecorder() as rec:
        model(x).logsumexp(1).sum().backward()
    return rec.ops


def test_every_listed_entry_is_checked():
    """Each entry of the installed torch's list is mapped to its operators (or to none, on
    purpose); the modules among them are found as classes."""
    entries = {e.split()[0] for e in refused_entries()}
    assert "torch.nn.AdaptiveAvgPool2d" in entries and len(entries) >= 15  # the parse worked
    unmapped = sorted(entries - set(_OPS))
    assert not unmapped, (f"torch's deterministic-mode list has entries this test does not map "
                          f"to ATen operators: {unmapped}; add them to _OPS")
    assert nn.AdaptiveAvgPool2d in refused_module_classes()
    assert nn.ReflectionPad2d in refused_module_classes()


def test_every_model_has_a_shape_here():
    assert set(SHAPES) == set(MODELS), "add the new model's small input shape to SHAPES"


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_no_model_uses_a_module_without_deterministic_cuda_kernels(arch):
    model = build_model(arch, 10, SHAPES[arch])
    classes = tuple(refused_module_classes())
    bad = sorted({type(m).__name__ for m in model.modules() if isinstance(m, classes)})
    assert not bad, (f"{arch} uses {bad}: torch.use_deterministic_algorithms documents them "
                     f"as refused on CUDA in deterministic mode (execution.deterministic: "
                     f"true); use a deterministic equivalent (models.GlobalAvgPool2d for a "
                     f"global average pool)")


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_no_model_dispatches_an_operator_without_deterministic_cuda_kernels(arch):
    ops = forward_backward_ops(build_model(arch, 10, SHAPES[arch]), SHAPES[arch])
    assert "aten.convolution_backward.default" in ops or arch == "mlp"  # backward was seen
    refused = refused_ops()
    bad = sorted(f"{op} ({entry})" for op in ops for prefix, entry in refused.items()
                 if op.startswith(prefix))
    assert not bad, f"{arch} runs {bad}: no deterministic CUDA kernel (deterministic: true raises)"


@pytest.mark.parametrize("layer, found", [
    (nn.AdaptiveAvgPool2d(2), "AdaptiveAvgPool2d"),
    (nn.ReflectionPad2d(1), "ReflectionPad2d"),
    (nn.Upsample(scale_factor=2, mode="bilinear"), "aten.upsample_bilinear2d_backward"),
])
def test_scans_catch_planted_layers(layer, found):
    """A small network with one refused layer is caught by the module or operator scan."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), layer, nn.Flatten(), nn.LazyLinear(10))
    model(torch.randn(2, 1, 8, 8))  # materialise the lazy layer
    classes = tuple(refused_module_classes())
    modules = {type(m).__name__ for m in model.modules() if isinstance(m, classes)}
    ops = {op for op in forward_backward_ops(model, (1, 8, 8))
           if any(op.startswith(p) for p in refused_ops())}
    assert any(found == name or name.startswith(found) for name in modules | ops)
