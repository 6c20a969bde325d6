"""Students from the Fashion-MNIST benchmark's float16 projectors saved again at int8 and 4-bit, with this code.

    python -m benchmarks.fashion_mnist_quantized --work benchmarks/work --ipc 10 --pipeline-seeds 0 1 2 \
        --seeds 2 1 1 --json benchmarks/results/fashion_mnist_quantized_ipc10.json

Until commit e26abe7, ``save_pretrained`` on a merged projector with a prototype head wrote the head weight with
the head delta already folded in, so the copy applied the delta twice; the benchmark saves its int8 and 4-bit
copies from merged projectors, so its quantized rows measured that error, not quantization. This re-measures them
from the benchmark's cached stages (teacher-free: the float16 projectors, synthetic sets and student settings of
``--work/pipeline-<seed>/ipc<N>``, read only): each float16 projector is loaded unmerged, saved at int8 and 4-bit,
loaded back, and students are trained exactly as the benchmark trains them (same steps, crops, CutMix, seeds,
threads), from the float16 projector too (``--float16`` retrains those; by default their accuracies are read from
the benchmark's cache, and ``--float16`` on one pipeline checks that they reproduce). Reports per pipeline and
student seed the accuracies and the paired difference from float16.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from hello_labels.files import atomic_write_json
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import TeacherTargets
from hello_labels.labels.views import AugmentedImages, TensorImages
from hello_labels.model.projector import LabelProjector
from hello_labels.train.students import accuracy, conv_net, train_student

from .fashion_mnist import CLASSES, load
from .fashion_mnist_bench import MEAN, SIZE, STD, per_class
from .stages import code_version, deterministic

DTYPES = ("int8", "int4")


def students(projector, images, test, steps, seeds, args) -> list:
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        student = conv_net(10, in_channels=1)
        train_student(student, images, TeacherTargets(images, projector), steps=steps,
                      batch_size=args.student_batch, lr=3e-3, seed=seed, temperature=args.temperature)
        out.append({"seed": seed, "accuracy": accuracy(student, *test, MEAN, STD),
                    "per_class": per_class(student, test)})
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
    args = p.parse_args(argv)
    if len(args.seeds) == 1:
        args.seeds = args.seeds * len(args.pipeline_seeds)
    env = deterministic(args.threads)
    train, test = load(True), load(False)
    result = {"ipc": args.ipc, "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "env": env, "code": code_version(), "pipelines": {}}
    for pipeline, n_seeds in zip(args.pipeline_seeds, args.seeds):
        work = args.work / f"pipeline-{pipeline}" / f"ipc{args.ipc}"
        index = torch.load(work / f"synthetic_ipc{args.ipc}.pt", weights_only=True)
        images = AugmentedImages(TensorImages(train[0][index], train[1][index], CLASSES), SIZE, MEAN, STD,
                                 scale=(args.min_scale, 1.0))
        steps = args.student_epochs * LabelDir.scan(work / "labels").batches_per_epoch
        cached = json.loads((work / "students.json").read_text())
        seeds, rows = range(n_seeds), {}
        for name in args.projectors:
            folder = work / f"projector-{name}"
            # the EfficientNet base is built by this benchmark's own module (benchmarks.effnet): trusted code
            source = LabelProjector.from_pretrained(folder, trust_remote_code=True)  # unmerged
            from_cache = [{"seed": s, "accuracy": cached[f"projector {name}|{s}"]["accuracy"]} for s in seeds]
            rows[f"projector {name}"] = {"bytes": (folder / "adapter.safetensors").stat().st_size,
                                         "students": from_cache, "from": "benchmark cache"}
            if args.float16:
                print(f"pipeline {pipeline}, projector {name} float16 (retrained)", flush=True)
                fresh = students(source.merge().eval(), images, test, steps, seeds, args)
                source.unmerge()
                rows[f"projector {name}"] |= {"students": fresh, "from": "retrained",
                                              "cached_accuracy": [s["accuracy"] for s in from_cache]}
            with tempfile.TemporaryDirectory() as tmp:
                for dtype in DTYPES:
                    source.save_pretrained(Path(tmp) / dtype, dtype=dtype)
                    copy = LabelProjector.from_pretrained(Path(tmp) / dtype, trust_remote_code=True).merge().eval()
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


if __name__ == "__main__":
    main()
