"""Students from the Fashion-MNIST benchmark's float16 projectors saved again at int8 and 4-bit, with this code.

    python -m benchmarks.fashion_mnist_quantized --work benchmarks/work --ipc 10 --pipeline-seeds 0 1 2 \
        --seeds 2 1 1 --json q10.json

Until commit e26abe7, ``save_pretrained`` on a merged projector with a prototype head wrote the head weight with
the head delta already folded in, so the copy applied the delta twice; the benchmark saves its int8 and 4-bit
copies from merged projectors, so its quantized rows measured that error, not quantization. This re-measures them
from the benchmark's cached stages (teacher-free: the float16 projectors, synthetic sets and student settings of
``--work/pipeline-<seed>/ipc<N>``, read only): each float16 projector is loaded unmerged, saved at int8 and 4-bit,
loaded back, and students are trained exactly as the benchmark trains them (same steps, crops, CutMix, seeds,
threads), from the float16 projector too (``--float16`` retrains those; by default their accuracies are read from
the benchmark's cache, and ``--float16`` on one pipeline checks that they reproduce). Reports per pipeline and
student seed the accuracies and the paired difference from float16.

    python -m benchmarks.fashion_mnist_quantized --work benchmarks/work --amend \
        benchmarks/results/fashion_mnist_ipc10.json /tmp/q-p1.json /tmp/q-p02.json

replaces the quantized rows of the benchmark's results file with these students (pipelines not re-measured
lose theirs) (and the copies' agreement and
KL at T with the teacher, measured as the benchmark measures them; no label cost per step: they ran in other
processes), recomputes the pruning comparison, redraws its plot and prints its table; what was replaced is kept
under ``amended``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from types import SimpleNamespace

from hello_labels.files import atomic_write_json
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import TeacherTargets
from hello_labels.model.projector import LabelProjector

from . import label_sources as bench
from .datasets import open_dataset
from .stages import code_version, deterministic

DTYPES = ("int8", "int4")


def students(projector, images, test, steps, seeds, args) -> list:
    """The benchmark's students (:func:`benchmarks.label_sources.train_one_student`) on ``projector``."""
    out = []
    for seed in seeds:
        result = bench.train_one_student(images, lambda: TeacherTargets(images, projector.for_labels()), steps, seed,
                                         args, test)
        out.append({"seed": seed, "accuracy": result["accuracy"], "per_class": result["per_class"]})
        print(f"  seed {seed}: {out[-1]['accuracy']:.2%}", flush=True)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("benchmarks/work"))
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--pipeline-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="student seeds, per pipeline seed")
    p.add_argument("--projectors", nargs="+", default=["effnet", "effnet-small"])
    p.add_argument("--student-epochs", type=int, default=300)
    p.add_argument("--student-batch", type=int, default=50)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--min-scale", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--float16", action="store_true", help="retrain the float16 projectors' students too")
    p.add_argument("--json", type=Path)
    p.add_argument("--amend", type=Path, nargs="+", metavar=("RESULTS", "QUANTIZED"),
                   help="a results JSON of the benchmark, then the JSON files this script wrote for it")
    args = p.parse_args(argv)
    if args.amend:
        deterministic(args.threads)
        return amend(args.amend[0], args.amend[1:], args.work)
    if len(args.seeds) == 1:
        args.seeds = args.seeds * len(args.pipeline_seeds)
    env = deterministic(args.threads)
    result = {"ipc": args.ipc, "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "env": env, "code": code_version(), "pipelines": {}}
    args.data = open_dataset("fashion-mnist")
    test = args.data.test
    for pipeline, n_seeds in zip(args.pipeline_seeds, args.seeds):
        work = args.work / f"pipeline-{pipeline}" / f"ipc{args.ipc}"
        images = bench.student_views(bench.load_synthetic(work / f"synthetic_ipc{args.ipc}.pt", args.data), args)
        steps = args.student_epochs * LabelDir.scan(work / "labels").batches_per_epoch
        cached = json.loads((work / "students.json").read_text())
        seeds, rows = range(n_seeds), {}
        for name in args.projectors:
            folder = work / f"projector-{bench._slug(name)}"
            # the EfficientNet base is built by this benchmark's own module (benchmarks.effnet): trusted code
            source = LabelProjector.from_pretrained(folder, trust_remote_code=True)  # unmerged
            from_cache = [{"seed": s, "accuracy": cached[f"projector {name}|{s}"]["accuracy"]} for s in seeds]
            rows[f"projector {name}"] = {"bytes": (folder / "adapter.safetensors").stat().st_size,
                                         "students": from_cache, "from": "benchmark cache"}
            if args.float16:
                print(f"pipeline {pipeline}, projector {name} float16 (retrained)", flush=True)
                fresh = students(source, images, test, steps, seeds, args)
                rows[f"projector {name}"] |= {"students": fresh, "from": "retrained",
                                              "cached_accuracy": [s["accuracy"] for s in from_cache]}
            with tempfile.TemporaryDirectory() as tmp:
                for dtype in DTYPES:
                    source.save_pretrained(Path(tmp) / dtype, dtype=dtype)
                    copy = bench.load_projector(Path(tmp) / dtype)
                    print(f"pipeline {pipeline}, projector {name} {dtype}", flush=True)
                    rows[f"projector {name} {dtype}"] = {
                        "bytes": (Path(tmp) / dtype / "adapter.safetensors").stat().st_size,
                        "students": students(copy, images, test, steps, seeds, args), "from": "trained"}
            reference = [s["accuracy"] for s in rows[f"projector {name}"]["students"]]
            for dtype in DTYPES:
                row = rows[f"projector {name} {dtype}"]
                row["diff_vs_float16"] = [s["accuracy"] - r for s, r in zip(row["students"], reference)]
        result["pipelines"][str(pipeline)] = rows
        if args.json:
            atomic_write_json(args.json, result)
    for name in args.projectors:
        for dtype in DTYPES:
            diffs = [statistics.mean(rows[f"projector {name} {dtype}"]["diff_vs_float16"])
                     for rows in result["pipelines"].values()]
            print(f"projector {name} {dtype}: {100 * statistics.mean(diffs):+.2f} points against float16 "
                  f"(per pipeline {', '.join(f'{100 * d:+.2f}' for d in diffs)})")


def amend(results_path: Path, quantized_paths, work: Path) -> None:
    """Replace ``results_path``'s quantized rows (see the module docstring)."""
    results = json.loads(results_path.read_text())
    measured = {}
    for path in quantized_paths:
        data = json.loads(Path(path).read_text())
        if data["ipc"] != results["ipc"]:
            raise SystemExit(f"{path} is for IPC {data['ipc']}, {results_path} for IPC {results['ipc']}")
        measured |= data["pipelines"]
    names = sorted({n for rows in measured.values() for n in rows if n.endswith(DTYPES)})
    if not set(measured) <= set(results["runs"]):
        raise SystemExit(f"pipelines {sorted(measured)} measured, {sorted(results['runs'])} in {results_path}")
    settings = SimpleNamespace(**results["settings"], data=open_dataset("fashion-mnist"))
    replaced = {}
    for pipeline, run in results["runs"].items():  # a pipeline not re-measured loses its quantized rows
        for name in {n for part in ("accuracy", "fidelity") for n in run[part] if n.endswith(DTYPES)}:
            replaced.setdefault(name, {})[pipeline] = {k: run[k].pop(name, None) for k in
                                                       ("accuracy", "fidelity", "per_class", "seconds_per_step")}
    for pipeline, rows in measured.items():
        run = results["runs"][pipeline]
        ipc_dir = work / f"pipeline-{pipeline}" / f"ipc{results['ipc']}"
        teacher = bench.load_teacher(ipc_dir.parent / "teacher.safetensors", settings.data)
        synthetic = bench.load_synthetic(ipc_dir / f"synthetic_ipc{results['ipc']}.pt", settings.data)
        float16 = {}  # each float16 projector loaded once (building its base), saved in every dtype
        for name in names:
            projector, dtype = name.removeprefix("projector ").rsplit(" ", 1)
            if projector not in float16:
                float16[projector] = LabelProjector.from_pretrained(ipc_dir / f"projector-{bench._slug(projector)}",
                                                                    trust_remote_code=True)
            with tempfile.TemporaryDirectory() as tmp:
                float16[projector].save_pretrained(tmp, dtype=dtype)
                copy = bench.load_projector(Path(tmp))
            r = bench.teacher_fidelity(copy, synthetic, teacher, settings)
            run["fidelity"][name] = {"agreement": r.agreement, "kl": r.kl, "per_class_agreement": r.per_class}
            run["accuracy"][name] = [s["accuracy"] for s in rows[name]["students"]]
            run["per_class"][name] = [s["per_class"] for s in rows[name]["students"]]
            run["bytes"][name] = rows[name]["bytes"]
            print(f"pipeline {pipeline}, {name}: agreement {r.agreement:.2%}, KL {r.kl:.4f}", flush=True)
    rows = bench.report_rows(results["runs"])  # label cost per step only where it was measured
    results["rows"] = rows
    results["amended"] = {"by": "benchmarks/fashion_mnist_quantized.py", "code": code_version(),
                          "sources": names, "replaced": replaced,
                          "why": "int8/4-bit copies saved from merged projectors before commit e26abe7 carried "
                                 "the head delta twice"}
    atomic_write_json(results_path, results)
    teacher_acc = statistics.mean(results["teacher_test_accuracy"])
    bench.plot(rows, results_path.with_suffix(".png"), teacher_acc, settings, len(results["runs"]))
    print(bench.table(rows))


if __name__ == "__main__":
    main()
