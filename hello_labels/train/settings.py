"""Settings of the training jobs (:mod:`.distill`, :mod:`.refine`), torch-free so that the command line can show
their defaults in ``--help`` without importing torch. Each field's metadata is also its flag
(:mod:`hello_labels.options`): a new setting is one field."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..constants import ADAPTER_DTYPES, LOSSES, MIX_NAMES, PRECISIONS
from ..options import fraction, option


@dataclass
class DistillConfig:
    """Training settings. ``loss``: ``mse`` on logits (the paper's) or ``kl`` at ``temperature`` (what SRe2L/RDED
    students use); ``ce_weight`` adds the paper's ``λ·CE(hard label)``. ``batch_size`` is global (all ranks)."""

    steps: int = option(1000, "optimiser steps")
    batch_size: int = option(64, "global batch size (all processes)")
    lr: float = option(1e-3, "AdamW learning rate (peak, after warmup)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    warmup_steps: int = option(50, "linear warmup, then cosine decay")
    grad_clip: float = option(1.0, "gradient norm clip (0: none)")
    loss: str = option("mse", "mse on logits (the paper's) or kl at -T", choices=LOSSES)
    temperature: float = option(4.0, "temperature of the KL loss and of the reported KL", aliases=("-T",))
    ce_weight: float = option(0.0, "λ of the paper's λ·CE(hard label) term")
    precision: str = option("auto", "autocast precision (auto: bf16 on GPUs that have it, else fp32)",
                            choices=PRECISIONS)
    seed: int = option(0, "seed of views, mixes and initialisation")
    checkpoint_every: int = option(100, "steps between resumable checkpoints (train_state.pt)")
    eval_every: int = option(0, "steps between fidelity checks (0: none)")
    eval_views: int = option(256, "held-out views scored at the end (0: skip the final fidelity check)")
    num_workers: int = option(0, "DataLoader workers", flag="--workers")
    save_dtype: str = option("float32", "adapter file format: float32/float16/bfloat16, or int8/int4 (quantized)",
                             choices=ADAPTER_DTYPES)
    calibrate: bool = option(True, "skip fitting the head's scale/bias at step 0", flag="--no-calibrate")

    # settings a resumed run may change without changing the result
    RESUMABLE = ("checkpoint_every", "eval_every", "eval_views", "num_workers", "save_dtype")


@dataclass
class RefineConfig:
    """Settings of :func:`refine`. ``epsilon``: per-pixel budget in 0-1 units (8/255); ``lr``: Adam step size in
    0-1 pixel units; each step scores ``views`` augmented views of every image of a ``batch_size`` batch.
    ``loss``: ``kl`` at ``temperature`` (T²-scaled) or ``mse`` of logits. ``feature_weight`` weighs the patch
    feature term (only with a patch map). ``eval_views`` held-out unmixed views score before/after."""

    steps: int = option(50, "optimisation steps per batch of images")
    lr: float = option(1 / 255, "Adam step in 0-1 pixel units (default: 1/255)", type=fraction)
    epsilon: float = option(8 / 255, "per-pixel budget (default: 8/255)", type=fraction)
    views: int = option(4, "augmented views per image per step")
    batch_size: int = option(32, "images per batch")
    loss: str = option("kl", "kl at -T or mse of logits", choices=LOSSES)
    temperature: float = option(1.0, "temperature of the KL, optimised and reported", aliases=("-T",))
    mix_type: Optional[str] = option("cutmix", "mix applied to the views each step", choices=MIX_NAMES)
    input_size: int = option(224, "crop size the student sees (SRe2L: 224)")
    min_scale: float = option(0.08, "RandomResizedCrop min scale (SRe2L: 0.08)")
    max_scale: float = option(1.0, "RandomResizedCrop max scale")
    feature_weight: float = option(1.0, "weight of the patch feature term")
    jpeg_quality: int = option(95, "quality JPEG files are re-encoded at")
    seed: int = option(0, "seed of views and mixes")
    eval_views: int = option(512, "held-out views scored before/after")
    eval_batch_size: int = 64

    # settings a resumed run may change without changing the refined files
    RESUMABLE = ("eval_views", "eval_batch_size")
