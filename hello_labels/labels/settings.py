"""Settings of :func:`~hello_labels.labels.export.export_fkd`, torch-free so that ``export-fkd --help`` shows their
defaults without importing torch. Each field's metadata is also its flag (:mod:`hello_labels.options`): a new setting
is one field."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..constants import FKD_SEED, MIX_NAMES
from ..options import option


@dataclass
class ExportConfig:
    """What the label files are a function of, besides the model and the images: ``epochs`` files per batch of
    ``batch_size`` images (both required), each view a RandomResizedCrop to ``input_size`` of scale ``min_scale`` to
    ``max_scale`` and a flip drawn from ``seed``, the batch mixed by ``mix_type`` (None: unmixed; CutMix's and
    Mixup's Beta parameters ``cutmix_alpha`` / ``mixup_alpha``), images in the order of SRe2L's sampler seeded
    ``fkd_seed``. ``fp16`` stores the labels as float16; ``gvbsm_index`` appends G-VBSM's seventh element.
    ``num_workers``: DataLoader workers (the files do not depend on it)."""

    epochs: Optional[int] = option(None, "epochs of label files (one crop per image each)", type=int, required=True)
    batch_size: Optional[int] = option(None, "the batch size the student will load with", type=int, required=True)
    mix_type: Optional[str] = option(None, "mix stored with each batch, as the student's loader expects",
                                     choices=MIX_NAMES)
    fp16: bool = option(False, "store soft labels as fp16 (SRe2L --use-fp16)")
    input_size: int = option(224, "crop size the student sees (SRe2L: 224)")
    min_scale: float = option(0.08, "RandomResizedCrop min scale (SRe2L: 0.08)")
    max_scale: float = option(1.0, "RandomResizedCrop max scale")
    fkd_seed: int = option(FKD_SEED, "sampler seed the student loads with (SRe2L: 42)")
    seed: int = option(0, "seed of the crops, flips and mixes")
    gvbsm_index: bool = option(False, "append G-VBSM's seventh element (image indices)")
    num_workers: int = option(0, "DataLoader workers", flag="--workers")
    cutmix_alpha: float = 1.0
    mixup_alpha: float = 0.8
