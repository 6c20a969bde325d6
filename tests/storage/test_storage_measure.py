"""Storage measurement: framing written like SRe2L, real label directories, teachers, bases and adapters."""
import numpy as np
import pytest
import torch

from hello_labels import LabelProjector
from hello_labels.errors import HelloLabelsError
from hello_labels.labels.fkd import FKDBatch, save_batch
from hello_labels.storage import (
    REFERENCE,
    LabelSetting,
    base_size,
    computed_adapter_size,
    full_label_rows,
    measure_framing,
    saved_adapter_size,
    scan_label_dir,
    storage_report,
    teacher_size,
)

GIB = 2 ** 30


def write_sre2l_dir(root, classes, images, epochs, batch_size, mix="cutmix", gvbsm=False, writer="torch.save"):
    """A label directory as SRe2L writes it (``torch.save`` to ``batch_<b>.tar``) or via ``fkd.save_batch``."""
    rng = np.random.default_rng(0)
    for e in range(epochs):
        for b, start in enumerate(range(0, images, batch_size)):
            n = min(batch_size, images - start)
            lam = float(rng.beta(1.0, 1.0)) if mix != "none" else None
            bbox = [np.int64(v) for v in np.sort(rng.integers(0, 224, (2, 2)), axis=0).ravel()] \
                if mix == "cutmix" else None
            batch = FKDBatch(torch.rand(n, 4) / 2, torch.rand(n) < 0.5, torch.randperm(n) if mix != "none" else None,
                             lam, bbox, torch.randn(n, classes).half(),
                             torch.arange(start, start + n) if gvbsm else None)
            path = root / f"epoch_{e}" / f"batch_{b}.tar"
            if writer == "torch.save":
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(batch.to_list(), path)
            else:
                save_batch(path, batch)
    return root


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_saved_projectors_settings_at_more_classes_measure_as_that_projector_saved(tmp_path, tiny_rn_dir):
    from hello_labels.storage import adapter_size_at, labels_and_adapter_at

    def saved(classes, folder):  # a prototype head (its weights ship), custom LoRA targets, int8 as the demo's
        names = [f"c{i}" for i in range(classes)]
        projector = LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=names, head_init="prototype",
                                             prototype_images=torch.rand(classes, 3, 16, 16),
                                             prototype_labels=torch.arange(classes), head_rank=2,
                                             lora_targets=[{"pattern": "*conv1.weight", "rank": 2}])
        projector.save_pretrained(folder, dtype="int8")
        return names, {f: (folder / f).stat().st_size for f in ("adapter.safetensors", "config.json")}

    names, files = saved(5, tmp_path / "five")
    wide_names, wide_files = saved(37, tmp_path / "wide")
    for at, expected in ((names, files), (wide_names, wide_files)):
        size = adapter_size_at(tmp_path / "five", at)
        assert (size.safetensors_bytes, size.config_bytes) == (expected["adapter.safetensors"],
                                                               expected["config.json"])
        assert size.dtype == "int8" and size.classes == len(at) and size.lora_ranks and set(size.lora_ranks) == {2}
    assert wide_files["adapter.safetensors"] > files["adapter.safetensors"]  # the head grows with the classes
    setting = LabelSetting.from_ipc(37, 2, epochs=3, batch_size=8, dtype="float16")
    stored, adapter = labels_and_adapter_at(setting, tmp_path / "five", wide_names)
    assert stored.bytes == full_label_rows(setting, measure_framing(setting, "full"))[0].bytes
    assert adapter.bytes == sum(wide_files.values())
