"""Students from a projector saved at float16, int8 and 4-bit, in the demo's setting (bundled Fashion-MNIST subset).

    hello-labels demo --out /tmp/demo
    python -m benchmarks.quantized_students /tmp/demo --seeds 5 --json benchmarks/results/quantized-students.json

Distils a projector with the demo's recipe (``RECIPES`` in hello_labels/demo/pipeline.py) from the demo's teacher
on its synthetic set, saved at float16 (the demo itself saves at the recipe's format), then saves it in each dtype,
loads it back (dequantized), and trains the demo's ConvNet students (same steps, crops, CutMix and seeds for every
dtype) on its labels; reports the adapter file size, top-1 agreement with the float16 projector on the synthetic
set's views, the largest logit difference from float16, and the students' test accuracy (mean and std over seeds,
and the per-seed difference from float16, which removes the seed-to-seed spread; a float32 copy gives the noise
floor of that difference). Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from hello_labels import LabelProjector
from hello_labels.demo.pipeline import (
    DEFAULT_BASE,
    RECIPES,
    DemoSettings,
    distill_settings,
    load_bundled,
    synthetic_images,
    teacher_spec,
)
from hello_labels.files import atomic_write_json
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import TeacherTargets
from hello_labels.labels.views import stream_plans
from hello_labels.train.jobs import distill_from_teachers, make_projector
from hello_labels.train.students import accuracy, conv_net, train_student

# float32 is the control: its labels differ from float16's only by float16 rounding of the adapter, so its per-seed
# difference from float16 is how much any tiny change of the labels moves a student (the comparison's noise floor)
DTYPES = ("float16", "float32", "int8", "int4")


@torch.no_grad()
def _logits(projector, images, views: int = 500, batch: int = 100) -> torch.Tensor:
    out = []
    for plan in stream_plans(len(images), batch, seed=12345, start_step=0, num_steps=views // batch):
        out.append(projector(torch.stack([images[k][0] for k in plan.keys])).float())
    return torch.cat(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("demo_dir", type=Path)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    s = DemoSettings()
    _, _, test, test_labels, classes = load_bundled()
    images = synthetic_images(args.demo_dir / "synthetic", classes, s)
    label_dir = LabelDir.scan(args.demo_dir / "labels")
    steps = label_dir.total_files
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        recipe = replace(RECIPES[DEFAULT_BASE], adapter_dtype="float16")
        config, options = distill_settings(DEFAULT_BASE, None, recipe, s.seed)
        source = make_projector(images, DEFAULT_BASE, **options)
        distill_from_teachers(args.demo_dir / "synthetic", [teacher_spec(args.demo_dir)], Path(tmp) / "distilled",
                              source, config, images=images, min_scale=s.min_scale, progress=False)
        for dtype in DTYPES:
            source.save_pretrained(Path(tmp) / dtype, dtype=dtype)
            projector = LabelProjector.from_pretrained(Path(tmp) / dtype).merge().eval()
            logits = _logits(projector, images)
            reference = logits if reference is None else reference
            accs = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                student = conv_net(len(classes), width=32)
                train_student(student, images, TeacherTargets(images, projector, seed=s.seed), steps=steps,
                              batch_size=s.label_batch, lr=3e-3, seed=seed)
                accs.append(accuracy(student, test, test_labels, s.mean, s.std, s.input_size))
            rows.append({"dtype": dtype, "adapter_bytes": (Path(tmp) / dtype / "adapter.safetensors").stat().st_size,
                         "agreement_with_float16": float((logits.argmax(1) == reference.argmax(1)).float().mean()),
                         "max_logit_diff": float((logits - reference).abs().max()), "accuracies": accs,
                         "acc_mean": statistics.mean(accs), "acc_std": statistics.pstdev(accs)})
    for row in rows:
        diffs = [a - b for a, b in zip(row["accuracies"], rows[0]["accuracies"])]
        row["diff_vs_float16_mean"] = statistics.mean(diffs)
        row["diff_vs_float16_abs_mean"] = statistics.mean(abs(d) for d in diffs)
        print(f"{row['dtype']:8s} adapter {row['adapter_bytes']:>8,} B  agreement with fp16 "
              f"{row['agreement_with_float16']:.1%}  max |logit diff| {row['max_logit_diff']:.3f}  students "
              f"{row['acc_mean']:.2%} ± {row['acc_std']:.2%} (n={len(row['accuracies'])})  vs fp16 per seed "
              f"{100 * row['diff_vs_float16_mean']:+.2f} points (mean |diff| "
              f"{100 * row['diff_vs_float16_abs_mean']:.2f})")
    if args.json:
        atomic_write_json(args.json, {"demo_dir": str(args.demo_dir.name), "seeds": args.seeds, "rows": rows})


if __name__ == "__main__":
    main()
