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

from .lora import LoRA, LoRATarget, add_lora, lora_state_dict, merge_lora, unmerge_lora

# Default LoRA groups: the paper puts rank-8 LoRA on the convolutions of a CNN base (CLIP RN50); for
# transformer bases the usual choice is the attention projections.
CONV_TARGETS = [{"pattern": "*", "layers": ["Conv2d"], "rank": 8}]
ATTENTION_TARGETS = [{"pattern": "*attn*", "layers": ["Linear", "MultiheadAttention", "Attention"], "rank": 8}]


def default_lora_targets(encoder: nn.Module) -> List[dict]:
    """Conv preset for CNNs, attention preset for transformers (decided by which layers the encoder has)."""
    convs = sum(isinstance(m, nn.Conv2d) for m in encoder.modules())
    attention = any(isinstance(m, nn.MultiheadAttention) or type(m).__name__ == "Attention"
                    for m in encoder.modules())
    return [dict(t) for t in (ATTENTION_TARGETS if attention and convs <= 2 else CONV_TARGETS)]


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
        self.encoder_lora = nn.ModuleDict({_key(n): m for n, m in add_lora(encoder, targets).items()})
        self.head_lora = nn.ModuleDict({_key(n): m for n, m in add_lora(head, head_targets).items()})
        self.__dict__["_hosts"] = {"encoder": encoder, "head": head}
        self.store_head_weight = store_head_weight
        self.merged = False

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
        if self.store_head_weight:
            out["head.weight"] = self._head_weight()
        return out

    def trainable_parameters(self) -> List[nn.Parameter]:
        """What an optimiser updates: all of :meth:`tensors` but a stored head weight (fixed prototypes)."""
        return [t for name, t in self.tensors().items() if name != "head.weight"]

    def merge(self) -> None:
        """Fold every delta into its weight (no dropout): the bare base's inference cost."""
        if not self.merged:
            for part, host in self._hosts.items():
                merge_lora(host, self._loras(part))
            self.merged = True

    def unmerge(self) -> None:
        """Re-attach the deltas as parametrizations (needed to train further)."""
        if self.merged:
            for part, host in self._hosts.items():
                unmerge_lora(host, self._loras(part))
            self.merged = False
