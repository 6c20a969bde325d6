"""``LabelProjector``: base encoder + LoRA + low-rank head, producing teacher-scale logits ``[B, C]`` online.

The module holds the inputs, base, head and adapter, its one forward path and merging;
:meth:`LabelProjector.for_labels` builds the engine labels are made with (:mod:`.fastpath`). Its files, bytes and
the Hub (``save_pretrained``, ``from_pretrained``, ``push_to_hub``, the card: huggingface_hub ``ModelHubMixin``'s
names; ``num_adapter_bytes``, ``adapter_file_bytes``) are :mod:`.persistence`'s, the adapter file's format
:mod:`.directory`'s; the methods of those names hand over to them. The head starts as :func:`.heads.initial_head`
says; the engine's 0.2 spelling lives on for one release in :mod:`.deprecated`.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError, HelloLabelsError
from . import directory, persistence
from .adapter import Adapter, default_lora_targets
from .bases import Base, build_base, default_head, module_spec, parse_base
from .config import ADAPTER_DTYPES, DTYPES, ProjectorConfig, check_config, check_lora, fresh_config  # noqa: F401  (also from here)
from .deprecated import DeprecatedEngineAliases
from .directory import ADAPTER_FILE, CONFIG_FILE  # noqa: F401  (also imported from here)
from .fastpath import CHUNK_BYTES, FastOptions, FastProjector
from .heads import ClassifierHead, initial_head, resolve_class_names, resolve_templates
from .inputs import InputAdapter
from .lora import LoRATarget, isolate_parametrized_classes
from .persistence import UnpinnedBaseWarning, pinned  # noqa: F401  (also imported from here)


class ConsumedEncoder(nn.Module):
    """Where a projector's encoder was before :meth:`LabelProjector.for_labels` (``copy=False``) took it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise consumed()


def consumed() -> HelloLabelsError:
    return HelloLabelsError("this projector's encoder went into the engine for_labels(copy=False) built: label "
                            "with that engine, or load the projector again")


class LabelProjector(DeprecatedEngineAliases, nn.Module):
    """Images (normalised as the student sees them) -> teacher-scale logits ``[B, C]``.

    Build one with :meth:`from_base`, load one with :meth:`from_pretrained` (local folder or Hub id), save with
    :meth:`save_pretrained`, publish with :meth:`push_to_hub`: the names and arguments of huggingface_hub's
    ``ModelHubMixin``, implemented in :mod:`.persistence` (which says why it is not inherited). Only the LoRA
    matrices, the head delta, bias and logit scale (and a prototype head's weights) train and are saved.
    """

    base_unpinned = False  # True when loaded from a file without a base pin (nothing checked the base weights)

    def __init__(self, config: ProjectorConfig, base_module: Optional[nn.Module] = None,
                 prototype_images: Optional[torch.Tensor] = None, prototype_labels: Optional[torch.Tensor] = None,
                 lora_rank: Optional[int] = None, progress: bool = False, *, trust_remote_code: bool = False,
                 check_base: bool = True):
        """Build around ``config``. ``trust_remote_code``: let a ``module`` base's factory run (see
        :meth:`from_pretrained`); ``check_base=False``: load even if the base weights differ from the pinned ones."""
        super().__init__()
        if isinstance(config, dict):
            config = ProjectorConfig.from_dict(config)
        self.config = config
        config.class_names = resolve_class_names(config.class_names)
        if config.head_init == "text":
            config.templates = resolve_templates(config.templates)
        # what a config.json is checked for (a loaded one was already), before the base is built
        check_config(asdict(config), "projector settings", error=BadInputError)

        self.base: Base = build_base(config.base, seed=config.seed, module=base_module,
                                     trust_remote_code=trust_remote_code)
        persistence.pin_base(self, check_base)
        size = tuple(config.image_size) if config.image_size else self.base.image_size
        self.inputs = InputAdapter(config.input_mean, config.input_std, self.base.mean, self.base.std, size,
                                   in_channels=config.input_channels, interpolation=config.interpolation)
        weight, scale = initial_head(config, self.base, prototype_images, prototype_labels, self.inputs, progress)
        self.base.drop_text_tower()
        self.head = ClassifierHead(weight, scale)

        if not config.lora:
            config.lora = [dict(t, rank=lora_rank or t["rank"]) for t in default_lora_targets(self.base.encoder)]
            check_lora(config.lora, "projector settings (lora_rank)", error=BadInputError)
        targets = [LoRATarget.parse(t) for t in config.lora]
        config.lora = [t.to_dict() for t in targets]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(config.seed)  # the CPU generator only: CUDA streams stay as they are
            self.adapter = Adapter(self.base.encoder, self.head, targets, config.head_rank, config.head_alpha,
                                   store_head_weight=config.head_init == "prototype")
        self.requires_grad_(False)
        for tensor in self.trainable_parameters():
            tensor.requires_grad_(True)
        self.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(cls, base: Union[str, dict, nn.Module], pretrained=None, *, class_names,
                  config: Optional[ProjectorConfig] = None, prototype_images: Optional[torch.Tensor] = None,
                  prototype_labels=None, base_mean=None, base_std=None, base_image_size=None,
                  base_factory: Optional[str] = None, lora_rank: Optional[int] = None,
                  lora_targets: Optional[Sequence] = None, progress: bool = False, **settings) -> "LabelProjector":
        """Build a fresh projector (adapter at zero) around a base.

        ``base``: an open_clip/timm name (``"RN50"``, ``"open_clip:ViT-B-32"``, ``"timm:resnet50"``,
        ``"local-dir:/path"``) with ``pretrained`` (an open_clip tag/file; for timm the weights the name implies
        unless ``pretrained=False``, or a checkpoint file); a base spec dict (data: a ``module`` spec's factory
        does not run from it); or an ``nn.Module`` encoder returning ``[B, D]`` (then give ``base_mean``/
        ``base_std``/``base_image_size``, and ``base_factory="pkg.mod:fn"`` so it can be rebuilt on load).
        ``settings``: :class:`ProjectorConfig` fields (:data:`~hello_labels.model.config.SETTINGS`: ``head_init``,
        ``templates``, ``head_rank``, ``head_alpha``, ``input_mean``, ``input_std``, ``input_channels``,
        ``image_size``, ``interpolation``, ``normalize_features``, ``seed``, ``metadata``) over those of
        ``config`` (another projector's, say, whose LoRA targets carry over too), else over the defaults.
        ``head_init``: ``text`` (default for bases with a text tower), ``prototype`` (needs
        ``prototype_images [N, C, H, W]`` normalised like the student's input and ``prototype_labels [N]``),
        ``random`` or ``zero``. ``lora_targets`` replace the default LoRA targets, whose rank ``lora_rank`` sets (8).
        """
        if isinstance(base, nn.Module):
            spec, module = module_spec(base_mean, base_std, base_image_size, factory=base_factory), base
        else:
            spec, module = (dict(base) if isinstance(base, dict) else parse_base(base, pretrained)), None
        if settings.get("head_init", config.head_init if config else None) is None:
            settings["head_init"] = default_head(spec) or ("prototype" if prototype_images is not None else None)
            if settings["head_init"] is None:
                raise BadInputError(
                    "this base has no text tower: pass prototype_images/prototype_labels or head_init='random'")
        targets = [LoRATarget.parse(t).to_dict() for t in lora_targets] if lora_targets else None
        # a name or factory the caller wrote in code is trusted; a spec dict is data
        return cls(fresh_config(spec, class_names, targets, start=config, **settings), base_module=module,
                   prototype_images=prototype_images, prototype_labels=prototype_labels, lora_rank=lora_rank,
                   progress=progress, trust_remote_code=not isinstance(base, dict))

    # ------------------------------------------------------------------ inference
    @property
    def num_classes(self) -> int:
        return len(self.config.class_names)

    @property
    def device(self) -> torch.device:
        return self.head.bias.device

    @property
    def check_inputs(self) -> bool:
        """Whether calls check the input range against ``input_mean/std``: every call on the CPU; on an
        accelerator, where a check costs a host sync, the first calls and then a sample (see
        :mod:`hello_labels.model.inputs`). False: no check."""
        return self.inputs.check_range

    @check_inputs.setter
    def check_inputs(self, value: bool) -> None:
        self.inputs.check_range = bool(value)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Base features ``[B, D]`` (L2-normalised unless ``normalize_features=False``)."""
        x = self.inputs(images)
        if x.shape[0] == 0:  # encoders cannot reshape an empty batch; the head maps [0, D] to [0, C]
            return x.new_zeros(0, self.base.feature_dim)
        feats = self.base(x)
        return F.normalize(feats, dim=-1) if self.config.normalize_features else feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, input_channels, H, W]`` normalised with ``input_mean/std`` -> logits ``[B, C]``: the head on
        the base's features, merged or not (labels in bulk: :meth:`for_labels`)."""
        return self.head(self.features(images))

    def for_labels(self, *, copy: bool = True, compile: Union[bool, dict] = False, autocast: Union[bool, str] = True,
                   channels_last: Optional[bool] = None, chunk_bytes: int = CHUNK_BYTES) -> FastProjector:
        """The inference engine for this projector's current weights, merged or not: a
        :class:`~hello_labels.model.fastpath.FastProjector` (deltas merged, BatchNorm folded, ...; float32 logits
        equal to this projector's within :data:`hello_labels.model.fastpath.TOLERANCE` on the CPU). Build it once
        and call it per batch; later changes to this projector are not seen. Options as
        :class:`~hello_labels.model.fastpath.FastOptions`.

        ``copy=True``: built from a copy of the base's weights (this projector is left as it was).
        ``copy=False``: this projector's own encoder is rewritten into the engine (one copy of the base's weights
        in memory); this projector then keeps its adapter (saving still works) but can no longer make logits."""
        self._check_encoder()
        options = FastOptions(compile=compile, autocast=autocast, channels_last=channels_last,
                              chunk_bytes=chunk_bytes)
        if copy:
            return FastProjector(self, options)
        engine = FastProjector(self.merge(), options, copy=False)  # merged in place: nothing left to copy
        self.base.encoder = self.adapter.__dict__["_hosts"]["encoder"] = ConsumedEncoder()  # nothing keeps the old
        return engine

    def soft_labels(self, images: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``softmax(logits / T)``, ``[B, C]``."""
        return F.softmax(self(images) / temperature, dim=-1)

    def train(self, mode: bool = True):
        """Train mode for the adapter (LoRA dropout) only: the base, BatchNorm included, stays in eval mode."""
        super().train(mode)
        self.base.eval()
        self.adapter.train(mode)
        return self

    # ------------------------------------------------------------------ adapter
    def trainable_parameters(self) -> List[nn.Parameter]:
        """The parameters an optimiser should update (LoRA A/B, head delta, bias, logit scale), whatever their
        ``requires_grad`` flags and whether merged or not."""
        return self.adapter.trainable_parameters()

    def adapter_state_dict(self) -> Dict[str, torch.Tensor]:
        """The tensors that make up the adapter file, by stable name (unaffected by merging)."""
        return self.adapter.tensors()

    def num_adapter_parameters(self) -> int:
        return sum(t.numel() for t in self.adapter_state_dict().values())

    def load_adapter_state_dict(self, tensors: Dict[str, torch.Tensor], source: str = "adapter") -> None:
        """Copy adapter tensors in, after checking names, shapes (against this base and class list) and float
        dtypes."""
        directory.check_adapter_tensors(tensors, self.adapter_state_dict(), source,
                                        base=self.config.base.get("name", "module"))
        was_merged = self.merged
        self.unmerge()  # merged, some tensors are copies (a stored head weight): copy into the live ones
        with torch.no_grad():
            for name, target in self.adapter_state_dict().items():
                target.copy_(tensors[name].to(target.dtype))
        if was_merged:
            self.merge()

    def __deepcopy__(self, memo):
        """A deep copy whose merging and un-merging leave this projector untouched (e.g. an EMA copy)."""
        import copy

        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        isolate_parametrized_classes(clone)
        return clone

    # ------------------------------------------------------------------ merging
    @property
    def merged(self) -> bool:
        return self.adapter.merged

    def merge(self, compile: Optional[Union[bool, dict]] = None,
              autocast: Optional[Union[bool, str]] = None) -> "LabelProjector":
        """Fold all deltas into the weights (without dropout): the bare base's cost per call. Reversible with
        :meth:`unmerge`. ``compile`` / ``autocast`` are deprecated (:mod:`.deprecated`)."""
        self._merge_options(compile, autocast)
        self.adapter.merge()
        return self

    def unmerge(self) -> "LabelProjector":
        """Re-attach the deltas (needed to train further)."""
        self._check_encoder()
        self.adapter.unmerge()
        return self

    def _check_encoder(self) -> None:
        if isinstance(self.base.encoder, ConsumedEncoder):
            raise consumed()

    # ------------------------------------------------------------------ files, bytes and the Hub (persistence.py)
    save_pretrained = persistence.save_pretrained
    push_to_hub = persistence.push_to_hub
    from_pretrained = classmethod(persistence.from_pretrained)
    generate_model_card = persistence.generate_model_card
    config_dict = persistence.config_dict
    num_adapter_bytes = persistence.num_adapter_bytes
    adapter_file_bytes = persistence.adapter_file_bytes
    adapter_facts = persistence.adapter_facts

    def __repr__(self) -> str:
        base = self.config.base
        name = base.get("name") or base.get("factory") or "module"
        return (f"LabelProjector(base={base['kind']}:{name}, classes={self.num_classes}, "
                f"head_init={self.config.head_init}, adapter={self.num_adapter_parameters():,} params / "
                f"{self.adapter_file_bytes():,} bytes {self.config.adapter_dtype}, merged={self.merged})")
