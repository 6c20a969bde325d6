"""Settings of the training jobs (:mod:`.distill`, :mod:`.refine`), torch-free so that the command line can show
their defaults in ``--help`` without importing torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class DistillConfig:
    """Training settings. ``loss``: ``mse`` on logits (the paper's) or ``kl`` at ``temperature`` (what SRe2L/RDED
    students use); ``ce_weight`` adds the paper's ``λ·CE(hard label)``. ``batch_size`` is global (all ranks)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    loss: str = "mse"
    temperature: float = 4.0
    ce_weight: float = 0.0
    precision: str = "auto"
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 0
    eval_views: int = 256
    num_workers: int = 0
    save_dtype: str = "float32"
    calibrate: bool = True

    # settings a resumed run may change without changing the result
    RESUMABLE = ("checkpoint_every", "eval_every", "eval_views", "num_workers", "save_dtype")


@dataclass
class RefineConfig:
    """Settings of :func:`refine`. ``epsilon``: per-pixel budget in 0-1 units (8/255); ``lr``: Adam step size in
    0-1 pixel units; each step scores ``views`` augmented views of every image of a ``batch_size`` batch.
    ``loss``: ``kl`` at ``temperature`` (T²-scaled) or ``mse`` of logits. ``feature_weight`` weighs the patch
    feature term (only with a patch map). ``eval_views`` held-out unmixed views score before/after."""

    steps: int = 50
    lr: float = 1 / 255
    epsilon: float = 8 / 255
    views: int = 4
    batch_size: int = 32
    loss: str = "kl"
    temperature: float = 1.0
    mix_type: Optional[str] = "cutmix"
    input_size: int = 224
    min_scale: float = 0.08
    max_scale: float = 1.0
    feature_weight: float = 1.0
    jpeg_quality: int = 95
    seed: int = 0
    eval_views: int = 512
    eval_batch_size: int = 64

    # settings a resumed run may change without changing the refined files
    RESUMABLE = ("eval_views", "eval_batch_size")
