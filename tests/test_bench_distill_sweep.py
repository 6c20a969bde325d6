"""The distillation-recipe sweep: recipes parsed or refused, the share of mixed batches honoured and seeded, the
validation split stratified and disjoint, students paired with pruning at equal bytes."""
import json
import math

import pytest
import torch

from benchmarks import distill_sweep as sweep
from hello_labels.labels.views import AugmentedImages, TensorImages


def test_recipes_parse_and_bad_ones_are_refused_naming_the_recipe():
    assert sweep.parse_recipe("600") == {"steps": 600, "loss": "mse", "mixed_share": 1.0}
    assert sweep.parse_recipe("1200,kl4,mix0.5") == {"steps": 1200, "loss": "kl", "temperature": 4.0,
                                                     "mixed_share": 0.5}
    assert sweep.parse_recipe("2400,rank16,head32,px48") == {"steps": 2400, "loss": "mse", "mixed_share": 1.0,
                                                             "lora_rank": 16, "head_rank": 32, "effnet_size": 48}
    for bad in ("1200,t4", "0", "600,mix1.5", "600,rank0", "600,headx", "600,px"):
        with pytest.raises(SystemExit, match=bad):
            sweep.parse_recipe(bad)


def test_capacity_options_reach_the_projector_the_sweep_builds(monkeypatch):
    """rankR / headH / pxP build the projector with that LoRA rank, head rank and base resolution; without them
    the benchmark's effnet projector (rank 8, head rank 8, --effnet-size)."""
    from benchmarks.label_sources import parse

    tiny = lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # noqa: E731
    monkeypatch.setattr(sweep.bench.effnet, "efficientnet_lite0", tiny)
    images = AugmentedImages(_synthetic(per_class=2, classes=10), 8, (0.5,), (0.5,))
    args = parse(["--ipc", "50"])
    built = {}
    for text in ("600", "600,rank16,head32,px48"):
        built[text], _ = sweep.bench.new_projector(args, "effnet", images, **sweep.capacity(sweep.parse_recipe(text)))
    shape = lambda p: ({t["rank"] for t in p.config.lora}, p.config.head_rank, p.config.base["image_size"])  # noqa: E731
    assert shape(built["600"]) == ({8}, 8, [args.effnet_size] * 2)
    assert shape(built["600,rank16,head32,px48"]) == ({16}, 32, [48, 48])


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


def _committed_run(full, pruned, hard):
    names = {"full stored labels": (1000, full), "pruned stored labels 0.1": (100, pruned), "hard labels": (0, hard)}
    return {"teacher_accuracy": 0.9, "full_bytes": 1000, "steps": 10, "bytes": {n: b for n, (b, _) in names.items()},
            "accuracy": {n: [a] for n, (_, a) in names.items()}, "per_class": {n: [{}] for n in names},
            "seconds_per_step": {}, "fidelity": {}}


def test_the_report_adds_each_recipes_students_to_their_pipeline_and_pairs_them(tmp_path, capsys):
    committed = tmp_path / "committed.json"
    committed.write_text(json.dumps({"ipc": 50, "runs": {"0": _committed_run(0.80, 0.70, 0.6),
                                                         "1": _committed_run(0.78, 0.72, 0.6)}}))
    rows = [{"pipeline": p, "seed": 0, "recipe": "2400", "dtype": "float16", "effnet_size": 32, "bytes": 316,
             "accuracy": acc, "per_class": {}, "agreement": 0.99, "kl": 0.01} for p, acc in ((0, 0.79), (1, 0.79))]
    students = tmp_path / "students.json"
    students.write_text(json.dumps(rows))
    out = tmp_path / "tuned.json"
    sweep.main(["report", "--results", str(committed), "--students", str(students), "--json", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert runs["0"]["accuracy"]["projector effnet@32px, 2400 steps"] == [0.79]
    printed = capsys.readouterr().out
    assert "projector effnet@32px, 2400 steps: - full stored labels -1.00, +1.00 (mean +0.00)" in printed
    at = [0.70 + 0.10 * math.log10(3.16), 0.72 + 0.06 * math.log10(3.16)]
    assert f"per pipeline {100 * (0.79 - at[0]):+.2f}, {100 * (0.79 - at[1]):+.2f}" in printed
    students.write_text(json.dumps(rows[:1]))  # students of pipeline 0 only: the report covers pipeline 0 only
    sweep.main(["report", "--results", str(committed), "--students", str(students), "--json", str(out)])
    assert list(json.loads(out.read_text())["runs"]) == ["0"]
    assert "full stored labels -1.00 (mean -1.00)" in capsys.readouterr().out
    extra = rows + [dict(rows[0], seed=1, accuracy=0.5)]
    students.write_text(json.dumps(extra))
    sweep.main(["report", "--results", str(committed), "--students", str(students), "--seeds", "1"])
    assert "full stored labels -1.00, +1.00" in capsys.readouterr().out  # seed 1 left out
    rows[1]["seed"] = 1  # a seed-1 student with no seed-0 one before it is refused, not misplaced
    students.write_text(json.dumps(rows))
    with pytest.raises(SystemExit, match="lacks the students before seed 1"):
        sweep.main(["report", "--results", str(committed), "--students", str(students)])


def test_a_student_seed_the_committed_run_lacks_is_paired_with_nothing_rather_than_failing():
    run = {"bytes": {"full stored labels": 1000, "hard labels": 0}, "accuracy": {"full stored labels": [0.8],
                                                                                "hard labels": [0.6]}}
    assert sweep.paired(run, 0.78, 500, seed=1) == {"full stored labels": None, "hard labels": None,
                                                    "pruning at equal bytes": None, "committed projector effnet": None}


def test_the_benchmark_distils_the_recipes_the_sweeps_chose_unless_told_otherwise():
    from benchmarks.label_sources import parse

    assert parse([]).distill_steps == 2400  # MNIST IPC 10's validation split
    assert parse(["--distill-steps", "600"]).distill_steps == 600
    assert parse(["--ipc", "50"]).distill_steps == 9600
    assert parse(["--ipc", "50", "--distill-steps", "600"]).distill_steps == 600


def test_a_finished_projector_is_loaded_with_the_time_its_distillation_recorded_not_the_load(tmp_path, monkeypatch):
    """A rerun (another student seed) reuses the adapter: its rows carry the distillation's own recorded time (or
    none, where the folder has no record), never the load's."""
    (tmp_path / "adapter.safetensors").write_bytes(b"")
    loaded = object()
    monkeypatch.setattr(sweep.bench, "load_projector", lambda path: loaded if path == tmp_path else None)
    monkeypatch.setattr(sweep, "distill", lambda *a, **k: pytest.fail("distilled again"))
    assert sweep.distill_recipe(None, sweep.parse_recipe("600"), None, None, tmp_path, 0) == (loaded, None)
    (tmp_path / "metrics.json").write_text(json.dumps({"steps": 600, "seconds": 42.5}))
    assert sweep.distill_recipe(None, sweep.parse_recipe("600"), None, None, tmp_path, 0) == (loaded, 42.5)


def test_a_resumed_distillation_records_the_seconds_of_every_call_not_only_the_last(tmp_path, monkeypatch):
    """A distillation stopped and resumed: its time is the one the distillation summed over both calls (its
    checkpoint carries the seconds before the stop), not the seconds of the call that finished it."""
    from types import SimpleNamespace

    from benchmarks.label_sources import parse

    (tmp_path / "train_state.pt").write_bytes(b"")
    monkeypatch.setattr(sweep.bench, "student_views", lambda synthetic, args: synthetic)
    monkeypatch.setattr(sweep.bench, "new_projector", lambda *a, **k: (object(), {}))
    monkeypatch.setattr(sweep, "PartlyMixed", lambda *a: None)
    resumed = []
    monkeypatch.setattr(sweep, "distill", lambda *a, resume, **k: resumed.append(resume) or {"seconds": 5000.0})
    loaded = SimpleNamespace()
    monkeypatch.setattr(sweep.bench, "load_projector", lambda path: loaded)
    assert sweep.distill_recipe(parse(["--ipc", "50"]), sweep.parse_recipe("600"), None, None, tmp_path, 0) == (
        loaded, 5000.0)
    assert resumed == [True]


def test_each_image_scores_the_kl_of_its_own_views_so_recipes_pair_image_by_image(monkeypatch):
    """Constant images look the same in every crop: an image's unmixed KL is then the KL of its one view."""
    from benchmarks.label_sources import parse
    from hello_labels.train.evaluate import kl_at

    monkeypatch.setattr(sweep.bench.effnet, "efficientnet_lite0", lambda: torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()))
    labels = torch.arange(10).repeat_interleave(2)
    shades = torch.linspace(0, 255, len(labels)).to(torch.uint8)
    synthetic = TensorImages(shades.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous(), labels,
                             [f"c{i}" for i in range(10)])
    args = parse(["--ipc", "50"])
    projector, _ = sweep.bench.new_projector(args, "effnet", sweep.bench.student_views(synthetic, args))
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(args.data.size ** 2, 10)).eval()
    out = sweep.scores(projector, synthetic, teacher, args, seed=0, views=400)
    views = torch.stack([sweep.bench.student_views(synthetic, args)[(i, None)][0] for i in range(len(labels))])
    with torch.no_grad():
        expected = kl_at(projector.for_labels()(views).float(), teacher(views), args.temperature)
    assert out["unmixed"]["kl_per_image"] == pytest.approx(expected.tolist(), rel=1e-3, abs=1e-6)
    assert len(set(round(v, 6) for v in expected.tolist())) > 10  # the images do differ
    mixed = out["mixed"]["kl_per_image"]
    assert len(mixed) == len(labels) and all(math.isfinite(v) for v in mixed)


def test_a_recipe_pairs_with_the_winner_image_by_image_and_rows_without_per_image_scores_do_not():
    row = lambda kls: {"validation": {"mixed": {"kl": sum(kls) / len(kls), "kl_per_image": kls}}}  # noqa: E731
    best = row([0.010, 0.020, 0.015, 0.030])
    behind = sweep.paired_kl(row([0.012, 0.023, 0.016, 0.033]), best)
    assert behind["mean"] == pytest.approx(0.00225) and behind["images"] == 4 and behind["ordering"] == "above"
    noisy = sweep.paired_kl(row([0.015, 0.015, 0.020, 0.025]), best)
    assert noisy["interval"][0] < 0 < noisy["interval"][1] and noisy["ordering"] == "unresolved"
    older = {"validation": {"mixed": {"kl": 0.02}}}
    assert sweep.paired_kl(older, best) is None and sweep.paired_kl(best, older) is None


def test_scoring_a_finished_recipe_again_keeps_its_distillation_time_and_ranks_with_paired_intervals(
        tmp_path, monkeypatch, capsys):

    from benchmarks.label_sources import parse

    synthetic, args = _synthetic(per_class=4, classes=3), parse(["--ipc", "50"])
    monkeypatch.setattr(sweep.bench, "cached_pipeline", lambda *a: (args, tmp_path, 0, synthetic, None, None))
    monkeypatch.setattr(sweep, "distill_recipe", lambda *a: (object(), None))  # every folder already distilled
    kls = {"600": [0.04, 0.05, 0.03], "1200": [0.02, 0.03, 0.02]}
    monkeypatch.setattr(sweep, "scores", lambda projector, part, *a: {
        name: {"agreement": 0.9, "kl": sum(kls[recipe]) / 3, "kl_per_image": kls[recipe]}
        for name in ("mixed", "unmixed")})
    results = tmp_path / "sweep.json"
    results.write_text(json.dumps([{"pipeline": 0, "recipe": "600", "val_per_class": 1, "distill_seconds": 123.0}]))
    for recipe in ("600", "1200"):
        sweep.main(["select", str(tmp_path), "--ipc", "50", "--val-per-class", "1", "--recipes", recipe,
                    "--json", str(results)])
    rows = {r["recipe"]: r for r in json.loads(results.read_text())}
    assert rows["600"]["distill_seconds"] == 123.0 and rows["1200"]["distill_seconds"] is None
    ranking = capsys.readouterr().out.strip().splitlines()[-2:]
    assert ranking[0].strip().startswith("1200:") and "- 1200: +0.0167 [" in ranking[1]
