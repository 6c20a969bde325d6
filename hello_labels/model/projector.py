"""``LabelProjector``: base encoder + LoRA + low-rank head, producing teacher-scale logits ``[B, C]`` online.

The module holds the inputs, base, head and adapter, the two forward paths (modules, or the merged fast path of
:mod:`.fastpath`) and merging. Its files and the Hub (``save_pretrained``, ``from_pretrained``, ``push_to_hub``,
the card: huggingface_hub ``ModelHubMixin``'s names) are :mod:`.persistence`'s, the adapter file's bytes
:mod:`.directory`'s; the methods of those names hand over to them.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError
from . import directory, persistence
from .adapter import Adapter, default_lora_targets
from .bases import Base, build_base, default_head, module_spec, parse_base
from .config import ADAPTER_DTYPES, DTYPES, ProjectorConfig, check_config, check_lora, fresh_config  # noqa: F401
from .directory import ADAPTER_FILE, CONFIG_FILE  # noqa: F401  (also imported from here)
from .fastpath import FastOptions, FastProjector
from .heads import (
    ClassifierHead,
    prototype_weights,
    random_weights,
    resolve_class_names,
    resolve_templates,
    text_weights,
)
from .inputs import InputAdapter
from .lora import LoRATarget, isolate_parametrized_classes
from .persistence import UnpinnedBaseWarning, pinned  # noqa: F401  (also imported from here)


class LabelProjector(nn.Module):
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
        weight, scale = self._head_weight(prototype_images, prototype_labels, progress)
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
        self.fast_options = FastOptions()
        self.__dict__["_fast"] = {}  # device -> (key, FastProjector); shared by DataParallel's replicas
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

    def _head_weight(self, images, labels, progress):
        cfg, base = self.config, self.base
        num_classes = len(cfg.class_names)
        if cfg.head_init == "text":
            return text_weights(base, cfg.class_names, cfg.templates, progress=progress), base.logit_scale
        if cfg.head_init == "prototype":
            if images is None:  # loading: the stored weights arrive with the adapter
                return torch.zeros(num_classes, base.feature_dim), 1 / 0.07
            return prototype_weights(base, images, labels, num_classes, transform=self.inputs), 1 / 0.07
        if cfg.head_init == "random":
            return random_weights(num_classes, base.feature_dim, cfg.seed), 1 / 0.07
        return torch.zeros(num_classes, base.feature_dim), 1 / 0.07

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
        """``images [B, input_channels, H, W]`` normalised with ``input_mean/std`` -> logits ``[B, C]``.

        Merged (and ``fast_options.enabled``), this runs :meth:`fast_path`: float32 logits equal to the unfused
        modules' within :data:`hello_labels.model.fastpath.TOLERANCE` on the CPU. Not while a gradient may be
        wanted for the head's bias or scale (grad mode on and they require it): those are live in the modules
        only."""
        if self.merged and self.fast_options.enabled and not (
                torch.is_grad_enabled() and any(t.requires_grad for t in self.trainable_parameters())):
            return self.fast_path()(images)
        return self.head(self.features(images))

    def fast_path(self, cache: bool = True) -> FastProjector:
        """The inference copy (:mod:`hello_labels.model.fastpath`) of this projector's current weights, merged or
        not, built on first use and rebuilt after the adapter tensors change, ``merge``/``unmerge``, ``.to()`` or
        a change of ``fast_options``. It leaves this projector's own modules untouched. ``cache=False``: a copy
        that is not kept (an evaluation during training: no second base in memory between evaluations)."""
        options = repr(self.fast_options)  # a dataclass: every field, compile arguments included
        cached, device = self.__dict__["_fast"], self.device
        if getattr(self, "_is_replica", False):  # a DataParallel replica: rebuilt every call, weights unchanged
            key = ("replica", options)
        else:
            key = (options, tuple(t._version for t in self.adapter_state_dict().values()))
        entry = cached.get(device)
        if entry is None or entry[0] != key:
            cached.pop(device, None)  # stale: let it go before building another
            entry = (key, FastProjector(self, self.fast_options))
            if cache:
                cached[device] = entry
        return entry[1]

    def _drop_fast_path(self) -> None:
        self.__dict__["_fast"].clear()

    def _apply(self, fn, *args, **kwargs):
        self._drop_fast_path()  # .to() / .half() / .cuda(): the copy would be on the old device or dtype
        return super()._apply(fn, *args, **kwargs)

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

    def num_adapter_bytes(self, dtype: Optional[str] = None) -> int:
        """Bytes of adapter tensor data at ``dtype`` (default: the configured storage dtype), without the file's
        header: a part of :meth:`adapter_file_bytes`."""
        return directory.tensor_bytes(self.adapter_state_dict(), dtype or self.config.adapter_dtype)

    def adapter_file_bytes(self, dtype: Optional[str] = None) -> int:
        """Size of ``adapter.safetensors`` saved at ``dtype``: the adapter's bytes wherever a size is shown
        (``info``, the card, ``repr``, the demo's table)."""
        return len(persistence.adapter_file(self, dtype))

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
        state = {k: v for k, v in self.__dict__.items() if k != "_fast"}
        clone.__dict__.update(copy.deepcopy(state, memo))
        clone.__dict__["_fast"] = {}
        isolate_parametrized_classes(clone)
        return clone

    # ------------------------------------------------------------------ merging
    @property
    def merged(self) -> bool:
        return self.adapter.merged

    def merge(self, compile: Optional[Union[bool, dict]] = None,
              autocast: Optional[Union[bool, str]] = None) -> "LabelProjector":
        """Fold all deltas into the weights (without dropout) and make labels on the fast path (see
        :meth:`forward`). ``compile``: ``torch.compile`` it (True or a dict of arguments; None: as before);
        ``autocast``: as :class:`~hello_labels.model.fastpath.FastOptions` (None: as before; default bf16 on
        CUDA). Other settings: ``projector.fast_options``. Reversible with :meth:`unmerge`."""
        if compile is not None:
            self.fast_options.compile = compile
        if autocast is not None:
            self.fast_options.autocast = autocast
        self.adapter.merge()
        self._drop_fast_path()
        return self

    def unmerge(self) -> "LabelProjector":
        """Re-attach the deltas (needed to train further)."""
        self.adapter.unmerge()
        self._drop_fast_path()
        return self

    # ------------------------------------------------------------------ files and the Hub (persistence.py)
    save_pretrained = persistence.save_pretrained
    push_to_hub = persistence.push_to_hub
    from_pretrained = classmethod(persistence.from_pretrained)
    generate_model_card = persistence.generate_model_card
    config_dict = persistence.config_dict
    adapter_facts = persistence.adapter_facts

    def __repr__(self) -> str:
        base = self.config.base
        name = base.get("name") or base.get("factory") or "module"
        return (f"LabelProjector(base={base['kind']}:{name}, classes={self.num_classes}, "
                f"head_init={self.config.head_init}, adapter={self.num_adapter_parameters():,} params / "
                f"{self.adapter_file_bytes():,} bytes {self.config.adapter_dtype}, merged={self.merged})")
