"""A soft-label setting and the pure byte arithmetic of its stored labels (no I/O).

``LabelSetting`` describes an SRe2L-style relabelling run (classes, images, epochs, batch size, logit dtype, mix
type); the functions here turn it into bytes of logits, top-k values and indices, and per-crop metadata.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..errors import BadInputError
from ..labels.augment import MIX_TYPES
from ..model.config import MAX_CLASSES
from ..model.projector import DTYPES

TOPK_INT16_MAX_CLASSES = 32767  # class indices 0..32766 fit int16
NO_MIX = "none"  # how users spell the mix type None (CLI, JSON)

# Per-crop metadata SRe2L stores next to the logits, and per-file mix parameters (SRe2L's list layout).
COORDS_BYTES = 4 * 4  # coords [B, 4] float32
FLIP_BYTES = 1  # flip_status [B] bool
MIX_INDEX_BYTES = 8  # mix_index [B] int64
GVBSM_INDEX_BYTES = 8  # G-VBSM's image indices [B] int64
LAM_BYTES = 8  # mix_lam: a Python float (float64)
BBOX_BYTES = 4 * 8  # mix_bbox: 4 numpy int64 scalars

BLOCK = 4096  # the usual filesystem block: what ``du`` reports is whole blocks
MAX_FILE_LOGITS_BYTES = 2 ** 30  # one batch file's logits: measuring the framing writes one such file in memory


def positive_int(name: str, value) -> int:
    """``value`` as an int, or a one-line error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def mix_name(mix: Optional[str]) -> str:
    """The user-facing spelling of a mix type: ``None`` -> ``"none"``."""
    return NO_MIX if mix is None else mix


@dataclass(frozen=True)
class FileGroup:
    """Batch files whose ``torch.save`` framing is identical: same number of crops ``rows`` and same number of
    digits in the batch index (the file name is recorded inside the archive). ``index`` is one such batch
    index, ``count`` the number of such files over all epochs."""

    rows: int
    index: int
    count: int


@dataclass(frozen=True)
class LabelSetting:
    """A soft-label run: ``images`` synthetic images (``classes`` x images per class), relabelled for ``epochs``
    epochs in batches of ``batch_size`` (one file per batch), logits stored as ``dtype``; ``mix`` is the mix
    augmentation whose parameters are stored (one of ``labels.augment.MIX_TYPES``: ``cutmix``: index, lam,
    bbox; ``mixup``: index, lam; ``None``, also spelt ``"none"``: nothing); ``gvbsm_index`` adds G-VBSM's
    per-crop image indices."""

    classes: int
    images: int
    epochs: int
    batch_size: int
    dtype: str = "float32"
    mix: Optional[str] = "cutmix"
    gvbsm_index: bool = False

    def __post_init__(self):
        for name in ("classes", "images", "epochs", "batch_size"):
            positive_int(name.replace("_", " "), getattr(self, name))
        if self.classes > MAX_CLASSES:  # before any name list, tensor or model of that many classes is built
            raise BadInputError(f"classes must be at most {MAX_CLASSES:,} (what a projector config may state), got "
                                f"{self.classes:,}")
        if self.dtype not in DTYPES:
            raise BadInputError(f"label dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.mix == NO_MIX:  # the user's spelling; inside, no mix is None as everywhere in the library
            object.__setattr__(self, "mix", None)
        if self.mix not in MIX_TYPES:
            raise BadInputError(f"mix type must be one of {[mix_name(m) for m in MIX_TYPES]}, got {self.mix!r}")
        size = min(self.batch_size, self.images) * self.classes * self.itemsize
        if size > MAX_FILE_LOGITS_BYTES:  # 10^15 classes would otherwise allocate names and tensors until OOM
            raise BadInputError(f"a batch file of {min(self.batch_size, self.images)} x {self.classes} {self.dtype} "
                                f"logits would hold {size:,} bytes, over the {MAX_FILE_LOGITS_BYTES:,} this tool "
                                f"measures in memory: fewer classes or a smaller batch size")

    @classmethod
    def from_ipc(cls, classes: int, ipc: int, epochs: int = 300, batch_size: int = 1024,
                 **kwargs) -> "LabelSetting":
        """``classes`` x ``ipc`` images per class (defaults: SRe2L's ImageNet relabelling, 300 epochs of
        batch 1024)."""
        classes = positive_int("classes", classes)
        return cls(classes=classes, images=classes * positive_int("images per class", ipc), epochs=epochs,
                   batch_size=batch_size, **kwargs)

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def crops(self) -> int:
        """Stored label rows: one augmented crop per image per epoch."""
        return self.images * self.epochs

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.images // self.batch_size)

    @property
    def files(self) -> int:
        return self.batches_per_epoch * self.epochs

    @property
    def last_batch(self) -> int:
        return self.images - self.batch_size * (self.batches_per_epoch - 1)

    def file_groups(self) -> List[FileGroup]:
        """Every batch file, grouped by crop count and digits of the batch index (see :class:`FileGroup`)."""
        groups = []
        last = self.batches_per_epoch - 1
        for digits in range(1, len(str(last)) + 1):
            lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), min(10 ** digits, last + 1)
            full = hi - lo - (1 if lo <= last < hi and self.last_batch != self.batch_size else 0)
            if full:
                groups.append(FileGroup(self.batch_size, lo, full * self.epochs))
            if lo <= last < hi and self.last_batch != self.batch_size:
                groups.append(FileGroup(self.last_batch, last, self.epochs))
        return groups

    def describe(self) -> str:
        ipc = self.images / self.classes
        per_class = f"{ipc:,.0f}" if ipc == int(ipc) else f"{ipc:,.2f}"
        mix = {"cutmix": "cutmix metadata (index, lam, bbox)", "mixup": "mixup metadata (index, lam)",
               None: "no mix metadata"}[self.mix]
        return (f"{self.classes:,} classes x {per_class} images/class = {self.images:,} images, {self.epochs:,} "
                f"epochs, batch {self.batch_size:,} -> {self.batches_per_epoch:,} files/epoch, {self.files:,} "
                f"files; {self.dtype} logits; {mix}" + ("; G-VBSM image indices" if self.gvbsm_index else ""))


@dataclass
class DiskUsage:
    """An existing directory's batch files: ``bytes`` (sum of file sizes) and ``allocated`` (filesystem blocks,
    as ``du`` reports them)."""

    bytes: int
    allocated: int


def logits_bytes(s: LabelSetting) -> int:
    """``[crops, classes]`` logits at the setting's dtype."""
    return s.crops * s.classes * s.itemsize


def crop_metadata_bytes(s: LabelSetting) -> Tuple[int, int]:
    """``(per-crop bytes, per-file bytes)`` of the augmentation metadata stored beside the labels."""
    per_crop = COORDS_BYTES + FLIP_BYTES + (MIX_INDEX_BYTES if s.mix is not None else 0) + (
        GVBSM_INDEX_BYTES if s.gvbsm_index else 0)
    per_file = (LAM_BYTES if s.mix is not None else 0) + (BBOX_BYTES if s.mix == "cutmix" else 0)
    return per_crop, per_file


def metadata_bytes(s: LabelSetting) -> int:
    per_crop, per_file = crop_metadata_bytes(s)
    return s.crops * per_crop + s.files * per_file


DEFAULT_TOP_K = 10  # FKD/LPQLD's usual k


def check_top_k(s: LabelSetting, k) -> int:
    """``k`` checked against ``s``'s classes; None: :data:`DEFAULT_TOP_K`, or the class count if fewer."""
    if k is None:
        return min(DEFAULT_TOP_K, s.classes)
    k = positive_int("top-k", k)
    if k > s.classes:
        raise BadInputError(f"top-k {k} exceeds the {s.classes} classes")
    return k


def topk_index_dtype(classes: int) -> torch.dtype:
    """int16 when every class index fits (classes <= 32767), else int32."""
    return torch.int16 if classes <= TOPK_INT16_MAX_CLASSES else torch.int32


def topk_value_bytes(s: LabelSetting, k: int) -> int:
    return s.crops * k * s.itemsize


def topk_index_bytes(s: LabelSetting, k: int) -> int:
    return s.crops * k * topk_index_dtype(s.classes).itemsize


def file_payload_bytes(s: LabelSetting, rows: int, layout: str = "full", k: int = 0) -> int:
    """Tensor and scalar bytes of one batch file of ``rows`` crops (no framing)."""
    per_crop, per_file = crop_metadata_bytes(s)
    labels = rows * s.classes * s.itemsize if layout == "full" else (
        rows * k * (s.itemsize + topk_index_dtype(s.classes).itemsize))
    return labels + rows * per_crop + per_file


def allocated_bytes(file_bytes: int, block: int = BLOCK) -> int:
    """Space a file of ``file_bytes`` occupies on a filesystem with ``block``-byte blocks."""
    return -(-file_bytes // block) * block
