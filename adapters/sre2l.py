"""SRe2L-family shim: SRe2L and CDA (``validate/train_FKD.py``), LPLD, G-VBSM, EDC (``examples/``: one diff per script).

SRe2L's loop reads ``batch_data`` from a loader over ``ImageFolder_FKD_MIX`` in ``fkd_load`` mode::

    images, target, flip_status, coords_status = batch_data[0]
    mix_index, mix_lam, mix_bbox, soft_label = batch_data[1:]
    images, _, _, _ = mix_aug(images, args, mix_index, mix_lam, mix_bbox)

:class:`ProjectorLabels` wraps a loader over the same dataset in ``fkd_save`` mode (fresh crops and flips, no label
files) and yields that structure (``layout``, see :data:`LAYOUTS`): it draws CutMix/Mixup parameters as SRe2L does and
computes ``soft_label = projector(mixed images)`` in the main process, on the projector's device, where it yields both
the images and the label (the loop's ``.cuda()`` calls then copy nothing). Re-applying the codebase's own ``mix_aug``
with the yielded parameters rebuilds the very images the label was computed on.

Class order: ``soft_label`` columns are the projector's classes (``config.class_names``, the teacher's order), and
SRe2L numbers classes by sorted folder name, so the dataset's folders must match the projector's classes by name in
that order (see :mod:`hello_labels.labels.classes`). Mixes (and a reshuffled order) are seeded by epoch
(``dataset.set_epoch``, ``sampler.set_epoch``, ``args.start_epoch``), so a resumed run draws what an uninterrupted one
would. The dataset's own ``set_epoch`` is not called: G-VBSM's reads label files there.

DDP: G-VBSM's and EDC's ImageNet scripts load the whole batch on every process and train each on its own slices
(``soft_label[start:end]``). With ``per_slice=True`` the yielded ``soft_label`` is a :class:`SliceLabels`: each slice
is labelled when the loop takes it, so each process runs the projector on its own rows only.
"""
from __future__ import annotations

import logging
from functools import partial

import torch

from hello_labels.errors import HelloLabelsError
from hello_labels.labels.augment import apply_mix, draw_mix
from hello_labels.labels.classes import check_classes
from hello_labels.labels.order import reshuffled
from hello_labels.seeds import derive_seed

from ._load import load_projector, refuses_in_one_line

log = logging.getLogger(__name__)


def _nested(fields, mix_index, mix_lam, mix_bbox, soft_label):
    """SRe2L, CDA, LPLD: ``batch_data[0]`` is the loader's batch as it came (LPLD's 5th field, the index, included)."""
    return [list(fields), mix_index, mix_lam, mix_bbox, soft_label]


def _flat(fields, mix_index, mix_lam, mix_bbox, soft_label, keep=4):
    """G-VBSM, EDC: ``batch_data[:keep]`` and ``batch_data[keep:]`` (fields past ``keep``, the index, are dropped);
    the box comes per sample (the loop checks that all samples share one and takes the first); Mixup, which has no
    box, gets an empty one so that check passes."""
    box = [0, 0, 0, 0] if mix_bbox is None else [int(v) for v in mix_bbox]
    boxes = [torch.full((len(fields[0]),), v, dtype=torch.int64) for v in box]
    return [*fields[:keep], mix_index, mix_lam, boxes, soft_label]


# How each codebase's loop unpacks a batch. EDC's CIFAR and Tiny-ImageNet scripts are G-VBSM's; its ImageNet scripts
# keep a fifth field (the patch-shuffle indices).
LAYOUTS = {"sre2l": _nested, "gvbsm": _flat, "edc-imagenet": partial(_flat, keep=5)}


@refuses_in_one_line
def require(args, **settings) -> None:
    """Refuse settings a projector cannot serve: ``require(args, granularity="epoch")`` raises a one-line
    HelloLabelsError when ``args.granularity`` is anything else (uncaught, the script ends with that line)."""
    for name, wanted in settings.items():
        value = getattr(args, name, wanted)
        if value != wanted:
            raise HelloLabelsError(f"--{name} {value} needs the stored label files; with --projector only "
                                   f"--{name} {wanted} is supported")


class SliceLabels:
    """``soft_label`` labelled by the slice the loop takes: ``labels[start:end]`` is ``projector(mixed[start:end])``
    in float32, computed then. ``.cuda()``, ``.to()`` and ``.float()`` return a SliceLabels that applies them to each
    slice taken (the loop's ``soft_label.cuda().float()`` labels nothing); ``len`` and ``shape`` are the batch's."""

    def __init__(self, projector, mixed: torch.Tensor, then=()):
        self.projector, self.mixed, self._then = projector, mixed, tuple(then)

    def __len__(self) -> int:
        return self.mixed.shape[0]

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), self.projector.num_classes))

    def _and_then(self, method, *args, **kwargs) -> "SliceLabels":
        return SliceLabels(self.projector, self.mixed, (*self._then, (method, args, kwargs)))

    def cuda(self, *args, **kwargs) -> "SliceLabels":
        return self._and_then("cuda", *args, **kwargs)

    def to(self, *args, **kwargs) -> "SliceLabels":
        return self._and_then("to", *args, **kwargs)

    def float(self) -> "SliceLabels":
        return self._and_then("float")

    @torch.no_grad()
    def __getitem__(self, rows) -> torch.Tensor:
        if not isinstance(rows, slice):
            raise HelloLabelsError(f"soft_label labels the rows the loop takes as a slice (soft_label[start:end]), "
                                   f"got an index of type {type(rows).__name__}; without per_slice=True the shim "
                                   f"yields the whole batch's labels")
        labels = self.projector(self.mixed[rows]).float()
        for method, args, kwargs in self._then:
            labels = getattr(labels, method)(*args, **kwargs)
        return labels


class _Epochs:
    """The loader's dataset or sampler, seen through the shim: ``set_epoch`` tells the shim the epoch."""

    def __init__(self, inner, shim: "ProjectorLabels", forward: bool):
        self._inner, self._shim, self._forward = inner, shim, forward

    def set_epoch(self, epoch: int) -> None:
        self._shim.set_epoch(epoch)
        if self._forward and hasattr(self._inner, "set_epoch"):
            self._inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self):
        return iter(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class ProjectorLabels:
    """``ProjectorLabels(projector, args, loader)``: ``projector`` is a LabelProjector (left unchanged), a directory
    or a Hub id; ``args`` supplies ``mix_type`` (None/'cutmix'/'mixup'), optionally ``cutmix``/``mixup`` alphas and
    ``start_epoch``; ``loader`` yields ``(images, target, flip_status, coords_status, *extra)`` batches; ``layout``
    names how the loop unpacks a batch (:data:`LAYOUTS`); ``device``: where labels are computed (default CUDA if
    available; a DDP worker passes its own GPU); ``per_slice``: ``soft_label`` is a :class:`SliceLabels`, for a
    loop that trains each process on slices of the batch; ``trust_remote_code`` as
    :meth:`LabelProjector.from_pretrained`.
    A loader with ``shuffle=False`` (it replayed the order stored with the label files) is rebuilt to draw a fresh
    random order per epoch, seeded, and a log line says so."""

    @refuses_in_one_line
    def __init__(self, projector, args, loader, seed: int = 0, trust_remote_code: bool = False,
                 layout: str = "sre2l", device=None, per_slice: bool = False):
        if layout not in LAYOUTS:
            raise HelloLabelsError(f"unknown batch layout {layout!r}; expected one of {sorted(LAYOUTS)}")
        self.projector = load_projector(projector, device=device, trust_remote_code=trust_remote_code)
        self._pack, self.per_slice = LAYOUTS[layout], per_slice
        self.mix_type = getattr(args, "mix_type", None)
        self.cutmix_alpha = getattr(args, "cutmix", 1.0)
        self.mixup_alpha = getattr(args, "mixup", 0.8)
        self.seed = seed
        self._epoch = int(getattr(args, "start_epoch", 0) or 0)
        classes = getattr(getattr(loader, "dataset", None), "classes", None)
        if classes is not None:
            check_classes(classes, self.projector.config.class_names, what="training dataset", sorted_order=True)
        shuffled = reshuffled(loader, derive_seed(seed, "order"))
        if shuffled is not None:
            log.warning("hello-labels: the training loader has shuffle=False (it replays the order stored with the "
                        "label files); with a projector its batches are drawn in a fresh random order per epoch "
                        "(seeded)")
            loader = shuffled
        self.loader = loader

    @property
    def dataset(self):
        return _Epochs(self.loader.dataset, self, forward=False)

    @property
    def sampler(self):
        return _Epochs(self.loader.sampler, self, forward=True)

    def set_epoch(self, epoch: int) -> None:
        """Seed the next pass's mixes (and a reshuffled order) from ``epoch`` (as SRe2L's ``dataset.set_epoch``)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    @torch.no_grad()
    def __iter__(self):
        device, epoch = self.projector.device, self._epoch
        if hasattr(getattr(self.loader, "sampler", None), "set_epoch"):
            self.loader.sampler.set_epoch(epoch)
        for number, (images, *fields) in enumerate(self.loader):
            h, w = images.shape[-2:]
            seed = derive_seed(self.seed, "mix", epoch, number)
            mix_index, mix_lam, mix_bbox = draw_mix(self.mix_type, images.shape[0], h, w, seed,
                                                    self.cutmix_alpha, self.mixup_alpha)
            # The images go to the device once: the loop's own `images.cuda()` and `soft_label.cuda()` are then
            # no-ops (no second upload of the batch, no round trip of the labels through the host).
            images = images.to(device, non_blocking=True)
            mixed = apply_mix(images, self.mix_type, mix_index, mix_lam, mix_bbox)
            # per slice: `mixed` is a copy (or, unmixed, the images), so the loop's in-place mix_aug leaves it alone
            soft_label = SliceLabels(self.projector, mixed) if self.per_slice else self.projector(mixed).float()
            yield self._pack([images, *fields], mix_index, mix_lam, mix_bbox, soft_label)
        self._epoch = epoch + 1
