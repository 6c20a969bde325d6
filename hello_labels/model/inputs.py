"""Convert the student's augmented batch to the base's input, in-graph (differentiable, same device).

Distillation codebases normalise with their own mean/std (ImageNet's for SRe2L/RDED) at their own resolution
(224 ImageNet, 64 Tiny, 32 CIFAR, 28 Fashion-MNIST). The base wants its own normalisation and size.

Inputs are checked where they cross into the projector, each in one line: a float tensor ``[B, C, H, W]`` on the
projector's device (fp16/bf16 input is cast to the projector's dtype), and a value range that pixels in [0, 1]
normalised with ``input_mean/std`` can give. The range check catches scale errors (0-255 input, normalising
twice), not small excursions: it allows pixels in ``[-PIXEL_MARGIN, 1 + PIXEL_MARGIN]`` (interpolation
overshoot, noise augmentation). It costs one min and one max per channel and, on an accelerator, one host sync
(``.item()``), which would stall the device's queue every batch: there it runs on the first
:data:`CHECK_FIRST` calls and then on every :data:`CHECK_EVERY`-th call, so a wrong input pipeline is caught at
its first batches and a later drift within a few hundred batches (a single bad batch in between can pass unseen).
On the CPU, where a sync costs nothing, every call is checked. ``check_range = False``
(``LabelProjector.check_inputs``) skips it; ``sample_checks`` (None: sample on accelerators) overrides the choice.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (also imported from here)
from ..errors import BadInputError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")
PIXEL_MARGIN = 1.0  # in 0-1 pixel units: 0-255 input is > 100x outside, bicubic overshoot well inside
CHECK_FIRST = 16  # on accelerators: calls checked before sampling starts
CHECK_EVERY = 256  # on accelerators: then every CHECK_EVERY-th call
# What a config may state (read once, when it is loaded or built; see docs/safety.md): means and stds are of pixels
# in [0, 1], so a mean lies in [0, 1] and a std, at most 0.5 for such pixels, in [STD_MIN, 1] (1: no scaling);
# a side above MAX_IMAGE_SIZE (a 4096x4096 image is 201 MB of float32 per image) no encoder wants.
STD_MIN = 1e-3
MAX_IMAGE_SIZE = 4096


def plausible_mean(value) -> bool:
    return 0 <= value <= 1


def plausible_std(value) -> bool:
    return STD_MIN <= value <= 1


def plausible_side(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_IMAGE_SIZE


def _compiling() -> bool:
    """Under torch.compile the check (a host sync) would break the graph: skipped there."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling and is_compiling())


class InputAdapter(nn.Module):
    """``x [B, in_channels, h, w]`` normalised with ``(in_mean, in_std)`` -> ``[B, 3, H, W]`` normalised with
    ``(base_mean, base_std)``. One affine per channel, channel repeat for grey inputs, then resize."""

    def __init__(self, in_mean: Sequence[float], in_std: Sequence[float], base_mean: Sequence[float],
                 base_std: Sequence[float], size: Tuple[int, int], in_channels: int = 3,
                 interpolation: str = "bilinear"):
        super().__init__()
        if in_channels not in (1, 3):
            raise BadInputError(f"input_channels must be 1 or 3, got {in_channels}")
        if len(in_mean) != in_channels or len(in_std) != in_channels:
            raise BadInputError(f"input_mean/input_std need {in_channels} values, got {list(in_mean)} / {list(in_std)}")
        if any(s <= 0 for s in in_std):
            raise BadInputError(f"input_std must be positive, got {list(in_std)}")
        if interpolation not in INTERPOLATIONS:
            raise BadInputError(f"unknown interpolation '{interpolation}'")
        self.in_channels = in_channels
        self.size = tuple(size)
        self.interpolation = interpolation
        in_mean = torch.tensor(in_mean, dtype=torch.float32).expand(3)
        in_std = torch.tensor(in_std, dtype=torch.float32).expand(3)
        base_mean, base_std = torch.tensor(base_mean), torch.tensor(base_std)
        # pixel = x * in_std + in_mean; base_x = (pixel - base_mean) / base_std  ==  x * scale + shift
        self.register_buffer("scale", (in_std / base_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((in_mean - base_mean) / base_std).view(1, 3, 1, 1), persistent=False)
        # the normalised values pixels in [-margin, 1 + margin] give, per input channel
        mean, std = in_mean[:in_channels], in_std[:in_channels]
        self.register_buffer("low", (-PIXEL_MARGIN - mean) / std, persistent=False)
        self.register_buffer("high", (1 + PIXEL_MARGIN - mean) / std, persistent=False)
        self.check_range = True
        self.sample_checks = None  # None: sample on accelerators, check every call on the CPU
        self.__dict__["_calls"] = [0]  # a list: DataParallel's replicas share it (they copy __dict__ shallowly)
        self.norm = ([round(float(v), 4) for v in mean], [round(float(v), 4) for v in std])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise BadInputError(f"images must be a normalised float tensor [B, {self.in_channels}, H, W], got {kind}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise BadInputError(
                f"images must have shape [B, {self.in_channels}, H, W], got {list(x.shape)}")
        if 0 in x.shape[2:]:
            raise BadInputError(f"images must have H, W > 0, got shape {list(x.shape)}")
        if x.device != self.scale.device:
            raise BadInputError(f"images are on {x.device} but the projector is on {self.scale.device}: move "
                                f"one of them (images.to(...) or projector.to(...))")
        x = x.to(self.scale.dtype)  # fp16/bf16 input runs at the projector's dtype
        if self.check_range and x.shape[0] > 0 and not _compiling() and self._check_due(x.device):
            self._check_range(x)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if tuple(x.shape[-2:]) != self.size:
            kwargs = {"antialias": True} if self.interpolation in ("bilinear", "bicubic") else {}
            if self.interpolation in ("bilinear", "bicubic"):
                kwargs["align_corners"] = False
            if kwargs and x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
                # CPU kernels have no fp16/bf16 antialiased resize: resize in float32, go on at the given dtype
                return F.interpolate(x.float(), size=self.size, mode=self.interpolation, **kwargs).to(x.dtype)
            x = F.interpolate(x, size=self.size, mode=self.interpolation, **kwargs)
        return x

    def _check_due(self, device: torch.device) -> bool:
        """Whether this call checks the range: always on the CPU, sampled on accelerators (see the module doc)."""
        calls = self.__dict__["_calls"]
        number, calls[0] = calls[0], calls[0] + 1
        sample = device.type != "cpu" if self.sample_checks is None else self.sample_checks
        return not sample or number < CHECK_FIRST or number % CHECK_EVERY == 0

    def _check_range(self, x: torch.Tensor) -> None:
        """Stop on values no [0, 1] pixel normalised with ``in_mean/in_std`` can give (one sync)."""
        with torch.no_grad():
            low, high = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
            # written so that NaN fails too
            if ((low >= self.low) & (high <= self.high)).all().item():
                return
            lo, hi = low.min().item(), high.max().item()
        raise BadInputError(
            f"images range from {lo:.4g} to {hi:.4g}, outside what pixels in [0, 1] normalised with input_mean "
            f"{self.norm[0]} / input_std {self.norm[1]} can give (with a margin of {PIXEL_MARGIN:g}: "
            f"[{self.low.min().item():.3g}, {self.high.max().item():.3g}]): 0-255 input, or normalised twice? Feed "
            f"the batch the student sees; check_inputs=False skips this check")
