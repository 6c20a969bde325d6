"""SRe2L-family shim (SRe2L, CDA, G-VBSM, LPLD: ``validate/train_FKD.py``).

Their loop reads ``batch_data`` from a loader over ``ImageFolder_FKD_MIX`` in ``fkd_load`` mode::

    images, target, flip_status, coords_status = batch_data[0]
    mix_index, mix_lam, mix_bbox, soft_label = batch_data[1:]
    images, _, _, _ = mix_aug(images, args, mix_index, mix_lam, mix_bbox)

:class:`ProjectorLabels` wraps a loader over the same dataset in ``fkd_save`` mode (fresh crops and flips, no label
files) and yields exactly that structure: it draws CutMix/Mixup parameters as SRe2L does and computes
``soft_label = projector(mixed images)`` in the main process, on the projector's device, where it yields both the
images and the label (the loop's ``.cuda()`` calls then copy nothing). Re-applying SRe2L's own
``mix_aug`` with the yielded parameters rebuilds the very images the label was computed on.

Class order: ``soft_label`` columns are the projector's classes (``config.class_names``, the teacher's order), and
SRe2L numbers classes by sorted folder name (``target`` and its validation ImageFolder), so the dataset's folders
must match the projector's classes by name in that order (see :mod:`hello_labels.labels.classes`). Mixes are seeded by epoch (``dataset.set_epoch``, ``args.start_epoch``), so a resumed
run draws what an uninterrupted one would.
"""
from __future__ import annotations

import torch

from hello_labels.labels.augment import apply_mix, draw_mix
from hello_labels.labels.classes import check_classes
from hello_labels.seeds import derive_seed

from ._load import load_projector


class _EpochDataset:
    """The loader's dataset, seen through the shim: ``set_epoch`` also tells the shim the epoch."""

    def __init__(self, dataset, shim: "ProjectorLabels"):
        self._dataset, self._shim = dataset, shim

    def set_epoch(self, epoch: int) -> None:  # train_FKD calls args.train_loader.dataset.set_epoch(epoch)
        self._shim.set_epoch(epoch)
        if hasattr(self._dataset, "set_epoch"):
            self._dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._dataset)

    def __getattr__(self, name):
        return getattr(self._dataset, name)


class ProjectorLabels:
    """``ProjectorLabels(projector, args, loader)``: ``projector`` is a LabelProjector (left unchanged), a directory
    or a Hub id; ``args`` supplies ``mix_type`` (None/'cutmix'/'mixup'), optionally ``cutmix``/``mixup`` alphas and
    ``start_epoch``; ``loader`` yields ``(images, target, flip_status, coords_status)`` batches; ``trust_remote_code``
    as :meth:`LabelProjector.from_pretrained`."""

    def __init__(self, projector, args, loader, seed: int = 0, trust_remote_code: bool = False):
        self.projector = load_projector(projector, trust_remote_code=trust_remote_code)
        self.loader = loader
        self.mix_type = getattr(args, "mix_type", None)
        self.cutmix_alpha = getattr(args, "cutmix", 1.0)
        self.mixup_alpha = getattr(args, "mixup", 0.8)
        self.seed = seed
        self._epoch = int(getattr(args, "start_epoch", 0) or 0)
        classes = getattr(getattr(loader, "dataset", None), "classes", None)
        if classes is not None:
            check_classes(classes, self.projector.config.class_names, what="training dataset", sorted_order=True)

    @property
    def dataset(self):
        return _EpochDataset(self.loader.dataset, self)

    def set_epoch(self, epoch: int) -> None:
        """Seed the next pass's mixes from ``epoch`` (as SRe2L's ``dataset.set_epoch``)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    @torch.no_grad()
    def __iter__(self):
        device, epoch = self.projector.device, self._epoch
        for number, (images, target, flip_status, coords_status) in enumerate(self.loader):
            h, w = images.shape[-2:]
            seed = derive_seed(self.seed, "mix", epoch, number)
            mix_index, mix_lam, mix_bbox = draw_mix(self.mix_type, images.shape[0], h, w, seed,
                                                    self.cutmix_alpha, self.mixup_alpha)
            # The images go to the device once: the loop's own `images.cuda()` and `soft_label.cuda()` are then
            # no-ops (no second upload of the batch, no round trip of the labels through the host).
            images = images.to(device, non_blocking=True)
            mixed = apply_mix(images, self.mix_type, mix_index, mix_lam, mix_bbox)
            soft_label = self.projector(mixed).float()
            yield [images, target, flip_status, coords_status], mix_index, mix_lam, mix_bbox, soft_label
        self._epoch = epoch + 1
