"""The Fashion-MNIST benchmark's report: where pruning's curve matches a projector, spreads across pipeline and
student seeds, and the label cost per student step."""
import json
from argparse import Namespace

import pytest

from benchmarks import label_sources as bench
from benchmarks.datasets import FASHION_MNIST_CLASSES as CLASSES
from benchmarks.datasets import from_tensors, open_dataset

# pruning keeps 1%, 10% and everything (full labels): accuracy rises with bytes
CURVE = [(1_000, 0.60), (10_000, 0.66), (100_000, 0.70)]


def test_interpolate_is_linear_in_log_bytes_and_none_outside():
    assert bench.interpolate(CURVE, 10_000) == pytest.approx(0.66)
    assert bench.interpolate(CURVE, 31_623) == pytest.approx(0.68, abs=1e-4)  # halfway in log bytes
    assert bench.interpolate(CURVE, 500) is None and bench.interpolate(CURVE, 200_000) is None


def test_bytes_to_match_is_where_the_curve_crosses_the_accuracy():
    assert bench.bytes_to_match(CURVE, 0.63) == pytest.approx(3_162, abs=1)  # halfway between 1 KB and 10 KB
    assert bench.bytes_to_match(CURVE, 0.66) == 10_000
    assert bench.bytes_to_match(CURVE, 0.55) == 1_000  # the smallest pruning already does as well
    assert bench.bytes_to_match(CURVE, 0.75) is None  # never, not even with every label


def _run(acc, seconds, seeds):
    names = {"full stored labels": 100_000, "hard labels": 0, "pruned stored labels 0.1": 10_000,
             "pruned stored labels 0.01": 1_000, "projector effnet": 5_000}
    per_class = {c: 0.5 for c in CLASSES}
    return {"teacher_accuracy": 0.92, "full_bytes": 100_000, "bytes": names, "steps": 600,
            "accuracy": {n: [acc[n] + 0.01 * s for s in range(seeds)] for n in names},
            "per_class": {n: [per_class] * seeds for n in names},
            "seconds_per_step": {n: [seconds[n]] * seeds for n in names},
            "fidelity": {"projector effnet": {"agreement": 0.95, "kl": 0.1, "per_class_agreement": {}}},
            "label_dir": {"epochs": 300, "batch_size": 50, "images": 100}}


def test_report_separates_pipeline_and_student_spreads_and_finds_the_crossing(tmp_path):
    acc = {"full stored labels": 0.70, "hard labels": 0.60, "pruned stored labels 0.1": 0.66,
           "pruned stored labels 0.01": 0.60, "projector effnet": 0.63}
    seconds = {"full stored labels": 0.05, "hard labels": 0.04, "pruned stored labels 0.1": 0.05,
               "pruned stored labels 0.01": 0.05, "projector effnet": 0.10}
    shifted = {n: a + 0.02 for n, a in acc.items()}
    runs = {0: _run(acc, seconds, seeds=2), 1: _run(shifted, seconds, seeds=1)}
    args = Namespace(ipc=10, student_epochs=300, data=open_dataset("fashion-mnist"))
    bench.report(args, tmp_path, runs, {"torch": "x", "threads": 1})

    out = json.loads((tmp_path / f"{bench.results_stem(args)}.json").read_text())
    rows = {r["source"]: r for r in out["rows"]}
    projector = rows["projector effnet"]
    # pipeline 0's student mean is 0.635 (seeds 0.63, 0.64), pipeline 1's 0.65: mean 0.6425, std 0.0075
    assert projector["acc_mean"] == pytest.approx(0.6425) and projector["acc_std"] == pytest.approx(0.0075)
    assert projector["student_std"] == pytest.approx(0.005)  # only pipeline 0 has two student seeds
    assert projector["seeds"] == [2, 1]
    assert projector["label_ms_per_step"] == pytest.approx(60.0)  # 0.10 s against hard labels' 0.04 s
    assert projector["pruning_bytes_to_match"] < projector["bytes"] < 10_000
    assert projector["pruning_at_equal_bytes"] > projector["acc_mean"]
    # paired: pipeline 0's projector (0.635) against its own pruning at 5 KB (0.605 + 0.06 * log10(5) = 0.6469)
    gaps = projector["gap_to_pruning_per_pipeline"]
    assert gaps["0"] == pytest.approx(0.635 - 0.6469, abs=1e-4) and gaps["1"] == pytest.approx(gaps["0"])
    assert (tmp_path / f"{bench.results_stem(args)}.png").stat().st_size > 0


def test_a_source_timed_elsewhere_has_no_label_cost():
    """Rows re-measured in another process (the committed files' ``amended`` int8/int4 rows) carry no seconds per
    step: the report leaves their label cost empty instead of failing or comparing times across processes."""
    acc = {"full stored labels": 0.70, "hard labels": 0.60, "pruned stored labels 0.1": 0.66,
           "pruned stored labels 0.01": 0.60, "projector effnet": 0.63}
    seconds = dict.fromkeys(acc, 0.05)
    run = _run(acc, seconds, seeds=1)
    del run["seconds_per_step"]["projector effnet"]
    rows = {r["source"]: r for r in bench.report_rows({0: run})}
    assert rows["projector effnet"]["seconds_per_step"] is None
    assert rows["projector effnet"]["label_ms_per_step"] is None
    assert rows["full stored labels"]["label_ms_per_step"] == pytest.approx(0.0)
    assert "| projector effnet | 5,000 |" in bench.table(list(rows.values()))


@pytest.mark.slow
def test_one_student_trains_as_the_benchmark_trains_them():
    """``train_one_student`` (the benchmark's students) trains (gradients on) and is
    repeatable: same seed, same accuracies."""
    import torch

    from hello_labels.labels.views import AugmentedImages, TensorImages

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(20) % 10
    data = from_tensors("tiny", (images, labels), (images, labels), CLASSES)
    train = AugmentedImages(TensorImages(images, labels, CLASSES), data.size, data.mean, data.std, scale=(0.5, 1.0))
    args = Namespace(student_batch=10, temperature=4.0, mix_type="cutmix", data=data)
    made = []
    first = bench.train_one_student(train, lambda: made.append(1), 3, 0, args, (images, labels))
    again = bench.train_one_student(train, lambda: None, 3, 0, args, (images, labels))
    assert made == [1] and first["seconds"] > 0 and set(first["per_class"]) == set(CLASSES)
    assert first["accuracy"] == again["accuracy"] and first["per_class"] == again["per_class"]


def test_paired_differences_are_per_pipeline_with_their_spread(tmp_path, capsys):
    """``benchmarks.paired``: each pipeline's student-mean difference, their mean and std across pipelines, and
    each source's student-seed spread (None where a pipeline has one student only)."""
    from benchmarks import paired

    a, b = [0.70, 0.72], [0.69, 0.69]
    runs = {"0": {"accuracy": {"p": a, "f": b}}, "1": {"accuracy": {"p": [0.74], "f": [0.75]}},
            "2": {"accuracy": {"f": [0.70]}}}  # no "p": left out of the pairing
    result = paired.paired(runs, "p", "f")
    first, second = (a[0] + a[1]) / 2 - b[0], 0.74 - 0.75
    assert result["per_pipeline"] == pytest.approx({"0": first, "1": second})
    assert result["mean"] == pytest.approx((first + second) / 2)
    assert result["std"] == pytest.approx(abs(first - second) / 2)
    assert result["student_std"] == pytest.approx({"p": (a[1] - a[0]) / 2, "f": 0.0})
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"runs": runs}))
    paired.main([str(path), "p", "f"])
    assert f"{100 * first:+.2f}, {100 * second:+.2f} points" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="has both"):
        paired.main([str(path), "p", "missing"])
