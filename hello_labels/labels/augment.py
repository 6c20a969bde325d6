"""The students' augmentations, with their parameters made explicit so they can be drawn, stored and replayed.

Crops follow SRe2L's ``RandomResizedCropWithCoords``: torchvision's ``RandomResizedCrop.get_params`` on the
original image, stored as relative coords ``(i/H, j/W, h/H, w/W)``, then a horizontal flip. Mixing follows
SRe2L/RDED's ``mix_aug``: one permutation and one ``lam ~ Beta(alpha, alpha)`` per batch; CutMix pastes the box
``images[:, :, x1:x2, y1:y2]`` (``x`` indexes rows: SRe2L's ``rand_bbox`` calls dim 2 "W") from the permuted batch.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from ..constants import MIX_TYPES
from ..errors import BadInputError

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


def image_size(image) -> Tuple[int, int]:
    """``(H, W)`` of a PIL image or a ``[C, H, W]`` tensor."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    return image.size[1], image.size[0]


def draw_crop(image, scale: Sequence[float], ratio: Sequence[float], seed: int) -> Tuple[torch.Tensor, bool]:
    """torchvision's RandomResizedCrop parameters and a flip, drawn from ``seed``: (relative coords ``[4]``
    float32, flip).

    Drawn from a private ``torch.Generator`` seeded ``seed``: the same numbers ``torch.manual_seed(seed)`` then
    ``RandomResizedCrop.get_params`` and ``torch.rand(1) < 0.5`` give, without touching the global RNG.
    """
    height, width = image_size(image)
    gen = torch.Generator().manual_seed(int(seed))
    i, j, h, w = _crop_params(height, width, scale, ratio, gen)
    flip = bool(torch.rand(1, generator=gen) < 0.5)
    return torch.tensor([i / height, j / width, h / height, w / width], dtype=torch.float32), flip


@lru_cache(maxsize=16)
def _log_ratio(ratio: Tuple[float, float]) -> Tuple[float, float]:
    low, high = torch.log(torch.tensor(ratio)).tolist()  # float32, as torchvision computes it
    return low, high


def _crop_params(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                 gen: torch.Generator) -> Tuple[int, int, int, int]:
    """``RandomResizedCrop.get_params`` with an explicit generator (its global-RNG loop, draw for draw: torchvision
    ``transforms/transforms.py``, v0.29): up to 10 tries of area ~ U(scale), log-ratio ~ U(log ratio), then the
    centre crop clamped to ``ratio``."""
    area = height * width
    log_low, log_high = _log_ratio((float(ratio[0]), float(ratio[1])))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_low, log_high, generator=gen)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=gen).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=gen).item())
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_box(coords: torch.Tensor, height: int, width: int) -> Tuple[int, int, int, int]:
    """Pixel ``(top, left, h, w)`` of relative coords, rounded as PIL's ``crop`` rounds SRe2L's float box."""
    top, left = float(coords[0]) * height, float(coords[1]) * width
    bottom, right = top + float(coords[2]) * height, left + float(coords[3]) * width
    top, left, bottom, right = round(top), round(left), round(bottom), round(right)
    return top, left, max(1, bottom - top), max(1, right - left)


def crop_flip(image, coords: torch.Tensor, flip: bool, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Crop ``coords`` out of a PIL image or ``[C, H, W]`` tensor, resize to ``size``, flip; float ``[C, S, S]``
    in 0-1."""
    height, width = image_size(image)
    top, left, h, w = crop_box(coords, height, width)
    if not isinstance(image, torch.Tensor):
        image = TF.pil_to_tensor(image)
    out = TF.resized_crop(image, top, left, h, w, [size, size], interpolation=_INTERPOLATION[interpolation],
                          antialias=True)
    if flip:
        out = TF.horizontal_flip(out)
    return TF.to_dtype(out, torch.float32, scale=True)


def draw_mix(mix_type: Optional[str], batch_size: int, height: int, width: int, seed: int,
             cutmix_alpha: float = 1.0, mixup_alpha: float = 0.8):
    """One batch's mix parameters ``(index [B] int64 | None, lam float | None, bbox [x1, y1, x2, y2] | None)``.

    ``bbox`` holds numpy integers, as SRe2L stores it.
    """
    if mix_type not in MIX_TYPES:
        raise BadInputError(f"unknown mix type {mix_type!r}; expected one of {list(MIX_TYPES)}")
    if mix_type is None:
        return None, None, None
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    index = torch.randperm(batch_size, generator=gen)
    if mix_type == "mixup":
        return index, float(rng.beta(mixup_alpha, mixup_alpha)), None
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha))
    return index, lam, _cutmix_box(height, width, lam, rng)


def _cutmix_box(dim2: int, dim3: int, lam: float, rng) -> List[np.int64]:
    cut = np.sqrt(1.0 - lam)
    cut2, cut3 = int(dim2 * cut), int(dim3 * cut)
    c2, c3 = rng.integers(dim2), rng.integers(dim3)
    return [np.clip(c2 - cut2 // 2, 0, dim2), np.clip(c3 - cut3 // 2, 0, dim3),
            np.clip(c2 + cut2 // 2, 0, dim2), np.clip(c3 + cut3 // 2, 0, dim3)]


def apply_mix(images: torch.Tensor, mix_type: Optional[str], index, lam, bbox) -> torch.Tensor:
    """Mixed copy of ``images [B, C, H, W]`` (the input is not modified)."""
    if mix_type is None or index is None:
        return images
    index = torch.as_tensor(index, device=images.device).long()
    if index.shape[0] != images.shape[0]:
        raise BadInputError(f"mix index has {index.shape[0]} entries for a batch of {images.shape[0]}")
    if mix_type == "mixup":
        return lam * images + (1 - lam) * images[index]
    x1, y1, x2, y2 = (int(v) for v in bbox)
    mixed = images.clone()
    mixed[:, :, x1:x2, y1:y2] = images[index, :, x1:x2, y1:y2]
    return mixed


def mix_weight(mix, size: Optional[Sequence[int]] = None) -> Optional[float]:
    """Weight of the unpermuted images in a mixed batch: ``lam`` for Mixup; for CutMix ``1 - box area / image
    area`` of the box as pasted (``size``: ``(H, W)`` of the mixed images), since the drawn ``lam`` ignores the
    clipping at the borders (timm and SRe2L's students recompute it the same way). None when unmixed."""
    index, lam, bbox = mix
    if index is None:
        return None
    if bbox is None:
        return float(lam)
    if size is None:
        raise BadInputError("a CutMix batch needs the image size to weight its labels by the pasted area")
    height, width = (int(v) for v in size)
    x1, y1, x2, y2 = (int(v) for v in bbox)
    rows = max(0, min(x2, height) - max(x1, 0))
    cols = max(0, min(y2, width) - max(y1, 0))
    return 1.0 - rows * cols / (height * width)


def mixed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mix,
                        size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Cross-entropy against the hard labels of a mixed batch: ``w·CE(y) + (1-w)·CE(y[index])`` with ``w`` from
    :func:`mix_weight` (``size``: ``(H, W)`` of the mixed images, needed for CutMix)."""
    index = mix[0]
    ce = F.cross_entropy(logits, labels)
    if index is None:
        return ce
    w = mix_weight(mix, size)
    return w * ce + (1 - w) * F.cross_entropy(logits, labels[torch.as_tensor(index, device=labels.device)])


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel for ``[..., C, H, W]``."""
    return TF.normalize(images, list(mean), list(std))
