"""Storage arithmetic: a label setting's bytes by hand, file groups, top-k index dtype."""
import pytest
import torch

from hello_labels.errors import HelloLabelsError
from hello_labels.storage import (
    REFERENCE,
    LabelSetting,
    full_label_rows,
    logits_bytes,
    metadata_bytes,
    topk_index_dtype,
    topk_rows,
)

IMAGENET_IPC10 = LabelSetting.from_ipc(1000, 10, epochs=300, batch_size=1024, dtype="float16")


def test_imagenet_ipc10_by_hand():
    s = IMAGENET_IPC10
    assert (s.images, s.crops, s.batches_per_epoch, s.files, s.last_batch) == (10_000, 3_000_000, 10, 3000, 784)
    assert logits_bytes(s) == 6_000_000_000 == 1000 * 10 * 300 * 1000 * 2
    # per crop: coords 16 + flip 1 + mix index 8; per file: lam 8 + bbox 32
    assert metadata_bytes(s) == 3_000_000 * 25 + 3000 * 40
    assert sum(g.count for g in s.file_groups()) == s.files
    rows = full_label_rows(s, framing=[100, 7])  # groups: 2700 full files, 300 last (784-crop) files
    assert [g.count for g in s.file_groups()] == [2700, 300]
    assert rows[0].name == REFERENCE and rows[0].bytes == 6_000_000_000 + 75_120_000 + 2700 * 100 + 300 * 7
    assert sum(r.bytes for r in rows[1:]) == rows[0].bytes and all(r.part_of == REFERENCE for r in rows[1:])


def test_topk_formula_and_index_dtype():
    s = IMAGENET_IPC10
    rows = topk_rows(s, 10, framing=[50, 60])
    parts = {r.name: r.bytes for r in rows[1:]}
    assert parts["top-k values"] == 3_000_000 * 10 * 2
    assert parts["top-k class indices"] == 3_000_000 * 10 * 2  # int16
    assert parts["crop metadata"] == metadata_bytes(s)
    assert parts["torch.save container"] == 2700 * 50 + 300 * 60
    assert rows[0].bytes == sum(parts.values())
    assert "int16" in rows[2].note and "<= 32767" in rows[2].note
    assert topk_index_dtype(32767) == torch.int16 and topk_index_dtype(32768) == torch.int32
    big = LabelSetting.from_ipc(40_000, 1, epochs=1, batch_size=1000, dtype="float32")
    assert [(g.rows, g.count) for g in big.file_groups()] == [(1000, 10), (1000, 30)]  # batch_0-9, batch_10-39
    assert topk_rows(big, 5, [0, 0])[2].bytes == 40_000 * 5 * 4
    with pytest.raises(HelloLabelsError, match="file groups"):
        topk_rows(big, 5, [0])
    with pytest.raises(HelloLabelsError, match="exceeds"):
        topk_rows(LabelSetting.from_ipc(5, 1), 6, [0])


def test_dtypes_and_mix_types_are_the_library_tables():
    from hello_labels.labels.augment import MIX_TYPES
    from hello_labels.model.projector import DTYPES

    for dtype in DTYPES:
        assert LabelSetting(5, 10, 1, 4, dtype=dtype).itemsize == DTYPES[dtype].itemsize
    for mix in MIX_TYPES:  # None is the library's "no mix"; "none" is how users spell it
        assert LabelSetting(5, 10, 1, 4, mix=mix).mix == mix
    assert LabelSetting(5, 10, 1, 4, mix="none") == LabelSetting(5, 10, 1, 4, mix=None)
    assert metadata_bytes(LabelSetting(5, 10, 1, 4, mix=None)) == 10 * (16 + 1)  # coords + flip only
    for bad, what in ((dict(dtype="int8"), "label dtype"), (dict(mix="cutout"), "mix type")):
        with pytest.raises(HelloLabelsError, match=what):
            LabelSetting(5, 10, 1, 4, **bad)
