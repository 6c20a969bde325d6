"""Where the soft labels to fit come from: a teacher run online, an SRe2L label directory, or one stored label
per image. Each source is a :class:`Targets`: it plans its batches (keys, mix, stored targets) and produces the
target logits of a batch."""
from __future__ import annotations

from abc import abstractmethod
from typing import Iterator, List, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import BadInputError, CorruptFileError, HelloLabelsError, first_line
from ..fingerprint import module_digest, tensor_digest
from ..seeds import derive_seed
from .fkd import LabelDir, batch_path, check_finite
from .views import AugmentedImages, BatchPlan, stream_plans


@runtime_checkable
class Targets(Protocol):
    """What ``distill``, ``fidelity`` and ``calibrate`` need from a label source (the three classes below).

    ``images``: the synthetic set's augmented views; ``mix_type``: the source's default mix (None, cutmix, mixup);
    ``fixed_batch_size``: the batch size the source dictates (a label directory's), else None;
    ``held_out_in_sample``: whether :meth:`held_out` views are ones training sees.

    The three sources inherit it (a missing method fails at construction); any other class with these members
    works too (``isinstance(obj, Targets)`` checks it structurally)."""

    images: AugmentedImages
    mix_type: Optional[str]
    fixed_batch_size: Optional[int]
    held_out_in_sample: bool

    @abstractmethod
    def to(self, device) -> "Targets":
        """Move what runs (a teacher) to ``device``; returns self."""

    @abstractmethod
    def plans(self, start: int, steps: int, rank: int = 0, world_size: int = 1,
              batch_size: int = 64) -> Iterator[BatchPlan]:
        """One plan per step in ``[start, steps)`` for process ``rank`` of ``world_size``: keys, mix, targets."""

    @abstractmethod
    def held_out(self, num_views: int, batch_size: int) -> List[BatchPlan]:
        """Plans of about ``num_views`` views for evaluation."""

    @abstractmethod
    def __call__(self, plan: BatchPlan, mixed: torch.Tensor) -> torch.Tensor:
        """Target logits ``[B, C]`` for the mixed batch ``[B, 3, H, W]`` of ``plan``."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """What identifies the source (for run records): a JSON-able dict."""


class TeacherTargets(Targets):
    """Fresh crops/flips/mixes every step; targets are ``teacher(mixed_images)`` (as SRe2L/RDED label them)."""

    fixed_batch_size = None

    def __init__(self, images: AugmentedImages, teacher: nn.Module, seed: int = 0,
                 mix_type: Optional[str] = "cutmix", cutmix_alpha: float = 1.0, mixup_alpha: float = 0.8,
                 description: str = "teacher"):
        self.images, self.teacher, self.seed = images, teacher, seed
        self.mix_type, self.cutmix_alpha, self.mixup_alpha = mix_type, cutmix_alpha, mixup_alpha
        self.description = description

    def to(self, device) -> "TeacherTargets":
        self.teacher.to(device)
        return self

    def plans(self, start: int, steps: int, rank: int = 0, world_size: int = 1,
              batch_size: int = 64) -> Iterator[BatchPlan]:
        return stream_plans(len(self.images), batch_size, self.seed, start, steps, rank, world_size,
                            mix_type=self.mix_type, image_size=self.images.size, cutmix_alpha=self.cutmix_alpha,
                            mixup_alpha=self.mixup_alpha)

    held_out_in_sample = False  # held-out views: crops from a seed the training stream never draws from

    def held_out(self, num_views: int, batch_size: int, mix_type: Optional[str] = None) -> List[BatchPlan]:
        """Views from a seed the training stream never uses: unmixed, or mixed by ``mix_type`` as training batches
        are (then whole batches: ``num_views`` rounded up to a multiple of ``batch_size``)."""
        seed = derive_seed(self.seed, "held-out")
        plans = list(stream_plans(len(self.images), batch_size, seed, 0, -(-num_views // batch_size),
                                  mix_type=mix_type, image_size=self.images.size, cutmix_alpha=self.cutmix_alpha,
                                  mixup_alpha=self.mixup_alpha))
        extra = len(plans) * batch_size - num_views
        if extra and mix_type is None:
            last = plans[-1]
            last.keys, last.indices = last.keys[:-extra], last.indices[:-extra]
        return plans

    def mixed_held_out(self, num_views: int, batch_size: int) -> Optional[List[BatchPlan]]:
        """Held-out views mixed as the training batches are (None: training is unmixed). Not part of the
        :class:`Targets` protocol: stored labels replay their own mixes, so their :meth:`held_out` holds them."""
        return self.held_out(num_views, batch_size, mix_type=self.mix_type) if self.mix_type else None

    @torch.no_grad()
    def __call__(self, plan: BatchPlan, mixed: torch.Tensor) -> torch.Tensor:
        return self.teacher(mixed).float()

    def fingerprint(self) -> dict:
        return {"source": "teacher", "teacher": self.description, "images": len(self.images),
                "seed": self.seed, "mix": self.mix_type,
                "size": self.images.size, "scale": list(self.images.scale),
                "weights": module_digest(self.teacher), "cutmix_alpha": self.cutmix_alpha,
                "mixup_alpha": self.mixup_alpha}


class StoredTargets(Targets):
    """Replays an SRe2L label directory: its crops, flips and mixes on the synthetic images, its logits."""

    def __init__(self, images: AugmentedImages, labels: LabelDir, mix_type: Optional[str] = None):
        if labels.num_images != len(images):
            raise BadInputError(f"label directory {labels.path} covers {labels.num_images} images but the image "
                                f"folder holds {len(images)}")
        self.images, self.labels = images, labels
        self.mix_type = mix_type
        self.fixed_batch_size = labels.batch_size
        self.total_files = labels.total_files
        check_cutmix_size(labels, images.size)

    def to(self, device) -> "StoredTargets":
        return self

    def _plan(self, step: int, file_number: int) -> BatchPlan:
        epoch, batch = divmod(file_number % self.total_files, self.labels.batches_per_epoch)
        b = self.labels.load(epoch, batch)
        indices = self.labels.image_order(epoch, batch)
        keys = [(i, b.coords[k], bool(b.flip[k])) for k, i in enumerate(indices)]
        mix_type = self.mix_type or ("cutmix" if b.mix_bbox is not None else "mixup" if b.mix_index is not None
                                     else None)
        if b.mix_bbox is not None and max(int(v) for v in b.mix_bbox) > self.images.size:
            raise BadInputError(f"cutmix box {[int(v) for v in b.mix_bbox]} in epoch_{epoch}/batch_{batch}.tar "
                                f"exceeds the input size {self.images.size}: pass the input size the labels "
                                f"were generated at")
        return BatchPlan(step, keys, torch.tensor(indices), (b.mix_index, b.mix_lam, b.mix_bbox), mix_type,
                         targets=b.soft_label.float(), info={"file": (epoch, batch)})

    def plans(self, start: int, steps: int, rank: int = 0, world_size: int = 1,
              batch_size: Optional[int] = None) -> Iterator[BatchPlan]:
        """Step ``s`` of rank ``r`` replays batch file number ``s * world_size + r`` (cycling through epochs)."""
        for step in range(start, steps):
            yield self._plan(step, step * world_size + rank)

    # Labels exist only for stored views, and training cycles through every stored epoch: the "held-out" views
    # are in-sample unless the projector was converted from fewer epochs (see hello_labels.train.jobs.evaluate).
    held_out_in_sample = True

    def held_out(self, num_views: int, batch_size: int) -> List[BatchPlan]:
        """Stored views of the last epoch: in the training data of a projector converted from all epochs."""
        last = (self.labels.epochs - 1) * self.labels.batches_per_epoch
        count = min(self.labels.batches_per_epoch, -(-num_views // self.fixed_batch_size))
        return [self._plan(i, last + i) for i in range(count)]

    def __call__(self, plan: BatchPlan, mixed: torch.Tensor) -> torch.Tensor:
        return plan.targets.to(mixed.device)

    def fingerprint(self) -> dict:
        return {"source": "label_dir", "path": str(self.labels.path), "epochs": self.labels.epochs,
                "images": self.labels.num_images, "batch_size": self.fixed_batch_size, "size": self.images.size,
                "mix": self.mix_type, "files": self.labels.fingerprint()}



class PrunedTargets(StoredTargets):
    """LPLD-style pruned labels: a random ``keep`` fraction of the batch files (at least one), kept whole and
    cycled through (``first=True``: the files of the first epochs instead, as a user who stored fewer epochs has).
    :meth:`at_bytes` keeps as many files as a byte budget holds."""

    def __init__(self, images: AugmentedImages, labels: LabelDir, keep: float, seed: int = 0, first: bool = False):
        super().__init__(images, labels)
        if not 0 < keep <= 1:
            raise BadInputError(f"the kept fraction of label files must be in (0, 1], got {keep!r}")
        kept = max(1, int(keep * self.total_files + 0.5))
        order = torch.arange(self.total_files) if first else \
            torch.randperm(self.total_files, generator=torch.Generator().manual_seed(seed))
        self.kept, self.seed, self.first = order[:kept].sort().values, seed, first

    @classmethod
    def at_bytes(cls, images: AugmentedImages, labels: LabelDir, nbytes: int, seed: int = 0) -> "PrunedTargets":
        """The files of ``labels`` nearest in number to ``nbytes`` at their mean file size (at least one)."""
        files = min(labels.total_files, max(1, round(nbytes * labels.total_files / labels.total_bytes())))
        return cls(images, labels, files / labels.total_files, seed)

    def kept_bytes(self) -> int:
        """Bytes of the kept batch files on disk."""
        return sum(batch_path(self.labels.path, *divmod(int(f), self.labels.batches_per_epoch)).stat().st_size
                   for f in self.kept)

    def plans(self, start: int, steps: int, rank: int = 0, world_size: int = 1,
              batch_size: Optional[int] = None) -> Iterator[BatchPlan]:
        """Step ``s`` of rank ``r`` replays kept file number ``s * world_size + r`` (cycling)."""
        for step in range(start, steps):
            yield self._plan(step, int(self.kept[(step * world_size + rank) % len(self.kept)]))

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "source": "pruned_label_dir", "kept": self.kept.tolist(), "seed": self.seed,
                "first": self.first}

# SRe2L's rand_bbox clips CutMix boxes to the image, so in most batch files a box touches the border: the largest
# box coordinate is the input size the labels were made at. A given size that no box comes within this fraction
# of, across the first files scanned, is taken to contradict the labels (chance of a false alarm with 32 box
# corners: about 1e-8; with a single batch file, where one box gives two corners, about 0.3, hence the scan of
# up to CUTMIX_SCAN_FILES files across epochs).
CUTMIX_MARGIN = 0.1
CUTMIX_SCAN_FILES = 16


def check_cutmix_size(labels: LabelDir, size: int) -> None:
    """Refuse an input ``size`` that contradicts the CutMix boxes of ``labels``: a box beyond it (labels made at a
    larger size), or no box reaching within ``CUTMIX_MARGIN`` of it (labels made at a smaller size). Scans files
    from epoch 0 on until a box reaches the border zone; label files without boxes (Mixup, none) are not checked."""
    reach, largest, scanned = (1 - CUTMIX_MARGIN) * size, 0, 0
    for number in range(min(CUTMIX_SCAN_FILES, labels.total_files)):
        epoch, batch = divmod(number, labels.batches_per_epoch)
        bbox = labels.load(epoch, batch).mix_bbox
        if bbox is None:
            return
        x1, y1, x2, y2 = (int(v) for v in bbox)
        largest, scanned = max(largest, x2, y2), scanned + 1
        if largest > size:
            raise BadInputError(f"cutmix box {[x1, y1, x2, y2]} in epoch_{epoch}/batch_{batch}.tar exceeds the "
                                f"input size {size}: pass the input size the labels were generated at")
        if largest >= reach:
            return
    if scanned:
        raise BadInputError(f"no cutmix box in the first {scanned} label files of {labels.path} reaches beyond "
                            f"{largest} px, but SRe2L's boxes touch the image border: the labels were made at "
                            f"about {largest} px, not the input size {size}; pass --input-size {largest}")


class ImageLabelTargets(Targets):
    """One stored soft label per image (small-scale methods): whole images, no augmentation."""

    fixed_batch_size = None

    def __init__(self, images: AugmentedImages, labels: torch.Tensor, seed: int = 0,
                 description: str = "per-image labels"):
        labels = torch.as_tensor(labels).float()
        if labels.ndim != 2 or labels.shape[0] != len(images):
            raise BadInputError(f"per-image labels must be [N={len(images)}, C]; got {list(labels.shape)}")
        self.images, self.labels, self.seed = images, labels, seed
        self.mix_type, self.description = None, description

    def to(self, device) -> "ImageLabelTargets":
        return self

    def plans(self, start: int, steps: int, rank: int = 0, world_size: int = 1,
              batch_size: int = 64) -> Iterator[BatchPlan]:
        for plan in stream_plans(len(self.images), batch_size, self.seed, start, steps, rank, world_size,
                                 augment=False):
            plan.targets = self.labels[plan.indices]
            yield plan

    held_out_in_sample = True  # whole images, exactly what training sees

    def held_out(self, num_views: int, batch_size: int) -> List[BatchPlan]:
        """The training images themselves (whole, unaugmented): in-sample by construction."""
        plans = []
        for start in range(0, min(num_views, len(self.images)), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self.images)))
            plans.append(BatchPlan(len(plans), [(int(i), None) for i in idx], idx, targets=self.labels[idx]))
        return plans

    def __call__(self, plan: BatchPlan, mixed: torch.Tensor) -> torch.Tensor:
        return plan.targets.to(mixed.device)

    def fingerprint(self) -> dict:
        return {"source": "image_labels", "labels": self.description, "images": len(self.images),
                "seed": self.seed, "values": tensor_digest({"labels": self.labels})}


def load_image_labels(path: str) -> torch.Tensor:
    """Per-image soft labels ``[N, C]`` from ``.pt``/``.pth`` (weights_only), ``.npy`` or ``.safetensors``."""
    import os

    import numpy as np

    if not os.path.isfile(path):
        raise BadInputError(f"label file not found: {path}")
    try:
        if path.endswith(".npy"):
            labels = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.endswith(".safetensors"):
            from safetensors.torch import load_file

            tensors = load_file(path)
            if len(tensors) != 1:
                raise CorruptFileError(f"{path} must hold exactly one tensor, holds {sorted(tensors)}")
            labels = next(iter(tensors.values()))
        else:
            labels = torch.load(path, map_location="cpu", weights_only=True)
    except HelloLabelsError:
        raise
    except Exception as err:
        raise CorruptFileError(f"cannot read label file {path} ({first_line(err)})") from err
    if not isinstance(labels, torch.Tensor) or labels.ndim != 2 or not labels.is_floating_point():
        raise CorruptFileError(f"{path} must hold one float tensor [N, C] of soft labels")
    check_finite(labels, f"label file {path}")
    return labels.float()
