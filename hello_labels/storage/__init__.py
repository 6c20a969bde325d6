"""Storage accounting: bytes of every way to supply soft labels, side by side.

:mod:`.setting` (a label setting and its byte arithmetic), :mod:`.measure` (framing, label directories, teachers,
bases, adapters), :mod:`.report` (rows, the report and its table), :mod:`.plot` (bytes against images per class).
"""
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
from .plot import Series, StorageSeries, plot_storage, storage_series
from .report import (
    REFERENCE,
    StorageReport,
    StorageRow,
    adapter_rows,
    base_rows,
    full_label_rows,
    human_bytes,
    label_rows,
    labels_and_adapter_at,
    pruned_row,
    storage_report,
    teacher_row,
    topk_rows,
)
from .setting import (
    BLOCK,
    TOPK_INT16_MAX_CLASSES,
    DiskUsage,
    FileGroup,
    LabelSetting,
    allocated_bytes,
    crop_metadata_bytes,
    file_payload_bytes,
    logits_bytes,
    metadata_bytes,
    topk_index_bytes,
    topk_index_dtype,
    topk_value_bytes,
)

__all__ = [
    "AdapterSize", "BaseSize", "TeacherSize", "adapter_size_at", "base_size", "computed_adapter_size",
    "measure_framing", "named_classes", "saved_adapter_size", "scan_label_dir", "teacher_size",
    "Series", "StorageSeries", "plot_storage", "storage_series",
    "REFERENCE", "StorageReport", "StorageRow", "adapter_rows", "base_rows", "full_label_rows", "human_bytes",
    "label_rows", "labels_and_adapter_at", "pruned_row", "storage_report", "teacher_row", "topk_rows",
    "BLOCK", "TOPK_INT16_MAX_CLASSES", "DiskUsage", "FileGroup", "LabelSetting", "allocated_bytes",
    "crop_metadata_bytes", "file_payload_bytes", "logits_bytes", "metadata_bytes", "topk_index_bytes",
    "topk_index_dtype", "topk_value_bytes",
]
