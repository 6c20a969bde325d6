"""The training core: calibration before step 0, the CutMix cross-entropy weight, the teacher under autocast, host
syncs of the step loop, what "held-out" means for stored labels, and input sizes that contradict label files."""
import math
import sys

import numpy as np
import pytest
import sre2l_reference as ref
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from hello_labels import HelloLabelsError
from hello_labels.cli import main
from hello_labels.labels.augment import mix_weight, mixed_cross_entropy
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import ImageLabelTargets, StoredTargets, TeacherTargets
from hello_labels.train import distill as distill_module
from hello_labels.train.distill import DistillConfig, calibrate, distill
from hello_labels.train.evaluate import collect
from hello_labels.train.jobs import augmented, convert_labels, evaluate, make_projector

SIZE = 32


def _projector(vit_dir, images, head_init):
    return make_projector(images, f"local-dir:{vit_dir}", head_init=head_init, templates="simple", head_rank=4)


# ----------------------------------------------------------------------------- calibration
@pytest.mark.slow
@pytest.mark.parametrize("head_init", ["text", "prototype", "random", "zero"])
def test_every_head_init_calibrates_to_a_bounded_scale_and_trains_with_finite_loss(head_init, tiny_vit_dir,
                                                                                  toy_folder, toy_teacher, tmp_path):
    teacher, _ = toy_teacher
    images = augmented(toy_folder, SIZE, min_scale=0.25)
    projector = _projector(tiny_vit_dir, images, head_init)
    scale_before = float(projector.head.logit_scale.detach().exp())
    targets = TeacherTargets(images, teacher, mix_type="cutmix")
    summary = distill(projector, targets, tmp_path, DistillConfig(steps=2, batch_size=8, eval_views=16,
                                                                  warmup_steps=1), progress=False)
    scale = float(projector.head.logit_scale.detach().exp())
    assert math.isfinite(summary["final_loss"]) and summary["final_loss"] < 1e4
    assert math.isfinite(scale) and scale_before / 1e3 <= scale <= scale_before * 1e3
    if head_init == "zero":  # no class signal in a zero head: its scale is not identifiable and stays
        assert scale == pytest.approx(scale_before, rel=1e-2)
    assert torch.isfinite(projector.head.bias).all()


def test_calibration_of_constant_targets_fits_the_bias_only(tiny_projector, toy_folder):
    projector, images = tiny_projector(toy_folder)
    scale_before = float(projector.head.logit_scale.detach())
    labels = torch.full((len(images), 5), 3.0)
    targets = ImageLabelTargets(images, labels)
    factor = calibrate(projector, targets, targets.held_out(16, 8))
    assert factor == 1.0 and float(projector.head.logit_scale.detach()) == pytest.approx(scale_before)
    logits, _, _ = collect(projector, targets, targets.held_out(16, 8))
    # the fitted bias alone puts every class's mean logit at the targets' value
    assert torch.allclose(logits.mean(0), torch.full((5,), 3.0), atol=1e-4)


def test_calibration_refuses_non_finite_targets(tiny_projector, toy_folder):
    projector, images = tiny_projector(toy_folder)
    labels = torch.zeros(len(images), 5)
    labels[0, 1] = float("inf")
    targets = ImageLabelTargets(images, labels)
    with pytest.raises(HelloLabelsError, match="target logits contain inf/NaN"):
        calibrate(projector, targets, targets.held_out(16, 8))


# ----------------------------------------------------------------------------- CutMix cross-entropy
def test_cutmix_cross_entropy_weights_by_the_pasted_area_not_the_drawn_lambda():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    labels = torch.tensor([0, 2])
    index = torch.tensor([1, 0])
    # drawn lam 0.3, but the box was clipped at the border: rows 2..4 x cols 0..3 of a 4 x 6 image = 6 of 24 px
    mix = (index, 0.3, [np.int64(2), np.int64(0), np.int64(4), np.int64(3)])
    by_hand = 0.75 * F.cross_entropy(logits, labels) + 0.25 * F.cross_entropy(logits, labels[index])
    assert mix_weight(mix, (4, 6)) == 0.75
    assert torch.allclose(mixed_cross_entropy(logits, labels, mix, (4, 6)), by_hand)
    # a box reaching past the image counts only its pasted part (slicing clips it): rows 2..4 of 4, all 6 cols
    assert mix_weight((index, 0.3, [2, 0, 9, 9]), (4, 6)) == 0.5
    assert mixed_cross_entropy(logits, labels, (index, 0.4, None)) == pytest.approx(
        float(0.4 * F.cross_entropy(logits, labels) + 0.6 * F.cross_entropy(logits, labels[index])))
    with pytest.raises(HelloLabelsError, match="image size"):
        mixed_cross_entropy(logits, labels, mix)


# ----------------------------------------------------------------------------- the step loop
class _AutocastProbe(torch.nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.teacher, self.seen = teacher, []

    def forward(self, x):
        self.seen.append(torch.is_autocast_enabled(x.device.type))
        return self.teacher(x)


def test_teacher_runs_under_the_projectors_autocast(tiny_projector, toy_folder, toy_teacher, tmp_path):
    teacher, _ = toy_teacher
    projector, images = tiny_projector(toy_folder)
    probe = _AutocastProbe(teacher)
    distill(projector, TeacherTargets(images, probe), tmp_path,
            DistillConfig(steps=2, batch_size=8, precision="bf16", calibrate=False, eval_views=0), progress=False)
    assert probe.seen == [True, True]  # the two training steps (eval_views=0: no fp32 fidelity pass at the end)


class _HostReads(TorchFunctionMode):
    """Counts tensor-to-Python reads (each a host sync on an accelerator) made by code in distill.py."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__, torch.Tensor.__int__,
             torch.Tensor.__bool__}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS and sys._getframe(1).f_code.co_filename == distill_module.__file__:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
def test_step_loop_reads_the_device_only_at_log_intervals(tiny_projector, toy_folder, toy_teacher, tmp_path):
    teacher, _ = toy_teacher
    projector, images = tiny_projector(toy_folder)
    steps = 2 * distill_module.LOG_EVERY
    with _HostReads() as reads:
        summary = distill(projector, TeacherTargets(images, teacher), tmp_path,
                          DistillConfig(steps=steps, batch_size=2, calibrate=False), progress=False)
    assert reads.count <= steps // distill_module.LOG_EVERY  # one read per log point, none per step
    assert [h["step"] for h in summary["history"]] == [10, 20]
    assert all(math.isfinite(h["loss"]) and 0 <= h["agreement"] <= 1 for h in summary["history"])


# ----------------------------------------------------------------------------- stored labels
@pytest.fixture(scope="module")
def cutmix_labels(toy_folder, toy_teacher, tmp_path_factory):
    teacher, _ = toy_teacher
    torch.manual_seed(0)
    np.random.seed(0)
    return ref.generate_soft_labels(toy_folder, teacher, tmp_path_factory.mktemp("fkd") / "cutmix", epochs=3,
                                    batch_size=16, input_size=SIZE, min_scale=0.25, mix_type="cutmix")


@pytest.mark.slow
def test_stored_label_fidelity_is_called_in_sample_unless_the_epoch_was_left_out(cutmix_labels, toy_folder,
                                                                                  tiny_projector, tmp_path, capsys):
    projector, _ = tiny_projector(toy_folder)
    cfg = DistillConfig(steps=2, calibrate=False)
    convert_labels(toy_folder, cutmix_labels, tmp_path / "all", projector, cfg, SIZE, progress=False)
    assert evaluate(projector, toy_folder, labels=cutmix_labels, input_size=SIZE, views=16).in_sample
    projector, _ = tiny_projector(toy_folder)
    convert_labels(toy_folder, cutmix_labels, tmp_path / "two", projector, cfg, SIZE, epochs=2, progress=False)
    assert not evaluate(projector, toy_folder, labels=cutmix_labels, input_size=SIZE, views=16).in_sample
    # ... and the CLI says which
    assert main(["eval", str(tmp_path / "all"), "--data", str(toy_folder), "--labels", str(cutmix_labels),
                 "--input-size", str(SIZE), "--views", "16"]) == 0
    assert "in-sample (trained-on) views" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "two"), "--data", str(toy_folder), "--labels", str(cutmix_labels),
                 "--input-size", str(SIZE), "--views", "16"]) == 0
    assert "held-out views" in capsys.readouterr().out


def test_teacher_views_stay_held_out(toy_folder, toy_teacher):
    teacher, _ = toy_teacher
    assert not TeacherTargets(augmented(toy_folder, SIZE), teacher).held_out_in_sample


def test_held_out_teacher_views_can_be_mixed_as_students_see_them(toy_folder, toy_teacher, tiny_projector, capsys):
    teacher, spec = toy_teacher
    targets = TeacherTargets(augmented(toy_folder, SIZE), teacher)
    plain, mixed = targets.held_out(20, 8), targets.held_out(20, 8, "cutmix")
    assert [len(p.keys) for p in plain] == [8, 8, 4] and all(p.mix_type is None for p in plain)
    assert [len(p.keys) for p in mixed] == [8, 8, 8] and all(p.mix_type == "cutmix" for p in mixed)
    assert [p.keys for p in mixed] == [p.keys for p in targets.held_out(24, 8)]  # the same crops, mixed
    projector, _ = tiny_projector(toy_folder)
    kwargs = dict(teachers=[spec], input_size=SIZE, views=16, batch_size=8, temperature=4.0)
    assert evaluate(projector, toy_folder, mix_type="cutmix", **kwargs).kl != evaluate(projector, toy_folder,
                                                                                      **kwargs).kl
    with pytest.raises(HelloLabelsError, match="replay their own mixes"):
        evaluate(projector, toy_folder, labels="unused", mix_type="cutmix")


def test_an_input_size_larger_than_the_labels_was_made_at_is_refused(cutmix_labels, toy_folder, tiny_vit_dir,
                                                                     tmp_path, capsys):
    labels = LabelDir.scan(cutmix_labels)
    StoredTargets(augmented(toy_folder, SIZE), labels)  # the size the labels were made at: accepted
    with pytest.raises(HelloLabelsError, match=r"no cutmix box .* reaches beyond 3\d px.*input size 64"):
        StoredTargets(augmented(toy_folder, 64), labels)
    assert main(["convert", "--data", str(toy_folder), "--labels", str(cutmix_labels), "--base",
                 f"local-dir:{tiny_vit_dir}", "--templates", "simple", "--out", str(tmp_path / "p"),
                 "--steps", "1", "--quiet"]) == 2  # --input-size left at its default, 224
    *warned, error = capsys.readouterr().err.strip().splitlines()  # warned: the labels carry no export record
    assert error.startswith("error: no cutmix box") and "--input-size" in error
    assert all(line.startswith("warning: ") for line in warned)


@pytest.mark.slow
def test_distill_also_records_its_fit_on_held_out_views_mixed_as_students_see_them(distilled_projector, toy_folder,
                                                                                     toy_teacher, tiny_projector):
    from hello_labels import LabelProjector

    projector = LabelProjector.from_pretrained(distilled_projector)
    plain, mixed = projector.config.metadata["fidelity"], projector.config.metadata["fidelity_mixed"]
    assert mixed["mix_type"] == "cutmix" and mixed["views"] == plain["views"] == DistillConfig.eval_views
    assert mixed["kl"] != plain["kl"]
    # the same figures `hello-labels eval --mix-type cutmix` measures on the same held-out views
    again = evaluate(projector, toy_folder, teachers=[toy_teacher[1]], views=mixed["views"], batch_size=16,
                     temperature=mixed["temperature"], input_size=32, min_scale=0.25, mix_type="cutmix")
    assert (again.views, again.agreement) == (mixed["views"], mixed["agreement"])
    assert again.kl == pytest.approx(mixed["kl"], rel=1e-5)
    assert "cutmix-mixed views, as students see them" in (distilled_projector / "README.md").read_text()
    # sources that make no mixes of their own record none
    _, images = tiny_projector(toy_folder)
    assert TeacherTargets(images, toy_teacher[0], mix_type=None).mixed_held_out(16, 8) is None
