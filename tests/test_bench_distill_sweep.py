"""The distillation-recipe sweep: recipes parsed or refused, the share of mixed batches honoured and seeded, the
validation split stratified and disjoint, students paired with pruning at equal bytes."""
import math

import pytest
import torch

from benchmarks import distill_sweep as sweep
from hello_labels.labels.views import AugmentedImages, TensorImages


def test_recipes_parse_and_bad_ones_are_refused_naming_the_recipe():
    assert sweep.parse_recipe("600") == {"steps": 600, "loss": "mse", "mixed_share": 1.0}
    assert sweep.parse_recipe("1200,kl4,mix0.5") == {"steps": 1200, "loss": "kl", "temperature": 4.0,
                                                     "mixed_share": 0.5}
    for bad in ("1200,t4", "0", "600,mix1.5"):
        with pytest.raises(SystemExit, match=bad):
            sweep.parse_recipe(bad)


def _synthetic(per_class=6, classes=3):
    labels = torch.arange(classes).repeat_interleave(per_class)
    return TensorImages(torch.randint(0, 255, (len(labels), 1, 8, 8), dtype=torch.uint8), labels,
                        [f"c{i}" for i in range(classes)])


def test_the_validation_split_holds_out_the_same_count_of_every_class_and_nothing_twice():
    synthetic = _synthetic()
    train, val = sweep.split(synthetic, 2, seed=0)
    assert val.labels.bincount().tolist() == [2, 2, 2] and train.labels.bincount().tolist() == [4, 4, 4]
    rows = lambda part: {tuple(x.flatten().tolist()) for x in part.images}  # noqa: E731
    assert rows(train).isdisjoint(rows(val)) and len(rows(train) | rows(val)) == len(synthetic)
    again, other = sweep.split(synthetic, 2, seed=0)[1], sweep.split(synthetic, 2, seed=1)[1]
    assert torch.equal(again.images, val.images) and not torch.equal(other.images, val.images)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_a_mixed_share_mixes_that_share_of_batches_the_same_way_on_every_run(share):
    images = AugmentedImages(_synthetic(), 8, (0.5,), (0.5,))
    plans = lambda: list(sweep.PartlyMixed(images, torch.nn.Identity(), 0, share).plans(0, 400, batch_size=4))  # noqa: E731
    mixed = [p.mix_type == "cutmix" and p.mix[0] is not None for p in plans()]
    assert math.isclose(sum(mixed) / len(mixed), share, abs_tol=0.06)
    assert mixed == [p.mix_type == "cutmix" and p.mix[0] is not None for p in plans()]
    unmixed = [p for p in plans() if p.mix_type is None]
    assert all(p.mix == (None, None, None) for p in unmixed)


def test_students_are_paired_with_full_labels_hard_labels_and_pruning_interpolated_at_the_adapters_bytes():
    run = {"bytes": {"full stored labels": 1000, "pruned stored labels 0.1": 100, "hard labels": 0,
                     "projector effnet": 120},
           "accuracy": {"full stored labels": [0.80], "pruned stored labels 0.1": [0.70], "hard labels": [0.60],
                        "projector effnet": [0.75]}}
    at_316 = 0.70 + 0.10 * math.log(316 / 100) / math.log(10)  # linear in log bytes between 100 and 1000
    out = sweep.paired(run, 0.78, 316, seed=0)
    assert out["full stored labels"] == pytest.approx(-0.02) and out["hard labels"] == pytest.approx(0.18)
    assert out["pruning at equal bytes"] == pytest.approx(0.78 - at_316)
    assert out["committed projector effnet"] == pytest.approx(0.03)
    assert sweep.paired(run, 0.78, 50, seed=0)["pruning at equal bytes"] is None  # below the curve: no claim
