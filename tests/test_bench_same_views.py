"""benchmarks.same_views: a model labels a label directory's own views (the stored logits are its outputs on them,
up to float16), and the summary pairs each source with the stored labels stream by stream."""
from argparse import Namespace

import torch
from torch import nn

from benchmarks.label_sources import OnStoredViews, PrunedTargets, online_targets
from benchmarks.same_views import STORED, fit, keep_at_bytes, summary
from hello_labels.labels.augment import apply_mix
from hello_labels.labels.export import export_fkd
from hello_labels.labels.targets import StoredTargets, TeacherTargets
from hello_labels.labels.views import AugmentedImages, TensorImages, loader
from hello_labels.storage import storage_report

MEAN, STD = (0.5,), (0.25,)


def _stored(tmp_path):
    torch.manual_seed(0)
    data = TensorImages((torch.rand(6, 1, 12, 12) * 255).to(torch.uint8), torch.arange(6) % 3, ["a", "b", "c"])
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    teacher.eval().requires_grad_(False)
    labels = export_fkd(teacher, data, tmp_path / "labels", epochs=2, batch_size=4, mix_type="cutmix", fp16=True,
                        input_size=8, min_scale=0.5, mean=MEAN, std=STD, seed=3, progress=False)
    return teacher, labels, AugmentedImages(data, 8, MEAN, STD, scale=(0.5, 1.0))


def test_a_model_on_the_stored_views_gives_the_stored_logits_it_wrote(tmp_path):
    teacher, labels, images = _stored(tmp_path)
    stored, online = StoredTargets(images, labels), OnStoredViews(images, labels, teacher)
    steps = 4  # two epochs of two batch files
    a, b = list(stored.plans(0, steps)), list(online.plans(0, steps))
    assert [repr((p.keys, p.mix, p.info)) for p in a] == [repr((p.keys, p.mix, p.info)) for p in b]
    views, _ = loader(images, iter(b), steps, 0)
    rounded = []  # the model's own float32 outputs, not the stored float16 ones
    for step, (batch, *_) in enumerate(views):
        mixed = apply_mix(batch, b[step].mix_type, *b[step].mix)
        got, want = online(b[step], mixed), stored(a[step], mixed)
        assert got.dtype == torch.float32 and torch.equal(got.half().float(), want)
        rounded.append(not torch.equal(got, want))
    assert all(rounded)


class Doubled:
    """A stand-in projector (what ``collect`` uses of one): twice the teacher's logits plus a class offset."""

    device, merged = "cpu", True

    def __init__(self, teacher, offset):
        self.teacher, self.offset = teacher, offset

    def for_labels(self):
        return lambda x: 2 * self.teacher(x) + self.offset


def test_fit_measures_scale_offset_and_agreement_on_the_stored_views(tmp_path):
    teacher, labels, images = _stored(tmp_path)
    same = fit(Doubled(teacher, torch.zeros(3)), images, labels, files=4, temperature=4.0)
    assert same["views"] == 12 and same["agreement"] == 1.0 and same["kl"] > 0
    assert abs(same["scale"] - 0.5) < 1e-3 and abs(same["correlation"] - 1) < 1e-6
    stored = torch.cat([labels.load(0, b).soft_label.float() for b in range(2)])
    offset = torch.zeros(3).index_fill(0, stored.argmax(-1).mode().values, -300.0)  # the class it names most
    shifted = fit(Doubled(teacher, offset), images, labels, files=4, temperature=4.0)
    assert shifted["agreement"] < 1.0 and shifted["class_offset"] > 150 and shifted["kl"] > same["kl"]


def test_pruning_at_a_projectors_bytes_keeps_the_nearest_whole_number_of_batch_files(tmp_path):
    _, labels, images = _stored(tmp_path)  # 2 epochs of 2 batch files
    full = storage_report(labels=str(labels.path), top_k=1, keep_ratio=1.0, teacher=None)
    per_file = full.row("full stored labels (SRe2L)").bytes / 4
    assert [keep_at_bytes(labels, round(n * per_file)) for n in (0, 1, 1.4, 2.6, 4)] == [0.25, 0.25, 0.25, 0.75, 1.0]
    assert len(PrunedTargets(images, labels, keep_at_bytes(labels, round(2.6 * per_file))).kept) == 3


def _rows(source, accuracies, pipeline=0):
    return [{"pipeline": pipeline, "stream": s, "source": source, "accuracy": a} for s, a in accuracies.items()]


def test_the_summary_pairs_stream_by_stream_and_skips_streams_one_source_lacks():
    rows = (_rows(STORED, {0: 0.78, 1: 0.77, 2: 0.80})
            + _rows("projector on the stored views", {0: 0.77, 2: 0.79, 3: 0.9}) + _rows(STORED, {0: 0.5}, pipeline=1))
    lines = summary(rows).splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline 0, streams [0, 2]: projector on the stored views − "
                                                   f"{STORED}: -1.00 points, 95% CI [-1.00, -1.00] over 2 seeds")
    assert lines[0].endswith("(per stream -1.00, -1.00)")


def test_the_summary_pools_every_pipeline_and_stream_pair_after_the_pipelines():
    rows = (_rows(STORED, {0: 0.78, 1: 0.77}) + _rows("teacher online, fresh crops", {0: 0.76, 1: 0.78})
            + _rows(STORED, {0: 0.70, 1: 0.72}, pipeline=1)
            + _rows("teacher online, fresh crops", {1: 0.71}, pipeline=1))
    lines = summary(rows).splitlines()
    assert [line.split(":")[0] for line in lines] == ["pipeline 0, streams [0, 1]", "pipeline 1, streams [1]",
                                                      "pipelines [0, 1], 3 (pipeline, stream) pairs"]
    assert lines[2].endswith("(per pair -2.00, +1.00, -1.00)")


def _keys(targets, steps=3):
    return [repr((p.keys, p.mix)) for p in targets.plans(0, steps, batch_size=4)]


def test_each_student_seed_of_an_online_source_draws_its_own_views_and_seed_0_the_old_stream(tmp_path):
    """The benchmark's online sources drew one crop stream (seed 0) for every student seed, so their seeds varied
    only the initial weights; now seed s draws stream s (seed 0 unchanged), or with --online-views stored every
    seed replays the stored labels' own views."""
    teacher, labels, images = _stored(tmp_path)
    fresh = Namespace(online_views="fresh", mix_type="cutmix")
    first, second = (online_targets(teacher, images, labels, fresh, s) for s in (0, 1))
    assert _keys(first) == _keys(TeacherTargets(images, teacher)) and _keys(first) != _keys(second)
    stored = online_targets(teacher, images, labels, Namespace(online_views="stored", mix_type="cutmix"), 1)
    assert isinstance(stored, OnStoredViews) and _keys(stored) == _keys(StoredTargets(images, labels))


def test_mix_type_mixup_reaches_the_stored_labels_the_online_sources_and_the_hard_label_students(tmp_path, monkeypatch):
    """``--mix-type mixup``: the stored labels are exported with MixUp (no boxes), every online source mixes its
    fresh views by MixUp, the projectors are distilled on MixUp-mixed views and the hard-label students trained on
    them."""
    from benchmarks import label_sources as bench

    teacher, _, images = _stored(tmp_path)
    data = images.source
    args = Namespace(student_epochs=2, student_batch=4, mix_type="mixup", min_scale=0.5, online_views="fresh",
                     data=Namespace(size=8, mean=MEAN, std=STD))
    labels = bench.export_labels(teacher, data, tmp_path / "mixup", args, seed=3)
    first = next(iter(StoredTargets(images, labels).plans(0, 1)))
    assert first.mix_type == "mixup" and first.mix[2] is None  # a MixUp file: a partner and lambda, no box
    online = bench.online_targets(teacher, images, labels, args, 1)
    assert [p.mix_type for p in online.plans(0, 3)] == ["mixup"] * 3
    distilled = {}
    monkeypatch.setattr(bench, "new_projector", lambda *a: (Namespace(num_adapter_parameters=lambda: 1), {}))
    monkeypatch.setattr(bench, "distill_from_teachers", lambda *a, **k: distilled.update(k) or a[2].mkdir())
    monkeypatch.setattr(bench, "distill_config", lambda *a: None)
    args.distill_steps, args.distill_lr, args.effnet_size = 1, 1e-3, 32
    bench.projector_stage(tmp_path, args, "effnet", data, ("t", teacher), images, 0, {})
    assert distilled["mix_type"] == "mixup"
    seen = {}
    monkeypatch.setattr(bench, "train_student", lambda *a, **k: seen.update(k) or {"seconds": 0.0})
    monkeypatch.setattr(bench, "accuracy", lambda *a: 0.0)
    monkeypatch.setattr(bench, "per_class", lambda *a: {})
    args.temperature, args.data = 4.0, Namespace(num_classes=3, channels=1, mean=MEAN, std=STD)
    bench.train_one_student(images, lambda: None, 1, 0, args, (None, None))
    assert seen["mix_type"] == "mixup"
