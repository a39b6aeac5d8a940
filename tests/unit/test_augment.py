"""Batched augmentation against torchvision (methods §2).

``crop_flip_2d`` must draw every crop offset (0..2·padding in each axis) and both flips
with equal probability, as ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``,
pad with pixel 0 before normalisation, and at a given offset/flip give exactly
torchvision's crop of the padded image. ``resized_crop_flip`` must sample boxes as
``RandomResizedCrop.get_params`` does and resample as torchvision's ``resized_crop``;
its evaluation view is ``Resize(size)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from scipy import stats

from selfdistill.augment import (
    build_augment,
    build_eval_transform,
    build_input_pipeline,
    crop_flip_2d,
    resize,
    resized_crop,
    resized_crop_flip,
    sample_resized_crop_boxes,
)

torch.set_num_threads(1)
PAD, SIZE = 4, 32
CIFAR10 = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}


def _position_image(n: int) -> torch.Tensor:
    """[n, 1, 32, 32]: pixel (r, c) holds r·32 + c + 1, so 0 can only be padding."""
    code = torch.arange(SIZE * SIZE, dtype=torch.float32).view(1, 1, SIZE, SIZE) + 1
    return code.expand(n, 1, SIZE, SIZE).clone()


def _decode(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offset, column offset, flipped) of each crop, from two central pixels.

    Output pixel (16, 16) comes from padded (16 + oy, 16 + ox), or (16 + oy, 15 + ox)
    when mirrored; it is always inside the image for offsets 0..8.
    """
    v = out[:, 0, 16, 16].long() - 1
    flipped = out[:, 0, 16, 17] < out[:, 0, 16, 16]
    oy = v // SIZE + PAD - 16
    ox = v % SIZE + PAD - torch.where(flipped, 15, 16)
    return oy, ox, flipped


def test_crop_flip_every_offset_and_flip_equally_likely() -> None:
    n = 8100  # 50 per (row offset, column offset, flip) cell
    out = crop_flip_2d(PAD, (0.0,))(_position_image(n), torch.Generator().manual_seed(0))
    oy, ox, flipped = _decode(out)
    cells = (oy * (2 * PAD + 1) + ox) * 2 + flipped.long()
    counts = torch.bincount(cells, minlength=(2 * PAD + 1) ** 2 * 2).numpy()
    assert len(counts) == 162 and counts.min() > 0  # exactly 9 x 9 offsets x 2 flips
    assert stats.chisquare(counts).pvalue > 1e-3
    assert stats.binomtest(int(flipped.sum()), n).pvalue > 1e-3


def test_torchvision_draws_the_same_offsets() -> None:
    """torchvision's RandomCrop(32, padding=4) offsets on the padded image are 0..8 each,
    uniform: the same 81 cells, and they pass the same chi-square test."""
    torch.manual_seed(0)
    padded = torch.zeros(1, SIZE + 2 * PAD, SIZE + 2 * PAD)
    draws = [T.RandomCrop.get_params(padded, (SIZE, SIZE))[:2] for _ in range(4050)]
    counts = np.zeros((2 * PAD + 1, 2 * PAD + 1), int)
    for i, j in draws:
        counts[i, j] += 1
    assert counts.min() > 0 and counts.shape == (9, 9)
    assert stats.chisquare(counts.ravel()).pvalue > 1e-3


def test_crop_flip_equals_torchvision_crop_of_padded_image() -> None:
    """At the offset/flip it drew, each output equals torchvision's pad-crop-flip exactly."""
    n = 300
    x = torch.rand(n, 3, SIZE, SIZE)
    x[:, 0] = _position_image(n)[:, 0]  # channel 0 tells the offset, 1-2 are content
    out = crop_flip_2d(PAD, (0.0, 0.0, 0.0))(x, torch.Generator().manual_seed(1))
    oy, ox, flipped = _decode(out)
    assert len({(a, b) for a, b in zip(oy.tolist(), ox.tolist(), strict=True)}) > 60
    for i in range(n):
        ref = TF.crop(TF.pad(x[i], [PAD], fill=0), int(oy[i]), int(ox[i]), SIZE, SIZE)
        ref = TF.hflip(ref) if flipped[i] else ref
        assert torch.equal(out[i], ref), i


def test_crop_padding_is_pixel_zero_before_normalisation() -> None:
    """White uint8 images through the pipeline: padding = (0 - mean)/std per channel."""
    pipe = build_input_pipeline("crop_flip", PAD, CIFAR10)
    x = torch.full((64, 3, SIZE, SIZE), 255, dtype=torch.uint8)
    out = pipe.train(x, torch.Generator().manual_seed(2))
    mean, std = (torch.tensor(CIFAR10[k]).view(3, 1, 1) for k in ("mean", "std"))
    pad_value, white = (0 - mean) / std, (1 - mean) / std
    is_pad = torch.isclose(out, pad_value.expand_as(out[0]), atol=1e-6)
    is_white = torch.isclose(out, white.expand_as(out[0]), atol=1e-6)
    assert (is_pad | is_white).all() and is_pad.any() and is_white.any()
    assert (is_pad.all(1) == is_pad.any(1)).all()  # padding covers all channels at once


# ------------------------------------------------------------------ resized crop


def test_resized_crop_equals_torchvision_resized_crop() -> None:
    """Batched antialiased resampling = torchvision's per-image resized_crop (+ hflip)."""
    torch.manual_seed(0)
    x = torch.rand(48, 3, 64, 64)
    boxes = sample_resized_crop_boxes(48, 64, 64, torch.Generator().manual_seed(3))
    boxes[:4] = torch.tensor([[0, 0, 64, 64], [10, 5, 7, 40], [63, 63, 1, 1], [3, 2, 20, 21]])
    flips = torch.arange(48) % 3 == 0
    out = resized_crop(x, boxes, 32, flips)
    for i in range(48):
        ref = TF.resized_crop(x[i], *boxes[i].tolist(), [32, 32], antialias=True)
        ref = TF.hflip(ref) if flips[i] else ref
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_box_sampling_matches_random_resized_crop() -> None:
    """Marginals of (top, left, h, w) agree with RandomResizedCrop.get_params (KS tests)."""
    n = 4000
    ours = sample_resized_crop_boxes(n, 64, 64, torch.Generator().manual_seed(4)).numpy()
    torch.manual_seed(5)
    img = torch.zeros(3, 64, 64)
    ref = np.array([T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
                    for _ in range(n)])
    for k, name in enumerate(("top", "left", "h", "w")):
        assert stats.ks_2samp(ours[:, k], ref[:, k]).pvalue > 1e-3, name
    area = ours[:, 2] * ours[:, 3] / 64**2
    assert 0.08 * 0.9 < area.min() and area.max() <= 1.0
    assert (ours[:, 0] + ours[:, 2] <= 64).all() and (ours[:, 1] + ours[:, 3] <= 64).all()


@pytest.mark.parametrize("hw", [(64, 64), (10, 100), (100, 10)])
def test_box_fallback_after_ten_failed_tries(hw: tuple[int, int]) -> None:
    """Areas that never fit force torchvision's fallback central crop, box for box."""
    h, w = hw
    scale, ratio = (2.0, 3.0), (3 / 4, 4 / 3)
    ours = sample_resized_crop_boxes(5, h, w, torch.Generator().manual_seed(0), scale, ratio)
    ref = T.RandomResizedCrop.get_params(torch.zeros(1, h, w), scale, ratio)
    assert (ours == torch.tensor(ref)).all()


def test_resized_crop_flip_shapes_determinism_and_eval_resize() -> None:
    x = torch.rand(8, 3, 64, 64)
    aug = build_augment("resized_crop_flip", size=32)
    a = aug(x, torch.Generator().manual_seed(7))
    b = resized_crop_flip(32)(x, torch.Generator().manual_seed(7))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    torch.testing.assert_close(resize(32)(x), TF.resize(x, 32, antialias=True))
    assert build_eval_transform("crop_flip") is None
    with pytest.raises(ValueError, match="input size"):
        build_augment("resized_crop_flip")


def test_pipeline_for_resized_crop_flip() -> None:
    """Train and eval views of 64-px uint8 images are both 32 px, normalised."""
    norm = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    pipe = build_input_pipeline("resized_crop_flip", 0, norm, size=32)
    x = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8)
    train, evalv = pipe.train(x, torch.Generator().manual_seed(0)), pipe.eval(x)
    assert train.shape == evalv.shape == (16, 3, 32, 32)
    mean, std = (torch.tensor(norm[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    torch.testing.assert_close(evalv, (TF.resize(x.float() / 255, 32, antialias=True) - mean)
                               / std)
