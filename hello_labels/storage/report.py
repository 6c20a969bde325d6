"""Storage accounting: what each way of supplying soft labels costs in bytes, every component counted and named.

Lines of a report, for one label setting (classes, images, epochs, batch size, logit dtype, mix type) or for an
existing SRe2L label directory:

1. full stored labels (SRe2L): logits + per-crop augmentation metadata + ``torch.save`` container per file;
2. top-k stored labels (FKD / LPQLD): k values + k class indices per crop + the same metadata and container;
3. pruned labels (LPLD): a random subset of whole batch files;
4. the teacher that generates labels online (RDED);
5. the HeLlO adapter (``adapter.safetensors`` + ``config.json``);

plus the public base model, reported separately and marked as not counted. Ratios are relative to line 1.

The ``*_row(s)`` functions compute lines from numbers (:mod:`.setting`) and sizes (:mod:`.measure`);
:func:`storage_report` measures and puts them together; :class:`StorageReport` formats them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

import torch

from ..errors import BadInputError
from .measure import (
    AdapterSize,
    BaseSize,
    TeacherSize,
    adapter_size_at,
    base_size,
    computed_adapter_size,
    measure_framing,
    named_classes,
    saved_adapter_size,
    scan_label_dir,
    teacher_size,
)
from .setting import (
    BLOCK,
    TOPK_INT16_MAX_CLASSES,
    DiskUsage,
    LabelSetting,
    allocated_bytes,
    check_top_k,
    file_payload_bytes,
    logits_bytes,
    metadata_bytes,
    mix_name,
    topk_index_bytes,
    topk_index_dtype,
    topk_value_bytes,
)

REFERENCE = "full stored labels (SRe2L)"


@dataclass
class StorageRow:
    """One line of a report. ``part_of`` names the line this one is a component of; ``counted`` is False for
    what is public and downloaded from its own source (the base model), never stored or shipped by you."""

    name: str
    bytes: int
    note: str
    part_of: Optional[str] = None
    counted: bool = True


def _mix_note(s: LabelSetting) -> str:
    per_crop = ["coords [B,4] f32 16 B", "flip [B] bool 1 B"]
    if s.mix is not None:
        per_crop.append("mix index [B] i64 8 B")
    if s.gvbsm_index:
        per_crop.append("G-VBSM index [B] i64 8 B")
    per_file = {"cutmix": "; per file: lam f64 8 B + bbox 4 x i64 32 B", "mixup": "; per file: lam f64 8 B",
                None: ""}[s.mix]
    return f"per crop: {' + '.join(per_crop)}{per_file}"


def _framing_note(s: LabelSetting, framing: Sequence[int], what: str) -> str:
    lo, hi = min(framing), max(framing)
    spread = f"{lo:,} B" if lo == hi else f"{lo:,}-{hi:,} B"
    return f"zip + pickle framing, {spread}/file x {s.files:,} files, {what}"


def _framing_total(s: LabelSetting, framing: Sequence[int]) -> int:
    groups = s.file_groups()
    if len(framing) != len(groups):
        raise BadInputError(f"framing has {len(framing)} values for the setting's {len(groups)} file groups")
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
    k = check_top_k(s, k)
    name = f"top-k labels (FKD/LPQLD, k={k})"
    bits = topk_index_dtype(s.classes).itemsize * 8
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
        raise BadInputError(f"keep ratio must be in (0, 1], got {keep_ratio}")
    kept = max(1, int(keep_ratio * files + 0.5))  # half up, not Python's half to even
    return StorageRow(f"pruned labels (LPLD, keep {keep_ratio:.4g})", round(full_total * kept / files),
                      f"{kept:,} of {files:,} batch files kept at random (LPLD's random pruning); "
                      f"{kept:,}/{files:,} of the full labels' bytes (average file)")


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
                "setting": dict(asdict(self.setting), mix=mix_name(self.setting.mix), crops=self.setting.crops,
                                files=self.setting.files),
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


def label_rows(s: LabelSetting, top_k: int, keep_ratio: float, disk: Optional[DiskUsage] = None) -> List[StorageRow]:
    """Lines 1-3 and their parts for ``s``: full labels (``disk``: measured, else estimated with measured
    framing), top-k labels (framing measured), pruned labels."""
    rows = full_label_rows(s, [] if disk else measure_framing(s, "full"), disk)
    pruned = pruned_row(rows[0].bytes, s.files, keep_ratio)  # checks the keep ratio before writing top-k files
    return rows + topk_rows(s, top_k, measure_framing(s, "topk", top_k)) + [pruned]


def labels_and_adapter_at(setting: LabelSetting, projector, class_names=None) -> List[StorageRow]:
    """Two lines: the full stored labels of ``setting`` (framing measured) and the adapter that the saved
    ``projector``'s settings give at its classes (``class_names`` as :func:`named_classes` takes them): what a
    recipe fitted on a small label set costs at another scale."""
    stored = full_label_rows(setting, measure_framing(setting, "full"))[0]
    adapter = adapter_rows(adapter_size_at(projector, named_classes(class_names, setting.classes)))[0]
    return [stored, adapter]


def storage_report(setting: Optional[LabelSetting] = None, labels: Optional[str] = None, *, top_k: Optional[int] = None,
                   keep_ratio: float = 0.025, teacher: Optional[str] = "torchvision:resnet18",
                   bases: Sequence[str] = (), projectors: Sequence[str] = (), class_names=None,
                   adapter_dtype: str = "float32", lora_rank: Optional[int] = None,
                   head_rank: int = 64, trust_remote_code: bool = False) -> StorageReport:
    """All lines for a ``setting`` or an existing SRe2L label directory ``labels`` (exactly one of them).

    ``bases``: base names whose adapter is computed from shapes (``class_names``: a list, ``"imagenet"`` or
    None for placeholders ``class_<i>``); ``projectors``: saved projector directories or Hub ids.
    """
    if (setting is None) == (labels is None):
        raise BadInputError("give either a label setting (classes, images per class, ...) or a label directory")
    disk = None
    if labels is not None:
        setting, disk = scan_label_dir(labels)
    names = named_classes(class_names, setting.classes) if bases else None
    # Label lines first: they are cheap and check top-k and the keep ratio before any model is built.
    rows = label_rows(setting, top_k, keep_ratio, disk)
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
