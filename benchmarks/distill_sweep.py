"""Choose the effnet projector's distillation recipe (steps, loss and its temperature, share of mixed views) on a
validation split of a benchmark pipeline's synthetic set, never its test set; then distill the chosen recipe on the
whole set and train the benchmark's students on it, paired with the pipeline's students in a results JSON.

    python -m benchmarks.distill_sweep select benchmarks/work/pipeline-0 --ipc 50 --json sweep.json \\
        --recipes 600 1200 2400 1200,kl4 1200,kl1 1200,mix0.5
    python -m benchmarks.distill_sweep students benchmarks/work/pipeline-0 --ipc 50 --student-epochs 100 \\
        --recipes 600 2400 --results \\
            benchmarks/results/label-sources-epyc-torch2.14.1-fashion-mnist-ipc50.json --json tuned-0.json
    python -m benchmarks.distill_sweep report --results \\
        benchmarks/results/label-sources-epyc-torch2.14.1-fashion-mnist-ipc50.json \\
        --students tuned-0.json tuned-1.json tuned-2.json \\
        --json benchmarks/results/distill-sweep-<machine>-torch<version>-fashion-mnist-ipc50-tuned.json

A recipe is ``STEPS[,klT][,mixS][,rankR][,headH][,pxP]``: steps of 64 views, the loss (default: the library's MSE
on logits; ``klT``: KL at temperature T), the share S of batches CutMix-mixed (default 1: every batch, as the
students' batches are), the capacity (LoRA rank R on every convolution, default 8; head rank H, default 8) and the
base's resolution P (default: ``--effnet-size``).

``select`` holds out ``--val-per-class`` images of every class (seeded by the pipeline), distills each recipe on
the rest (the prototype head too is built from the rest) and scores it against the teacher on CutMix views of the
held-out images, as students see them, and on unmixed ones; the lowest mixed-view KL at the students' temperature
wins, and every other recipe is printed with its paired difference from the winner (same images, same views: the
95% t-interval over the held-out images), so a lead inside that spread reads as none. ``students`` distills
recipes on the whole synthetic set, saves each again at 4-bit, and trains one student (``--seed``) on each, exactly
as the benchmark does. It reads the pipeline's cached
files only (teacher, synthetic set indices), not their stage records. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from hello_labels import LabelProjector
from hello_labels.demo.paired import paired_differences
from hello_labels.files import atomic_write_json
from hello_labels.labels.targets import TeacherTargets
from hello_labels.labels.views import TensorImages
from hello_labels.seeds import derive_seed
from hello_labels.train.distill import METRICS_FILE, distill
from hello_labels.train.evaluate import collect, kl_at

from . import label_sources as bench
from .paired import paired as paired_diffs

# recipe options that change the projector rather than its training: option prefix -> new_projector keyword
CAPACITY = {"rank": "lora_rank", "head": "head_rank", "px": "effnet_size"}


def capacity(recipe: dict) -> dict:
    """The :func:`bench.new_projector` keywords a parsed recipe sets (none: the benchmark's effnet projector)."""
    return {k: recipe[k] for k in CAPACITY.values() if k in recipe}


def parse_recipe(text: str) -> dict:
    """``"1200,kl4,mix0.5,rank16"`` -> ``{"steps": 1200, "loss": "kl", "temperature": 4.0, "mixed_share": 0.5,
    "lora_rank": 16}``."""
    steps, *options = text.split(",")
    try:
        recipe = {"steps": int(steps), "loss": "mse", "mixed_share": 1.0}
        for option in options:
            prefix = next((p for p in CAPACITY if option.startswith(p)), None)
            if option.startswith("kl"):
                recipe |= {"loss": "kl", "temperature": float(option[2:])}
            elif option.startswith("mix"):
                recipe["mixed_share"] = float(option[3:])
            elif prefix:
                recipe[CAPACITY[prefix]] = int(option[len(prefix):])
            else:
                raise SystemExit(f"error: unknown recipe option {option!r} in {text!r} "
                                 f"(expected klT, mixS, rankR, headH or pxP)")
    except ValueError:
        raise SystemExit(f"error: recipe {text!r} has an option without its number") from None
    if (recipe["steps"] <= 0 or not 0 <= recipe["mixed_share"] <= 1
            or any(recipe.get(k, 1) <= 0 for k in CAPACITY.values())):
        raise SystemExit(f"error: recipe {text!r} needs steps, ranks and px > 0 and a mixed share in [0, 1]")
    return recipe


class PartlyMixed(TeacherTargets):
    """:class:`TeacherTargets` whose batches are CutMix-mixed with probability ``share`` (drawn per step from the
    seed), the others left unmixed."""

    def __init__(self, images, teacher, seed: int, share: float):
        super().__init__(images, teacher, seed=seed, mix_type="cutmix")
        self.share = share

    def plans(self, start, steps, rank=0, world_size=1, batch_size=64):
        for plan in super().plans(start, steps, rank, world_size, batch_size):
            if random.Random(derive_seed(self.seed, "mixed", plan.step, rank)).random() >= self.share:
                plan.mix, plan.mix_type = (None, None, None), None
            yield plan

    def fingerprint(self) -> dict:
        return super().fingerprint() | {"mixed_share": self.share}


def split(synthetic: TensorImages, per_class: int, seed: int):
    """``(train, validation)``: ``per_class`` images of every class drawn (seeded) into the validation part."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "validation split"))
    held = torch.zeros(len(synthetic), dtype=torch.bool)
    for c in synthetic.labels.unique():
        members = (synthetic.labels == c).nonzero().flatten()
        held[members[torch.randperm(len(members), generator=gen)[:per_class]]] = True
    part = lambda mask: TensorImages(synthetic.images[mask], synthetic.labels[mask], synthetic.classes)  # noqa: E731
    return part(~held), part(held)


def distill_recipe(args, recipe: dict, synthetic: TensorImages, teacher, out: Path, seed: int):
    """The effnet projector distilled from ``teacher`` on ``synthetic`` with ``recipe`` into ``out`` (resumes), and
    the seconds its distillation took over every call that ran it, as the distillation records them (None: a
    finished folder with no record; loading one is not distillation time)."""
    if (out / "adapter.safetensors").exists():
        metrics = out / METRICS_FILE
        return bench.load_projector(out), json.loads(metrics.read_text())["seconds"] if metrics.is_file() else None
    images = bench.student_views(synthetic, args)
    projector, overrides = bench.new_projector(args, "effnet", images, **capacity(recipe))
    config = replace(bench.distill_config(args, seed, overrides), steps=recipe["steps"], loss=recipe["loss"],
                     temperature=recipe.get("temperature", 4.0))
    summary = distill(projector, PartlyMixed(images, teacher, seed, recipe["mixed_share"]), out, config,
                      resume=(out / "train_state.pt").exists(), progress=False)
    return bench.load_projector(out), summary["seconds"]


def scores(projector, synthetic: TensorImages, teacher, args, seed: int, views: int = 2000) -> dict:
    """Agreement and KL at the students' temperature against ``teacher`` on CutMix-mixed and unmixed views of
    ``synthetic`` drawn from a seed no distillation uses, and the mean KL of each image's views (``kl_per_image``,
    in ``synthetic``'s order; a mixed view counts for the image whose crop it is, not the one pasted in), so that two
    recipes scored on the same images pair image by image (:func:`paired_kl`)."""
    images = bench.student_views(synthetic, args)
    out = {}
    for name, mix in (("mixed", "cutmix"), ("unmixed", None)):
        targets = TeacherTargets(images, teacher, seed=derive_seed(seed, "validation views"), mix_type=mix)
        plans = list(targets.plans(0, -(-views // 200), batch_size=200))
        logits, target, _ = collect(projector, targets, plans)
        kl = kl_at(logits, target, args.temperature)
        image = torch.cat([plan.indices for plan in plans])
        views_of = torch.bincount(image, minlength=len(synthetic))
        per_image = torch.zeros(len(synthetic)).index_add_(0, image, kl) / views_of
        out[name] = {"agreement": float((logits.argmax(-1) == target.argmax(-1)).float().mean()),
                     "kl": float(kl.mean()), "kl_per_image": per_image.tolist()}
    return out


def paired_kl(row: dict, best: dict) -> Optional[dict]:
    """``row``'s held-out KL on mixed views minus ``best``'s, image by image (same images, same views), with the 95%
    t-interval over the held-out images and what it supports (:func:`paired_differences`); None where a row was
    scored before per-image KLs were recorded."""
    a, b = (r["validation"]["mixed"].get("kl_per_image") for r in (row, best))
    if not a or not b or len(a) != len(b):
        return None
    d = paired_differences({"row": a, "best": b}, [("row", "best")])[0]
    return {"mean": d["mean"], "interval": d["interval"], "ordering": d["ordering"], "images": len(a)}


def select(cli) -> None:
    args, work, seed, synthetic, teacher, _ = bench.cached_pipeline(cli.pipeline, bench.pipeline_argv(cli), cli.threads)
    train_part, val_part = split(synthetic, cli.val_per_class, seed)
    results = json.loads(cli.json.read_text()) if cli.json and cli.json.is_file() else []
    for text in cli.recipes:
        recipe = parse_recipe(text)
        out = work / "sweep" / f"val{cli.val_per_class}-{text.replace(',', '-')}"
        projector, seconds = distill_recipe(args, recipe, train_part, teacher, out, seed)
        key = (seed, text, cli.val_per_class)
        before = next((r for r in results if (r["pipeline"], r["recipe"], r.get("val_per_class")) == key), {})
        if seconds is None:  # scored again from its folder: keep the time its distillation took
            seconds = before.get("distill_seconds")
        row = {"pipeline": seed, "ipc": cli.ipc, "recipe": text, **recipe, "distill_seconds": seconds,
               "validation": scores(projector, val_part, teacher, args, seed),
               "train_images": scores(projector, train_part, teacher, args, seed),
               "effnet_size": recipe.get("effnet_size", args.effnet_size), "val_per_class": cli.val_per_class}
        results = [r for r in results if r is not before] + [row]
        print(json.dumps(row), flush=True)
        if cli.json:
            atomic_write_json(cli.json, results)
    ranked = sorted((r for r in results if (r["pipeline"], r.get("val_per_class")) == (seed, cli.val_per_class)),
                    key=lambda r: r["validation"]["mixed"]["kl"])
    for r in ranked:
        v, d = r["validation"], paired_kl(r, ranked[0]) if r is not ranked[0] else None
        against = (f"; - {ranked[0]['recipe']}: {d['mean']:+.4f} [{d['interval'][0]:+.4f}, {d['interval'][1]:+.4f}] "
                   f"over {d['images']} held-out images ({d['ordering']})" if d else "")
        print(f"{r['recipe']:>16}: validation KL mixed {v['mixed']['kl']:.4f} unmixed {v['unmixed']['kl']:.4f}, "
              f"agreement {v['mixed']['agreement']:.2%}; train images KL {r['train_images']['mixed']['kl']:.4f}"
              + against)


def students(cli) -> None:
    args, work, seed, synthetic, teacher, test = bench.cached_pipeline(cli.pipeline, bench.pipeline_argv(cli),
                                                                       cli.threads)
    images = bench.student_views(synthetic, args)
    steps = args.student_epochs * len(synthetic) // args.student_batch
    committed = json.loads(cli.results.read_text())["runs"][str(seed)] if cli.results else None
    results = json.loads(cli.json.read_text()) if cli.json and cli.json.is_file() else []
    for text in cli.recipes:
        recipe, out = parse_recipe(text), work / "tuned" / text.replace(",", "-")
        projector, seconds = distill_recipe(args, recipe, synthetic, teacher, out, seed)
        copies = {"float16": (projector, out)}
        for dtype in cli.dtypes:
            copy = out.with_name(f"{out.name}-{dtype}")
            LabelProjector.from_pretrained(out, trust_remote_code=True).save_pretrained(copy, dtype=dtype)
            copies[dtype] = (bench.load_projector(copy), copy)
        for dtype, (labeller, folder) in copies.items():
            student = bench.train_one_student(images, lambda: TeacherTargets(images, labeller.for_labels()), steps,
                                              cli.seed, args, test)
            fid = bench.teacher_fidelity(labeller, synthetic, teacher, args)
            nbytes = (folder / "adapter.safetensors").stat().st_size
            row = {"pipeline": seed, "ipc": cli.ipc, "recipe": text, "dtype": dtype, "seed": cli.seed,
                   "bytes": nbytes, "accuracy": student["accuracy"], "per_class": student["per_class"],
                   "distill_seconds": seconds, "agreement": fid.agreement, "kl": fid.kl,
                   "effnet_size": recipe.get("effnet_size", args.effnet_size)}
            if committed:
                row["paired"] = paired(committed, student["accuracy"], nbytes, cli.seed)
            results = [r for r in results if (r["pipeline"], r["recipe"], r["dtype"], r["seed"]) !=
                       (seed, text, dtype, cli.seed)] + [row]
            print(json.dumps({k: v for k, v in row.items() if k != "per_class"}), flush=True)
            if cli.json:
                atomic_write_json(cli.json, results)


def paired(run: dict, accuracy: float, nbytes: int, seed: int) -> dict:
    """``accuracy`` minus the committed run's student of ``seed`` from full stored labels, hard labels and LPLD
    pruning interpolated at ``nbytes`` (the benchmark's curve: linear in log bytes, full labels its last point)."""
    acc = {name: values[seed] for name, values in run["accuracy"].items() if len(values) > seed}
    curve = sorted((run["bytes"][name], a) for name, a in acc.items() if bench.on_pruning_curve(name))
    at = bench.interpolate(curve, nbytes)
    minus = {name: accuracy - acc[name] if name in acc else None  # None: the run has no student of this seed
             for name in ("full stored labels", "hard labels", "projector effnet")}
    return {"full stored labels": minus["full stored labels"], "hard labels": minus["hard labels"],
            "pruning at equal bytes": None if at is None else accuracy - at,
            "committed projector effnet": minus["projector effnet"]}


def source_name(row: dict) -> str:
    """The results-table name of a ``students`` row: ``projector effnet@32px, 2400 steps[, kl4][, mix0.5] [int4]``
    (a ``pxP`` option is the name's resolution)."""
    steps, *options = row["recipe"].split(",")
    options = [o for o in options if not o.startswith("px")]
    name = ", ".join([f"projector effnet@{row['effnet_size']}px", f"{steps} steps", *options])
    return name if row["dtype"] == "float16" else f"{name} {row['dtype']}"


def report(cli) -> None:
    """The committed results JSON, restricted to the pipelines of the ``students`` rows, with those rows added as
    sources of their pipelines (student seed ``s`` at position ``s``), its table (the pruning curve always, other
    committed sources only if ``--only`` names them) and every projector's paired gaps; written to ``--json`` in the
    benchmark's format, so that :mod:`benchmarks.paired` reads it."""
    results = json.loads(cli.results.read_text())
    rows = sorted((r for path in cli.students for r in json.loads(path.read_text())
                   if cli.seeds is None or r["seed"] < cli.seeds), key=lambda r: (r["pipeline"], r["seed"]))
    runs = {seed: run for seed, run in results["runs"].items() if int(seed) in {r["pipeline"] for r in rows}}
    for row in rows:
        run, name = runs[str(row["pipeline"])], source_name(row)
        if len(run["accuracy"].setdefault(name, [])) != row["seed"]:
            raise SystemExit(f"error: {name} of pipeline {row['pipeline']} lacks the students before seed "
                             f"{row['seed']}")
        run["accuracy"][name].append(row["accuracy"])
        run["per_class"].setdefault(name, []).append(row["per_class"])
        run["bytes"][name] = row["bytes"]
        run["fidelity"][name] = {"agreement": row["agreement"], "kl": row["kl"], "per_class_agreement": {}}
    added = {source_name(r) for r in rows}
    table_rows = [r for r in bench.report_rows(runs) if r["source"] in added or r["source"] in cli.only or
                  bench.on_pruning_curve(r["source"])]
    print(bench.table(table_rows))
    for r in table_rows:
        if r["source"] in added:
            gaps = ", ".join(f"{100 * g:+.2f}" for g in r.get("gap_to_pruning_per_pipeline", {}).values())
            full = paired_mean(runs, r["source"], "full stored labels")
            print(f"{r['source']}: - full stored labels {full}; - pruning at equal bytes per pipeline {gaps}")
    if cli.json:
        atomic_write_json(cli.json, results | {"runs": runs, "rows": table_rows, "tuned_from": [str(p) for p in
                                                                                              cli.students]})


def paired_mean(runs: dict, a: str, b: str) -> str:
    result = paired_diffs(runs, a, b)
    gaps = ", ".join(f"{100 * d:+.2f}" for d in result["per_pipeline"].values())
    return gaps + f" (mean {100 * result['mean']:+.2f})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["select", "students", "report"])
    bench.pipeline_args(p)
    p.add_argument("--recipes", nargs="+", default=[], help="STEPS[,klT][,mixS][,rankR][,headH][,pxP] ...")
    p.add_argument("--val-per-class", type=int, default=5, help="select: validation images per class")
    p.add_argument("--seed", type=int, default=0, help="students: student seed")
    p.add_argument("--dtypes", nargs="*", default=["int4"], help="students: also save and train these copies")
    p.add_argument("--results", type=Path, help="students: the benchmark's results JSON to pair with")
    p.add_argument("--students", type=Path, nargs="+", default=[], help="report: JSON files of students runs")
    p.add_argument("--only", nargs="*", default=[], help="report: committed sources to show beside pruning")
    p.add_argument("--seeds", type=int, help="report: only student seeds below this (default: all)")
    cli = p.parse_args(argv)
    if cli.command == "report":
        if not (cli.results and cli.students):
            p.error("report needs --results and --students")
        return report(cli)
    if not (cli.pipeline and cli.recipes):
        p.error(f"{cli.command} needs a pipeline folder and --recipes")
    for text in cli.recipes:
        parse_recipe(text)  # a bad recipe fails before any work
    select(cli) if cli.command == "select" else students(cli)


if __name__ == "__main__":
    main()
