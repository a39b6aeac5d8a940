"""Device-placement checks that run without a GPU (the ``placement`` test tier).

On CUDA, an operation whose tensor inputs sit on two devices raises ("Expected all tensors
to be on the same device") or, for an index or a value assigned into a device tensor,
copies it behind the caller's back with a host synchronisation. On a CPU-only machine every
tensor is on the CPU, so no such bug can show. Two instruments make it show:

- :class:`SameDeviceMode` (a ``TorchDispatchMode``): every ATen operator, forward, autograd's
  backward and the optimiser's, must get its tensor inputs on one device; 0-dim CPU tensors
  are allowed with any device (CUDA reads them as scalars), and copies between devices
  (``copy_``, ``_to_copy``) are what moves data, so they are exempt. With the model and the
  data on the ``meta`` device (shapes only, no values), a tensor made on the CPU inside a
  training step meets a meta tensor and is caught. On a GPU the same mode checks real CUDA
  steps.
- :class:`HostTagMode` (a ``TorchFunctionMode``): the CPU plays the accelerator, and a
  tensor is tagged *host* when code makes it where a CUDA run would make it on the host:
  a factory call without ``device=`` (``torch.ones(n)``, ``torch.rand(n, generator=g)``),
  ``.cpu()``, ``torch.load`` (resume files and checkpoints are read onto the CPU). The tag
  follows the tensor through operations on host tensors and is dropped by ``.to(device)``
  (``augment.host_to_device``). An operation mixing a host tensor (other than a 0-dim one)
  with a device tensor raises :class:`PlacementError`, naming the operation and the line of
  the package that called it. Values are real, so whole ``fit`` runs, resume files and
  ``.item()`` all work.

What they cannot see: kernels (nondeterminism, numerics, TF32/bf16 behaviour), host
synchronisations other than a host tensor meeting a device tensor (``.item()``, blocking
copies: ``tests/gpu`` under ``torch.cuda.set_sync_debug_mode``), memory use, streams, and
tensors made in C++ without passing through Python (they count as device tensors); a literal
``.to("cpu")`` counts as a move to the device, since on this machine the two are the same.
"""

from __future__ import annotations

import contextlib
import traceback
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only

__all__ = ["HostTagMode", "PlacementError", "SameDeviceMode", "host_tagged_load",
           "placement_checked"]


class PlacementError(AssertionError):
    """An operation got tensors on two devices (real or, under HostTagMode, host vs device)."""


def _caller() -> str:
    """The innermost frame of the package (or of a test) that led to the current call."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/selfdistill/" in frame.filename or "/tests/" in frame.filename and \
                not frame.filename.endswith("harness.py"):
            return f"{frame.filename.rsplit('/src/', 1)[-1]}:{frame.lineno} ({frame.line})"
    return "unknown caller"


def _tensors(args: Any, kwargs: Any) -> list[torch.Tensor]:
    flat, _ = tree_flatten((args, kwargs or {}))
    return [t for t in flat if isinstance(t, torch.Tensor)]


# --------------------------------------------------------------------------- real devices

_MOVES = {"aten.copy_.default", "aten._to_copy.default", "aten._copy_from.default",
          "aten._copy_from_and_resize.default", "aten.copy.default", "aten.lift_fresh.default"}


class SameDeviceMode(TorchDispatchMode):
    """Every ATen operator's tensor inputs on one device (0-dim CPU tensors excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0  # operators checked: evidence that the mode saw the work

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if str(func) not in _MOVES:
            devices = {str(t.device) for t in _tensors(args, kwargs)
                       if not (t.dim() == 0 and t.device.type == "cpu")}
            if len(devices) > 1:
                shapes = [tuple(t.shape) for t in _tensors(args, kwargs)]
                raise PlacementError(f"{func} got tensors on {sorted(devices)} (shapes "
                                     f"{shapes}), called from {_caller()}")
        return func(*args, **(kwargs or {}))


# --------------------------------------------------------------------------- host tags

_DEVICE_METHODS = {torch.Tensor.to, torch.Tensor.cuda}  # results are on the device
_HOST_METHODS = {torch.Tensor.cpu}  # results are on the host
_MOVE_METHODS = {torch.Tensor.copy_, torch.Tensor.pin_memory}  # cross-device by design


class HostTagMode(TorchFunctionMode):
    """Host/device tags on CPU tensors, and a check that no operation mixes them (module doc).

    ``raise_on_mix``: raise :class:`PlacementError` at the first mix (default), else only
    record it in ``mixes``. ``checked`` (operations checked) and ``host_tags`` (host tags
    given) are evidence that the mode saw the work.
    """

    def __init__(self, raise_on_mix: bool = True) -> None:
        super().__init__()
        self.raise_on_mix = raise_on_mix
        self.mixes: list[str] = []
        self.checked = 0
        self.host_tags = 0  # host tags given: evidence that host tensors were seen
        self._host: dict[int, weakref.ref] = {}

    # tags, keyed by id with a weak reference (tensors compare elementwise, so no WeakSet)
    def is_host(self, t: torch.Tensor) -> bool:
        ref = self._host.get(id(t))
        return ref is not None and ref() is t

    def tag(self, t: torch.Tensor, host: bool) -> None:
        key = id(t)
        if host:
            self.host_tags += 1
            self._host[key] = weakref.ref(t, lambda _, k=key: self._host.pop(k, None))
        else:
            self._host.pop(key, None)

    def tag_tree(self, tree: Any, host: bool) -> Any:
        tree_map_only(torch.Tensor, lambda t: self.tag(t, host), tree)
        return tree

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _tensors(args, kwargs)
        out = func(*args, **kwargs)
        if func in _DEVICE_METHODS:
            host = func is torch.Tensor.to and not _names_device(args[1:], kwargs) and \
                self.is_host(args[0])
            return self.tag_tree(out, host)
        if func in _HOST_METHODS:
            return self.tag_tree(out, True)
        if func in _MOVE_METHODS:
            return out
        if not inputs:  # a factory: on the host unless told where
            return self.tag_tree(out, "device" not in kwargs)
        self.checked += 1
        hosts = [self.is_host(t) for t in inputs]
        counted = [h for t, h in zip(inputs, hosts, strict=True) if not (h and t.dim() == 0)]
        if any(counted) and not all(counted):
            self._mix(func, inputs, hosts)
        return self.tag_tree(out, all(hosts)) if all(hosts) else out

    def _mix(self, func: Any, inputs: list[torch.Tensor], hosts: list[bool]) -> None:
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        where = ", ".join(f"{'host' if h else 'device'} {tuple(t.shape)}"
                          for t, h in zip(inputs, hosts, strict=True))
        message = f"{name} mixes host and device tensors ({where}), called from {_caller()}"
        self.mixes.append(message)
        if self.raise_on_mix:
            raise PlacementError(message)


def _names_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``Tensor.to``'s arguments name a device (or a tensor whose device it takes)."""
    if "device" in kwargs or "other" in kwargs:
        return True
    return any(isinstance(a, (torch.device, str, int, torch.Tensor)) and
               not isinstance(a, bool) for a in args)


@contextlib.contextmanager
def host_tagged_load(mode: HostTagMode) -> Iterator[None]:
    """``torch.load`` (resume files, checkpoints, teachers) gives host-tagged tensors: the
    package reads every file onto the CPU, as a CUDA run would."""
    real = torch.load

    def load(*args: Any, **kwargs: Any) -> Any:
        return mode.tag_tree(real(*args, **kwargs), True)

    torch.load = load
    try:
        yield
    finally:
        torch.load = real


@contextlib.contextmanager
def placement_checked(raise_on_mix: bool = True) -> Iterator[HostTagMode]:
    """Host tags, tagged loads and the real-device check together, for CPU runs."""
    mode = HostTagMode(raise_on_mix)
    with host_tagged_load(mode), SameDeviceMode(), mode:
        yield mode
