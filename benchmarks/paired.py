"""Paired differences between two label sources of a Fashion-MNIST results JSON, pipeline by pipeline.

    python -m benchmarks.paired \\
        benchmarks/results/label-sources-epyc-torch2.14.1-fashion-mnist-ipc10.json \\
        "projector effnet" "full stored labels"

Each pipeline seed re-draws teacher, synthetic set, labels and projectors, so two sources compare fairly only within
a pipeline: the difference of their student means there. An ordering holds where every pipeline's difference has
the same sign; whether that is more than noise depends on the student-seed spread also printed.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def paired(runs: dict, a: str, b: str) -> dict:
    """``{"per_pipeline": {seed: mean(a) - mean(b)}, "mean", "std" (across pipelines; None for one),
    "student_std": {source: mean over pipelines of the std across student seeds, None without two}}``. Stds are
    population stds, as in the report's tables (:func:`benchmarks.label_sources.report_rows`)."""
    diffs = {seed: statistics.mean(run["accuracy"][a]) - statistics.mean(run["accuracy"][b])
             for seed, run in runs.items() if a in run["accuracy"] and b in run["accuracy"]}
    values = list(diffs.values())

    def student_std(name):
        spreads = [statistics.pstdev(run["accuracy"][name]) for run in runs.values()
                   if len(run["accuracy"].get(name, [])) > 1]
        return statistics.mean(spreads) if spreads else None

    return {"per_pipeline": diffs, "mean": statistics.mean(values) if values else None,
            "std": statistics.pstdev(values) if len(values) > 1 else None,
            "student_std": {a: student_std(a), b: student_std(b)}}


def describe(result: dict, a: str, b: str) -> str:
    """One line in points: the per-pipeline differences, their mean and std, and the student-seed spreads."""
    diffs = ", ".join(f"{100 * d:+.2f}" for d in result["per_pipeline"].values())
    std = "" if result["std"] is None else f", std {100 * result['std']:.2f}"
    students = "; ".join(f"{n} {'not measured' if s is None else f'{100 * s:.2f}'}"
                         for n, s in result["student_std"].items())
    return (f"{a} - {b}, per pipeline: {diffs} points (mean {100 * result['mean']:+.2f}{std}); "
            f"student-seed std: {students}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    runs = json.loads(args.results.read_text())["runs"]
    result = paired(runs, args.a, args.b)
    if not result["per_pipeline"]:
        raise SystemExit(f"no pipeline of {args.results} has both {args.a!r} and {args.b!r}")
    print(describe(result, args.a, args.b))


if __name__ == "__main__":
    main()
