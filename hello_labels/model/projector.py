"""``LabelProjector``: base encoder + LoRA + low-rank head, producing teacher-scale logits ``[B, C]`` online.

On disk (and on the Hub) a projector is ``config.json`` + ``adapter.safetensors`` (adapter tensors only, never
base weights) + a ``README.md`` model card; huggingface_hub provides download (local dir or Hub id, cache,
revision, offline mode) and upload (``push_to_hub``, checked first by :mod:`.publish`: nothing published may
name the author's machine). Loading reads
``config.json`` strictly (:mod:`.config`), runs no factory it names unless trusted, and checks the base's pin.

The public methods follow huggingface_hub's ``ModelHubMixin`` (``save_pretrained``, ``from_pretrained``,
``push_to_hub`` with its arguments) without inheriting it: the mixin's save deletes ``config.json`` before writing
(a kill then leaves no projector; ours is atomic), its load decodes ``config.json`` leniently into constructor
arguments (ours refuses unknown keys and runs nothing a file names) and its push uploads the folder unchecked.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError, CorruptFileError, HelloLabelsError
from ..version import __version__
from . import directory, hub
from .adapter import Adapter, default_lora_targets
from .bases import Base, base_pin, build_base, default_head, module_spec, parse_base, pin_mismatch
from .card import AdapterFacts, fidelity_plot, model_card
from .config import ADAPTER_DTYPES, DTYPES, ProjectorConfig, check_config, check_lora, read_config
from .directory import ADAPTER_FILE, CONFIG_FILE  # noqa: F401  (also imported from here)
from .fastpath import CHUNK_BYTES, FastOptions, FastProjector
from .heads import (
    ClassifierHead,
    prototype_weights,
    random_weights,
    resolve_class_names,
    resolve_templates,
    text_weights,
)
from .inputs import IMAGENET_MEAN, IMAGENET_STD, InputAdapter
from .lora import LoRATarget, isolate_parametrized_classes
from .quantize import QUANTIZED, quantize_adapter, quantized_bytes

log = logging.getLogger(__name__)


class UnpinnedBaseWarning(UserWarning):
    """A projector file without a base pin was loaded: its base weights could not be checked."""


def pinned(pin) -> bool:
    """Whether a ``base_pin`` fixes the weights (a sha256 of the weights file or of the tensors)."""
    return isinstance(pin, dict) and bool(pin.get("weights_sha256") or pin.get("tensors_sha256"))


class ConsumedEncoder(nn.Module):
    """Where a projector's encoder was before :meth:`LabelProjector.for_labels` (``copy=False``) took it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise HelloLabelsError("this projector's encoder went into the engine for_labels(copy=False) built: label "
                               "with that engine, or load the projector again")


class LabelProjector(nn.Module):
    """Images (normalised as the student sees them) -> teacher-scale logits ``[B, C]``.

    Build one with :meth:`from_base`, load one with :meth:`from_pretrained` (local folder or Hub id), save with
    :meth:`save_pretrained`, publish with :meth:`push_to_hub`: the names and arguments of huggingface_hub's
    ``ModelHubMixin``, implemented here (see the module docstring for why it is not inherited). Only the LoRA
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
        self._pin_base(check_base)
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
        self.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(cls, base: Union[str, dict, nn.Module], pretrained=None, *, class_names, templates=None,
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
        ``"local-dir:/path"``) with ``pretrained`` (an open_clip tag/file; for timm the weights the name implies
        unless ``pretrained=False``, or a checkpoint file); a base spec dict (data: a ``module`` spec's factory
        does not run from it); or an ``nn.Module`` encoder returning ``[B, D]`` (then give ``base_mean``/
        ``base_std``/``base_image_size``, and ``base_factory="pkg.mod:fn"`` so it can be rebuilt on load).
        ``head_init``: ``text`` (default for bases with a text tower), ``prototype`` (needs
        ``prototype_images [N, C, H, W]`` normalised like the student's input and ``prototype_labels [N]``),
        ``random`` or ``zero``. ``lora_rank`` sets the rank of the default LoRA targets (8).
        """
        if isinstance(base, nn.Module):
            spec = module_spec(base_mean, base_std, base_image_size, factory=base_factory)
            module = base
        else:
            spec, module = (dict(base) if isinstance(base, dict) else parse_base(base, pretrained)), None
        if head_init is None:
            head_init = default_head(spec) or ("prototype" if prototype_images is not None else None)
            if head_init is None:
                raise BadInputError(
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
        # a name or factory the caller wrote in code is trusted; a spec dict is data
        return cls(config, base_module=module, prototype_images=prototype_images,
                   prototype_labels=prototype_labels, lora_rank=lora_rank, progress=progress,
                   trust_remote_code=not isinstance(base, dict))

    def _pin_base(self, check: bool) -> None:
        """Record the base weights' fingerprint (new projector, 0.x file) or check it against the recorded one.
        Runs before LoRA and merging touch the weights."""
        recorded = self.config.base_pin
        if not pinned(recorded):  # a new projector, or a file without a pin (see _from_pretrained's warning)
            self.config.base_pin = base_pin(self.base)
            return
        differs = pin_mismatch(recorded, self.base)
        if differs:
            message = (f"base weights differ from those this adapter was trained on ({differs}): its labels would "
                       f"change")
            if check:
                raise HelloLabelsError(f"{message}; use the same base weights, or pass check_base=False "
                                       f"(CLI: --ignore-base-mismatch) to load it anyway")
            log.warning("%s; loading anyway (check_base=False)", message)

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
        options = FastOptions(compile=compile, autocast=autocast, channels_last=channels_last,
                              chunk_bytes=chunk_bytes)
        if copy:
            return FastProjector(self, options)
        engine = FastProjector(self.merge(), options, copy=False)  # merged in place: nothing left to copy
        self.base.encoder = self.adapter.__dict__["_hosts"]["encoder"] = ConsumedEncoder()  # nothing keeps the old
        return engine

    # ---- deprecated (one release): the engine used to be built and cached behind projector(images)
    @property
    def fast_options(self) -> FastOptions:
        """Deprecated: pass the options to :meth:`for_labels`. What :meth:`fast_path` builds with."""
        warnings.warn("LabelProjector.fast_options is deprecated: pass the options to for_labels(...)",
                      DeprecationWarning, stacklevel=2)
        return self._deprecated_options()

    def _deprecated_options(self) -> FastOptions:
        return self.__dict__.setdefault("_fast_options", FastOptions())

    def fast_path(self, cache: bool = True) -> FastProjector:
        """Deprecated: ``for_labels(**options)`` once, then call its result. A new engine on every call (no cache),
        built with the options of :attr:`fast_options`; ``cache`` is ignored."""
        warnings.warn("LabelProjector.fast_path() is deprecated and builds a new engine on every call: build one "
                      "with for_labels(...) and reuse it", DeprecationWarning, stacklevel=2)
        return FastProjector(self, self._deprecated_options())

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
        dtype = dtype or self.config.adapter_dtype
        if dtype in QUANTIZED:
            return quantized_bytes(self.adapter_state_dict(), dtype)
        itemsize = torch.empty(0, dtype=DTYPES[dtype]).element_size()
        return self.num_adapter_parameters() * itemsize

    def adapter_file(self, dtype: Optional[str] = None) -> bytes:
        """``adapter.safetensors`` as a save at ``dtype`` (default: the configured one) writes it."""
        dtype = dtype or self.config.adapter_dtype
        adapter = self.adapter_state_dict()
        if dtype in QUANTIZED:
            tensors, metadata = quantize_adapter(adapter, dtype)
        else:
            tensors, metadata = {k: v.to(DTYPES[dtype]) for k, v in adapter.items()}, {}
        bound = {directory.CLASSES_KEY: directory.class_order_digest(self.config.class_names)}
        return directory.adapter_blob(tensors, metadata={"format": "pt", **bound, **metadata})

    def adapter_file_bytes(self, dtype: Optional[str] = None) -> int:
        """Size of ``adapter.safetensors`` saved at ``dtype``: the adapter's bytes wherever a size is shown
        (``info``, the card, ``repr``, the demo's table)."""
        return len(self.adapter_file(dtype))

    def adapter_facts(self, dtype: Optional[str] = None, file_bytes: Optional[int] = None) -> AdapterFacts:
        """What the card and ``info`` say about the adapter (parameters, file bytes, head rank as built)."""
        dtype = dtype or self.config.adapter_dtype
        return AdapterFacts(parameters=self.num_adapter_parameters(),
                            file_bytes=self.adapter_file_bytes(dtype) if file_bytes is None else file_bytes,
                            dtype=dtype, head_rank=self.adapter.head_rank, image_size=self.inputs.size)

    def load_adapter_state_dict(self, tensors: Dict[str, torch.Tensor], source: str = "adapter") -> None:
        """Copy adapter tensors in, after checking names, shapes (against this base and class list) and float
        dtypes."""
        expected = self.adapter_state_dict()
        bias = tensors.get("head.bias")
        if bias is not None and bias.shape != expected["head.bias"].shape:
            raise CorruptFileError(
                f"{source} was trained for {bias.shape[0] if bias.ndim else 0} classes but this projector has "
                f"{self.num_classes} class names")
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise CorruptFileError(f"{source} does not match base '{self.config.base.get('name', 'module')}' "
                                   f"and LoRA targets: {detail} ({len(missing)} missing, {len(unexpected)} unexpected)")
        for name, target in expected.items():
            if tensors[name].shape != target.shape:
                raise CorruptFileError(f"{source}: tensor '{name}' has shape {list(tensors[name].shape)} but the base "
                                       f"expects {list(target.shape)}")
            if not tensors[name].is_floating_point():  # copied in, an integer tensor would become whole numbers
                raise CorruptFileError(f"{source}: tensor '{name}' holds {tensors[name].dtype} values where floats "
                                       f"are expected")
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
        :meth:`unmerge`. ``compile`` / ``autocast`` are deprecated (pass them to :meth:`for_labels`); they set
        what the deprecated :meth:`fast_path` builds with."""
        if compile is not None or autocast is not None:
            warnings.warn("merge(compile=, autocast=) is deprecated: pass them to for_labels(...)",
                          DeprecationWarning, stacklevel=2)
            options = self._deprecated_options()
            options.compile = options.compile if compile is None else compile
            options.autocast = options.autocast if autocast is None else autocast
        self.adapter.merge()
        return self

    def unmerge(self) -> "LabelProjector":
        """Re-attach the deltas (needed to train further)."""
        self.adapter.unmerge()
        return self

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory, *, dtype: Optional[str] = None, config=None,
                        repo_id: Optional[str] = None, push_to_hub: bool = False, model_card_kwargs=None,
                        **push_to_hub_kwargs):
        """Write ``config.json``, ``adapter.safetensors`` (``dtype``, this save only: ``float32``, ``float16``,
        ``bfloat16``, or quantized ``int8`` / ``int4`` with group-wise float16 scales, see
        :mod:`hello_labels.model.quantize`; default the configured ``adapter_dtype``) and a ``README.md`` card into
        ``save_directory``, atomically as a whole: after a kill at any instant the folder holds the old projector
        or the new one, complete and loadable (``config.json`` is the commit point; see
        :mod:`hello_labels.model.directory`). Distill's ``metrics.json`` / ``train_state.pt`` stay only if
        ``train_state.pt`` holds this very adapter; other files are left alone. ``push_to_hub=True`` then pushes
        the folder to ``repo_id`` (default: the folder's name) as :meth:`push_to_hub` does (``branch=``,
        ``private=``, ``token=``, ``commit_message=``); returns the ``CommitInfo`` then, else ``None``."""
        if config is not None:
            raise BadInputError("save_pretrained writes the projector's own config.json: config= is not accepted")
        with self._saving_as(dtype):
            self._save_pretrained(Path(save_directory))
            if push_to_hub:
                from .publish import push_directory

                branch = push_to_hub_kwargs.pop("branch", None)
                return push_directory(save_directory, repo_id or Path(save_directory).name, revision=branch,
                                      **push_to_hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, dtype: Optional[str] = None, branch: Optional[str] = None,
                    private: Optional[bool] = None, token=None, commit_message: Optional[str] = None,
                    license: Optional[str] = None):
        """Save this projector (``dtype`` as in :meth:`save_pretrained`) and upload it to ``repo_id`` (created if
        needed) on ``branch`` in one commit, after the checks of :func:`hello_labels.model.publish.push_directory`
        (no file may name this machine; the base must be one others can fetch); the card names ``repo_id`` and
        ``license`` (if given). Returns the ``CommitInfo`` (``.oid`` is the commit sha)."""
        import tempfile

        from .publish import check_portable_config, check_repo_id, push_directory

        check_repo_id(repo_id)
        check_portable_config(self.config_dict(), "projector config")  # before any work
        with tempfile.TemporaryDirectory(prefix="hello-labels-push-") as tmp:
            self.save_pretrained(tmp, dtype=dtype)
            return push_directory(tmp, repo_id, revision=branch, private=private, token=token,
                                  commit_message=commit_message, license=license)

    @contextlib.contextmanager
    def _saving_as(self, dtype: Optional[str]):
        """Save with ``dtype`` (default: the enclosing save's, else the configured one) while inside; the
        projector's own ``adapter_dtype`` (its later saves) stays as it is."""
        if dtype is not None and dtype not in ADAPTER_DTYPES:
            raise BadInputError(f"unknown dtype '{dtype}'; expected one of {list(ADAPTER_DTYPES)}")
        outer = self.__dict__.get("_save_dtype")
        self.__dict__["_save_dtype"] = dtype or outer or self.config.adapter_dtype
        try:
            yield
        finally:
            if outer is None:
                del self.__dict__["_save_dtype"]
            else:
                self.__dict__["_save_dtype"] = outer

    def config_dict(self, adapter_dtype: Optional[str] = None) -> dict:
        """``config.json``'s content; ``adapter_dtype`` overrides the stored dtype (for one save)."""
        out = asdict(self.config)
        out.pop("adapter_sha256")  # a property of one saved file, added by the save that writes it
        out["adapter_dtype"] = adapter_dtype or self.config.adapter_dtype
        out["library_version"] = __version__
        return out

    def _save_pretrained(self, save_directory: Path) -> None:
        dtype_name = self.__dict__.get("_save_dtype", self.config.adapter_dtype)
        blob = self.adapter_file(dtype_name)
        plot = fidelity_plot(self.config)
        card = model_card(self.config, self.adapter_facts(dtype_name, file_bytes=len(blob)), plot=plot is not None)
        directory.save_projector(save_directory, self.config_dict(dtype_name), blob, str(card),
                                 adapter=self.adapter_state_dict(), plot=plot)

    def generate_model_card(self, dtype: Optional[str] = None, repo_id: Optional[str] = None):
        """The ``README.md`` card a save at ``dtype`` writes (``repo_id``: the id its usage snippets name)."""
        dtype = dtype or self.__dict__.get("_save_dtype") or self.config.adapter_dtype
        return model_card(self.config, self.adapter_facts(dtype), plot=fidelity_plot(self.config) is not None,
                          repo_id=repo_id)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: Optional[str] = None,
                        cache_dir=None, force_download: bool = False, local_files_only: bool = False,
                        token=None, trust_remote_code: bool = False, check_base: bool = True,
                        check_inputs: bool = True, **model_kwargs) -> "LabelProjector":
        """Load from a local directory or a Hub repo id (``revision`` pins a branch/tag/commit).

        Loading runs no code the files name: a custom-module base is handed in as ``base_module=`` or, only with
        ``trust_remote_code=True``, rebuilt by the factory its config names (nothing in the files can switch
        that on). ``check_base=False`` loads even if the base weights differ from those pinned at training;
        ``check_inputs=False`` skips the per-call input range check. ``map_location`` defaults to ``"cpu"``."""
        model_id = str(pretrained_model_name_or_path)
        # Read the config ourselves, strictly: the mixin would turn its keys into constructor arguments.
        config_path = hub.resolve_file(model_id, CONFIG_FILE, revision=revision, cache_dir=cache_dir,
                                       force_download=force_download, local_files_only=local_files_only, token=token)
        config = read_config(config_path)
        with hub.translate_errors(model_id, revision):
            return cls._from_pretrained(model_id=model_id, revision=revision, cache_dir=cache_dir,
                                        force_download=force_download, local_files_only=local_files_only,
                                        token=token, config=config, trust_remote_code=trust_remote_code,
                                        check_base=check_base, check_inputs=check_inputs, **model_kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         config=None, base_module: Optional[nn.Module] = None, map_location="cpu",
                         trust_remote_code: bool = False, check_base: bool = True, check_inputs: bool = True,
                         **unused) -> "LabelProjector":
        if config is None:
            raise BadInputError(f"'{model_id}' has no {CONFIG_FILE}: not a hello-labels projector")
        if not isinstance(config, ProjectorConfig):
            config = ProjectorConfig.from_dict(config, source=f"{model_id}/{CONFIG_FILE}")
        unpinned = not pinned(config.base_pin)
        sha256 = config.adapter_sha256  # the adapter file this config.json was committed with
        tensors, adapter_path = directory.read_adapter(model_id, sha256, lambda name: hub.resolve_file(
            model_id, name, revision=revision, cache_dir=cache_dir, force_download=force_download,
            local_files_only=local_files_only, token=token), class_names=config.class_names)
        projector = cls(config, base_module=base_module, trust_remote_code=trust_remote_code, check_base=check_base)
        if unpinned:  # 0.x files, or a pin removed: nothing to check the base against; never silently
            projector.base_unpinned = True
            warnings.warn(f"{model_id}: {CONFIG_FILE} has no base_pin, so the base weights were not checked against "
                          f"those the adapter was trained on (unpinned; its labels are right only on the same "
                          f"weights); saving it again pins the base it loaded with", UnpinnedBaseWarning, stacklevel=3)
        projector.load_adapter_state_dict(tensors, source=f"adapter {adapter_path}")
        projector.check_inputs = check_inputs
        return projector.to(map_location)

    def __repr__(self) -> str:
        base = self.config.base
        name = base.get("name") or base.get("factory") or "module"
        return (f"LabelProjector(base={base['kind']}:{name}, classes={self.num_classes}, "
                f"head_init={self.config.head_init}, adapter={self.num_adapter_parameters():,} params / "
                f"{self.adapter_file_bytes():,} bytes {self.config.adapter_dtype}, merged={self.merged})")
