"""Convert a Fashion-MNIST benchmark pipeline's stored labels again with ``convert``'s default step count and train
the benchmark's student on the result, paired with that pipeline's cached students.

    python -m benchmarks.reconvert benchmarks/work/pipeline-0 --ipc 50 --student-epochs 100 --fractions 1 0.1 \\
        --effnet-size 64 --json benchmarks/results/reconvert-ipc50.json

Reads the pipeline's cached files only (synthetic set indices, label directory, students.json; its stage records
are not consulted, so this runs beside the benchmark at any code version): converts the first ``fraction`` of the
stored epochs with :func:`hello_labels.train.jobs.convert_labels` as the CLI does, the benchmark's effnet recipe
but ``steps=None`` (:func:`hello_labels.train.jobs.convert_steps`: one pass over every stored batch file, at least
300 views of each image and 1000 steps), then trains one student (``--seed``) exactly as the benchmark trains its
students and prints it beside the cached students of the same seed (the benchmark's converted row at its fixed
steps, the labels it came from, hard labels). Appends to ``--json``. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from hello_labels.files import atomic_write_json
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import TeacherTargets
from hello_labels.train.jobs import convert_labels

from . import label_sources as bench


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.pipeline_args(p)
    p.add_argument("--summary", type=Path, nargs="+", help="instead: print the paired differences of these JSON "
                   "files' rows (rows without a seed are student seed 0)")
    p.add_argument("--results", type=Path, help="with --summary: a results JSON whose students fill what a row "
                   "lacks (a row written before its pipeline's students were)")
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0])
    p.add_argument("--seed", type=int, default=0, help="student seed (paired with the cached student of this seed)")
    p.add_argument("--effnet-size", type=int, help="the base's resolution (default: the benchmark's; the pipelines "
                   "of BENCHMARKS.md's convert rows ran at 64)")
    p.add_argument("--steps", type=int,
                   help="convert steps (default: convert's, hello_labels.train.jobs.convert_steps)")
    cli = p.parse_args(argv)
    if cli.summary:
        runs = json.loads(cli.results.read_text())["runs"] if cli.results else {}
        return print(paired_summary([row for path in cli.summary for row in json.loads(path.read_text())], runs))
    if cli.pipeline is None:
        p.error("a pipeline folder (or --summary) is needed")
    # the benchmark's defaults for everything else (student batch, temperature, crop scale, effnet size, lr)
    args, work, seed, synthetic, teacher, test = bench.cached_pipeline(cli.pipeline, bench.pipeline_argv(cli),
                                                                       cli.threads)
    images = bench.student_views(synthetic, args)
    label_dir = LabelDir.scan(work / "labels")
    students = work / "students.json"  # absent while the pipeline's students are still being trained
    cached = json.loads(students.read_text()) if students.is_file() else {}
    results = json.loads(cli.json.read_text()) if cli.json and cli.json.is_file() else []
    for fraction in cli.fractions:
        epochs = bench.first_epochs(label_dir, fraction)
        out = work / (f"reconverted-{epochs}-epochs" + (f"-{cli.steps}-steps" if cli.steps else ""))
        projector, overrides = bench.new_projector(args, "effnet", images)
        config = replace(bench.distill_config(args, seed, overrides), steps=cli.steps)  # None: convert's default
        t0 = time.perf_counter()
        summary = convert_labels(synthetic, label_dir.path, out, projector, config, epochs=epochs, progress=False,
                                 resume=(out / "train_state.pt").exists())
        seconds = time.perf_counter() - t0
        converted = bench.load_projector(out)
        student = bench.train_one_student(images, lambda: TeacherTargets(images, converted), args.student_epochs *
                                          label_dir.batches_per_epoch, cli.seed, args, test)
        fid = bench.teacher_fidelity(converted, synthetic, teacher, args)
        source = "full stored labels" if epochs == label_dir.epochs else f"stored labels, first {epochs} epochs"
        row = {"pipeline": seed, "ipc": cli.ipc, "epochs": epochs, "seed": cli.seed, "steps": summary["steps"],
               "convert_seconds": seconds, "accuracy": student["accuracy"], "agreement": fid.agreement, "kl": fid.kl,
               "cached": {name: cached.get(f"{name}|{cli.seed}", {}).get("accuracy")
                          for name in (f"converted effnet, {epochs} epochs", source, "hard labels")}}
        results.append(row)
        print(json.dumps(row), flush=True)
        if cli.json:
            atomic_write_json(cli.json, results)


def paired_summary(rows, runs: dict) -> str:
    """Per pipeline and epoch count: the re-converted projector's students minus those of the labels it came from
    and of hard labels, student seed by student seed (paired), with their mean and std across seeds, in points.
    A student a row lacks comes from ``runs`` (a results JSON's), else the pipeline is reported as incomplete."""
    groups = {}
    for row in rows:
        seed, row = row.get("seed", 0), {**row, "cached": dict(row["cached"])}  # the caller's rows stay as read
        for name, value in row["cached"].items():
            done = runs.get(str(row["pipeline"]), {}).get("accuracy", {}).get(name, [])
            if value is None and len(done) > seed:
                row["cached"][name] = done[seed]
        groups.setdefault((row["pipeline"], row["epochs"]), {})[seed] = row
    lines = []
    for (pipeline, epochs), by_seed in sorted(groups.items()):
        seeds = sorted(by_seed)
        source = next(k for k in by_seed[seeds[0]]["cached"] if k != "hard labels" and not k.startswith("converted"))
        line = f"pipeline {pipeline}, {epochs} epochs, student seeds {seeds}:"
        for name in (source, "hard labels"):
            if any(by_seed[s]["cached"][name] is None for s in seeds):
                line += f" - {name}: its students are missing;"
                continue
            diffs = [100 * (by_seed[s]["accuracy"] - by_seed[s]["cached"][name]) for s in seeds]
            spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
            line += f" - {name} {', '.join(f'{d:+.2f}' for d in diffs)} (mean {statistics.mean(diffs):+.2f}{spread});"
        lines.append(line.rstrip(";"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
