"""Why the demo's converted projector trains weaker students: overfitting to the stored crops, measured.

    hello-labels demo --out /tmp/demo
    python -m benchmarks.convert_overfit /tmp/demo --json /tmp/convert-overfit.json

Converts the demo's label files again with the demo's recipe, holding out the last ``--held-out`` epochs of stored
crops (never trained on: a validation split), at ``--steps`` (several: early stopping by schedule length), and
reports for each projector: KL and agreement on the held-out stored crops and on in-sample ones, agreement with
the teacher on fresh views, and its students' test accuracy per seed (the demo's students, seeds and crops), with
the paired difference from the demo's hard-label and stored-label students (read from ``demo.json``). The demo's
own converted projector (all epochs, the recipe's steps) is the first row. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from hello_labels import LabelProjector
from hello_labels.demo.paired import describe, paired_differences
from hello_labels.demo.pipeline import (
    CONVERTED,
    DEFAULT_BASE,
    HARD,
    RECIPES,
    STORED,
    DemoSettings,
    distill_settings,
    load_bundled,
    synthetic_images,
    teacher_spec,
)
from hello_labels.files import atomic_write_json
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import TeacherTargets
from hello_labels.labels.teachers import load_teacher
from hello_labels.train.jobs import convert_labels, evaluate, make_projector
from hello_labels.train.students import accuracy, conv_net, train_student


def students(projector, images, test, test_labels, s: DemoSettings, steps: int, seeds) -> list:
    """The demo's students on ``projector``'s labels online (seed k: init and crops of the demo's seed k)."""
    accs = []
    for seed in seeds:
        torch.manual_seed(seed)
        student = conv_net(10, width=32)
        train_student(student, images, TeacherTargets(images, projector, seed=seed), steps=steps,
                      batch_size=s.label_batch, lr=3e-3, seed=seed)
        accs.append(accuracy(student, test, test_labels, s.mean, s.std, s.input_size))
    return accs


def fidelity(projector, demo: Path, teacher, label_dir: LabelDir, held_out: int, s: DemoSettings) -> dict:
    views = dict(views=500, batch_size=100, input_size=s.input_size, min_scale=s.min_scale)
    synthetic = demo / "synthetic"
    fresh = evaluate(projector, synthetic, teachers=[teacher], **views)
    # the last stored epoch: held out for a projector converted from fewer epochs, in-sample otherwise
    last = evaluate(projector, synthetic, labels=demo / "labels", **views)
    seen = last if held_out == 0 else evaluate(projector, synthetic, labels=demo / "labels",
                                                epochs=label_dir.epochs - held_out, **views)
    return {"teacher_fresh_agreement": fresh.agreement, "teacher_fresh_kl": fresh.kl,
            "last_epoch_agreement": last.agreement, "last_epoch_kl": last.kl, "last_epoch_in_sample": last.in_sample,
            "trained_epoch_agreement": seen.agreement, "trained_epoch_kl": seen.kl}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("demo", help="a `hello-labels demo --out` folder (default settings)")
    p.add_argument("--held-out", type=int, default=8, help="last stored epochs held out (validation split)")
    p.add_argument("--steps", type=int, nargs="+", default=[100, 300])
    p.add_argument("--seed", type=int, help="seed of the conversions (default: the demo's; another one measures how "
                                            "much a re-drawn conversion moves its students)")
    p.add_argument("--no-demo-row", action="store_true", help="skip the demo's own converted projector")
    p.add_argument("--json")
    args = p.parse_args(argv)
    demo = Path(args.demo)
    result = json.loads((demo / "demo.json").read_text())
    s = DemoSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["settings"].items()})
    seeds = range(s.seed, s.seed + s.seeds)
    _, _, test, test_labels, classes = load_bundled()
    images = synthetic_images(demo / "synthetic", classes, s)
    teacher = load_teacher(teacher_spec(demo), num_classes=len(classes))
    label_dir = LabelDir.scan(demo / "labels")
    student_steps = label_dir.total_files
    accs = {r["labels"]: r["student_accs"] for r in result["rows"]}
    rows = []
    seed = s.seed if args.seed is None else args.seed
    variants = [] if args.no_demo_row else [("demo's: all epochs", None, None)]
    kept = label_dir.epochs - args.held_out
    variants += [(f"{kept} epochs, {n} steps, seed {seed}", kept, n) for n in args.steps]
    for name, epochs, steps in variants:
        if epochs is None:
            projector = LabelProjector.from_pretrained(demo / "projector-from-labels").merge()
        else:
            recipe = RECIPES[DEFAULT_BASE]
            config, options = distill_settings(DEFAULT_BASE, None, replace(recipe, steps=steps), seed)
            fresh = make_projector(images, DEFAULT_BASE, None, seed=seed, **options)  # LoRA init
            out = demo / "convert-overfit" / f"e{epochs}-s{steps}-seed{seed}"
            convert_labels(demo / "synthetic", demo / "labels", out, fresh, config, epochs=epochs, progress=False)
            projector = LabelProjector.from_pretrained(out).merge()
        row = {"projector": name, **fidelity(projector, demo, teacher, label_dir,
                                             args.held_out if epochs else 0, s)}
        row["student_accs"] = students(projector, images, test, test_labels, s, student_steps, seeds)
        accs[name] = row["student_accs"]
        row["paired"] = paired_differences(accs, [(name, HARD), (name, STORED)])
        rows.append(row)
        where = "in-sample" if row["last_epoch_in_sample"] else "held out"
        print(f"{name}: teacher agreement (fresh views) {row['teacher_fresh_agreement']:.1%}, KL "
              f"{row['teacher_fresh_kl']:.3f}; last stored epoch ({where}) "
              f"agreement {row['last_epoch_agreement']:.1%} KL {row['last_epoch_kl']:.3f}; a trained epoch agreement "
              f"{row['trained_epoch_agreement']:.1%} KL {row['trained_epoch_kl']:.3f}; students "
              f"{sum(row['student_accs']) / len(seeds):.1%}", flush=True)
        for d in row["paired"]:
            print(f"  {describe(d)}", flush=True)
    if not args.no_demo_row and rows[0]["student_accs"] != accs[CONVERTED]:
        print("note: the demo's converted students did not reproduce (other threads or versions than the demo's)")
    if args.json:
        atomic_write_json(args.json, {"demo": str(demo), "held_out_epochs": args.held_out, "rows": rows,
                                      "environment": {"threads": torch.get_num_threads(),
                                                      "torch": torch.__version__}})


if __name__ == "__main__":
    main()
