"""Input checks where the student's batch enters the projector: range, dtype, empty batch, device."""
import pytest
import torch
import torch.nn.functional as F

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.model.inputs import IMAGENET_MEAN, IMAGENET_STD

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def projector(tiny_vit_dir):
    return LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=["a", "b", "c"], templates="simple",
                                    head_rank=4)


def pixels(n=4, size=24, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_0_255_and_twice_normalised_inputs_are_refused(projector):
    x = pixels()
    for wrong in (x * 255, (x * 255 - MEAN) / STD, ((x - MEAN) / STD - MEAN) / STD):
        with pytest.raises(HelloLabelsError,
                           match="outside what pixels in \\[0, 1\\] normalised with input_mean") as err:
            projector(wrong)
        assert "\n" not in str(err.value) and "check_inputs=False" in str(err.value)
    with pytest.raises(HelloLabelsError, match="images range from nan"):
        projector(torch.full((1, 3, 8, 8), float("nan")))


def test_every_valid_batch_passes_extremes_and_bicubic_overshoot_included(projector):
    black, white = torch.zeros(1, 3, 24, 24), torch.ones(1, 3, 24, 24)
    stripes = (torch.arange(24) % 2).float().expand(1, 3, 24, 24)
    sharp = F.interpolate(stripes, size=48, mode="bicubic", align_corners=False)  # overshoots [0, 1]
    assert sharp.min() < 0 and sharp.max() > 1
    with torch.no_grad():
        for x in (black, white, sharp, pixels()):
            assert projector((x - MEAN) / STD).shape == (x.shape[0], 3)


def test_check_inputs_false_skips_the_range_check(projector, tmp_path):
    x = pixels() * 255
    projector.check_inputs = False
    try:
        with torch.no_grad():
            assert projector(x).shape == (4, 3)
    finally:
        projector.check_inputs = True
    projector.save_pretrained(tmp_path / "p")
    loaded = LabelProjector.from_pretrained(tmp_path / "p", check_inputs=False)
    assert not loaded.check_inputs
    with torch.no_grad():
        loaded(x)


def test_one_channel_inputs_are_checked_with_their_own_normalisation(tiny_vit_dir):
    p = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=["a", "b"], templates="simple", head_rank=2,
                                 input_mean=[0.2860], input_std=[0.3530], input_channels=1)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        p((x - 0.2860) / 0.3530)
    with pytest.raises(HelloLabelsError, match="input_mean \\[0.286\\] / input_std \\[0.353\\]"):
        p(x * 255)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_runs_at_the_projector_dtype(projector, dtype):
    x = (pixels() - MEAN) / STD
    with torch.no_grad():
        out = projector(x.to(dtype))
        reference = projector(x.to(dtype).float())
    assert out.dtype == torch.float32 and torch.equal(out, reference)


def test_empty_batch_gives_empty_logits(projector):
    with torch.no_grad():
        out = projector(torch.zeros(0, 3, 24, 24))
    assert out.shape == (0, 3) and out.dtype == torch.float32


def test_device_mismatch_names_both_devices(projector):
    x = torch.zeros(2, 3, 24, 24, device="meta")
    with pytest.raises(HelloLabelsError, match="images are on meta but the projector is on cpu") as err:
        projector(x)
    assert "\n" not in str(err.value)
