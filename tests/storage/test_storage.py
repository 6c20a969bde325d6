"""Storage accounting: hand-computed sizes, measured framing, real directories, adapters, CLI."""
import json

import numpy as np
import pytest
import torch

from hello_labels import LabelProjector
from hello_labels.cli import main
from hello_labels.errors import HelloLabelsError
from hello_labels.labels.fkd import FKDBatch, save_batch
from hello_labels.storage import (
    REFERENCE,
    LabelSetting,
    StorageRow,
    base_size,
    computed_adapter_size,
    full_label_rows,
    human_bytes,
    logits_bytes,
    measure_framing,
    metadata_bytes,
    pruned_row,
    saved_adapter_size,
    scan_label_dir,
    storage_report,
    teacher_size,
    topk_index_dtype,
    topk_rows,
)

GIB = 2 ** 30
IMAGENET_IPC10 = LabelSetting.from_ipc(1000, 10, epochs=300, batch_size=1024, dtype="float16")


def write_sre2l_dir(root, classes, images, epochs, batch_size, mix="cutmix", gvbsm=False, writer="torch.save"):
    """A label directory as SRe2L writes it (``torch.save`` to ``batch_<b>.tar``) or via ``fkd.save_batch``."""
    rng = np.random.default_rng(0)
    for e in range(epochs):
        for b, start in enumerate(range(0, images, batch_size)):
            n = min(batch_size, images - start)
            lam = float(rng.beta(1.0, 1.0)) if mix != "none" else None
            bbox = [np.int64(v) for v in rng.integers(0, 224, 4)] if mix == "cutmix" else None
            batch = FKDBatch(torch.rand(n, 4), torch.rand(n) < 0.5, torch.randperm(n) if mix != "none" else None,
                             lam, bbox, torch.randn(n, classes).half(),
                             torch.arange(start, start + n) if gvbsm else None)
            path = root / f"epoch_{e}" / f"batch_{b}.tar"
            if writer == "torch.save":
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(batch.to_list(), path)
            else:
                save_batch(path, batch)
    return root


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


@pytest.mark.parametrize("ipc, paper_gib", [(10, 5.67), (200, 113)])
def test_full_labels_match_the_sre2l_paper(ipc, paper_gib):
    s = LabelSetting.from_ipc(1000, ipc, epochs=300, batch_size=1024, dtype="float16")
    framing = measure_framing(s)
    assert all(1000 < f < 5000 for f in framing)  # a torch.save zip of 5 tensors: a few KiB of framing
    total = full_label_rows(s, framing)[0].bytes
    assert abs(total / GIB - paper_gib) / paper_gib < 0.005


@pytest.mark.parametrize("mix, gvbsm", [("cutmix", False), ("mixup", False), ("none", True)])
def test_estimate_equals_a_directory_written_like_sre2l(tmp_path, mix, gvbsm):
    # 13 batches per epoch: one- and two-digit batch names, and a short last batch
    write_sre2l_dir(tmp_path, classes=7, images=50, epochs=2, batch_size=4, mix=mix, gvbsm=gvbsm)
    setting, disk = scan_label_dir(tmp_path)
    assert setting == LabelSetting(7, 50, 2, 4, "float16", mix, gvbsm)
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*.tar"))
    assert disk.bytes == on_disk and disk.allocated >= on_disk
    assert full_label_rows(setting, measure_framing(setting))[0].bytes == on_disk


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


def test_pruned_scales_with_keep_ratio():
    full, files = 6_000_000_000, 3000
    assert pruned_row(full, files, 1.0).bytes == full
    assert pruned_row(full, files, 0.5).bytes == full // 2
    assert pruned_row(full, files, 0.2).bytes == 2 * pruned_row(full, files, 0.1).bytes
    assert pruned_row(full, files, 0.025).bytes == full // 40 and "75 of 3,000" in pruned_row(full, files, 0.025).note
    for bad in (0, -0.1, 1.5):
        with pytest.raises(HelloLabelsError, match="keep ratio"):
            pruned_row(full, files, bad)


def test_directory_total_is_the_sum_of_file_sizes(tmp_path):
    write_sre2l_dir(tmp_path, classes=5, images=12, epochs=3, batch_size=5, writer="save_batch")
    report = storage_report(labels=str(tmp_path), top_k=2, keep_ratio=0.5, teacher=None)
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*.tar"))
    assert report.row(REFERENCE).bytes == on_disk and report.reference_bytes == on_disk
    s = report.setting
    assert (s.classes, s.images, s.epochs, s.batch_size, s.dtype, s.mix) == (5, 12, 3, 5, "float16", "cutmix")
    parts = [r for r in report.rows if r.part_of == REFERENCE]
    assert sum(r.bytes for r in parts) == on_disk and parts[0].bytes == 12 * 3 * 5 * 2
    assert "measured" in report.row(REFERENCE).note
    assert report.row("pruned labels (LPLD, keep 0.5)").bytes == round(on_disk * 5 / 9)  # 4.5 of 9 files: 5
    assert report.source == "directory" and report.to_dict()["label_dir"] == str(tmp_path)


def test_saved_and_computed_adapter_bytes_equal_num_adapter_bytes(tmp_path, tiny_rn_dir, class_names):
    base = f"local-dir:{tiny_rn_dir}"
    projector = LabelProjector.from_base(base, class_names=class_names)
    projector.save_pretrained(tmp_path, dtype="float16")
    expected = LabelProjector.from_pretrained(tmp_path).num_adapter_bytes()
    saved, spec, head = saved_adapter_size(str(tmp_path))
    assert saved.tensor_bytes == expected == projector.num_adapter_bytes("float16")
    assert saved.safetensors_bytes == (tmp_path / "adapter.safetensors").stat().st_size
    assert saved.config_bytes == (tmp_path / "config.json").stat().st_size
    # the head delta's rank is clamped to min(64, classes, feature dim): the rank the tensors really have
    assert (saved.params, saved.dtype, saved.head_rank, head) == (projector.num_adapter_parameters(), "float16",
                                                                   5, "text")
    computed, _, _ = computed_adapter_size(base, class_names, dtype="float16")
    assert computed.tensor_bytes == expected and computed.lora_targets == saved.lora_targets > 0

    # the base is reported separately, not counted, and is exactly the encoder's state dict (+ text tower)
    report = storage_report(LabelSetting.from_ipc(5, 2, epochs=2, batch_size=4), top_k=2, teacher=None,
                            projectors=[str(tmp_path)])
    adapter = report.row(f"adapter (HeLlO): open_clip:{base}")
    assert adapter.counted and adapter.bytes == saved.safetensors_bytes + saved.config_bytes
    assert report.row("adapter tensors", adapter.name).bytes == expected
    base_rows = [r for r in report.rows if not r.counted]
    assert base_rows and all("NOT counted" in (r.part_of or r.name) for r in base_rows)
    assert [r.counted for r in report.rows] == sorted((r.counted for r in report.rows), reverse=True)
    size = base_size(spec, text_head=True)
    import open_clip

    model = open_clip.create_model(base)
    visual = sum(v.numel() * v.element_size() for v in model.visual.state_dict().values())
    assert size.encoder_bytes == visual and size.encoder_params == sum(p.numel() for p in model.visual.parameters())
    assert size.text_bytes == sum(v.numel() * v.element_size() for k, v in model.state_dict().items()
                                  if not k.startswith("visual."))
    assert base_rows[0].bytes == size.encoder_bytes + size.text_bytes


def test_rn50_adapter_from_shapes_matches_the_readme():
    size, spec, head = computed_adapter_size("RN50", "imagenet", dtype="float16")
    assert (size.params, size.tensor_bytes, size.lora_targets, head) == (770_241, 1_540_482, 55, "text")
    assert size.classes == 1000 and spec["kind"] == "open_clip"


def test_teacher_by_architecture_and_by_checkpoint(tmp_path):
    t = teacher_size("torchvision:resnet18", 1000)
    assert t.params == 11_689_512 and t.param_bytes == 11_689_512 * 4
    assert t.buffer_bytes == 9600 * 4 + 20 * 8  # BN running stats (fp32) + num_batches_tracked (int64)
    assert 0 < t.file_bytes - t.param_bytes - t.buffer_bytes < 100_000
    import timm

    path = tmp_path / "teacher.pth"
    torch.save(timm.create_model("test_resnet", num_classes=5).state_dict(), path)
    from_file = teacher_size(str(path), 5)
    assert from_file.from_file and from_file.file_bytes == path.stat().st_size
    assert teacher_size("timm:test_resnet", 5).params == from_file.params - sum(
        v.numel() for k, v in torch.load(path).items() if "running" in k)
    with pytest.raises(HelloLabelsError, match="expected timm:NAME"):
        teacher_size("resnet18", 1000)


def test_human_units():
    assert human_bytes(6_085_017_600) == "5.67 GiB" and human_bytes(812) == "812 B"
    assert human_bytes(75_120_000) == "71.6 MiB"


def test_cli_prints_every_line_labelled_and_writes_json(tmp_path, tiny_vit_dir, capsys):
    out = tmp_path / "report.json"
    assert main(["storage", "--classes", "5", "--ipc", "4", "--epochs", "3", "--batch-size", "8", "--fp16",
                 "--top-k", "2", "--keep-ratio", "0.5", "--teacher", "timm:test_resnet",
                 "--base", f"local-dir:{tiny_vit_dir}", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["rows"]]
    assert REFERENCE in names and "top-k labels (FKD/LPQLD, k=2)" in names and "pruned labels (LPLD, keep 0.5)" in names
    assert any(n.startswith("teacher for online labels (RDED)") for n in names)
    assert any(n.startswith("adapter (HeLlO)") for n in names)
    assert any(n.startswith("base model (public, NOT counted)") for n in names)
    for row in data["rows"]:
        assert row["name"] and row["note"] and isinstance(row["bytes"], int) and row["bytes"] >= 0
        assert f"{row['bytes']:,}" in text and row["name"] in text and row["note"] in text
        assert row["ratio_to_full_labels"] == pytest.approx(row["bytes"] / data["rows"][0]["bytes"])
    assert data["setting"]["dtype"] == "float16" and data["setting"]["files"] == 9
    assert "5 classes x 4 images/class" in text and "NOT counted" in text


@pytest.mark.parametrize("argv, message", [
    (["--classes", "0", "--ipc", "10"], "classes must be a positive integer"),
    (["--classes", "1000", "--ipc", "-5"], "images per class must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--epochs", "0"], "epochs must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--batch-size", "-1"], "batch size must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--top-k", "0"], "top-k must be a positive integer"),
    (["--classes", "10", "--ipc", "2", "--keep-ratio", "0"], "keep ratio"),
    (["--classes", "10"], "give --classes and --ipc"),
    (["--labels", "/nonexistent/labels"], "label directory not found"),
    (["--labels", "/nonexistent/labels", "--classes", "3"], "brings its own setting"),
    (["--classes", "10", "--ipc", "2", "--projector", "/nonexistent/projector"], "projector directory not found"),
])
def test_cli_bad_input_is_one_line_error_status_2(argv, message, capsys):
    assert main(["storage", "--teacher", "none", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and message in err


def test_row_is_a_plain_dataclass():
    row = StorageRow("x", 1, "y")
    assert (row.name, row.bytes, row.note, row.part_of, row.counted) == ("x", 1, "y", None, True)
