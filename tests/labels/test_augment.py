"""Crops are torchvision's RandomResizedCrop draws, from a private generator: the global RNG is never touched."""
import contextlib

import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from hello_labels.labels.augment import draw_crop
from hello_labels.labels.export import _plans
from hello_labels.labels.fkd import sampler_order
from hello_labels.labels.settings import ExportConfig
from hello_labels.labels.views import AugmentedImages, TensorImages, stream_plans
from hello_labels.train.refine import RefineConfig, augmented_views


def _torchvision(height, width, scale, ratio, seed):
    """What SRe2L's RandomResizedCropWithCoords + flip draw after ``torch.manual_seed(seed)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        i, j, h, w = RandomResizedCrop.get_params(torch.empty(1, height, width), list(scale), list(ratio))
        return (i, j, h, w), bool(torch.rand(1) < 0.5)


# (4, 200) and (300, 6): no try fits, torchvision's centre crop clamped to the ratio
@pytest.mark.parametrize("height, width, scale, fallback", [(375, 500, (0.08, 1.0), None), (28, 28, (0.25, 1.0), None),
                                                            (4, 200, (0.08, 1.0), (0, 97, 4, 5)),
                                                            (300, 6, (0.5, 1.0), (146, 0, 8, 6))])
def test_draw_crop_is_torchvisions_algorithm(height, width, scale, fallback):
    ratio = (3 / 4, 4 / 3)
    for seed in [0, 1, 7, 2 ** 40 + 3, 2 ** 63 - 1, *range(100, 200)]:
        coords, flip = draw_crop(torch.empty(3, height, width), scale, ratio, seed)
        (i, j, h, w), expected_flip = _torchvision(height, width, scale, ratio, seed)
        expected = torch.tensor([i / height, j / width, h / height, w / width], dtype=torch.float32)
        assert torch.equal(coords, expected) and flip == expected_flip, seed
    if fallback:
        assert (i, j, h, w) == fallback


@contextlib.contextmanager
def _global_rng_untouched():
    """Fail on any use of torch's global seed/state setters; check torch's and numpy's global state after."""
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()

    def refuse(*args, **kwargs):
        raise AssertionError("the global RNG was touched")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("manual_seed", "seed", "set_rng_state"):
            mp.setattr(torch, name, refuse)
        mp.setattr(torch.random, "fork_rng", refuse)
        yield
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_drawing_views_and_plans_never_touches_the_global_rng():
    source = TensorImages(torch.rand(6, 3, 20, 24), torch.arange(6) % 3)
    images = AugmentedImages(source, 16)
    views = []
    with _global_rng_untouched():
        for plan in stream_plans(len(images), 4, 3, 0, 3, mix_type="cutmix", image_size=16):
            views += [images[key] for key in plan.keys]
        files = [(0, 0), (1, 1)]
        for plan in _plans(sampler_order(6, 4), files, ExportConfig(seed=0, mix_type="mixup", input_size=16)):
            views += [images[key] for key in plan.keys]
        refined = augmented_views(source.images[:2], [0, 1], 5, RefineConfig(input_size=16, views=2,
                                                                             mix_type="cutmix"),
                                  (0.5,) * 3, (0.25,) * 3)
    assert len(views) == 12 + 6 and refined.shape == (4, 3, 16, 16)
