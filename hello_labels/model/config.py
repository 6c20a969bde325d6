"""``ProjectorConfig`` (the dataclass: :mod:`.settings`): what ``config.json`` holds, and its strict, versioned
reading.

``format_version`` (an integer, now 1) says how to read the file; a newer one is refused (upgrade hello-labels).
A file without it was written by hello-labels 0.x (``library_version`` 0.*, or none) and is read as format 1 when
every required field is present; any other file without it is refused.

Required, because they change the logits: ``base`` (exactly the keys of its kind in ``bases.BASE_KINDS``),
``class_names``, ``head_init``,
``templates`` (a text head's prompts), ``head_rank``, ``head_alpha`` (null: the rank), ``lora``, ``input_mean``,
``input_std``, ``input_channels``, ``image_size`` (null: the base's own), ``interpolation``,
``normalize_features``, ``seed`` (random heads and random-init bases).
Optional: ``templates`` of a non-text head, ``adapter_dtype`` (how the tensors are stored; float32), ``metadata``
(free-form, except the keys hello-labels writes and reads back: :data:`METADATA`, whose types are
checked), ``library_version`` (who wrote it), ``base_pin`` (the fingerprint of the base weights, checked on
load; absent from 0.x files), ``format_version`` (absent from 0.x files) and ``adapter_sha256`` (the adapter file
this ``config.json`` was committed with, see :mod:`hello_labels.model.directory`; checked on load).
Unknown keys, wrong types, invalid JSON or a non-object are refused in one line naming the file and the field, and
so are values no run can use (docs/safety.md, "Projector files"): more than :data:`MAX_CLASSES` class names, an
empty or repeated one (ImageNet-1K's own open_clip list, which names two classes each 'missile' and 'sunglasses',
excepted), a mean outside [0, 1] or a std outside [``STD_MIN``, 1] (pixels in [0, 1]), an image side above
``MAX_IMAGE_SIZE``, a rank above :data:`MAX_RANK`, an alpha that is not in (0, :data:`MAX_ALPHA`], a seed outside
[0, 2**63). A projector built in code is checked the same way (:class:`BadInputError`), once, when it is built.
"""
from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import fields
from typing import Any, Dict, List, Optional, Type

import torch

from ..constants import ADAPTER_DTYPES, FLOAT_DTYPES, HEAD_INITS, QUANTIZED_DTYPES
from ..errors import CorruptFileError, HelloLabelsError
from ..files import is_sha256, loads_json
from ..version import __version__
from .bases import check_spec, is_number, short
from .heads import is_template
from .inputs import (
    INTERPOLATIONS,
    MAX_IMAGE_SIZE,
    STD_MIN,
    plausible_mean,
    plausible_side,
    plausible_std,
)
from .quantize import QUANTIZED
from .settings import FORMAT_VERSION, SETTINGS, ProjectorConfig  # noqa: F401  (also imported from here)

DTYPES = {name: getattr(torch, name) for name in FLOAT_DTYPES}  # ADAPTER_DTYPES (constants.py) stored as floats
assert tuple(QUANTIZED) == QUANTIZED_DTYPES  # and those quantize.py stores
# Bounds of what a config may state (module docstring). 10^6 classes is 46x ImageNet-21K's 21,841 and above the
# largest public label sets; a larger rank only ever clamps (LoRA ranks clamp to the weight's shape); alpha / rank
# scales a delta, so a huge alpha overflows the logits and 0 silences the adapter; seeds are 63-bit (seeds.py).
MAX_CLASSES = 1_000_000
MAX_RANK = 65536
MAX_ALPHA = 65536.0
SEED_LIMIT = 2 ** 63


def fresh_config(base: Dict[str, Any], class_names, lora: Optional[List[dict]] = None,
                 start: Optional[ProjectorConfig] = None, **settings) -> ProjectorConfig:
    """The config of a new projector on the base spec ``base``: the :data:`SETTINGS` of ``start`` (another
    projector's config, say; else the defaults) with ``settings`` over them (``image_size``: a side or ``[H, W]``),
    ``lora`` targets (None: ``start``'s, else the base's defaults). Nothing recorded of another build carries over.
    Unknown settings are a ``TypeError``, as unknown keyword arguments are."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"unknown projector settings {unknown}; ProjectorConfig's are {list(SETTINGS)}")
    values = {k: copy.deepcopy(getattr(start, k)) for k in SETTINGS} if start else {}
    values.update(settings)
    size = values.get("image_size")
    if size is not None:
        values["image_size"] = list(size) if isinstance(size, (list, tuple)) else [size, size]
    values.update({k: list(values[k]) for k in ("input_mean", "input_std") if k in values})
    values["metadata"] = dict(values.get("metadata") or {})
    if values.get("head_init", ProjectorConfig.head_init) != "text":
        values["templates"] = None  # prompts only mean something to a text head
    if lora is None:
        lora = copy.deepcopy(start.lora) if start else []
    return ProjectorConfig(base=base, class_names=class_names, lora=lora, **values)


def read_config(path: str) -> ProjectorConfig:
    """Parse and validate a ``config.json`` file."""
    with open(path, "rb") as fh:
        return parse_config(fh.read(), str(path))


def parse_config(raw: bytes, source: str) -> ProjectorConfig:
    """Parse and validate ``config.json``'s bytes (``source`` names them in errors)."""
    try:
        data = loads_json(raw)
    except CorruptFileError as err:
        raise CorruptFileError(f"{source}: {err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        detail = f"{err.msg} at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise CorruptFileError(f"{source} is not valid JSON ({detail})") from err
    return ProjectorConfig.from_dict(data, source=source)


# ----------------------------------------------------------------------------- validation
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _in(low, high):
    """An integer in ``[low, high]``."""
    return lambda v: _is_int(v) and low <= v <= high


def _alpha(v) -> bool:
    return v is None or (is_number(v) and 0 < v <= MAX_ALPHA)


def class_names_problem(names: List[str]) -> Optional[str]:
    """What makes a list of class names unusable as a head's rows (one line), else None: no names or more than
    :data:`MAX_CLASSES`, an empty one, or one named twice (except in open_clip's ImageNet-1K list, which does)."""
    if not 0 < len(names) <= MAX_CLASSES:
        return f"must list 1 to {MAX_CLASSES:,} classes, got {len(names):,}"
    empty = next((i for i, n in enumerate(names) if not n.strip()), None)
    if empty is not None:
        return f"has an empty name at index {empty}: every output row needs a class name"
    twice = [n for n, k in Counter(names).items() if k > 1]
    if twice and not _is_imagenet(names):
        rows = [i for i, n in enumerate(names) if n == twice[0]]
        return (f"names {short(twice[0])} {len(rows)} times (rows {rows[:3]}): each output row needs its own class "
                f"(a copied line, or a class missing?)")
    return None


def _is_imagenet(names: List[str]) -> bool:
    import open_clip

    return names == list(open_clip.IMAGENET_CLASSNAMES)


def _list_of(check, n=None):
    return lambda v: isinstance(v, list) and (n is None or len(v) == n) and all(check(x) for x in v)


_str = lambda v: isinstance(v, str)  # noqa: E731
_opt = lambda check: (lambda v: v is None or check(v))  # noqa: E731

# field -> (test, what the error says it must be, required)
_FIELDS = {
    "base": (lambda v: isinstance(v, dict), "an object", True),
    # class_names: then class_names_problem (count, empty and repeated names)
    "class_names": (lambda v: _list_of(_str)(v) and len(v) > 0, "a non-empty list of strings", True),
    "head_init": (lambda v: v in HEAD_INITS, f"one of {list(HEAD_INITS)}", True),
    "templates": (_opt(_list_of(is_template)), "a list of strings that format one class name with '{}'", False),
    "head_rank": (_in(0, MAX_RANK), f"an integer from 0 to {MAX_RANK}", True),
    "head_alpha": (_alpha, f"a number in (0, {MAX_ALPHA:g}] or null", True),
    "lora": (_list_of(lambda t: isinstance(t, dict)), "a list of LoRA target objects", True),
    "input_mean": (lambda v: _list_of(is_number)(v) and len(v) in (1, 3) and all(map(plausible_mean, v)),
                   "a list of 1 or 3 numbers in [0, 1] (pixels in [0, 1])", True),
    "input_std": (lambda v: _list_of(is_number)(v) and len(v) in (1, 3) and all(map(plausible_std, v)),
                  f"a list of 1 or 3 numbers in [{STD_MIN:g}, 1] (pixels in [0, 1])", True),
    "input_channels": (lambda v: v in (1, 3) and _is_int(v), "1 or 3", True),
    "image_size": (_opt(_list_of(plausible_side, 2)), f"[H, W] of 1 to {MAX_IMAGE_SIZE} pixels, or null", True),
    "interpolation": (lambda v: v in INTERPOLATIONS, f"one of {list(INTERPOLATIONS)}", True),
    "normalize_features": (lambda v: isinstance(v, bool), "true or false", True),
    "seed": (_in(0, SEED_LIMIT - 1), "an integer in [0, 2**63)", True),
    "adapter_dtype": (lambda v: v in ADAPTER_DTYPES, f"one of {list(ADAPTER_DTYPES)}", False),
    "metadata": (lambda v: isinstance(v, dict), "an object", False),
    "library_version": (_str, "a string", False),
    "format_version": (lambda v: _is_int(v) and v >= 1, "a positive integer", False),
    "base_pin": (_opt(lambda v: isinstance(v, dict) and all(isinstance(x, (str, type(None))) for x in v.values())),
                 "an object of strings", False),
    "adapter_sha256": (_opt(is_sha256), "64 lowercase hex digits (a sha256)", False),
}
assert set(_FIELDS) == {f.name for f in fields(ProjectorConfig)}

# LoRA target key -> (test, what it must be); pattern and rank required (saved files state every key)
_LORA = {"pattern": (_str, "a string"), "rank": (_in(1, MAX_RANK), f"an integer from 1 to {MAX_RANK}"),
         "alpha": (_alpha, f"a number in (0, {MAX_ALPHA:g}] or null"),
         "dropout": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
         "layers": (_list_of(_str), "a list of layer class names")}


# ----------------------------------------------------------------------------- metadata
# The metadata keys hello-labels writes and reads back (the card, `info`, `list`, `eval`), each with its shape; other
# keys are free-form. key -> (test or nested schema, what it must be, required); nested objects may hold more keys.
NUMBER = (is_number, "a number")
COUNT = (lambda v: _is_int(v) and v >= 0, "a non-negative integer")
TEXT = (_str, "a string")
FIDELITY = {"agreement": (*NUMBER, True), "kl": (*NUMBER, True), "temperature": (*NUMBER, True),
            "views": (*COUNT, True), "in_sample": (lambda v: isinstance(v, bool), "true or false", False),
            "per_class": (lambda v: isinstance(v, dict) and all(is_number(x) for x in v.values()),
                          "an object of numbers", False),
            "mix_type": (_opt(_str), "a string or null", False)}
_TEACHER = {"spec": (*TEXT, True), "weights_sha256": (*TEXT, False), "tensors_digest": (*TEXT, False),
            "weight": (*NUMBER, False)}
_LABELS = {"source": (*TEXT, True), "name": (*TEXT, True), "images": (*COUNT, False),
           "batch_size": (*COUNT, False), "values": (*TEXT, False)}
_DATASET = {"name": (*TEXT, True), "images": (_opt(_is_int), "an integer or null", False), "classes": (*COUNT, False),
            "fingerprint": (_opt(_str), "a string or null", False)}
_LABEL_DIR = dict(_LABELS, epochs=(*COUNT, True), files=(*COUNT, True), bytes=(*COUNT, True),
                  first_file=(*TEXT, True))


def _teacher(v) -> bool:
    """Teachers (a list), stored labels (an object: ``convert``) or a free text."""
    if isinstance(v, list):
        return all(fits(t, _TEACHER) for t in v)
    if isinstance(v, dict):
        return fits(v, _LABEL_DIR if v.get("source") == "label_dir" else _LABELS)
    return isinstance(v, str)


METADATA = {
    "fidelity": (FIDELITY, "an object", False),
    "fidelity_mixed": (FIDELITY, "an object", False),
    "teacher": (_teacher, "a list of teachers ({spec, weights_sha256 | tensors_digest, weight}), a stored-labels "
                          "object ({source, name, ...}) or a string", False),
    "dataset": (lambda v: isinstance(v, str) or fits(v, _DATASET), "a string or an object {name, images, classes, "
                                                                     "fingerprint}", False),
    "datasets": (_list_of(_str), "a list of Hub dataset ids", False),
    "labels_trained": ({"first_file": (*TEXT, True), "epochs": (*COUNT, True)}, "an object", False),
    "license": (*TEXT, False), "command": (*TEXT, False),
    "distill": (lambda v: isinstance(v, dict), "an object", False),
}


def check_fields(value, schema: dict, where: str, source: str,
                 error: Type[HelloLabelsError] = CorruptFileError) -> None:
    """Raise a one-line ``error`` naming ``source`` and the field (``where.key``) unless ``value`` is an object whose
    keys in ``schema`` (key -> (test or nested schema, what it must be, required)) have their shape."""
    if not isinstance(value, dict):
        raise error(f"{source}: '{where}' must be an object, got {short(value)}")
    missing = [k for k, (_, _, required) in schema.items() if required and k not in value]
    if missing:
        raise error(f"{source}: '{where}' lacks {missing}")
    for key, (test, what, _) in schema.items():
        if key not in value:
            continue
        if isinstance(test, dict):
            check_fields(value[key], test, f"{where}.{key}", source, error)
        elif not test(value[key]):
            raise error(f"{source}: '{where}.{key}' must be {what}, got {short(value[key])}")


def fits(value, schema: dict) -> bool:
    """Whether :func:`check_fields` accepts ``value``."""
    try:
        check_fields(value, schema, "", "")
    except CorruptFileError:
        return False
    return True


def _major(version) -> Optional[int]:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def check_config(data, source: str = "projector config", error: Type[HelloLabelsError] = CorruptFileError) -> None:
    """Raise a one-line ``error`` (naming ``source``) unless ``data`` is a config this version can read exactly."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a JSON object, got {short(data)}")
    if "base" not in data and "class_names" not in data:
        raise error(f"{source}: not a hello-labels projector config (no 'base' nor 'class_names')")
    version = data.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        raise error(f"{source}: format_version {version} was written by a newer hello-labels "
                    f"({data.get('library_version', '?')}); this is {__version__}, which reads "
                    f"format {FORMAT_VERSION}: upgrade hello-labels")
    if "format_version" not in data and _major(data.get("library_version", "0")) != 0:
        raise error(f"{source}: no format_version, and library_version "
                    f"{short(data.get('library_version'))} is not a 0.x hello-labels: cannot read it")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise error(f"{source}: unknown keys {unknown} (a newer or foreign format?)")
    required = [k for k, (_, _, req) in _FIELDS.items() if req]
    if data.get("head_init") == "text":
        required.append("templates")
    missing = [k for k in required if k not in data]
    if missing:
        raise error(f"{source}: missing {missing}: these change the projector's outputs, so they must be stated")
    for key, value in data.items():
        test, what, _ = _FIELDS[key]
        if not test(value) or (key == "templates" and data["head_init"] == "text" and not value):
            raise error(f"{source}: '{key}' must be {what}, got {short(value)}")
    problem = class_names_problem(data["class_names"])
    if problem:
        raise error(f"{source}: 'class_names' {problem}")
    if len(data["input_mean"]) != data["input_channels"] or len(data["input_std"]) != data["input_channels"]:
        raise error(f"{source}: input_mean/input_std need {data['input_channels']} values (input_channels), got "
                    f"{data['input_mean']} / {data['input_std']}")
    try:
        check_spec(data["base"], source)  # the base kind's own schema (bases.BASE_KINDS)
    except CorruptFileError as err:
        raise error(str(err)) from None
    check_fields(data.get("metadata", {}), METADATA, "metadata", source, error)
    check_lora(data["lora"], source, error)


def check_lora(targets: List[dict], source: str, error: Type[HelloLabelsError] = CorruptFileError) -> None:
    """Each LoRA target states ``pattern`` and ``rank`` and only keys of ``_LORA``, each of the right type."""
    for i, target in enumerate(targets):
        missing = [k for k in ("pattern", "rank") if k not in target]
        unknown = sorted(set(target) - set(_LORA))
        if missing or unknown:
            raise error(f"{source}: lora[{i}] " + (f"lacks {missing}" if missing else f"has unknown keys {unknown}"))
        for key, value in target.items():
            test, what = _LORA[key]
            if not test(value):
                raise error(f"{source}: lora[{i}] '{key}' must be {what}, got {short(value)}")
