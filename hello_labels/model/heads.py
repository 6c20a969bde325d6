"""The classifier head: a frozen class-weight matrix (text, prototype, random or zero init) that the projector
adapts with a low-rank delta, a per-class bias and a learnable logit scale.

``logits = exp(logit_scale) * features @ W.T + bias`` with ``W`` ``[C, D]``. Text and random weights are
rebuilt on load (no storage); prototype weights come from data and are stored with the adapter.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import BadInputError
from ..files import atomic_save_safetensors
from .bases import Base


class ClassifierHead(nn.Module):
    """``features [B, D] -> logits [B, C]``; ``weight`` is frozen, ``bias`` and ``logit_scale`` train."""

    def __init__(self, weight: torch.Tensor, logit_scale: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float(), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(weight.shape[0]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * F.linear(features, self.weight) + self.bias


def is_template(template) -> bool:
    """Whether ``template`` is a prompt ``str.format`` fills with one class name (``"a photo of a {}."``); a
    stray brace or a second field (``"{} {}"``, ``"{x}"``) would fail only when the head is built."""
    try:
        return isinstance(template, str) and "{}" in template and isinstance(template.format("x"), str)
    except (IndexError, KeyError, ValueError, AttributeError):
        return False


def resolve_templates(templates) -> list:
    """Prompt templates as ``str.format`` strings: a list of them, or ``"openai"`` (80) / ``"simple"`` (7),
    open_clip's ImageNet sets."""
    import open_clip

    named = {"openai": open_clip.OPENAI_IMAGENET_TEMPLATES, "simple": open_clip.SIMPLE_IMAGENET_TEMPLATES}
    if templates is None:
        templates = "openai"
    if isinstance(templates, str):
        if templates not in named:
            raise BadInputError(f"unknown template set '{templates}'; use 'openai', 'simple' or a list")
        return [t("{}") for t in named[templates]]
    templates = list(templates)
    bad = [t for t in templates if not is_template(t)]
    if not templates or bad:
        raise BadInputError("templates must be strings that format one class name with '{}'"
                            + (f", got {str(bad[0])[:60]!r}" if bad else ", got none"))
    return templates


def resolve_class_names(class_names) -> list:
    """A list of class names, or ``"imagenet"`` for open_clip's 1000 ImageNet class names."""
    if isinstance(class_names, str):
        if class_names != "imagenet":
            raise BadInputError(f"class_names must be a list or 'imagenet', got '{class_names}'")
        import open_clip

        return list(open_clip.IMAGENET_CLASSNAMES)
    class_names = [str(c) for c in class_names]
    if not class_names:
        raise BadInputError("class_names is empty")
    return class_names


def cache_dir() -> Path:
    """``$HELLO_LABELS_CACHE``, else ``$XDG_CACHE_HOME/hello_labels``, else ``~/.cache/hello_labels``."""
    root = os.environ.get("HELLO_LABELS_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hello_labels"


def text_weights(base: Base, class_names: Sequence[str], templates: Sequence[str],
                 use_cache: bool = True, progress: bool = False) -> torch.Tensor:
    """CLIP zero-shot weights ``[C, D]`` (open_clip's builder, averaged over templates), cached on disk by
    base identity + names + templates."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps([base.cache_key(), list(class_names), list(templates)]).encode()).hexdigest()
    path = cache_dir() / "text_heads" / f"{key[:32]}.safetensors"
    if use_cache and path.is_file():
        try:
            return load_file(str(path))["weight"]
        except Exception:
            pass  # a damaged cache entry is rebuilt below
    if not base.has_text_tower:
        raise BadInputError("head_init='text' needs an open_clip base with a text tower")
    import open_clip

    device = next(base.encoder.parameters()).device
    with torch.no_grad():
        weight = open_clip.build_zero_shot_classifier(
            base.clip_model, base.tokenizer, list(class_names), list(templates),
            num_classes_per_batch=10, device=device, use_tqdm=progress).T.float().cpu().contiguous()
    if use_cache:
        atomic_save_safetensors({"weight": weight}, path)
    return weight


def prototype_weights(base: Base, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      batch_size: int = 64, transform=None) -> torch.Tensor:
    """Mean L2-normalised feature per class, re-normalised: ``[C, D]``. ``images`` are base-normalised, or become
    so through ``transform``, applied per batch."""
    labels = torch.as_tensor(labels).long()
    if images.shape[0] != labels.shape[0]:
        raise BadInputError(f"prototype images ({images.shape[0]}) and labels ({labels.shape[0]}) differ in number")
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise BadInputError(f"prototype init needs at least one image per class; none for classes {missing[:10]}")
    sums = torch.zeros(num_classes, base.feature_dim)
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size]
            feats = F.normalize(base(transform(chunk) if transform else chunk).float(), dim=-1).cpu()
            sums.index_add_(0, labels[start:start + batch_size], feats)
    return F.normalize(sums, dim=-1)


def random_weights(num_classes: int, dim: int, seed: int) -> torch.Tensor:
    """Unit-norm Gaussian rows from a seeded generator: rebuilt identically on load, so never stored."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, dim, generator=gen), dim=-1)


def initial_head(config, base: Base, images=None, labels=None, transform=None, progress: bool = False):
    """The head's starting ``(weight [C, D], logit scale)`` for a projector's ``config`` (its ``head_init``):
    text weights at the base's logit scale, or prototypes of ``images``/``labels`` (zeros when loading: the stored
    weights arrive with the adapter), random or zero weights at 1 / 0.07."""
    num_classes = len(config.class_names)
    if config.head_init == "text":
        return text_weights(base, config.class_names, config.templates, progress=progress), base.logit_scale
    if config.head_init == "prototype" and images is not None:
        return prototype_weights(base, images, labels, num_classes, transform=transform), 1 / 0.07
    if config.head_init == "random":
        return random_weights(num_classes, base.feature_dim, config.seed), 1 / 0.07
    return torch.zeros(num_classes, base.feature_dim), 1 / 0.07
