"""RDED shim (``validation/main.py``).

RDED labels each batch online with ``softmax(teacher_model(mix_images) / T)`` on normalised, mixed images, and
wraps the teacher in ``torch.nn.DataParallel(...).cuda()``. :func:`teacher` returns the projector in that role:
merged (no parametrizations, so DataParallel replicates it like any model), frozen, in eval mode.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from hello_labels.errors import HelloLabelsError

from ._load import load_projector


class ProjectorTeacher(nn.Module):
    """``images [B, 3, H, W] -> logits [B, len(classes)]``: the projector, optionally restricted to ``classes``
    (RDED's ImageNet subsets keep only those rows of the teacher's classifier). ``classes = range(n)`` (RDED's
    value for a whole n-class dataset) must cover all the projector's classes."""

    def __init__(self, projector, classes: Optional[Sequence[int]] = None):
        super().__init__()
        self.projector = projector
        keep = None if classes is None else [int(c) for c in classes]
        if keep is not None and len(keep) != projector.num_classes and keep == list(range(len(keep))):
            # RDED's value for a whole dataset (args.classes = range(args.nclass)): the dataset has len(keep)
            # classes, so a projector of another count labels the wrong classes; a subset must be listed otherwise
            raise HelloLabelsError(f"RDED's classes = range({len(keep)}) is a {len(keep)}-class dataset but the "
                                   f"projector has {projector.num_classes} classes")
        if keep is not None and keep == list(range(projector.num_classes)):
            keep = None
        if keep is not None and (not keep or max(keep) >= projector.num_classes):
            raise HelloLabelsError(f"classes {keep[:5]}... select outside the projector's {projector.num_classes} "
                                   f"classes")
        self.register_buffer("classes", None if keep is None else torch.tensor(keep), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.projector(images)
        return logits if self.classes is None else logits[:, self.classes]


def teacher(projector, classes: Optional[Sequence[int]] = None, device=None,
            trust_remote_code: bool = False) -> ProjectorTeacher:
    """``teacher_model`` for RDED: a LabelProjector (left unchanged), directory or Hub id; ``classes`` as RDED's
    ``args.classes``; ``trust_remote_code`` as :meth:`LabelProjector.from_pretrained`."""
    projector = load_projector(projector, device, trust_remote_code=trust_remote_code)
    return ProjectorTeacher(projector, classes).eval().requires_grad_(False)
