"""Teachers: timm or torchvision models, local checkpoints, and weighted ensembles of them (the paper averages
nine weak checkpoints along one training run).

Spec strings: ``timm:resnet18`` (pretrained weights), ``torchvision:resnet18``, ``timm:resnet18@ckpt.pth`` /
``torchvision:resnet18@ckpt.safetensors`` (architecture + local state dict), ``module:pkg.mod:fn[@ckpt]`` (your
factory, called with ``num_classes=`` when known).
A teacher receives the same normalised batch as the student, as in SRe2L and RDED.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..errors import BadInputError, CorruptFileError, HelloLabelsError, clip, first_line
from ..model.bases import import_object


def load_state_dict(path: str) -> dict:
    """A state dict from safetensors or a ``torch.save`` file (``weights_only=True``), unwrapping the usual
    ``{"state_dict": ...}`` / ``{"model": ...}`` containers and DataParallel's ``module.`` prefix."""
    if not os.path.isfile(path):
        raise BadInputError(f"teacher checkpoint not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CorruptFileError(f"cannot read teacher checkpoint {path} ({first_line(err)})") from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"teacher checkpoint {path} holds no state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def build_teacher(source: str, name: str, num_classes: Optional[int] = None,
                  pretrained: bool = True) -> Optional[nn.Module]:
    """The architecture of a ``timm``/``torchvision``/``module`` teacher (with its published weights if
    ``pretrained``; ``num_classes`` outputs when given); None for another source."""
    kwargs = {"num_classes": num_classes} if num_classes else {}
    if source == "module":
        return import_object(name)(**kwargs)
    if source == "timm":
        import timm

        if not timm.is_model(name):
            raise BadInputError(f"unknown timm teacher '{name}' (see timm.list_models())")
        try:
            return timm.create_model(name, pretrained=pretrained, **kwargs)
        except Exception as err:
            raise HelloLabelsError(f"cannot load timm teacher '{name}' ({clip(str(err), 160)}); if "
                                   f"offline, pass a local checkpoint as timm:{name}@path") from err
    if source == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models():
            raise BadInputError(f"unknown torchvision teacher '{name}'")
        try:
            return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kwargs)
        except Exception as err:
            raise HelloLabelsError(f"cannot load torchvision teacher '{name}' ({clip(str(err), 160)}); "
                                   f"if offline, pass a local checkpoint as torchvision:{name}@path") from err
    return None


def load_teacher(spec: str, num_classes: Optional[int] = None) -> nn.Module:
    """Build one frozen, eval-mode teacher from a spec string (see module docstring)."""
    source, _, rest = spec.partition(":")
    name, _, checkpoint = rest.partition("@")
    model = build_teacher(source, name, num_classes, pretrained=not checkpoint)
    if model is None:
        raise BadInputError(f"teacher '{spec}': expected timm:NAME, torchvision:NAME, NAME@checkpoint or "
                            f"module:pkg.mod:fn")
    if checkpoint:
        try:
            missing, unexpected = model.load_state_dict(load_state_dict(checkpoint), strict=False)
        except RuntimeError as err:  # shape mismatches
            detail = " ".join(str(err).split())[:240]
            raise BadInputError(f"teacher checkpoint {checkpoint} does not fit {name} "
                                f"(num_classes={num_classes}): {detail}") from err
        if missing or unexpected:
            raise BadInputError(f"teacher checkpoint {checkpoint} does not fit {name}: missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]}")
    return model.eval().requires_grad_(False)


class TeacherEnsemble(nn.Module):
    """Weighted average of teachers' logits: ``sum_i w_i * teacher_i(x)`` with weights summing to 1."""

    def __init__(self, teachers: Sequence[nn.Module], weights: Optional[Sequence[float]] = None):
        super().__init__()
        if not teachers:
            raise BadInputError("no teacher given")
        weights = [1.0] * len(teachers) if weights is None else list(weights)
        if len(weights) != len(teachers) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise BadInputError(f"teacher weights {weights} must be {len(teachers)} non-negative numbers")
        self.teachers = nn.ModuleList(teachers)
        self.register_buffer("weights", torch.tensor(weights) / sum(weights), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = 0
        for weight, teacher in zip(self.weights, self.teachers):
            out = out + weight * teacher(images).float()
        return out

    def train(self, mode: bool = True):  # teachers stay in eval mode
        return super().train(False)


def load_teachers(specs: Sequence, weights: Optional[Sequence[float]] = None,
                  num_classes: Optional[int] = None) -> TeacherEnsemble:
    """Spec strings and/or modules -> a frozen :class:`TeacherEnsemble`."""
    models: List[nn.Module] = [s.eval().requires_grad_(False) if isinstance(s, nn.Module)
                               else load_teacher(s, num_classes) for s in specs]
    return TeacherEnsemble(models, weights)
