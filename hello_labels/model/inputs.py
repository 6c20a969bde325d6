"""Convert the student's augmented batch to the base's input, in-graph (differentiable, same device).

Distillation codebases normalise with their own mean/std (ImageNet's for SRe2L/RDED) at their own resolution
(224 ImageNet, 64 Tiny, 32 CIFAR, 28 Fashion-MNIST). The base wants its own normalisation and size.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HelloLabelsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    """``x [B, in_channels, h, w]`` normalised with ``(in_mean, in_std)`` -> ``[B, 3, H, W]`` normalised with
    ``(base_mean, base_std)``. One affine per channel, channel repeat for grey inputs, then resize."""

    def __init__(self, in_mean: Sequence[float], in_std: Sequence[float], base_mean: Sequence[float],
                 base_std: Sequence[float], size: Tuple[int, int], in_channels: int = 3,
                 interpolation: str = "bilinear"):
        super().__init__()
        if in_channels not in (1, 3):
            raise HelloLabelsError(f"input_channels must be 1 or 3, got {in_channels}")
        if len(in_mean) != in_channels or len(in_std) != in_channels:
            raise HelloLabelsError(f"input_mean/input_std need {in_channels} values, got {list(in_mean)} / {list(in_std)}")
        if any(s <= 0 for s in in_std):
            raise HelloLabelsError(f"input_std must be positive, got {list(in_std)}")
        if interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            raise HelloLabelsError(f"unknown interpolation '{interpolation}'")
        self.in_channels = in_channels
        self.size = tuple(size)
        self.interpolation = interpolation
        in_mean = torch.tensor(in_mean, dtype=torch.float32).expand(3)
        in_std = torch.tensor(in_std, dtype=torch.float32).expand(3)
        base_mean, base_std = torch.tensor(base_mean), torch.tensor(base_std)
        # pixel = x * in_std + in_mean; base_x = (pixel - base_mean) / base_std  ==  x * scale + shift
        self.register_buffer("scale", (in_std / base_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((in_mean - base_mean) / base_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise HelloLabelsError(f"images must be a normalised float tensor [B, {self.in_channels}, H, W], got {kind}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise HelloLabelsError(
                f"images must have shape [B, {self.in_channels}, H, W], got {list(x.shape)}")
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if tuple(x.shape[-2:]) != self.size:
            kwargs = {"antialias": True} if self.interpolation in ("bilinear", "bicubic") else {}
            if self.interpolation in ("bilinear", "bicubic"):
                kwargs["align_corners"] = False
            x = F.interpolate(x, size=self.size, mode=self.interpolation, **kwargs)
        return x
