"""Measuring what cannot be computed from numbers alone: the ``torch.save`` framing of label files (by writing
one file per framing group), an existing SRe2L label directory, and teachers, bases and adapters (built with
random init, or read from their files) to count their bytes.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import BadInputError
from ..labels.fkd import LabelDir, batch_path, load_batch
from ..labels.teachers import build_teacher, load_state_dict
from ..labels.views import class_names_for
from ..model import hub
from ..model.bases import build_base, default_head, parse_base, weightless_spec
from ..model.config import read_config
from ..model.heads import resolve_class_names
from ..model.projector import ADAPTER_DTYPES, ADAPTER_FILE, CONFIG_FILE, DTYPES, LabelProjector
from ..model.quiet import random_init_expected
from .setting import (
    DiskUsage,
    LabelSetting,
    allocated_bytes,
    check_top_k,
    file_payload_bytes,
    positive_int,
    topk_index_dtype,
)


def _representative_batch(s: LabelSetting, rows: int, layout: str, k: int) -> list:
    """One batch in SRe2L's list layout (zeros: ``torch.save`` does not compress, so values do not matter)."""
    mixed = s.mix is not None
    if layout == "full":
        labels = [torch.zeros(rows, s.classes, dtype=DTYPES[s.dtype])]
    else:
        labels = [torch.zeros(rows, k, dtype=DTYPES[s.dtype]), torch.zeros(rows, k, dtype=topk_index_dtype(s.classes))]
    # Distinct numpy scalars, as np.clip returns them: pickle would share one repeated object.
    bbox = [np.int64(i) for i in range(4)] if s.mix == "cutmix" else None
    items = [torch.zeros(rows, 4), torch.zeros(rows, dtype=torch.bool),
             torch.zeros(rows, dtype=torch.int64) if mixed else None, 0.5 if mixed else None, bbox, *labels]
    return items + ([torch.zeros(rows, dtype=torch.int64)] if s.gvbsm_index else [])


def measure_framing(s: LabelSetting, layout: str = "full", k: int = 0) -> List[int]:
    """Container bytes per file for each of ``s.file_groups()``: writes one batch file per group with plain
    ``torch.save`` under SRe2L's name ``batch_<b>.tar`` (the name is recorded in the archive) and subtracts
    the payload. ``layout``: ``full`` (logits) or ``topk`` (values + indices in place of the logits)."""
    if layout not in ("full", "topk"):
        raise BadInputError(f"layout must be 'full' or 'topk', got {layout!r}")
    if layout == "topk":
        k = check_top_k(s, k)
    framing = []
    with tempfile.TemporaryDirectory(prefix="hello-labels-storage-") as tmp:
        for g in s.file_groups():
            path = Path(tmp) / f"batch_{g.index}.tar"
            torch.save(_representative_batch(s, g.rows, layout, k), path)
            framing.append(path.stat().st_size - file_payload_bytes(s, g.rows, layout, k))
            path.unlink()
    return framing


def scan_label_dir(path) -> Tuple[LabelSetting, DiskUsage]:
    """``(derived setting, its files' sizes)`` of an SRe2L label directory (``fkd.LabelDir.scan``; the mix type
    and G-VBSM index come from its first file)."""
    info = LabelDir.scan(path)
    first = load_batch(batch_path(info.path, 0, 0))
    mix = None if first.mix_index is None else ("cutmix" if first.mix_bbox is not None else "mixup")
    dtype = next((name for name, d in DTYPES.items() if d == info.dtype), None)
    if dtype is None:
        raise BadInputError(f"label directory {path}: logits of dtype {info.dtype} are not supported")
    setting = LabelSetting(classes=info.num_classes, images=info.num_images, epochs=info.epochs,
                           batch_size=info.batch_size, dtype=dtype, mix=mix, gvbsm_index=first.index is not None)
    sizes = info.file_sizes()  # each file stat-ed once, by the scan
    allocated = sizes.allocated
    if allocated is None:  # no st_blocks (Windows): each file rounded up to whole blocks
        allocated = sum(allocated_bytes(batch_path(info.path, e, b).stat().st_size) for e in range(info.epochs)
                        for b in range(info.batches_per_epoch))
    return setting, DiskUsage(sizes.bytes, allocated)


@dataclass
class TeacherSize:
    """``spec`` as given; ``file_bytes`` is the checkpoint file (given, or written with ``torch.save``).
    Built architectures: ``params``/``param_bytes`` are its parameters, ``buffer_bytes`` its persistent buffers;
    a given file (``from_file``): its floating-point tensors, and all other tensors."""

    spec: str
    file_bytes: int
    params: int
    param_bytes: int
    buffer_bytes: int
    classes: Optional[int] = None
    from_file: bool = False


def _state_bytes(module: torch.nn.Module) -> Tuple[int, int, int]:
    """``(parameters, parameter bytes, buffer bytes)`` of the persistent state dict."""
    params = {id(p) for p in module.parameters()}
    n = pb = bb = 0
    for tensor in module.state_dict(keep_vars=True).values():
        size = tensor.numel() * tensor.element_size()
        if id(tensor) in params:
            n, pb = n + tensor.numel(), pb + size
        else:
            bb += size
    return n, pb, bb


def teacher_size(spec: str, classes: int) -> TeacherSize:
    """Size of a teacher: ``timm:NAME`` / ``torchvision:NAME`` / ``module:pkg.mod:fn`` build the architecture
    with random init (``classes`` outputs, no download) and write its state dict with ``torch.save``;
    ``NAME@checkpoint`` or a file path: that file's size."""
    checkpoint = spec.partition("@")[2] if "@" in spec else (spec if os.path.isfile(spec) else None)
    if checkpoint is not None:
        state = load_state_dict(checkpoint)
        n = sum(v.numel() for v in state.values() if v.is_floating_point())
        nb = sum(v.numel() * v.element_size() for v in state.values())
        fb = sum(v.numel() * v.element_size() for v in state.values() if v.is_floating_point())
        return TeacherSize(spec, os.path.getsize(checkpoint), n, fb, nb - fb, from_file=True)
    source, _, name = spec.partition(":")
    model = build_teacher(source, name, classes, pretrained=False)
    if model is None:
        raise BadInputError(f"teacher '{spec}': expected timm:NAME, torchvision:NAME, module:pkg.mod:fn, "
                            f"NAME@checkpoint or an existing checkpoint file")
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"teacher '{spec}' did not build an nn.Module")
    params, param_bytes, buffer_bytes = _state_bytes(model)
    with tempfile.TemporaryDirectory(prefix="hello-labels-storage-") as tmp:
        path = Path(tmp) / "teacher.pth"
        torch.save(model.state_dict(), path)
        file_bytes = path.stat().st_size
    return TeacherSize(spec, file_bytes, params, param_bytes, buffer_bytes, classes=classes)


@dataclass
class BaseSize:
    """The public base: ``encoder_*`` is what runs at label time; ``text_*`` the CLIP text tower that builds
    a text head once (zero for timm/custom bases or non-text heads)."""

    base: str
    encoder_params: int
    encoder_bytes: int
    text_params: int = 0
    text_bytes: int = 0




def base_size(spec: dict, text_head: bool, trust_remote_code: bool = False) -> BaseSize:
    """Parameters and bytes of a base's image encoder (and, for a text head, the CLIP text tower), built from
    its spec with random init (``local-dir:`` bases read their local file)."""
    with random_init_expected():  # open_clip warns that no weights were loaded: here that is the point
        base = build_base(weightless_spec(spec), trust_remote_code=trust_remote_code)
    n, pb, bb = _state_bytes(base.encoder)
    out = BaseSize(_base_label(spec), n, pb + bb)
    if text_head and base.clip_model is not None:  # open_clip: the encoder is clip_model.visual
        params = {id(p) for p in base.clip_model.parameters()}
        text = [v for k, v in base.clip_model.state_dict(keep_vars=True).items() if not k.startswith("visual.")]
        out.text_params = sum(v.numel() for v in text if id(v) in params)
        out.text_bytes = sum(v.numel() * v.element_size() for v in text)
    return out


def _base_label(spec: dict) -> str:
    name = spec.get("name") or spec.get("factory") or "module"
    return f"{spec.get('kind', '?')}:{name}"


@dataclass
class AdapterSize:
    """An adapter as it ships: tensor data (``tensor_bytes`` at ``dtype``, ``params`` values), the
    ``adapter.safetensors`` file and ``config.json``. ``source`` says whether it was computed or read."""

    base: str
    params: int
    tensor_bytes: int
    dtype: str
    safetensors_bytes: int
    config_bytes: int
    classes: int
    lora_targets: int
    lora_ranks: List[int]
    head_rank: int
    source: str


def _adapter_size(base_spec: dict, tensors: Dict[str, torch.Tensor], tensor_bytes: int, dtype: str, classes: int,
                  files: Dict[str, int], source: str) -> AdapterSize:
    """Ranks and target count from the adapter tensor names (``encoder.<param>.lora_A``, ``head.weight.lora_A``)."""
    lora = [v.shape[0] for k, v in tensors.items() if k.startswith("encoder.") and k.endswith(".lora_A")]
    head = [v.shape[0] for k, v in tensors.items() if k.startswith("head.") and k.endswith(".lora_A")]
    return AdapterSize(base=_base_label(base_spec), params=sum(v.numel() for v in tensors.values()),
                       tensor_bytes=tensor_bytes, dtype=dtype, safetensors_bytes=files[ADAPTER_FILE],
                       config_bytes=files[CONFIG_FILE], classes=classes, lora_targets=len(lora), lora_ranks=lora,
                       head_rank=head[0] if head else 0, source=source)


def named_classes(class_names, classes: int) -> List[str]:
    """A list, ``"imagenet"``, a text file with one name per line, or None (placeholders ``class_<i>``)."""
    if class_names is None:
        return [f"class_{i}" for i in range(classes)]
    names = resolve_class_names(class_names_for(None, class_names))
    if len(names) != classes:
        raise BadInputError(f"{len(names)} class names given for {classes} classes")
    return names


def computed_adapter_size(base: str, class_names, dtype: str = "float32", lora_rank: Optional[int] = None,
                          head_rank: int = 64) -> Tuple[AdapterSize, dict, str]:
    """Adapter of a fresh projector on ``base`` (``from_base(..., head_init="zero")``: random init, no
    download), saved to a temporary directory to measure its files. Returns ``(size, base spec, head init a
    real run would use)``: ``text`` for bases with a CLIP text tower."""
    if dtype not in ADAPTER_DTYPES:
        raise BadInputError(f"adapter dtype must be one of {list(ADAPTER_DTYPES)}, got {dtype!r}")
    if lora_rank is not None:
        positive_int("LoRA rank", lora_rank)
    if isinstance(head_rank, bool) or not isinstance(head_rank, int) or head_rank < 0:
        raise BadInputError(f"head rank must be a non-negative integer, got {head_rank!r}")
    spec = parse_base(base)
    with random_init_expected():  # open_clip warns that no weights were loaded: here that is the point
        projector = LabelProjector.from_base(weightless_spec(spec), class_names=class_names,
                                             head_init="zero", lora_rank=lora_rank, head_rank=head_rank)
    projector.config.base = spec  # the config.json a real run writes names the base with its weights
    with tempfile.TemporaryDirectory(prefix="hello-labels-storage-") as tmp:
        projector.save_pretrained(tmp, dtype=dtype)
        files = {f: (Path(tmp) / f).stat().st_size for f in (ADAPTER_FILE, CONFIG_FILE)}
    head = default_head(spec) or "zero"
    source = "computed from shapes" + ("; a text head's config.json also lists its prompt templates"
                                       if head == "text" else "")
    size = _adapter_size(spec, projector.adapter_state_dict(), projector.num_adapter_bytes(dtype), dtype,
                         projector.num_classes, files, source)
    return size, spec, head


def adapter_size_at(path, class_names) -> AdapterSize:
    """The adapter a saved projector's settings (its ``config.json``: base, LoRA targets, ranks, head, storage
    dtype) give at another class list ``class_names``: built with those classes, adapter at zero (sizes depend on
    shapes only), saved to a temporary directory and its two files measured."""
    config = read_config(Path(path) / CONFIG_FILE)
    config.class_names = list(class_names)
    with random_init_expected():
        projector = LabelProjector(config)  # a prototype head keeps zero weights, as when loading
    with tempfile.TemporaryDirectory(prefix="hello-labels-storage-") as tmp:
        projector.save_pretrained(tmp)
        files = {f: (Path(tmp) / f).stat().st_size for f in (ADAPTER_FILE, CONFIG_FILE)}
    return _adapter_size(config.base, projector.adapter_state_dict(), projector.num_adapter_bytes(),
                         config.adapter_dtype, projector.num_classes, files,
                         f"the settings of {path} at {projector.num_classes:,} classes, computed from shapes")


def saved_adapter_size(path: str, revision: Optional[str] = None) -> Tuple[AdapterSize, dict, str]:
    """Adapter of a saved projector (directory or Hub id ``org/name``), read from its two files without building
    the base; ``tensor_bytes`` equals ``LabelProjector.from_pretrained(path).num_adapter_bytes()``.
    Returns ``(size, base spec, head init)``."""
    path = str(path)
    if not os.path.isdir(path) and not re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        raise BadInputError(f"projector directory not found: {path}")
    config_path = hub.resolve_file(path, CONFIG_FILE, revision=revision)
    adapter_path = hub.resolve_file(path, ADAPTER_FILE, revision=revision)
    config = read_config(config_path)
    tensors = hub.read_safetensors(adapter_path)
    files = {ADAPTER_FILE: os.path.getsize(adapter_path), CONFIG_FILE: os.path.getsize(config_path)}
    size = _adapter_size(config.base, tensors, sum(v.numel() * v.element_size() for v in tensors.values()),
                         config.adapter_dtype, len(resolve_class_names(config.class_names)), files,
                         f"read from {path}")
    return size, config.base, config.head_init
