"""BENCHMARKS.md is `python -m benchmarks report`'s output, so no figure on it can be typed by hand."""
import json
import shutil

import pytest

from benchmarks import report


def test_the_committed_page_equals_the_report():
    assert report.PAGE.read_text() == report.render(), "run `python -m benchmarks report --write`"


def test_a_result_file_missing_a_field_stops_the_report_with_one_line_naming_the_file(tmp_path):
    shutil.copytree(report.RESULTS, tmp_path, dirs_exist_ok=True)
    name = report.CHECK
    data = json.loads((tmp_path / name).read_text())
    del data["seeds"]
    (tmp_path / name).write_text(json.dumps(data))
    with pytest.raises(report.ResultFieldError) as e:
        report.render(tmp_path)
    assert str(e.value) == f"benchmarks/results/{name}: no field 'seeds'"


def test_the_cli_prints_the_missing_field_as_one_error_line(tmp_path, capsys):
    shutil.copytree(report.RESULTS, tmp_path, dirs_exist_ok=True)
    (tmp_path / report.SCALE).write_text(json.dumps({"machine": {}}))
    with pytest.raises(SystemExit) as e:
        report.main(["--results", str(tmp_path)])
    assert str(e.value) == f"error: benchmarks/results/{report.SCALE}: no field 'labels'"


def _candidate(name, a_minus_b):
    rows = [{"labels": label, "label_bytes": nbytes, "student_accs": [0.6, 0.62], "student_acc_mean": 0.61,
             "label_seconds": 1.0, "student_seconds": 2.0}
            for label, nbytes in (("stored labels (SRe2L)", 100_000), ("projector, distilled", 4_321))]
    paired = [{"a": "projector, distilled", "b": "stored labels (SRe2L)", "per_seed": [a_minus_b, a_minus_b + 0.01],
               "mean": a_minus_b + 0.005, "interval": [a_minus_b - 0.01, a_minus_b + 0.02], "level": 0.95,
               "ordering": "unresolved"}]
    return {"candidate": name, "seeds": 2, "rows": rows, "paired": paired, "seconds": 12.0, "teacher_accuracy": 0.8,
            "environment": {"cpu": "Test CPU", "threads": 2, "torch": "2.14.1"}}


def test_the_demo_recipe_table_appears_only_with_its_result_file(tmp_path):
    shutil.copytree(report.RESULTS, tmp_path, dirs_exist_ok=True)
    for stale in tmp_path.glob(report.DEMO_RECIPE):
        stale.unlink()
    assert "Demo recipe" not in report.render(tmp_path)
    (tmp_path / "demo-recipe-xeon.json").write_text(json.dumps([_candidate("int4, rank 4", -0.012),
                                                                 _candidate("float16, rank 8", 0.003)]))
    page = report.render(tmp_path)
    assert "- [Demo recipe (validation split)](#demo-recipe-validation-split)" in page
    assert "| int4, rank 4 | 2 | 4,321 | projector, distilled − stored labels (SRe2L) | -0.70 [-2.20, +0.80] |" in page
    assert ("| float16, rank 8 | 2 | 4,321 | projector, distilled − stored labels (SRe2L) | +0.80 [-0.70, +2.30] |"
            in page)
    assert "Test CPU, 2 threads, torch 2.14.1" in page
    assert "The teacher, on the validation images: 80.0% (2 candidates)" in page


def test_each_demo_run_is_a_row_of_its_own_and_the_recipe_and_pruning_files_are_not(tmp_path):
    for name in ("demo-recipe-xeon.json", "demo-pruning-xeon.json"):  # matched by their own sections, not this one
        shutil.copy(report.RESULTS / "demo-recipe-xeon-torch2.14.1.json", tmp_path / name)
    run = json.loads((report.RESULTS / "demo-epyc-torch2.14.1-e0c3b45.json").read_text())
    run["paired"] = [d for d in run["paired"] if d["b"] != "pruned labels (LPLD)"]  # a run without the pruned row
    run["paired"][0].update(mean=-0.0123, interval=[-0.031, 0.0064])
    (tmp_path / "demo-amd-torch2.14.1-abc1234.json").write_text(json.dumps(run))
    del run["recipe"]  # runs before 0.2 did not record it
    run["environment"]["hello_labels"] = "0.1.0"
    (tmp_path / "demo-amd-torch2.14.1-0ld0001.json").write_text(json.dumps(run))
    lines = [line for line in report.demo_runs(tmp_path) if line.startswith("| [demo-")]
    assert len(lines) == 2
    assert lines[0].startswith("| [demo-amd-torch2.14.1-0ld0001.json](benchmarks/results/demo-amd-torch2.14.1-0ld0001"
                               ".json) | 0.1.0 | AMD EPYC (x86_64), 2 threads, torch 2.14.1+cu130 | 5 × 40 | "
                               "unrecorded | 80.3% | 638 | -1.23 [-3.10, +0.64] | — |")
    assert "| 0.3.0 | AMD EPYC (x86_64), 2 threads, torch 2.14.1+cu130 | 5 × 40 | int4, rank 4, 600 steps |" in lines[1]


def test_check_reads_the_committed_fashion_mnist_record_under_its_new_name():
    from benchmarks.datasets import open_dataset
    from benchmarks.label_sources import check_record

    path = check_record(report.RESULTS, open_dataset("fashion-mnist"))
    assert path.is_file() and json.loads(path.read_text())["stage"] == "teacher"


def _run(accuracy: dict, fidelity: dict | None = None) -> dict:
    """One pipeline's result: three students of each source, each at ``accuracy[source]``."""
    return {"bytes": dict.fromkeys(accuracy, 1000), "accuracy": {n: [a] * 3 for n, a in accuracy.items()},
            "fidelity": fidelity or {}}


def _pipeline(projector: float) -> dict:
    return _run({"full stored labels": 0.8, "hard labels": 0.7, "teacher online (RDED)": 0.81,
                 "projector effnet": projector, "converted effnet, 300 epochs": 0.75},
                {"projector effnet": {"agreement": 0.99, "kl": 0.01}})


def _results_without(tmp_path, files: dict) -> dict:
    """The committed results copied to ``tmp_path`` less ``files`` (key: result name); their paths there."""
    shutil.copytree(report.RESULTS, tmp_path, dirs_exist_ok=True)
    paths = {key: tmp_path / name for key, name in files.items()}
    for path in paths.values():
        path.unlink(missing_ok=True)
    return paths


def test_the_one_recipe_tables_are_paired_per_pipeline_from_their_files(tmp_path):
    files = _results_without(tmp_path, {dataset: name for dataset, (_, name) in report.ONE_RECIPE.items()})
    assert "## Online labels on" not in report.render(tmp_path)
    runs = {str(seed): _pipeline(acc) for seed, acc in enumerate((0.79, 0.78, 0.8))}
    files["MNIST"].write_text(json.dumps({"teacher_test_accuracy": [0.98, 0.97, 0.99], "runs": runs}))
    page = report.render(tmp_path)
    assert "## Online labels on a second dataset (IPC 10, three pipelines)" in page
    # per pipeline -1, -2, 0 points: mean -1, sample std 1, t(0.975, 2 df) = 4.303
    assert "| projector effnet | 1,000 | 99.0%, 0.010 | 79.00 ± 1.00 | -1.00, -2.00, +0.00 | -1.00 [-3.48, +1.48] |" \
        in page
    assert "| converted effnet, 300 epochs − hard labels | +5.00, +5.00, +5.00 | +5.00 [+5.00, +5.00] |" in page
    assert "mean over the pipelines: MNIST: -1.00 points, below the -0.50 that counts as level here." in page
    runs = {str(seed): _pipeline(acc) for seed, acc in enumerate((0.8, 0.81, 0.8))}
    files["Fashion-MNIST"].write_text(json.dumps({"teacher_test_accuracy": [0.86, 0.87, 0.86], "runs": runs}))
    page = report.render(tmp_path)
    assert "## Online labels on two datasets, one recipe (IPC 10, three pipelines)" in page
    assert "**Fashion-MNIST.** Teachers 86.00%, 87.00%, 86.00%" in page
    assert "python -m benchmarks run label-sources --config fashion-mnist-ipc10-as-mnist" in page
    assert ("MNIST: -1.00 points, below the -0.50 that counts as level here; Fashion-MNIST: +0.33 points, at or "
            "above the -0.50 that counts as level here.") in page


def test_the_eight_epoch_teacher_pipeline_is_paired_per_student_seed(tmp_path):
    shutil.copytree(report.RESULTS, tmp_path, dirs_exist_ok=True)
    run = _pipeline(0.8)
    run["accuracy"]["projector effnet"] = [0.79, 0.80, 0.78]  # stored labels 0.8 for each seed
    (tmp_path / report.LONG_TEACHER[1]).write_text(json.dumps({
        "teacher_test_accuracy": [0.9905], "runs": {"0": run},
        "env": {"cpu": "Test CPU", "threads": 1, "torch": "2.14.1"}}))
    page = report.render(tmp_path)
    assert ("**MNIST, pipeline 0 with the eight-epoch teacher** (the setting where online labels first lost on "
            "MNIST). Teacher 99.05%; 3 student seeds") in page
    assert "--config mnist-ipc10-8-epoch-teacher-p0`; Test CPU, 1 thread, torch 2.14.1;" in page
    # per seed -1, 0, -2 points: mean -1, sample std 1, t(0.975, 2 df) = 4.303
    assert "| projector effnet − full stored labels | -1.00, +0.00, -2.00 | -1.00 [-3.48, +1.48] |" in page
    assert "| teacher online (RDED) − full stored labels | +1.00, +1.00, +1.00 | +1.00 [+1.00, +1.00] |" in page
    # one pipeline has no spread over pipelines to show
    assert "| projector effnet | 1,000 | 99.0%, 0.010 | 79.00 (one pipeline) | -1.00 | -1.00 |" in page


def test_each_mix_and_selection_variant_is_paired_per_pipeline_with_the_default(tmp_path):
    files = _results_without(tmp_path, {v: name for v, (_, name) in report.MIX_AND_SELECTION.items()})
    assert "## Stored labels against the teacher online" not in report.render(tmp_path)
    env = {"cpu": "Test CPU", "threads": 1, "torch": "2.14.1"}
    gaps_per_variant = ((0.0, 0.01, -0.01), (-0.01, -0.02, -0.03), (0.0, 0.01, -0.01), (0.02, 0.03, 0.01))
    for (variant, path), gaps in zip(files.items(), gaps_per_variant, strict=True):
        runs = {str(seed): _run({"full stored labels": 0.8 + seed / 100, "teacher online (RDED)": 0.8 + seed / 100 + g})
                for seed, g in enumerate(gaps)}
        path.write_text(json.dumps({"teacher_test_accuracy": [0.97, 0.96, 0.98], "runs": runs, "env": env}))
    page = report.render(tmp_path)
    assert "python -m benchmarks run label-sources --config mnist-ipc10-mixup-confident" in page
    assert "one-epoch ResNet-20 teachers (97.00%, 96.00%, 98.00%;" in page
    # stored 80, 81, 82: mean 81, sample std 1; gaps -1, -2, -3: mean -2, std 1, t(0.975, 2 df) = 4.303
    assert ("| MixUp, most confident images | 81.00 ± 1.00 | 79.00 ± 0.00 | -1.00, -2.00, -3.00 | "
            "-2.00 [-4.48, +0.48] |") in page
    assert "| CutMix, most confident images | 81.00 ± 1.00 | 81.00 ± 1.00 | +0.00, +1.00, -1.00 |" in page
    # against the default, per pipeline: -1, -3, -2
    assert "| online − stored: MixUp, most confident images − CutMix, most confident images | -1.00, -3.00, -2.00 | " \
        "-2.00 [-4.48, +0.48] |" in page
    assert "| stored labels: CutMix, random images − CutMix, most confident images | +0.00, +0.00, +0.00 |" in page
    assert ("teacher online − stored labels: CutMix, most confident images: not told apart from 0; MixUp, most "
            "confident images: not told apart from 0; CutMix, random images: not told apart from 0; CutMix, most "
            "confident images, students at T = 1: not told apart from 0; the gap under "
            "MixUp, most confident images is not told apart from the default's; the gap under CutMix, random images "
            "is not told apart from the default's; the gap under CutMix, most confident images, students at T = 1 is "
            "told apart from the default's.") in page
