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
