"""Batched, on-device training augmentation (SPEC §2).

Each augmenter maps a batch ``x`` [n, C, *spatial] of already-normalised inputs to an
augmented batch of the same shape, drawing its randomness from a dedicated
``torch.Generator`` on the CPU (so runs are reproducible and resumable on any device).
Random crop with zero padding in *pixel* space is padding with ``-mean/std`` after
normalisation; every crop offset in ``[0, 2·padding]`` and both flips are equally likely,
as in torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["AUGMENTATIONS", "Augment", "build_augment", "crop_flip_2d", "shift_1d"]

Augment = Callable[[Tensor, torch.Generator], Tensor]


def _identity(x: Tensor, gen: torch.Generator) -> Tensor:
    return x


def crop_flip_2d(padding: int, pad_value: Sequence[float], flip: bool = True) -> Augment:
    """Random crop of the original size after padding by ``padding`` with ``pad_value``
    (one per channel, the normalised image of pixel 0), then a random horizontal flip."""

    def apply(x: Tensor, gen: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        fill = torch.as_tensor(pad_value, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        padded = fill.expand(n, c, h + 2 * padding, w + 2 * padding).clone()
        padded[:, :, padding:padding + h, padding:padding + w] = x
        off = torch.randint(0, 2 * padding + 1, (2, n), generator=gen).to(x.device)  # [2, n]
        rows = off[0].view(n, 1) + torch.arange(h, device=x.device)  # [n, h]
        cols = off[1].view(n, 1) + torch.arange(w, device=x.device)  # [n, w]
        if flip:
            flips = torch.rand(n, generator=gen).to(x.device) < 0.5  # [n]
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
        off = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen).to(x.device)
        idx = off.view(n, 1) + torch.arange(length, device=x.device)  # [n, L]
        return padded.gather(2, idx.view(n, 1, length).expand(n, c, length))

    return apply


def build_augment(name: str, pad_value: Sequence[float] = (0.0,), padding: int = 4) -> Augment:
    """Augmenter by config name: ``none``, ``crop_flip`` (SPEC §2 CIFAR), ``shift1d``."""
    if name == "none":
        return _identity
    if name == "crop_flip":
        return crop_flip_2d(padding, pad_value, flip=True)
    if name == "shift1d":
        return shift_1d(padding, float(pad_value[0]))
    raise KeyError(f"augment: unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")


AUGMENTATIONS = ("none", "crop_flip", "shift1d")


class InputPipeline:
    """Raw stored inputs → network inputs, on the device (SPEC §2).

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

    def _scale(self, x: Tensor) -> Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x

    def _normalize(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    def eval(self, x: Tensor) -> Tensor:
        x = self._scale(x)
        if self.eval_transform is not None:
            x = self.eval_transform(x)
        return self._normalize(x)

    def train(self, x: Tensor, gen: torch.Generator) -> Tensor:
        return self._normalize(self.augment(self._scale(x), gen))
