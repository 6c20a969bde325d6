"""The adapter: every tensor a projector trains and ships, as one ``nn.Module`` inside the projector's tree.

LoRA deltas on the encoder's weights and on the head's class-weight matrix (the head delta) are registered here,
so ``.to()``, ``.half()``, ``state_dict()``, ``requires_grad_()`` and DistributedDataParallel see the same
tensors whether the deltas are merged into the weights or not. The head's bias and logit scale (and a prototype
head's weights) belong to the head module; :meth:`Adapter.tensors` names them all under stable file names.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .lora import LoRA, LoRATarget, add_lora, find_targets, lora_state_dict, merge_lora, unmerge_lora

# Default LoRA groups: the paper puts rank-8 LoRA on the convolutions of a CNN base (CLIP RN50); for transformer
# bases the usual choice is the attention projections, found by structure (below), not by class name.
CONV_TARGETS = [{"pattern": "*", "layers": ["Conv2d"], "rank": 8}]
DEFAULT_RANK = 8
# Child Linear names of an attention block: its input projection(s) and its output projection.
_QKV = ({"qkv"}, {"in_proj"}, {"q_proj", "k_proj", "v_proj"}, {"q", "k", "v"}, {"query", "key", "value"})
_OUT = ("proj", "out_proj", "o_proj", "c_proj", "out")
_FUSED = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def attention_projections(encoder: nn.Module) -> Dict[str, List[str]]:
    """``{attention block name: [projection weight names]}``: ``nn.MultiheadAttention`` and any module whose own
    Linear children are input projections (fused ``qkv``/``in_proj``, or separate q/k/v) plus an output projection
    (timm's ViT/DeiT/Swin/EVA attention, open_clip's attention pooling and custom attention), or that owns a fused
    ``in_proj_weight`` beside an output Linear."""
    found = {}
    for name, module in encoder.named_modules():
        linears = {n: c for n, c in module.named_children() if isinstance(c, nn.Linear)}
        own = {n for n, p in module.named_parameters(recurse=False) if p is not None and p.ndim == 2}
        inputs = next((sorted(q) for q in _QKV if q <= set(linears)), None)
        fused = [n for n in _FUSED if n in own]
        output = next((o for o in _OUT if o in linears), None)
        if (inputs or fused) and output:
            prefix = f"{name}." if name else ""
            weights = [f"{prefix}{n}.weight" for n in (inputs or [])] + [f"{prefix}{n}" for n in fused]
            found[name] = weights + [f"{prefix}{output}.weight"]
    return found


def _generalise(name: str) -> str:
    """``blocks.3.attn.qkv.weight`` -> ``blocks.*.attn.qkv.weight``: one pattern per position in the repeated block."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def default_lora_targets(encoder: nn.Module) -> List[dict]:
    """Attention preset for transformers, conv preset for CNNs, decided by structure.

    A base is a transformer when it has attention blocks (:func:`attention_projections`) at least as many as its
    convolutions: ViT, DeiT, Swin, EVA have one (the patch embedding), while a CNN with an attention pooling head
    (CLIP RN) or a conv-stem hybrid has many more convolutions and gets the conv preset. The attention preset
    targets exactly the projection weights found, as one glob per position in the repeated block."""
    blocks = attention_projections(encoder)
    convs = sum(isinstance(m, nn.Conv2d) for m in encoder.modules())
    if not blocks or len(blocks) < convs:
        return [dict(t) for t in CONV_TARGETS]
    wanted = [w for weights in blocks.values() for w in weights]
    patterns = list(dict.fromkeys(_generalise(w) for w in wanted))
    targets = [LoRATarget(p, DEFAULT_RANK) for p in patterns]
    if set(find_targets(encoder, targets)) != set(wanted):  # a glob would catch more: name each weight
        patterns = wanted
    return [{"pattern": p, "rank": DEFAULT_RANK} for p in patterns]


def _key(name: str) -> str:
    """A parameter name as a ``ModuleDict`` key (which may not contain dots)."""
    return name.replace(".", "/")


class Adapter(nn.Module):
    """LoRA on ``encoder`` (``targets``) and on ``head.weight`` (rank ``head_rank``; 0: no head delta).

    ``encoder`` and ``head`` stay children of the projector; the adapter only keeps references to them.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, targets: Sequence[LoRATarget], head_rank: int,
                 head_alpha=None, store_head_weight: bool = False):
        super().__init__()
        head_targets = [LoRATarget("weight", head_rank, head_alpha)] if head_rank > 0 else []
        targets = [LoRATarget.parse(t) for t in targets]
        groups = find_targets(encoder, targets)
        self.encoder_lora = nn.ModuleDict({_key(n): m for n, m in add_lora(encoder, targets).items()})
        self.head_lora = nn.ModuleDict({_key(n): m for n, m in add_lora(head, head_targets).items()})
        self.__dict__["_hosts"] = {"encoder": encoder, "head": head}
        self.store_head_weight = store_head_weight
        self.merged = False
        self.__dict__["_stored_head_weight"] = None  # while merged: a stored head weight as it was before merging
        self.__dict__["_groups"] = [(t, [n for n, g in groups.items() if g is t]) for t in targets]

    def _loras(self, part: str) -> Dict[str, LoRA]:
        modules = self.encoder_lora if part == "encoder" else self.head_lora
        return {k.replace("/", "."): m for k, m in modules.items()}

    def _head_weight(self) -> nn.Parameter:
        """The head's frozen weight itself (not the parametrized ``W + delta``)."""
        head = self._hosts["head"]
        if parametrize.is_parametrized(head, "weight"):
            return head.parametrizations.weight.original
        return head.weight

    def tensors(self) -> Dict[str, torch.Tensor]:
        """Every adapter tensor by its stable file name (independent of merging): ``encoder.<param>.lora_A/B``,
        ``head.weight.lora_A/B``, ``head.bias``, ``head.logit_scale`` and, for a prototype head, ``head.weight``."""
        head = self._hosts["head"]
        out = lora_state_dict(self._loras("encoder"), prefix="encoder.")
        out.update(lora_state_dict(self._loras("head"), prefix="head."))
        out["head.bias"] = head.bias
        out["head.logit_scale"] = head.logit_scale
        if self.store_head_weight:  # merged, the head's weight holds W + delta: the file wants W
            out["head.weight"] = self._stored_head_weight if self.merged else self._head_weight()
        return out

    def summary(self) -> List[dict]:
        """One row per LoRA group, in order: ``pattern``, ``layers``, ``rank``, ``weights`` (how many weights it
        matched), ``parameters`` (its LoRA A/B elements); the head delta last (pattern ``head.weight``)."""
        rows = []
        for part, groups in (("encoder", self._groups), ("head", [(None, list(self._loras("head")))])):
            loras = self._loras(part)
            for target, names in groups:
                rows.append({"pattern": target.pattern if target else "head.weight",
                             "layers": list(target.layers) if target else [],
                             "rank": target.rank if target else next((loras[n].rank for n in names), 0),
                             "weights": len(names),
                             "parameters": sum(loras[n].lora_A.numel() + loras[n].lora_B.numel() for n in names)})
        return [r for r in rows if r["pattern"] != "head.weight" or r["weights"]]

    @property
    def head_rank(self) -> int:
        """The head delta's rank as built (the configured one clamped to the head's shape); 0: no head delta."""
        return next((lora.rank for lora in self._loras("head").values()), 0)

    def trainable_parameters(self) -> List[nn.Parameter]:
        """What an optimiser updates: all of :meth:`tensors` but a stored head weight (fixed prototypes)."""
        return [t for name, t in self.tensors().items() if name != "head.weight"]

    def merge(self) -> None:
        """Fold every delta into its weight (no dropout): the bare base's inference cost."""
        if not self.merged:
            if self.store_head_weight:
                self.__dict__["_stored_head_weight"] = self._head_weight().detach().clone()
            for part, host in self._hosts.items():
                merge_lora(host, self._loras(part))
            self.merged = True

    def unmerge(self) -> None:
        """Re-attach the deltas as parametrizations (needed to train further)."""
        if self.merged:
            for part, host in self._hosts.items():
                unmerge_lora(host, self._loras(part))
            if self.store_head_weight:  # exactly as before merging (W + delta - delta may differ in the last bit)
                with torch.no_grad():
                    self._head_weight().copy_(self._stored_head_weight)
                self.__dict__["_stored_head_weight"] = None
            self.merged = False
