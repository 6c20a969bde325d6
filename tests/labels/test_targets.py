"""The Targets interface: declared once, implemented by every label source, checkable at runtime."""
from typing import Iterator, List

import pytest
import torch

from hello_labels.labels.fkd import FKDBatch, LabelDir, batch_path, save_batch
from hello_labels.labels.targets import ImageLabelTargets, StoredTargets, Targets, TeacherTargets
from hello_labels.labels.views import AugmentedImages, BatchPlan, TensorImages


@pytest.fixture
def images():
    return AugmentedImages(TensorImages(torch.rand(6, 3, 12, 12), torch.arange(6) % 3), 8)


def _label_dir(path, num_images=6, batch_size=4, classes=3):
    for epoch in range(2):
        for number in range(-(-num_images // batch_size)):
            n = min(batch_size, num_images - number * batch_size)
            coords = torch.tensor([[0.0, 0.0, 0.5, 0.5]]).repeat(n, 1)
            save_batch(batch_path(path, epoch, number),
                       FKDBatch(coords, torch.zeros(n, dtype=torch.bool), None, None, None, torch.randn(n, classes)))
    return LabelDir.scan(path)


def test_every_label_source_is_a_targets(images, tmp_path):
    teacher = TeacherTargets(images, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3)))
    stored = StoredTargets(images, _label_dir(tmp_path / "fkd"))
    per_image = ImageLabelTargets(images, torch.randn(6, 3))
    for source in (teacher, stored, per_image):
        assert isinstance(source, Targets)
        plan = next(iter(source.plans(0, 1, batch_size=4)))
        assert isinstance(plan, BatchPlan) and source.to("cpu") is source
    plan = next(iter(per_image.plans(0, 1, batch_size=4)))
    views = torch.stack([images[k][0] for k in plan.keys])
    assert per_image(plan, views).shape == (4, 3) and teacher(plan, views).shape == (4, 3)


def test_the_interface_is_enforced(images):
    class Partial(Targets):  # forgot held_out and fingerprint
        images = mix_type = fixed_batch_size = None

        def to(self, device):
            return self

        def plans(self, start, steps, rank=0, world_size=1, batch_size=64) -> Iterator[BatchPlan]:
            return iter(())

        def __call__(self, plan, mixed):
            return mixed

    with pytest.raises(TypeError, match="abstract"):
        Partial()

    class Structural:  # a third-party source that does not inherit: checked by its members
        mix_type, fixed_batch_size, held_out_in_sample = None, None, False

        def __init__(self):
            self.images = images

        def to(self, device):
            return self

        def plans(self, start, steps, rank=0, world_size=1, batch_size=64) -> Iterator[BatchPlan]:
            return iter(())

        def held_out(self, num_views, batch_size) -> List[BatchPlan]:
            return []

        def __call__(self, plan, mixed):
            return mixed

        def fingerprint(self):
            return {}

    assert isinstance(Structural(), Targets)
    del Structural.fingerprint
    assert not isinstance(Structural(), Targets)


def test_pruned_labels_at_a_byte_budget_keep_and_replay_whole_files_only(images, tmp_path):
    from hello_labels.errors import BadInputError
    from hello_labels.labels.targets import PrunedTargets

    labels = _label_dir(tmp_path / "fkd")  # 2 epochs of 2 batch files
    mean = labels.total_bytes() / labels.total_files
    assert [len(PrunedTargets.at_bytes(images, labels, round(n * mean)).kept) for n in (0, 1, 1.4, 2.6, 9)] == \
        [1, 1, 1, 3, 4]
    pruned = PrunedTargets.at_bytes(images, labels, round(2.6 * mean), seed=1)
    kept = [divmod(int(f), labels.batches_per_epoch) for f in pruned.kept]
    assert pruned.kept_bytes() == sum(batch_path(labels.path, e, b).stat().st_size for e, b in kept)
    replayed = [p.info["file"] for p in pruned.plans(0, 7)]
    assert replayed == [kept[s % 3] for s in range(7)]  # only the kept files, cycled, stored logits as saved
    plan = next(iter(pruned.plans(1, 2)))
    assert torch.equal(pruned(plan, torch.zeros(1)), labels.load(*kept[1]).soft_label.float())
    assert pruned.fingerprint()["kept"] == pruned.kept.tolist()
    with pytest.raises(BadInputError, match="kept fraction"):
        PrunedTargets(images, labels, 0.0)
