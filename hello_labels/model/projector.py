"""``LabelProjector``: base encoder + LoRA + low-rank head, producing teacher-scale logits ``[B, C]`` online.

On disk (and on the Hub) a projector is ``config.json`` + ``adapter.safetensors`` (adapter tensors only, never
base weights) + a ``README.md`` model card; huggingface_hub's ``ModelHubMixin`` provides ``from_pretrained``
(local dir or Hub id, cache, revision, offline mode), ``save_pretrained`` and ``push_to_hub``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from torch import nn
from torch.nn.utils import parametrize

from ..errors import HelloLabelsError
from ..files import atomic_save_safetensors, atomic_write_json, atomic_write_text
from ..version import __version__
from . import hub
from .bases import Base, build_base, module_spec, parse_base
from .heads import (
    HEAD_INITS,
    ClassifierHead,
    prototype_weights,
    random_weights,
    resolve_class_names,
    resolve_templates,
    text_weights,
)
from .inputs import IMAGENET_MEAN, IMAGENET_STD, InputAdapter
from .lora import LoRA, LoRATarget, add_lora, isolate_parametrized_classes, lora_state_dict, merge_lora, unmerge_lora

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Default LoRA groups: the paper puts rank-8 LoRA on the convolutions of a CNN base (CLIP RN50); for
# transformer bases the usual choice is the attention projections.
CONV_TARGETS = [{"pattern": "*", "layers": ["Conv2d"], "rank": 8}]
ATTENTION_TARGETS = [{"pattern": "*attn*", "layers": ["Linear", "MultiheadAttention", "Attention"], "rank": 8}]


@dataclass
class ProjectorConfig:
    """Everything needed to rebuild a projector around its adapter tensors (saved as ``config.json``)."""

    base: Dict[str, Any]
    class_names: List[str]
    head_init: str = "text"
    templates: Optional[List[str]] = None
    head_rank: int = 64
    head_alpha: Optional[float] = None
    lora: List[Dict[str, Any]] = field(default_factory=list)
    input_mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    input_std: List[float] = field(default_factory=lambda: list(IMAGENET_STD))
    input_channels: int = 3
    image_size: Optional[List[int]] = None
    interpolation: str = "bilinear"
    normalize_features: bool = True
    seed: int = 0
    adapter_dtype: str = "float32"
    metadata: Dict[str, Any] = field(default_factory=dict)
    library_version: str = __version__

    @classmethod
    def from_dict(cls, data: dict) -> "ProjectorConfig":
        if not isinstance(data, dict):
            raise HelloLabelsError(f"projector config must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("base", "class_names") if k not in data]
        if missing:
            raise HelloLabelsError(f"projector config lacks {missing}: not a hello-labels config.json")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def default_lora_targets(encoder: nn.Module) -> List[dict]:
    """Conv preset for CNNs, attention preset for transformers (decided by which layers the encoder has)."""
    convs = sum(isinstance(m, nn.Conv2d) for m in encoder.modules())
    attention = any(isinstance(m, nn.MultiheadAttention) or type(m).__name__ == "Attention"
                    for m in encoder.modules())
    return [dict(t) for t in (ATTENTION_TARGETS if attention and convs <= 2 else CONV_TARGETS)]


class LabelProjector(
    nn.Module,
    ModelHubMixin,
    library_name="hello-labels",
    tags=["hello-labels", "dataset-distillation", "soft-labels", "label-projector"],
    pipeline_tag="image-classification",
    paper_url="https://arxiv.org/abs/2408.08201",
):
    """Images (normalised as the student sees them) -> teacher-scale logits ``[B, C]``.

    Build one with :meth:`from_base`, load one with :meth:`from_pretrained`. Only the LoRA matrices, the head
    delta, bias and logit scale (and a prototype head's weights) train and are saved.
    """

    def __init__(self, config: ProjectorConfig, base_module: Optional[nn.Module] = None,
                 prototype_images: Optional[torch.Tensor] = None, prototype_labels: Optional[torch.Tensor] = None,
                 lora_rank: Optional[int] = None, progress: bool = False):
        super().__init__()
        if isinstance(config, dict):
            config = ProjectorConfig.from_dict(config)
        self.config = config
        if config.head_init not in HEAD_INITS:
            raise HelloLabelsError(f"unknown head_init '{config.head_init}'; expected one of {list(HEAD_INITS)}")
        if config.adapter_dtype not in DTYPES:
            raise HelloLabelsError(f"unknown adapter_dtype '{config.adapter_dtype}'; expected one of {list(DTYPES)}")
        config.class_names = resolve_class_names(config.class_names)
        if config.head_init == "text":
            config.templates = resolve_templates(config.templates)

        self.base: Base = build_base(config.base, seed=config.seed, module=base_module)
        size = tuple(config.image_size) if config.image_size else self.base.image_size
        self.inputs = InputAdapter(config.input_mean, config.input_std, self.base.mean, self.base.std, size,
                                   in_channels=config.input_channels, interpolation=config.interpolation)
        weight, scale = self._head_weight(prototype_images, prototype_labels, progress)
        self.base.drop_text_tower()
        self.head = ClassifierHead(weight, scale)

        if not config.lora:
            config.lora = [dict(t, rank=lora_rank or t["rank"]) for t in default_lora_targets(self.base.encoder)]
        targets = [LoRATarget.parse(t) for t in config.lora]
        config.lora = [t.to_dict() for t in targets]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(config.seed)  # CPU only: torch.manual_seed would reseed CUDA too
            self._encoder_loras: Dict[str, LoRA] = add_lora(self.base.encoder, targets)
            self._head_loras: Dict[str, LoRA] = (
                add_lora(self.head, [LoRATarget("weight", config.head_rank, config.head_alpha)])
                if config.head_rank > 0 else {})
        self._merged = False
        self.requires_grad_(False)
        for name, tensor in self.adapter_state_dict().items():
            tensor.requires_grad_(name != "head.weight")
        self.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(cls, base: Union[str, nn.Module], pretrained=None, *, class_names, templates=None,
                  head_init: Optional[str] = None, head_rank: int = 64, head_alpha: Optional[float] = None,
                  lora_rank: Optional[int] = None, lora_targets: Optional[Sequence] = None,
                  input_mean: Sequence[float] = IMAGENET_MEAN, input_std: Sequence[float] = IMAGENET_STD,
                  input_channels: int = 3, image_size=None, interpolation: str = "bilinear",
                  prototype_images: Optional[torch.Tensor] = None, prototype_labels=None,
                  base_mean=None, base_std=None, base_image_size=None, base_factory: Optional[str] = None,
                  normalize_features: bool = True, seed: int = 0, metadata: Optional[dict] = None,
                  progress: bool = False) -> "LabelProjector":
        """Build a fresh projector (adapter at zero) around a base.

        ``base``: an open_clip/timm name (``"RN50"``, ``"open_clip:ViT-B-32"``, ``"timm:resnet50"``,
        ``"local-dir:/path"``) with ``pretrained`` tag/file, or an ``nn.Module`` encoder returning ``[B, D]``
        (then give ``base_mean``/``base_std``/``base_image_size``, and ``base_factory="pkg.mod:fn"`` so it can be
        rebuilt on load). ``head_init``: ``text`` (default for open_clip), ``prototype`` (needs
        ``prototype_images [N, C, H, W]`` normalised like the student's input and ``prototype_labels [N]``),
        ``random`` or ``zero``. ``lora_rank`` sets the rank of the default LoRA targets (8).
        """
        if isinstance(base, nn.Module):
            spec = module_spec(base_mean, base_std, base_image_size, factory=base_factory)
            module = base
        else:
            spec, module = parse_base(base, pretrained), None
        if head_init is None:
            head_init = "text" if spec["kind"] == "open_clip" else ("prototype" if prototype_images is not None else None)
            if head_init is None:
                raise HelloLabelsError(
                    "this base has no text tower: pass prototype_images/prototype_labels or head_init='random'")
        targets = [LoRATarget.parse(t).to_dict() for t in lora_targets] if lora_targets else []
        config = ProjectorConfig(
            base=spec, class_names=resolve_class_names(class_names), head_init=head_init,
            templates=templates if head_init == "text" else None, head_rank=head_rank, head_alpha=head_alpha,
            lora=targets, input_mean=list(input_mean), input_std=list(input_std), input_channels=input_channels,
            image_size=list(image_size) if isinstance(image_size, (list, tuple)) else
            ([image_size, image_size] if image_size else None),
            interpolation=interpolation, normalize_features=normalize_features, seed=seed,
            metadata=dict(metadata or {}))
        return cls(config, base_module=module, prototype_images=prototype_images,
                   prototype_labels=prototype_labels, lora_rank=lora_rank, progress=progress)

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

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Base features ``[B, D]`` (L2-normalised unless ``normalize_features=False``)."""
        feats = self.base(self.inputs(images))
        return F.normalize(feats, dim=-1) if self.config.normalize_features else feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, input_channels, H, W]`` normalised with ``input_mean/std`` -> logits ``[B, C]``."""
        return self.head(self.features(images))

    def soft_labels(self, images: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``softmax(logits / T)``, ``[B, C]``."""
        return F.softmax(self(images) / temperature, dim=-1)

    def train(self, mode: bool = True):
        """Train mode for the adapter (LoRA dropout) only: the base, BatchNorm included, stays in eval mode."""
        super().train(mode)
        self.base.eval()
        for lora in list(self._encoder_loras.values()) + list(self._head_loras.values()):
            lora.train(mode)
        return self

    # ------------------------------------------------------------------ adapter
    def trainable_parameters(self) -> List[nn.Parameter]:
        """The parameters an optimiser should update (LoRA A/B, head delta, bias, logit scale)."""
        return [p for p in self.adapter_state_dict().values() if p.requires_grad]

    def adapter_state_dict(self) -> Dict[str, torch.Tensor]:
        """The tensors that make up the adapter file, by stable name (unaffected by merging)."""
        out = lora_state_dict(self._encoder_loras, prefix="encoder.")
        out.update(lora_state_dict(self._head_loras, prefix="head."))
        out["head.bias"] = self.head.bias
        out["head.logit_scale"] = self.head.logit_scale
        if self.config.head_init == "prototype":
            out["head.weight"] = self._head_weight_param()
        return out

    def _head_weight_param(self) -> nn.Parameter:
        """The frozen head weight itself (not the parametrized ``W + delta``)."""
        if parametrize.is_parametrized(self.head, "weight"):
            return self.head.parametrizations.weight.original
        return self.head.weight

    def num_adapter_parameters(self) -> int:
        return sum(t.numel() for t in self.adapter_state_dict().values())

    def num_adapter_bytes(self, dtype: Optional[str] = None) -> int:
        """Bytes of adapter tensor data at ``dtype`` (default: the configured storage dtype)."""
        itemsize = torch.empty(0, dtype=DTYPES[dtype or self.config.adapter_dtype]).element_size()
        return self.num_adapter_parameters() * itemsize

    def load_adapter_state_dict(self, tensors: Dict[str, torch.Tensor], source: str = "adapter") -> None:
        """Copy adapter tensors in, after checking names and shapes against this base and class list."""
        expected = self.adapter_state_dict()
        bias = tensors.get("head.bias")
        if bias is not None and bias.shape != expected["head.bias"].shape:
            raise HelloLabelsError(
                f"{source} was trained for {bias.shape[0] if bias.ndim else 0} classes but this projector has "
                f"{self.num_classes} class names")
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise HelloLabelsError(f"{source} does not match base '{self.config.base.get('name', 'module')}' "
                                   f"and LoRA targets: {detail} ({len(missing)} missing, {len(unexpected)} unexpected)")
        for name, target in expected.items():
            if tensors[name].shape != target.shape:
                raise HelloLabelsError(f"{source}: tensor '{name}' has shape {list(tensors[name].shape)} but the base "
                                       f"expects {list(target.shape)}")
        was_merged = self._merged
        self.unmerge()
        with torch.no_grad():
            for name, target in expected.items():
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
        return self._merged

    def merge(self) -> "LabelProjector":
        """Fold all deltas into the weights: inference costs the same as the bare base. Reversible."""
        if not self._merged:
            merge_lora(self.base.encoder, self._encoder_loras)
            merge_lora(self.head, self._head_loras)
            self._merged = True
        return self

    def unmerge(self) -> "LabelProjector":
        """Re-attach the deltas (needed to train further)."""
        if self._merged:
            unmerge_lora(self.base.encoder, self._encoder_loras)
            unmerge_lora(self.head, self._head_loras)
            self._merged = False
        return self

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory, *, dtype: Optional[str] = None, **kwargs):
        """Write ``config.json``, ``adapter.safetensors`` (``dtype``: float32/float16/bfloat16) and ``README.md``."""
        if dtype is not None:
            if dtype not in DTYPES:
                raise HelloLabelsError(f"unknown dtype '{dtype}'; expected one of {list(DTYPES)}")
            self.config.adapter_dtype = dtype
        return super().save_pretrained(save_directory, **kwargs)

    def config_dict(self) -> dict:
        out = asdict(self.config)
        out["library_version"] = __version__
        return out

    def _save_pretrained(self, save_directory: Path) -> None:
        dtype = DTYPES[self.config.adapter_dtype]
        tensors = {k: v.detach().to(dtype) for k, v in self.adapter_state_dict().items()}
        atomic_save_safetensors(tensors, save_directory / ADAPTER_FILE,
                                metadata={"format": "pt", "hello_labels": __version__})
        atomic_write_json(save_directory / CONFIG_FILE, self.config_dict())
        atomic_write_text(save_directory / "README.md", str(self.generate_model_card()))

    def generate_model_card(self, *args, **kwargs):
        from .card import model_card

        return model_card(self)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: Optional[str] = None,
                        cache_dir=None, force_download: bool = False, local_files_only: bool = False,
                        token=None, **model_kwargs) -> "LabelProjector":
        """Load from a local directory or a Hub repo id (``revision`` pins a branch/tag/commit). Extra kwargs:
        ``base_module`` (for a custom-module base), ``map_location`` (default ``"cpu"``)."""
        model_id = str(pretrained_model_name_or_path)
        # Fetch the config first: the mixin would swallow a missing repo/revision into "no config".
        hub.resolve_file(model_id, CONFIG_FILE, revision=revision, cache_dir=cache_dir,
                         force_download=force_download, local_files_only=local_files_only, token=token)
        with hub.translate_errors(model_id, revision):
            return super().from_pretrained(model_id, revision=revision, cache_dir=cache_dir,
                                           force_download=force_download, local_files_only=local_files_only,
                                           token=token, **model_kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         config=None, base_module: Optional[nn.Module] = None, map_location="cpu",
                         **unused) -> "LabelProjector":
        if config is None:
            raise HelloLabelsError(f"'{model_id}' has no {CONFIG_FILE}: not a hello-labels projector")
        if not isinstance(config, ProjectorConfig):
            config = ProjectorConfig.from_dict(config)
        adapter_path = hub.resolve_file(model_id, ADAPTER_FILE, revision=revision, cache_dir=cache_dir,
                                        force_download=force_download, local_files_only=local_files_only,
                                        token=token)
        tensors = hub.read_safetensors(adapter_path)
        projector = cls(config, base_module=base_module)
        projector.load_adapter_state_dict(tensors, source=f"adapter {adapter_path}")
        return projector.to(map_location)

    def __repr__(self) -> str:
        base = self.config.base
        name = base.get("name") or base.get("factory") or "module"
        return (f"LabelProjector(base={base['kind']}:{name}, classes={self.num_classes}, "
                f"head_init={self.config.head_init}, adapter={self.num_adapter_parameters():,} params / "
                f"{self.num_adapter_bytes():,} bytes {self.config.adapter_dtype}, merged={self._merged})")
