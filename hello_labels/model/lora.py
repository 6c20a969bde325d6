"""Low-rank deltas ``W + (alpha / r) * B @ A`` on any weight tensor, as torch parametrizations.

One mechanism serves ``nn.Linear`` / ``nn.Conv2d`` weights, ``nn.MultiheadAttention.in_proj_weight`` and
bare parameters (open_clip's ``visual.proj``): a weight of shape ``[out, *rest]`` is viewed as 2-D
``[out, prod(rest)]``. The model's own forward code is untouched. Merging folds the delta into the weight
(zero inference overhead); un-merging re-registers the parametrization, whose ``right_inverse`` subtracts it.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import BadInputError


@dataclass
class LoRATarget:
    """A group of weights that receive a low-rank delta.

    ``pattern`` is a glob over full parameter names (``layer1.0.conv1.weight``); ``layers`` optionally restricts
    matches to parameters owned by modules of these class names (a class matches its subclasses too).
    ``alpha`` defaults to ``rank`` (scale 1).
    """

    pattern: str
    rank: int = 8
    alpha: Optional[float] = None
    dropout: float = 0.0
    layers: List[str] = field(default_factory=list)

    @classmethod
    def parse(cls, spec) -> "LoRATarget":
        """Accept a ``LoRATarget``, a dict of its fields, or a bare pattern string."""
        if isinstance(spec, LoRATarget):
            return spec
        if isinstance(spec, str):
            return cls(pattern=spec)
        if isinstance(spec, dict):
            unknown = set(spec) - set(cls.__dataclass_fields__)
            if unknown:
                raise BadInputError(f"LoRA target {spec}: unknown keys {sorted(unknown)}")
            return cls(**spec)
        raise BadInputError(f"LoRA target must be a pattern string or a dict, got {type(spec).__name__}")

    def to_dict(self) -> dict:
        return asdict(self)


class LoRA(nn.Module):
    """Parametrization returning ``W + scale * (B @ A).view_as(W)``; ``B`` starts at zero so the delta does too.

    The rank is clamped to ``min(out, in)`` of the weight viewed as 2-D; ``scale = alpha / rank`` with the
    effective rank, and ``alpha`` defaults to that rank (scale 1). A clamp with an explicit ``alpha`` is an error,
    since the scale the caller meant is then ambiguous.
    """

    def __init__(self, shape: torch.Size, rank: int, alpha: Optional[float] = None, dropout: float = 0.0,
                 name: str = "weight"):
        super().__init__()
        fan_out, fan_in = shape[0], math.prod(shape[1:])
        if rank < 1:
            raise BadInputError(f"LoRA rank of '{name}' must be >= 1, got {rank}")
        self.rank = min(rank, fan_out, fan_in)
        if self.rank < rank and alpha is not None:
            raise BadInputError(
                f"LoRA rank {rank} of '{name}' exceeds its largest possible rank {self.rank} (weight "
                f"{list(shape)}) while alpha={alpha} is set: give rank <= {self.rank} or leave alpha unset")
        self.scale = (alpha if alpha is not None else self.rank) / self.rank
        self.lora_A = nn.Parameter(torch.empty(self.rank, fan_in))
        self.lora_B = nn.Parameter(torch.zeros(fan_out, self.rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # Dropout on the delta's input features (one mask per forward), as minLoRA does.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def delta(self, like: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        """``scale * B @ A`` shaped and typed like ``like``; ``dropout`` applies the training-time mask."""
        A = self.lora_A
        if dropout and self.dropout is not None and self.training:
            A = A * self.dropout(torch.ones_like(A[:1]))
        return (self.lora_B @ A).view(like.shape).to(like.dtype) * self.scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta(weight, dropout=True)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight - self.delta(weight)


def _owner(model: nn.Module, param_name: str):
    module_name, _, attr = param_name.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), attr


def _class_names(module: nn.Module) -> set:
    return {cls.__name__ for cls in type(module).__mro__}


def find_targets(model: nn.Module, targets: Iterable[LoRATarget]) -> Dict[str, LoRATarget]:
    """Map each matching >= 2-D parameter name of ``model`` to the first target group that selects it."""
    chosen: Dict[str, LoRATarget] = {}
    for name, param in model.named_parameters():
        if param.ndim < 2:
            continue
        for target in targets:
            if not fnmatch.fnmatchcase(name, target.pattern):
                continue
            owner, _ = _owner(model, name)
            if target.layers and not (_class_names(owner) & set(target.layers)):
                continue
            chosen[name] = target
            break
    return chosen


def add_lora(model: nn.Module, targets: Iterable) -> Dict[str, LoRA]:
    """Register a LoRA parametrization on every parameter selected by ``targets``.

    Returns ``{parameter name: LoRA}``, in ``model.named_parameters()`` order. Raises if nothing matches.
    """
    targets = [LoRATarget.parse(t) for t in targets]
    chosen = find_targets(model, targets)
    if targets and not chosen:
        raise BadInputError(f"LoRA targets {[t.pattern for t in targets]} match no weight of the base model")
    loras: Dict[str, LoRA] = {}
    for name, target in chosen.items():
        owner, attr = _owner(model, name)
        weight = getattr(owner, attr)
        lora = LoRA(weight.shape, target.rank, target.alpha, target.dropout, name=name).to(weight.device)
        parametrize.register_parametrization(owner, attr, lora)
        loras[name] = lora
    return loras


def merge_lora(model: nn.Module, loras: Dict[str, LoRA]) -> None:
    """Fold every delta into its weight and drop the parametrizations (the LoRA modules stay in ``loras``).

    The delta is folded without dropout, whatever the modules' train/eval mode."""
    for name, lora in loras.items():
        owner, attr = _owner(model, name)
        if parametrize.is_parametrized(owner, attr):
            training = lora.training
            lora.eval()
            parametrize.remove_parametrizations(owner, attr, leave_parametrized=True)
            lora.train(training)


def unmerge_lora(model: nn.Module, loras: Dict[str, LoRA]) -> None:
    """Undo :func:`merge_lora`: re-register each LoRA; its ``right_inverse`` subtracts the delta again."""
    for name, lora in loras.items():
        owner, attr = _owner(model, name)
        if not parametrize.is_parametrized(owner, attr):
            weight = getattr(owner, attr)
            lora.to(weight.device)
            parametrize.register_parametrization(owner, attr, lora)


def lora_state_dict(loras: Dict[str, LoRA], prefix: str = "") -> Dict[str, torch.Tensor]:
    """Adapter tensors under stable names ``{prefix}{param}.lora_A`` / ``.lora_B`` (independent of merging)."""
    out = {}
    for name, lora in loras.items():
        out[f"{prefix}{name}.lora_A"] = lora.lora_A
        out[f"{prefix}{name}.lora_B"] = lora.lora_B
    return out


def isolate_parametrized_classes(model: nn.Module) -> None:
    """Give every parametrized module of ``model`` its own class.

    torch's parametrized modules share a generated class with their deep copies, and removing a parametrization
    (merging) deletes a property from that class, breaking the other copy; call this on a fresh copy."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))

