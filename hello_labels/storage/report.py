"""Storage accounting: what each way of supplying soft labels costs in bytes, every component counted and named.

Lines of a report, for one label setting (classes, images, epochs, batch size, logit dtype, mix type) or for an
existing SRe2L label directory:

1. full stored labels (SRe2L): logits + per-crop augmentation metadata + ``torch.save`` container per file;
2. top-k stored labels (FKD / LPQLD): k values + k class indices per crop + the same metadata and container;
3. pruned labels (LPLD): a random subset of whole batch files;
4. the teacher that generates labels online (RDED);
5. the HeLlO adapter (``adapter.safetensors`` + ``config.json``);

plus the public base model, reported separately and marked as not counted. Ratios are relative to line 1.

Pure functions (``*_rows``, ``LabelSetting``) compute from numbers; ``measure_*`` / ``scan_*`` / ``*_size``
functions touch files or build models; :func:`storage_report` puts them together.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HelloLabelsError

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
MIX_TYPES = ("cutmix", "mixup", "none")
REFERENCE = "full stored labels (SRe2L)"
TOPK_INT16_MAX_CLASSES = 32767  # class indices 0..32766 fit int16

# Per-crop metadata SRe2L stores next to the logits, and per-file mix parameters (SRe2L's list layout).
COORDS_BYTES = 4 * 4  # coords [B, 4] float32
FLIP_BYTES = 1  # flip_status [B] bool
MIX_INDEX_BYTES = 8  # mix_index [B] int64
GVBSM_INDEX_BYTES = 8  # G-VBSM's image indices [B] int64
LAM_BYTES = 8  # mix_lam: a Python float (float64)
BBOX_BYTES = 4 * 8  # mix_bbox: 4 numpy int64 scalars


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise HelloLabelsError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- settings and rows
@dataclass(frozen=True)
class FileGroup:
    """Batch files whose ``torch.save`` framing is identical: same number of crops ``rows`` and same number of
    digits in the batch index (the file name is recorded inside the archive). ``index`` is one such batch
    index, ``count`` the number of such files over all epochs."""

    rows: int
    index: int
    count: int


@dataclass(frozen=True)
class LabelSetting:
    """A soft-label run: ``images`` synthetic images (``classes`` x images per class), relabelled for ``epochs``
    epochs in batches of ``batch_size`` (one file per batch), logits stored as ``dtype``; ``mix`` is the mix
    augmentation whose parameters are stored (``cutmix``: index, lam, bbox; ``mixup``: index, lam; ``none``);
    ``gvbsm_index`` adds G-VBSM's per-crop image indices."""

    classes: int
    images: int
    epochs: int
    batch_size: int
    dtype: str = "float32"
    mix: str = "cutmix"
    gvbsm_index: bool = False

    def __post_init__(self):
        for name in ("classes", "images", "epochs", "batch_size"):
            _positive_int(name.replace("_", " "), getattr(self, name))
        if self.dtype not in DTYPES:
            raise HelloLabelsError(f"label dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.mix not in MIX_TYPES:
            raise HelloLabelsError(f"mix type must be one of {list(MIX_TYPES)}, got {self.mix!r}")

    @classmethod
    def from_ipc(cls, classes: int, ipc: int, epochs: int = 300, batch_size: int = 1024,
                 **kwargs) -> "LabelSetting":
        """``classes`` x ``ipc`` images per class (defaults: SRe2L's ImageNet relabelling, 300 epochs of
        batch 1024)."""
        classes = _positive_int("classes", classes)
        return cls(classes=classes, images=classes * _positive_int("images per class", ipc), epochs=epochs,
                   batch_size=batch_size, **kwargs)

    @property
    def itemsize(self) -> int:
        return _itemsize(DTYPES[self.dtype])

    @property
    def crops(self) -> int:
        """Stored label rows: one augmented crop per image per epoch."""
        return self.images * self.epochs

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.images // self.batch_size)

    @property
    def files(self) -> int:
        return self.batches_per_epoch * self.epochs

    @property
    def last_batch(self) -> int:
        return self.images - self.batch_size * (self.batches_per_epoch - 1)

    def file_groups(self) -> List[FileGroup]:
        """Every batch file, grouped by crop count and digits of the batch index (see :class:`FileGroup`)."""
        groups = []
        last = self.batches_per_epoch - 1
        for digits in range(1, len(str(last)) + 1):
            lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), min(10 ** digits, last + 1)
            full = hi - lo - (1 if lo <= last < hi and self.last_batch != self.batch_size else 0)
            if full:
                groups.append(FileGroup(self.batch_size, lo, full * self.epochs))
            if lo <= last < hi and self.last_batch != self.batch_size:
                groups.append(FileGroup(self.last_batch, last, self.epochs))
        return groups

    def describe(self) -> str:
        ipc = self.images / self.classes
        per_class = f"{ipc:,.0f}" if ipc == int(ipc) else f"{ipc:,.2f}"
        mix = {"cutmix": "cutmix metadata (index, lam, bbox)", "mixup": "mixup metadata (index, lam)",
               "none": "no mix metadata"}[self.mix]
        return (f"{self.classes:,} classes x {per_class} images/class = {self.images:,} images, {self.epochs:,} "
                f"epochs, batch {self.batch_size:,} -> {self.batches_per_epoch:,} files/epoch, {self.files:,} "
                f"files; {self.dtype} logits; {mix}" + ("; G-VBSM image indices" if self.gvbsm_index else ""))


@dataclass
class StorageRow:
    """One line of a report. ``part_of`` names the line this one is a component of; ``counted`` is False for
    what is public and downloaded from its own source (the base model), never stored or shipped by you."""

    name: str
    bytes: int
    note: str
    part_of: Optional[str] = None
    counted: bool = True


# ----------------------------------------------------------------------------- pure arithmetic
def logits_bytes(s: LabelSetting) -> int:
    """``[crops, classes]`` logits at the setting's dtype."""
    return s.crops * s.classes * s.itemsize


def crop_metadata_bytes(s: LabelSetting) -> Tuple[int, int]:
    """``(per-crop bytes, per-file bytes)`` of the augmentation metadata stored beside the labels."""
    per_crop = COORDS_BYTES + FLIP_BYTES + (MIX_INDEX_BYTES if s.mix != "none" else 0) + (
        GVBSM_INDEX_BYTES if s.gvbsm_index else 0)
    per_file = (LAM_BYTES if s.mix != "none" else 0) + (BBOX_BYTES if s.mix == "cutmix" else 0)
    return per_crop, per_file


def metadata_bytes(s: LabelSetting) -> int:
    per_crop, per_file = crop_metadata_bytes(s)
    return s.crops * per_crop + s.files * per_file


def _check_top_k(s: LabelSetting, k) -> int:
    k = _positive_int("top-k", k)
    if k > s.classes:
        raise HelloLabelsError(f"top-k {k} exceeds the {s.classes} classes")
    return k


def topk_index_dtype(classes: int) -> torch.dtype:
    """int16 when every class index fits (classes <= 32767), else int32."""
    return torch.int16 if classes <= TOPK_INT16_MAX_CLASSES else torch.int32


def topk_value_bytes(s: LabelSetting, k: int) -> int:
    return s.crops * k * s.itemsize


def topk_index_bytes(s: LabelSetting, k: int) -> int:
    return s.crops * k * _itemsize(topk_index_dtype(s.classes))


def file_payload_bytes(s: LabelSetting, rows: int, layout: str = "full", k: int = 0) -> int:
    """Tensor and scalar bytes of one batch file of ``rows`` crops (no framing)."""
    per_crop, per_file = crop_metadata_bytes(s)
    labels = rows * s.classes * s.itemsize if layout == "full" else (
        rows * k * (s.itemsize + _itemsize(topk_index_dtype(s.classes))))
    return labels + rows * per_crop + per_file


def _mix_note(s: LabelSetting) -> str:
    per_crop = ["coords [B,4] f32 16 B", "flip [B] bool 1 B"]
    if s.mix != "none":
        per_crop.append("mix index [B] i64 8 B")
    if s.gvbsm_index:
        per_crop.append("G-VBSM index [B] i64 8 B")
    per_file = {"cutmix": "; per file: lam f64 8 B + bbox 4 x i64 32 B", "mixup": "; per file: lam f64 8 B",
                "none": ""}[s.mix]
    return f"per crop: {' + '.join(per_crop)}{per_file}"


BLOCK = 4096  # the usual filesystem block: what ``du`` reports is whole blocks


def allocated_bytes(file_bytes: int, block: int = BLOCK) -> int:
    """Space a file of ``file_bytes`` occupies on a filesystem with ``block``-byte blocks."""
    return -(-file_bytes // block) * block


@dataclass
class DiskUsage:
    """An existing directory's batch files: ``bytes`` (sum of file sizes) and ``allocated`` (filesystem blocks,
    as ``du`` reports them)."""

    bytes: int
    allocated: int


def _framing_note(s: LabelSetting, framing: Sequence[int], what: str) -> str:
    lo, hi = min(framing), max(framing)
    spread = f"{lo:,} B" if lo == hi else f"{lo:,}-{hi:,} B"
    return f"zip + pickle framing, {spread}/file x {s.files:,} files, {what}"


def _framing_total(s: LabelSetting, framing: Sequence[int]) -> int:
    groups = s.file_groups()
    if len(framing) != len(groups):
        raise HelloLabelsError(f"framing has {len(framing)} values for the setting's {len(groups)} file groups")
    return sum(f * g.count for f, g in zip(framing, groups))


def full_label_rows(s: LabelSetting, framing: Sequence[int], disk: Optional[DiskUsage] = None) -> List[StorageRow]:
    """Line 1 and its parts. ``framing``: container bytes per file of each :meth:`LabelSetting.file_groups`
    group (from :func:`measure_framing`). With ``disk`` (an existing directory) the measured size is the
    total and the container line is what remains after logits and metadata."""
    logits, meta = logits_bytes(s), metadata_bytes(s)
    if disk is None:
        container = _framing_total(s, framing)
        total = logits + meta + container
        allocated = sum(allocated_bytes(file_payload_bytes(s, g.rows) + f) * g.count
                        for f, g in zip(framing, s.file_groups()))
        what = (f"logits + crop metadata + torch.save container in {s.files:,} files (estimate; "
                f"{allocated:,} B = {human_bytes(allocated)} in {BLOCK // 1024} KiB filesystem blocks)")
        container_note = _framing_note(s, framing, f"measured by writing the files with torch {torch.__version__}")
    else:
        total, container = disk.bytes, disk.bytes - logits - meta
        what = (f"sum of the {s.files:,} batch files' sizes, measured ({disk.allocated:,} B = "
                f"{human_bytes(disk.allocated)} allocated on this filesystem)")
        container_note = (f"remainder of the measured total: zip + pickle framing, {container / s.files:,.0f} "
                          f"B/file on average x {s.files:,} files")
    return [
        StorageRow(REFERENCE, total, what),
        StorageRow("logits", logits, f"[{s.crops:,} crops, {s.classes:,} classes] x {s.itemsize} B ({s.dtype})",
                   part_of=REFERENCE),
        StorageRow("crop metadata", meta, _mix_note(s), part_of=REFERENCE),
        StorageRow("torch.save container", container, container_note, part_of=REFERENCE),
    ]


def topk_rows(s: LabelSetting, k: int, framing: Sequence[int]) -> List[StorageRow]:
    """Line 2: top-k values + class indices per crop, the same crop metadata, and the framing of files in
    SRe2L's list layout with ``values, indices`` in place of the logits (``framing`` per file group)."""
    k = _check_top_k(s, k)
    name = f"top-k labels (FKD/LPQLD, k={k})"
    bits = _itemsize(topk_index_dtype(s.classes)) * 8
    rule = f"<= {TOPK_INT16_MAX_CLASSES}" if bits == 16 else f"> {TOPK_INT16_MAX_CLASSES}"
    values, indices, meta = topk_value_bytes(s, k), topk_index_bytes(s, k), metadata_bytes(s)
    container = _framing_total(s, framing)
    return [
        StorageRow(name, values + indices + meta + container,
                   f"top-k values + class indices + crop metadata + torch.save container in {s.files:,} files"),
        StorageRow("top-k values", values, f"[{s.crops:,} crops, {k}] x {s.itemsize} B ({s.dtype})", part_of=name),
        StorageRow("top-k class indices", indices,
                   f"[{s.crops:,} crops, {k}] x {bits // 8} B (int{bits}: {s.classes:,} classes {rule})",
                   part_of=name),
        StorageRow("crop metadata", meta, "same as the full labels", part_of=name),
        StorageRow("torch.save container", container,
                   _framing_note(s, framing, f"measured by writing files (SRe2L's list with values, indices in "
                                             f"place of the logits) with torch {torch.__version__}"),
                   part_of=name),
    ]


def pruned_row(full_total: int, files: int, keep_ratio: float) -> StorageRow:
    """Line 3: LPLD keeps whole batch files at random; ``keep_ratio`` of ``files`` (at least one)."""
    if not 0 < keep_ratio <= 1:
        raise HelloLabelsError(f"keep ratio must be in (0, 1], got {keep_ratio}")
    kept = max(1, int(keep_ratio * files + 0.5))  # half up, not Python's half to even
    return StorageRow(f"pruned labels (LPLD, keep {keep_ratio:.4g})", round(full_total * kept / files),
                      f"{kept:,} of {files:,} batch files kept at random (LPLD's random pruning); "
                      f"{kept:,}/{files:,} of the full labels' bytes (average file)")


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


def teacher_row(t: TeacherSize) -> StorageRow:
    """Line 4: the checkpoint that RDED-style online relabelling must ship instead of labels."""
    framing = t.file_bytes - t.param_bytes - t.buffer_bytes
    if t.from_file:
        note = (f"checkpoint file size on disk: {t.params:,} floating-point values {t.param_bytes:,} B + other "
                f"tensors {t.buffer_bytes:,} B + file framing {framing:,} B")
    else:
        note = (f"architecture with random init ({t.classes:,}-class head), state_dict written with torch.save: "
                f"{t.params:,} parameters {t.param_bytes:,} B + buffers {t.buffer_bytes:,} B + container {framing:,} B")
    return StorageRow(f"teacher for online labels (RDED): {t.spec}", t.file_bytes, note)


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


def adapter_rows(a: AdapterSize) -> List[StorageRow]:
    """Line 5 and its parts: tensor bytes (``num_adapter_bytes``), safetensors header, config.json."""
    name = f"adapter (HeLlO): {a.base}"
    ranks = "/".join(str(r) for r in sorted(set(a.lora_ranks))) or "-"
    return [
        StorageRow(name, a.safetensors_bytes + a.config_bytes,
                   f"adapter.safetensors + config.json as saved ({a.source}); README.md model card not counted"),
        StorageRow("adapter tensors", a.tensor_bytes,
                   f"{a.params:,} values x {a.tensor_bytes // max(a.params, 1)} B ({a.dtype}): LoRA A/B on "
                   f"{a.lora_targets} weights (rank {ranks}), head delta rank {a.head_rank}, bias, logit scale",
                   part_of=name),
        StorageRow("safetensors header", a.safetensors_bytes - a.tensor_bytes, "tensor names, shapes, offsets",
                   part_of=name),
        StorageRow("config.json", a.config_bytes,
                   f"base, {a.classes:,} class names, ranks, targets, normalisation", part_of=name),
    ]


@dataclass
class BaseSize:
    """The public base: ``encoder_*`` is what runs at label time; ``text_*`` the CLIP text tower that builds
    a text head once (zero for timm/custom bases or non-text heads)."""

    base: str
    encoder_params: int
    encoder_bytes: int
    text_params: int = 0
    text_bytes: int = 0


def base_rows(b: BaseSize) -> List[StorageRow]:
    """The public base model, marked ``counted=False``: downloaded from its own source, not stored by you."""
    name = f"base model (public, NOT counted): {b.base}"
    rows = [StorageRow(name, b.encoder_bytes + b.text_bytes,
                       "public weights fetched once from their own source; not stored or shipped with the labels, "
                       "listed for completeness", counted=False),
            StorageRow("image encoder", b.encoder_bytes,
                       f"{b.encoder_params:,} parameters + buffers as built (state_dict, float32); runs at label time",
                       part_of=name, counted=False)]
    if b.text_params:
        rows.append(StorageRow("CLIP text tower", b.text_bytes,
                               f"{b.text_params:,} parameters + buffers (float32); builds the text head once, "
                               f"then freed", part_of=name, counted=False))
    return rows


# ----------------------------------------------------------------------------- the report
def human_bytes(n: int) -> str:
    """``6083464000 -> '5.67 GiB'`` (powers of 1024, three significant digits)."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{value:.{0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2}f} {unit}"


def _ratio_text(ratio: float) -> str:
    if ratio == 1:
        return "1"
    if ratio <= 0:
        return "0"
    if ratio >= 0.1:
        return f"{ratio:.3g}"
    return f"1/{1 / ratio:.3g}" if 1 / ratio < 100 else f"1/{round(1 / ratio):,}"


@dataclass
class StorageReport:
    """Rows plus what they describe. ``ratio(row)`` is relative to the full stored labels."""

    title: str
    setting: LabelSetting
    rows: List[StorageRow]
    source: str = "setting"
    label_dir: Optional[str] = None

    @property
    def reference_bytes(self) -> int:
        return next(r.bytes for r in self.rows if r.name == REFERENCE and r.part_of is None)

    def ratio(self, row: StorageRow) -> float:
        return row.bytes / self.reference_bytes

    def row(self, name: str, part_of: Optional[str] = None) -> StorageRow:
        """The row called ``name`` (a part of ``part_of`` when given, else a top-level row)."""
        for r in self.rows:
            if r.name == name and r.part_of == part_of:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"title": self.title, "source": self.source, "label_dir": self.label_dir,
                "setting": dict(asdict(self.setting), crops=self.setting.crops, files=self.setting.files),
                "reference": REFERENCE, "torch_version": torch.__version__,
                "rows": [dict(asdict(r), human=human_bytes(r.bytes), ratio_to_full_labels=self.ratio(r))
                         for r in self.rows]}

    def table(self) -> str:
        """Aligned text: line, exact bytes, human size, ratio to the full labels, what is counted."""
        header = ("line", "bytes", "size", "vs full", "what is counted")
        body = []
        separated = False
        for r in self.rows:
            if not r.counted and not separated:
                body.append(None)
                separated = True
            body.append(("  " + r.name if r.part_of else r.name, f"{r.bytes:,}", human_bytes(r.bytes),
                         _ratio_text(self.ratio(r)), r.note))
        widths = [max(len(row[i]) for row in [header] + [b for b in body if b]) for i in range(4)]

        def fmt(cells):
            return (f"{cells[0]:<{widths[0]}}  {cells[1]:>{widths[1]}}  {cells[2]:>{widths[2]}}  "
                    f"{cells[3]:>{widths[3]}}  {cells[4]}")

        rule = "-" * (sum(widths) + 8 + len(header[4]))
        lines = [self.title, f"setting: {self.setting.describe()}", fmt(header), rule]
        for cells in body:
            lines.append(rule if cells is None else fmt(cells))
        lines.append("vs full = bytes / full stored labels; indented lines are parts of the line above them; "
                     "the base model is public and not counted in any total")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- I/O: files and models
def _representative_batch(s: LabelSetting, rows: int, layout: str, k: int) -> list:
    """One batch in SRe2L's list layout (zeros: ``torch.save`` does not compress, so values do not matter)."""
    mixed = s.mix != "none"
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
        raise HelloLabelsError(f"layout must be 'full' or 'topk', got {layout!r}")
    if layout == "topk":
        k = _check_top_k(s, k)
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
    from ..labels.fkd import LabelDir, batch_path, load_batch

    info = LabelDir.scan(path)
    first = load_batch(batch_path(info.path, 0, 0))
    mix = "none" if first.mix_index is None else ("cutmix" if first.mix_bbox is not None else "mixup")
    dtype = next((name for name, d in DTYPES.items() if d == info.dtype), None)
    if dtype is None:
        raise HelloLabelsError(f"label directory {path}: logits of dtype {info.dtype} are not supported")
    setting = LabelSetting(classes=info.num_classes, images=info.num_images, epochs=info.epochs,
                           batch_size=info.batch_size, dtype=dtype, mix=mix, gvbsm_index=first.index is not None)
    files = [info.path / f"epoch_{e}" / name for e in range(info.epochs)
             for name in os.listdir(info.path / f"epoch_{e}")]
    stats = [f.stat() for f in files if f.is_file()]
    allocated = sum(st.st_blocks * 512 if hasattr(st, "st_blocks") else allocated_bytes(st.st_size) for st in stats)
    return setting, DiskUsage(sum(st.st_size for st in stats), allocated)


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
    from torch import nn

    from ..labels.teachers import build_teacher, load_state_dict

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
        raise HelloLabelsError(f"teacher '{spec}': expected timm:NAME, torchvision:NAME, module:pkg.mod:fn, "
                               f"NAME@checkpoint or an existing checkpoint file")
    if not isinstance(model, nn.Module):
        raise HelloLabelsError(f"teacher '{spec}' did not build an nn.Module")
    params, param_bytes, buffer_bytes = _state_bytes(model)
    with tempfile.TemporaryDirectory(prefix="hello-labels-storage-") as tmp:
        path = Path(tmp) / "teacher.pth"
        torch.save(model.state_dict(), path)
        file_bytes = path.stat().st_size
    return TeacherSize(spec, file_bytes, params, param_bytes, buffer_bytes, classes=classes)


def _weightless(spec: dict) -> dict:
    """The same architecture without fetching weights (sizes depend on shapes only)."""
    spec = dict(spec)
    if spec.get("kind") == "open_clip" and not str(spec.get("name", "")).startswith("local-dir:"):
        spec["pretrained"] = None
    if spec.get("kind") == "timm":
        spec.update(pretrained=False, checkpoint=None)
    return spec


@contextlib.contextmanager
def _no_weight_warnings():
    """open_clip logs "no pretrained weights loaded" on the root logger; here that is the point."""
    root = logging.getLogger()
    was, root.disabled = root.disabled, True
    try:
        yield
    finally:
        root.disabled = was


def base_size(spec: dict, text_head: bool, trust_remote_code: bool = False) -> BaseSize:
    """Parameters and bytes of a base's image encoder (and, for a text head, the CLIP text tower), built from
    its spec with random init (``local-dir:`` bases read their local file; a custom module's factory runs only
    with ``trust_remote_code``)."""
    from ..model.bases import build_base

    with _no_weight_warnings():
        base = build_base(_weightless(spec), trust_remote_code=trust_remote_code)
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


def _adapter_size(base_spec: dict, tensors: Dict[str, torch.Tensor], tensor_bytes: int, dtype: str, classes: int,
                  files: Dict[str, int], source: str) -> AdapterSize:
    """Ranks and target count from the adapter tensor names (``encoder.<param>.lora_A``, ``head.weight.lora_A``)."""
    lora = [v.shape[0] for k, v in tensors.items() if k.startswith("encoder.") and k.endswith(".lora_A")]
    head = [v.shape[0] for k, v in tensors.items() if k.startswith("head.") and k.endswith(".lora_A")]
    return AdapterSize(base=_base_label(base_spec), params=sum(v.numel() for v in tensors.values()),
                       tensor_bytes=tensor_bytes, dtype=dtype, safetensors_bytes=files["adapter.safetensors"],
                       config_bytes=files["config.json"], classes=classes, lora_targets=len(lora), lora_ranks=lora,
                       head_rank=head[0] if head else 0, source=source)


def computed_adapter_size(base: str, class_names, dtype: str = "float32", lora_rank: Optional[int] = None,
                          head_rank: int = 64) -> Tuple[AdapterSize, dict, str]:
    """Adapter of a fresh projector on ``base`` (``from_base(..., head_init="zero")``: random init, no
    download), saved to a temporary directory to measure its files. Returns ``(size, base spec, head init a
    real run would use)``: ``text`` for open_clip bases."""
    from ..model.projector import DTYPES as ADAPTER_DTYPES
    from ..model.projector import LabelProjector

    if dtype not in ADAPTER_DTYPES:
        raise HelloLabelsError(f"adapter dtype must be one of {list(ADAPTER_DTYPES)}, got {dtype!r}")
    if lora_rank is not None:
        _positive_int("LoRA rank", lora_rank)
    if isinstance(head_rank, bool) or not isinstance(head_rank, int) or head_rank < 0:
        raise HelloLabelsError(f"head rank must be a non-negative integer, got {head_rank!r}")
    with _no_weight_warnings():
        projector = LabelProjector.from_base(base, class_names=class_names, head_init="zero",
                                             lora_rank=lora_rank, head_rank=head_rank)
    with tempfile.TemporaryDirectory(prefix="hello-labels-storage-") as tmp:
        projector.save_pretrained(tmp, dtype=dtype)
        files = {f: (Path(tmp) / f).stat().st_size for f in ("adapter.safetensors", "config.json")}
    spec = projector.config.base
    head = "text" if spec.get("kind") == "open_clip" else "zero"
    source = "computed from shapes" + ("; a text head's config.json also lists its prompt templates"
                                       if head == "text" else "")
    size = _adapter_size(spec, projector.adapter_state_dict(), projector.num_adapter_bytes(dtype), dtype,
                         projector.num_classes, files, source)
    return size, spec, head


def saved_adapter_size(path: str, revision: Optional[str] = None) -> Tuple[AdapterSize, dict, str]:
    """Adapter of a saved projector (directory or Hub id ``org/name``), read from its two files without building
    the base; ``tensor_bytes`` equals ``LabelProjector.from_pretrained(path).num_adapter_bytes()``.
    Returns ``(size, base spec, head init)``."""
    from ..model import hub
    from ..model.heads import resolve_class_names
    from ..model.projector import ADAPTER_FILE, CONFIG_FILE, ProjectorConfig

    path = str(path)
    if not os.path.isdir(path) and not re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        raise HelloLabelsError(f"projector directory not found: {path}")
    config_path = hub.resolve_file(path, CONFIG_FILE, revision=revision)
    adapter_path = hub.resolve_file(path, ADAPTER_FILE, revision=revision)
    try:
        config = ProjectorConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
    except json.JSONDecodeError as err:
        raise HelloLabelsError(f"{config_path} is not valid JSON ({err.msg})") from err
    tensors = hub.read_safetensors(adapter_path)
    files = {ADAPTER_FILE: os.path.getsize(adapter_path), CONFIG_FILE: os.path.getsize(config_path)}
    size = _adapter_size(config.base, tensors, sum(v.numel() * v.element_size() for v in tensors.values()),
                         config.adapter_dtype, len(resolve_class_names(config.class_names)), files,
                         f"read from {path}")
    return size, config.base, config.head_init


def _class_names(class_names, classes: int) -> List[str]:
    """A list, ``"imagenet"``, a text file with one name per line, or None (placeholders ``class_<i>``)."""
    from ..labels.views import class_names_for
    from ..model.heads import resolve_class_names

    if class_names is None:
        return [f"class_{i}" for i in range(classes)]
    names = resolve_class_names(class_names_for(None, class_names))
    if len(names) != classes:
        raise HelloLabelsError(f"{len(names)} class names given for {classes} classes")
    return names


def storage_report(setting: Optional[LabelSetting] = None, labels: Optional[str] = None, *, top_k: int = 10,
                   keep_ratio: float = 0.025, teacher: Optional[str] = "torchvision:resnet18",
                   bases: Sequence[str] = (), projectors: Sequence[str] = (), class_names=None,
                   adapter_dtype: str = "float32", lora_rank: Optional[int] = None,
                   head_rank: int = 64, trust_remote_code: bool = False) -> StorageReport:
    """All lines for a ``setting`` or an existing SRe2L label directory ``labels`` (exactly one of them).

    ``bases``: base names whose adapter is computed from shapes (``class_names``: a list, ``"imagenet"`` or
    None for placeholders ``class_<i>``); ``projectors``: saved projector directories or Hub ids (a custom-module
    base's factory runs only with ``trust_remote_code``).
    """
    if (setting is None) == (labels is None):
        raise HelloLabelsError("give either a label setting (classes, images per class, ...) or a label directory")
    disk = None
    if labels is not None:
        setting, disk = scan_label_dir(labels)
    names = _class_names(class_names, setting.classes) if bases else None
    # Label lines first: they are cheap and check top-k and the keep ratio before any model is built.
    rows = full_label_rows(setting, [] if disk else measure_framing(setting, "full"), disk)
    pruned = pruned_row(rows[0].bytes, setting.files, keep_ratio)
    rows += topk_rows(setting, top_k, measure_framing(setting, "topk", top_k)) + [pruned]
    if teacher:
        rows.append(teacher_row(teacher_size(teacher, setting.classes)))
    adapters = [computed_adapter_size(b, names, adapter_dtype, lora_rank, head_rank) for b in bases]
    adapters += [saved_adapter_size(p) for p in projectors]
    for size, _, _ in adapters:
        rows += adapter_rows(size)
    for _, spec, head in adapters:
        rows += base_rows(base_size(spec, text_head=head == "text", trust_remote_code=trust_remote_code))
    title = (f"Storage accounting: SRe2L label directory {labels} (on-disk total measured; setting derived)"
             if labels is not None else "Storage accounting for a label setting (estimate; framing measured)")
    return StorageReport(title, setting, rows, source="directory" if labels is not None else "setting",
                         label_dir=str(labels) if labels is not None else None)
