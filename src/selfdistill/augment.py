"""Batched, on-device training augmentation (methods §2).

Each augmenter maps a batch ``x`` [n, C, *spatial] of already-normalised inputs to an
augmented batch of the same shape, drawing its randomness from a dedicated
``torch.Generator`` on the CPU (so runs are reproducible and resumable on any device).
Random crop with zero padding in *pixel* space is padding with ``-mean/std`` after
normalisation; every crop offset in ``[0, 2·padding]`` and both flips are equally likely,
as in torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENTATIONS", "Augment", "InputPipeline", "build_augment", "build_eval_transform",
           "build_input_pipeline", "crop_flip_2d", "resize", "resized_crop", "resized_crop_flip",
           "sample_resized_crop_boxes", "shift_1d"]

Augment = Callable[[Tensor, torch.Generator], Tensor]


def _identity(x: Tensor, gen: torch.Generator) -> Tensor:
    return x


def host_to_device(t: Tensor, device: torch.device) -> Tensor:
    """A small host tensor (a step's random draws, a constant) on ``device`` without a host
    synchronisation: on CUDA a plain ``.to()`` from pageable memory waits for the whole
    stream, so the tensor is pinned and copied non-blocking (issue: no per-step host sync;
    ``tests/gpu`` runs training steps under ``torch.cuda.set_sync_debug_mode("error")``).
    Elsewhere it is ``t.to(device)`` (a no-op on CPU)."""
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def crop_flip_2d(padding: int, pad_value: Sequence[float], flip: bool = True) -> Augment:
    """Random crop of the original size after padding by ``padding`` with ``pad_value``
    (one per channel, the normalised image of pixel 0), then a random horizontal flip."""

    fills: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def apply(x: Tensor, gen: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        if (x.device, x.dtype) not in fills:  # once per device: no per-step copy
            fills[x.device, x.dtype] = host_to_device(
                torch.as_tensor(pad_value, dtype=x.dtype).view(1, -1, 1, 1), x.device)
        fill = fills[x.device, x.dtype]
        padded = fill.expand(n, c, h + 2 * padding, w + 2 * padding).clone()
        padded[:, :, padding:padding + h, padding:padding + w] = x
        off = host_to_device(torch.randint(0, 2 * padding + 1, (2, n), generator=gen),
                             x.device)  # [2, n]
        rows = off[0].view(n, 1) + torch.arange(h, device=x.device)  # [n, h]
        cols = off[1].view(n, 1) + torch.arange(w, device=x.device)  # [n, w]
        if flip:
            flips = host_to_device(torch.rand(n, generator=gen) < 0.5, x.device)  # [n]
            cols = torch.where(flips.view(n, 1), cols.flip(1), cols)
        batch = torch.arange(n, device=x.device).view(n, 1, 1)
        out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]  # [n,h,w,c]
        return out.permute(0, 3, 1, 2).contiguous(memory_format=_format(x))

    return apply


def _format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
        return torch.channels_last
    return torch.contiguous_format


def shift_1d(max_shift: int, pad_value: float = 0.0) -> Augment:
    """Random translation of a 1-D signal [n, C, L] by up to ``max_shift`` samples,
    filling with ``pad_value`` (the 1-D analogue of padded random crop)."""

    def apply(x: Tensor, gen: torch.Generator) -> Tensor:
        n, c, length = x.shape
        padded = torch.full((n, c, length + 2 * max_shift), pad_value, dtype=x.dtype,
                            device=x.device)
        padded[:, :, max_shift:max_shift + length] = x
        off = host_to_device(torch.randint(0, 2 * max_shift + 1, (n,), generator=gen), x.device)
        idx = off.view(n, 1) + torch.arange(length, device=x.device)  # [n, L]
        return padded.gather(2, idx.view(n, 1, length).expand(n, c, length))

    return apply


def build_augment(name: str, pad_value: Sequence[float] = (0.0,), padding: int = 4,
                  size: int | None = None) -> Augment:
    """Augmenter by config name: ``none``, ``crop_flip`` (methods §2 CIFAR), ``shift1d``,
    ``resized_crop_flip`` (methods §2 Tiny ImageNet; ``size`` is the network input size)."""
    if name == "none":
        return _identity
    if name == "crop_flip":
        return crop_flip_2d(padding, pad_value, flip=True)
    if name == "shift1d":
        return shift_1d(padding, float(pad_value[0]))
    if name == "resized_crop_flip":
        if size is None:
            raise ValueError("augment resized_crop_flip needs the network input size (the "
                             "prepared manifest's input_size, e.g. 32 for Tiny ImageNet)")
        return resized_crop_flip(size)
    raise KeyError(f"augment: unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")


AUGMENTATIONS = ("none", "crop_flip", "shift1d", "resized_crop_flip")


# ------------------------------------------------------------ resized crop (Tiny ImageNet)


def _aa_weights(length: Tensor, start: Tensor, full: int, out: int) -> Tensor:
    """Resampling matrices [n, out, full] of PyTorch's antialiased bilinear resize
    (``interpolate(..., antialias=True)``, the kernel torchvision's ``Resize`` uses) of
    the window ``[start, start + length)`` of an axis of ``full`` pixels to ``out``.

    Same formula as ATen's ``_compute_weights_aa``: triangle filter widened by the
    scale when shrinking, window ``[trunc(c - support + .5), trunc(c + support + .5))``.
    """
    scale = (length.double() / out).view(-1, 1, 1)  # [n, 1, 1]
    shrink = scale >= 1.0
    support = torch.where(shrink, scale, torch.ones_like(scale))
    invscale = torch.where(shrink, 1.0 / scale, torch.ones_like(scale))
    center = scale * (torch.arange(out, dtype=torch.float64).view(1, out, 1) + 0.5)  # [n,out,1]
    lo = torch.trunc(center - support + 0.5).clamp(min=0)
    hi = torch.minimum(torch.trunc(center + support + 0.5), length.double().view(-1, 1, 1))
    pos = torch.arange(full, dtype=torch.float64).view(1, 1, full) - start.double().view(-1, 1, 1)
    w = (1.0 - ((pos - center + 0.5) * invscale).abs()).clamp(min=0)  # [n, out, full]
    w = w * ((pos >= lo) & (pos < hi))
    return (w / w.sum(-1, keepdim=True)).float()


def sample_resized_crop_boxes(n: int, height: int, width: int, gen: torch.Generator,
                              scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """Boxes [n, 4] (top, left, h, w), int64, drawn as torchvision's
    ``RandomResizedCrop.get_params`` draws one: up to 10 tries of area fraction
    ~ U(scale) and log aspect ratio ~ U(log ratio), the first box that fits wins, with
    a uniform position; if none fits, the central crop of the clamped aspect ratio."""
    area, log_r = height * width, torch.log(torch.tensor(ratio, dtype=torch.float64))
    target = area * (scale[0] + (scale[1] - scale[0]) *
                     torch.rand(n, 10, generator=gen, dtype=torch.float64))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) *
                       torch.rand(n, 10, generator=gen, dtype=torch.float64))
    w = torch.round(torch.sqrt(target * aspect)).long()  # [n, 10]; round half to even
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(1, keepdim=True)  # first fitting try
    h, w, found = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0], fits.any(1)
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = (u[:, 0] * (height - h + 1)).floor().long()
    left = (u[:, 1] * (width - w + 1)).floor().long()
    fh, fw = _fallback_box(height, width, ratio)
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], 1)


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback: whole image, clamped to the aspect-ratio range."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def resized_crop(x: Tensor, boxes: Tensor, size: int, flips: Tensor | None = None) -> Tensor:
    """Crop each image of ``x`` [n, C, H, W] to its box [n, 4] (top, left, h, w) and resize
    it to ``size`` x ``size`` (antialiased bilinear, as torchvision's ``resized_crop`` on
    tensors), mirrored where ``flips`` [n] is true. Two batched matmuls, no per-image loop."""
    n, _, height, width = x.shape
    boxes = boxes.cpu()
    rows = host_to_device(_aa_weights(boxes[:, 2], boxes[:, 0], height, size),
                          x.device)  # [n, size, H]
    cols = host_to_device(_aa_weights(boxes[:, 3], boxes[:, 1], width, size),
                          x.device)  # [n, size, W]
    if flips is not None:
        cols = torch.where(host_to_device(flips.view(n, 1, 1), x.device), cols.flip(1), cols)
    out = rows.unsqueeze(1).to(x.dtype) @ x @ cols.transpose(1, 2).unsqueeze(1).to(x.dtype)
    return out.contiguous(memory_format=_format(x))  # [n, C, size, size]


def resized_crop_flip(size: int, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Augment:
    """``RandomResizedCrop(size, scale, ratio)`` + ``RandomHorizontalFlip()`` on a batch
    (methods §2 Tiny ImageNet: 64-px images trained at 32 px). The output is [n, C, size,
    size], smaller than the input: the one augmenter that changes the spatial size."""

    def apply(x: Tensor, gen: torch.Generator) -> Tensor:
        n, _, height, width = x.shape
        boxes = sample_resized_crop_boxes(n, height, width, gen, scale, ratio)
        flips = torch.rand(n, generator=gen) < 0.5
        return resized_crop(x, boxes, size, flips)

    return apply


def resize(size: int) -> Callable[[Tensor], Tensor]:
    """Evaluation view for ``resized_crop_flip``: torchvision's ``Resize(size)`` on tensors
    (shorter side to ``size``, antialiased bilinear), methods §2 Tiny ImageNet."""

    def apply(x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        short, long = (height, width) if height <= width else (width, height)
        new_long = int(size * long / short)
        out_hw = (size, new_long) if height <= width else (new_long, size)
        if out_hw == (height, width):
            return x
        out = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False,
                            antialias=True)
        return out.contiguous(memory_format=_format(x))

    return apply


def build_eval_transform(name: str, size: int | None = None) -> Callable[[Tensor], Tensor] | None:
    """The un-augmented view that matches augmentation ``name`` (``None``: identity)."""
    if name == "resized_crop_flip":
        if size is None:
            raise ValueError("augment resized_crop_flip needs the network input size")
        return resize(size)
    return None


def build_input_pipeline(name: str, padding: int = 4,
                         normalize: Mapping[str, Sequence[float]] | None = None,
                         size: int | None = None) -> InputPipeline:
    """The whole methods §2 input path for a prepared dataset: scaling, augmentation in pixel
    space (crop padding = pixel 0), the matching evaluation view, normalisation.

    ``size`` is the manifest's ``input_size`` (the network's input size), needed only by
    ``resized_crop_flip``. The pad value is pixel 0 for every channel (one per channel of
    ``normalize``)."""
    pad = (0.0,) * (len(normalize["mean"]) if normalize else 1)
    return InputPipeline(build_augment(name, pad, padding, size),
                         dict(normalize) if normalize else None,
                         build_eval_transform(name, size))


class InputPipeline:
    """Raw stored inputs → network inputs, on the device (methods §2).

    Stored arrays are either float (already normalised, e.g. MNIST-1D) or uint8 images
    [n, C, H, W]. For uint8 the pipeline scales to [0, 1], augments in pixel space (so
    crop padding is pixel 0, i.e. ``-mean/std`` after normalisation) and then normalises
    with the manifest's per-channel mean/std. ``eval`` is the un-augmented view.
    """

    def __init__(self, augment: Augment, normalize: dict[str, list[float]] | None = None,
                 eval_transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.augment = augment
        self.mean = self.std = None
        if normalize:
            self.mean = torch.tensor(normalize["mean"]).view(1, -1, 1, 1)
            self.std = torch.tensor(normalize["std"]).view(1, -1, 1, 1)
        self.eval_transform = eval_transform
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}

    @property
    def deterministic_train(self) -> bool:
        """True when the training view of an example is its evaluation view (no random
        augmentation), so it is the same in every epoch."""
        return self.augment is _identity and self.eval_transform is None

    def _scale(self, x: Tensor) -> Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x

    def _normalize(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        if x.device not in self._stats:  # once per device: no per-step copy
            self._stats[x.device] = (host_to_device(self.mean, x.device),
                                     host_to_device(self.std, x.device))
        mean, std = self._stats[x.device]
        return (x - mean) / std

    def eval(self, x: Tensor) -> Tensor:
        x = self._scale(x)
        if self.eval_transform is not None:
            x = self.eval_transform(x)
        return self._normalize(x)

    def train(self, x: Tensor, gen: torch.Generator) -> Tensor:
        return self._normalize(self.augment(self._scale(x), gen))
