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
"""
from __future__ import annotations

import torch

from hello_labels.labels.augment import apply_mix, draw_mix

from ._load import load_projector


class ProjectorLabels:
    """``ProjectorLabels(projector, args, loader)``: ``projector`` is a LabelProjector, a directory or a Hub id;
    ``args`` supplies ``mix_type`` (None/'cutmix'/'mixup') and optionally ``cutmix``/``mixup`` alphas;
    ``loader`` yields ``(images, target, flip_status, coords_status)`` batches."""

    def __init__(self, projector, args, loader, seed: int = 0):
        self.projector = load_projector(projector)
        self.loader = loader
        self.mix_type = getattr(args, "mix_type", None)
        self.cutmix_alpha = getattr(args, "cutmix", 1.0)
        self.mixup_alpha = getattr(args, "mixup", 0.8)
        self.seed = seed
        self._epoch = 0

    @property
    def dataset(self):  # train_FKD calls args.train_loader.dataset.set_epoch(epoch)
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    @torch.no_grad()
    def __iter__(self):
        device = self.projector.device
        for number, (images, target, flip_status, coords_status) in enumerate(self.loader):
            h, w = images.shape[-2:]
            mix_seed = (self.seed * 1_000_003 + self._epoch * 65_537 + number) % (2 ** 62)
            mix_index, mix_lam, mix_bbox = draw_mix(self.mix_type, images.shape[0], h, w, mix_seed,
                                                    self.cutmix_alpha, self.mixup_alpha)
            # The images go to the device once: the loop's own `images.cuda()` and `soft_label.cuda()` are then
            # no-ops (no second upload of the batch, no round trip of the labels through the host).
            images = images.to(device, non_blocking=True)
            mixed = apply_mix(images, self.mix_type, mix_index, mix_lam, mix_bbox)
            soft_label = self.projector(mixed).float()
            yield [images, target, flip_status, coords_status], mix_index, mix_lam, mix_bbox, soft_label
        self._epoch += 1
