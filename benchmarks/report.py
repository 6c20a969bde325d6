"""BENCHMARKS.md, rendered from the committed result files: ``python -m benchmarks report``.

Every table of BENCHMARKS.md is computed here from ``benchmarks/results/*.json``; the prose beside each table (the
question, the command, the machine, one line of reading) is kept in this file, so no figure is typed by hand and
``tests/test_benchmarks_report.py`` checks that the committed page equals this module's output. Result files are
named ``<benchmark>-<machine>-torch<version>[-<config>].json``; ``unrecorded`` stands for a machine the file does not
record. A file missing a field a table needs stops the report with one line naming the file and the field.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from hello_labels.demo.paired import paired_differences, sample_std, t_interval
from hello_labels.demo.pipeline import CONVERTED, DISTILLED, HARD, PRUNED
from hello_labels.demo.pipeline import STORED as STORED_DEMO
from hello_labels.errors import CorruptFileError

from .demo_recipe import SIZES_030
from .label_sources import FASHION_MNIST_CHECK as CHECK
from .label_sources import report_rows
from .run import shown
from .scale import table as scale_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "BENCHMARKS.md"

LABEL_SOURCES = "label-sources-epyc-torch2.14.1-fashion-mnist-ipc{ipc}.json"
SAME_VIEWS = "same-views-xeon-torch2.14.1-fashion-mnist-ipc50.json"
THROUGHPUT_IMAGENET = "throughput-epyc-torch2.14.1-imagenet.json"
THROUGHPUT_FASHION = "throughput-epyc-torch2.14.1-fashion-mnist.json"
STORAGE = "storage-unrecorded-torch2.14.1-imagenet1k-ipc{ipc}.json"
STORAGE_PLOT = "storage-unrecorded-torch2.14.1-imagenet1k.png"
ADAPTER_SIZES = "adapter-sizes-unrecorded-torch2.14.1-imagenet1k.json"
SCALE = "scale-xeon-torch2.14.1-imagenet1k-ipc10-idle.json"
# one recipe on two datasets (run configs mnist-ipc10, fashion-mnist-ipc10-as-mnist): each rendered when present
ONE_RECIPE = {"MNIST": ("mnist-ipc10", "label-sources-xeon-torch2.14.1-mnist-ipc10.json"),
              "Fashion-MNIST": ("fashion-mnist-ipc10-as-mnist",
                                "label-sources-xeon-torch2.14.1-fashion-mnist-ipc10-as-mnist.json")}
# the same recipe at the issue's own MNIST setting: pipeline 0, the default eight-epoch teacher
LONG_TEACHER = ("mnist-ipc10-8-epoch-teacher-p0", "label-sources-epyc-torch2.14.1-mnist-ipc10-8-epoch-teacher-p0.json")
# stored labels against the teacher online under each students' mix, synthetic-set selection and temperature: (run
# config, result file) per variant, the default (CutMix, most confident images, T = 4) first: the others pair with it
MIX_AND_SELECTION = {label: (config, f"label-sources-epyc-torch2.14.1-{config}.json") for label, config in (
    ("CutMix, most confident images", "mnist-ipc10-cutmix-confident"),
    ("MixUp, most confident images", "mnist-ipc10-mixup-confident"),
    ("CutMix, random images", "mnist-ipc10-cutmix-random"),
    ("CutMix, most confident images, students at T = 1", "mnist-ipc10-cutmix-confident-T1"))}
LEVEL = -0.005  # projector − full stored labels, mean over pipelines: "level" from here up
DEMO_RECIPE = "demo-recipe-*.json"  # written by benchmarks/demo_recipe.py; rendered when present
DEMO_PRUNING = "demo-pruning-*.json"  # benchmarks/demo_recipe.py --pruning; rendered when present
DEMO_RUN = "demo-*-torch*-*.json"  # a demo run's OUT/demo.json, named for its machine, torch and commit
DEMO_RUN_PAIRS = ((DISTILLED, STORED_DEMO), (DISTILLED, PRUNED), (CONVERTED, STORED_DEMO), (CONVERTED, HARD))

STORED = "full stored labels"
ONLINE = "teacher online (RDED)"


class ResultFieldError(CorruptFileError):
    """A result file lacks a field the report needs (one line: the file and the field)."""


class Result:
    """One result file's JSON, whose missing fields are reported with the file's name."""

    def __init__(self, results: Path, name: str):
        self.name = name
        path = results / name
        if not path.is_file():
            raise ResultFieldError(f"{path}: no such result file")
        self.data = json.loads(path.read_text())

    def get(self, *keys, data=None):
        """``data[k0][k1]...`` (``data``: the whole file by default), or :class:`ResultFieldError`."""
        value = self.data if data is None else data
        for k in keys:
            try:
                value = value[k]
            except (KeyError, IndexError, TypeError):
                raise ResultFieldError(f"benchmarks/results/{self.name}: no field {'.'.join(map(str, keys))!r}")
        return value


def link(name: str) -> str:
    return f"[{name}](benchmarks/results/{name})"


def pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def interval(values: Sequence[float]) -> str:
    """``mean [low, high]`` in points: the 95% t-interval over ``values`` (mean alone for one value)."""
    if len(values) < 2:
        return pts(statistics.mean(values)) if values else "—"
    mean, low, high = t_interval(values)
    return f"{pts(mean)} [{pts(low)}, {pts(high)}]"


def table(header: Sequence[str], align: str, rows: list[Sequence[str]]) -> list[str]:
    """A markdown table; ``align`` has one ``l`` or ``r`` per column."""
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |",
            *("| " + " | ".join(map(str, r)) + " |" for r in rows)]


def section(title: str, question: str, command: str, machine: str, body: list[str], reading: str) -> list[str]:
    return [f"## {title}", "", f"**Question.** {question}", "", "```bash", command, "```", "",
            f"**Machine.** {machine}", "", *body, "", f"**Reading.** {reading}", ""]


# --- label sources -----------------------------------------------------------------------------------------------

def label_sources_table(r: Result) -> list[str]:
    runs = r.get("runs")
    first = next(iter(runs.values()))
    rows = []
    for name in r.get("bytes", data=first):
        means = {seed: statistics.mean(r.get("accuracy", name, data=run)) for seed, run in runs.items()
                 if name in r.get("accuracy", data=run)}
        if not means:
            continue
        stored = {seed: statistics.mean(r.get("accuracy", STORED, data=runs[seed])) for seed in means}
        fid = [r.get("fidelity", name, data=run) for run in runs.values() if name in r.get("fidelity", data=run)]
        fidelity = (f"{statistics.mean(f['agreement'] for f in fid):.1%}, {statistics.mean(f['kl'] for f in fid):.3f}"
                    if fid else "—")
        values = list(means.values())
        diffs = [means[s] - stored[s] for s in means]
        rows.append([name, f"{r.get('bytes', name, data=first):,}", fidelity,
                     f"{100 * statistics.mean(values):.2f} ± {100 * sample_std(values):.2f}" if len(values) > 1
                     else f"{100 * values[0]:.2f} (one pipeline)",
                     "—" if name == STORED else ", ".join(pts(d) for d in diffs),
                     "—" if name == STORED else interval(diffs)])
    return table(["label source", "bytes", "agreement, KL at T=4", "students %: mean ± std over pipelines",
                  "− full stored labels, per pipeline", "mean [95% t-interval]"], "lrrrll", rows)


def label_sources(results: Path) -> list[str]:
    body = []
    for ipc, epochs in ((10, 300), (50, 100)):
        r = Result(results, LABEL_SOURCES.format(ipc=ipc))
        teachers = ", ".join(f"{100 * t:.2f}%" for t in r.get("teacher_test_accuracy"))
        body += [f"### IPC {ipc} ({epochs} epochs of labels; teachers {teachers}; {link(r.name)})", "",
                 *label_sources_table(r), "",
                 f"![accuracy against bytes, IPC {ipc}](benchmarks/results/{r.name[:-5]}.png)", ""]
    return section(
        "Label sources side by side (Fashion-MNIST, IPC 10 and 50)",
        "how good are a projector's labels against stored labels, the teacher online, hard labels, top-k and LPLD "
        "pruning, and at what bytes?",
        shown("label-sources", "fashion-mnist-ipc10", "fashion-mnist-ipc50") + "\n"
        "python -m benchmarks.paired <results.json> \"projector effnet\" \"full stored labels\"",
        "2 CPU cores (AMD EPYC), torch 2.14.1+cu130, 1 thread per process, two processes side by side, commit "
        "`5b7074b` (2026-11-30). These files predate the machine fields of `benchmarks/machine.py`: CPU model and "
        "capability are not recorded.",
        [("Each pipeline seed re-draws teacher (ResNet-20), synthetic set (the teacher's most confident training "
         "images), label files (SRe2L's relabelling: RandomResizedCrop, flip, CutMix, fp16 logits) and projectors "
         "(EfficientNet-Lite0 at 64 px, rank 8 or the small rank 2/4; saved float16, int8, int4). Students: ConvNet "
         "(3 blocks, width 64), KL at T=4, tested on the 10,000 test images. Bytes: the file that would ship. "
         "Spread: std over the 3 pipelines' student means is the sample std (n−1); the differences are paired "
         "per pipeline (same teacher, synthetic set, crops) with a 95% t-interval over the 3 pipelines. Pipeline 0 "
         "at IPC 10 has 2 student seeds (their mean is its figure), the others 1."),
         "",
         ("In these runs every online source (teacher online, projectors) drew crop stream 0 for every student seed. "
         "Since `3a78bec` an online source's student seed s draws crop stream s "
         "([online-labels.md](docs/online-labels.md)), so that student seeds average the crop stream out; the "
         "paired comparison free of crop streams is the [same-views](#label-sources-on-the-same-views-ipc-50-three-"
         "pipelines) table. The int8/int4 rows were re-measured after the save fix of `e26abe7` (the JSON keeps "
         "the superseded figures under `amended`; `benchmarks/fashion_mnist_quantized.py`, which re-measured "
         "them, is in git at `2400c98`)."), ""] + body[:-1],
        "at IPC 10 the rank-8 projectors (float16, int8, 4-bit) are level with the stored labels at a fraction of "
        "their bytes; at IPC 50 the 600-step projector of these runs is below them in every pipeline, which the "
        "9,600-step default closes (same-views table).")


def equal_bytes(results: Path) -> list[str]:
    rows = []
    for ipc in (10, 50):
        r = Result(results, LABEL_SOURCES.format(ipc=ipc))
        for row in report_rows(r.get("runs")):
            gaps = list(row.get("gap_to_pruning_per_pipeline", {}).values())
            if not gaps:
                continue
            match = row["pruning_bytes_to_match"]
            rows.append([ipc, row["source"], f"{row['bytes']:,}", ", ".join(pts(g) for g in gaps), interval(gaps),
                         "never" if match is None else f"{match / row['bytes']:.2g}×"])
    body = table(["IPC", "projector", "adapter bytes", "− pruning at equal bytes, per pipeline",
                  "mean [95% t-interval]", "bytes pruning needs to match it"], "rlrllr", rows)
    return section(
        "Equal bytes: quantized projectors against LPLD pruning",
        "at the bytes of an adapter, does it train better students than stored labels pruned to the same bytes?",
        "python -m benchmarks report   # computed from the two label-source files above",
        "as the label-source tables (the same files).",
        [("Each projector's students against its own pipeline's pruning curve (random batch files kept whole, "
         "full labels as its last point), interpolated at the adapter's bytes, linear in log bytes; 95% "
         "t-interval over the 3 pipelines. Last column: where the three-pipeline mean curve reaches the "
         "projector's mean, as a multiple of its bytes."), "", *body],
        "the 4-bit copies are ahead of pruning of their bytes in every IPC-10 pipeline; at IPC 50 one student per "
        "pipeline does not resolve it, and the same-views table below does (4-bit ahead in every pipeline).")


def pipeline_differences(r: Result, a: str, b: str) -> list[float]:
    """Per pipeline, the mean of ``a``'s students minus the mean of ``b``'s (pipelines holding both)."""
    return [statistics.mean(r.get("accuracy", a, data=run)) - statistics.mean(r.get("accuracy", b, data=run))
            for run in r.get("runs").values() if {a, b} <= set(r.get("accuracy", data=run))]


def seed_differences(r: Result, run: dict, a: str, b: str) -> list[float]:
    """Within one pipeline's ``run``, ``a``'s student minus ``b``'s, per student seed (the same initial weights)."""
    return [x - y for x, y in zip(r.get("accuracy", a, data=run), r.get("accuracy", b, data=run), strict=True)]


# the one-recipe tables' pairs beside "− full stored labels" (a one-pipeline table also pairs each with the stored)
ONE_RECIPE_PAIRS = (("projector effnet", "teacher online (RDED)"), ("converted effnet, 300 epochs", "hard labels"))


def long_teacher(results: Path) -> list[str]:
    """The one recipe's pipeline 0 of MNIST with the eight-epoch teacher, paired per student seed."""
    config, name = LONG_TEACHER
    r = Result(results, name)
    run = next(iter(r.get("runs").values()))
    seeds = len(r.get("accuracy", STORED, data=run))
    vs_stored = tuple((a, STORED) for a in ("projector effnet", "teacher online (RDED)",
                                            "converted effnet, 300 epochs"))
    rows = [[f"{a} − {b}", ", ".join(pts(d) for d in diffs), interval(diffs)] for a, b in vs_stored + ONE_RECIPE_PAIRS
            if {a, b} <= set(r.get("accuracy", data=run)) and (diffs := seed_differences(r, run, a, b))]
    return ["", f"**MNIST, pipeline 0 with the eight-epoch teacher** (the setting where online labels first lost "
                f"on MNIST). Teacher {100 * r.get('teacher_test_accuracy')[0]:.2f}%; {seeds} student seeds, paired "
                f"per student seed, 95% t-interval over them: the student seeds' spread only, one pipeline "
                f"(`python -m benchmarks run label-sources --config {config}`; {machine_line(r.get('env'))}; "
                f"{link(r.name)}).",
            "", *label_sources_table(r), "", *table(["paired, points", "per student seed", "mean [95% t-interval]"],
                                                     "lll", rows)]


def one_recipe(results: Path) -> list[str]:
    present = {dataset: (config, name) for dataset, (config, name) in ONE_RECIPE.items() if (results / name).is_file()}
    if not present:
        return []
    body = [("Each pipeline seed re-draws a ResNet-20 teacher trained for one epoch (shorter than the eight of the "
             "Fashion-MNIST tables above, so that three pipelines fit on this machine), the synthetic set (its 10 "
             "most confident training images per class), 300 epochs of stored labels and two projectors: "
             "`projector effnet` (EfficientNet-Lite0 at 32 px, rank 8, 2,400 distillation steps: the step count "
             "a validation split of MNIST's pipeline 0 chose, [docs/online-labels.md](docs/online-labels.md)) and "
             "`converted` (the same base fitted to the stored labels alone, `hello-labels convert`'s default "
             "steps). One recipe for every dataset. Student seed s starts from the same weights for "
             "every source; an online source draws crop stream s, the stored labels replay their own. Each "
             "pipeline's figure is the mean of its students; differences are paired per pipeline, 95% t-interval "
             "over the 3 pipelines (sample std, n−1).")]
    readings = []
    for dataset, (_, name) in present.items():
        r = Result(results, name)
        teachers = ", ".join(f"{100 * t:.2f}%" for t in r.get("teacher_test_accuracy"))
        seeds = sorted({len(a) for run in r.get("runs").values() for a in r.get("accuracy", data=run).values()})
        extra = [[f"{a} − {b}", ", ".join(pts(d) for d in diffs), interval(diffs)] for a, b in ONE_RECIPE_PAIRS
                 if (diffs := pipeline_differences(r, a, b))]
        projector = statistics.mean(pipeline_differences(r, "projector effnet", STORED))
        body += ["", f"**{dataset}.** Teachers {teachers}; {'/'.join(map(str, seeds))} student seeds per pipeline; "
                     f"{link(r.name)}.", "", *label_sources_table(r), "",
                 *table(["paired, points", "per pipeline", "mean [95% t-interval]"], "lll", extra)]
        readings.append(f"{dataset}: {pts(projector)} points, {'at or above' if projector >= LEVEL else 'below'} "
                        f"the {pts(LEVEL)} that counts as level here")
    if (results / LONG_TEACHER[1]).is_file():
        body += long_teacher(results)
    return section(
        f"Online labels on {'two datasets, one recipe' if len(present) > 1 else 'a second dataset'} "
        "(IPC 10, three pipelines)",
        "with one recipe on datasets it was not chosen on, are the projector's labels (and the teacher online, and "
        "`convert`'s projector) level with the stored labels?",
        shown("label-sources", *(config for config, _ in present.values())),
        "2 CPU cores (Intel Xeon, AVX-512), torch 2.14.1, 1 thread per process, three pipelines side by side (no "
        "time here is a speed measurement).",
        body, "projector − full stored labels, mean over the pipelines: " + "; ".join(readings) + ".")


def pipeline_means(r: Result, name: str) -> dict[str, float]:
    """Per pipeline seed, the mean of ``name``'s students."""
    return {seed: statistics.mean(r.get("accuracy", name, data=run)) for seed, run in r.get("runs").items()}


def paired(a: dict[str, float], b: dict[str, float] | None = None) -> list[float]:
    """``a − b`` (``a`` alone without ``b``) for each pipeline seed both hold, in seed order."""
    b = b or dict.fromkeys(a, 0.0)
    return [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys(), key=int)]


def told_apart(diffs: Sequence[float]) -> bool:
    """Whether the 95% t-interval of ``diffs`` excludes 0."""
    return len(diffs) > 1 and (t_interval(diffs)[1] > 0 or t_interval(diffs)[2] < 0)


def mix_and_selection(results: Path) -> list[str]:
    """Stored labels against the teacher online, per variant; each variant paired per pipeline with the default."""
    present = {v: Result(results, name) for v, (_, name) in MIX_AND_SELECTION.items() if (results / name).is_file()}
    if not present:
        return []
    gap = {v: {s: m - pipeline_means(r, STORED)[s] for s, m in pipeline_means(r, ONLINE).items()}
           for v, r in present.items()}
    rows = []
    for v, r in present.items():
        stored, online = (list(pipeline_means(r, n).values()) for n in (STORED, ONLINE))
        diffs = paired(gap[v])
        rows.append([v, *(f"{100 * statistics.mean(x):.2f} ± {100 * sample_std(x):.2f}" for x in (stored, online)),
                     ", ".join(pts(d) for d in diffs), interval(diffs)])
    body = [*table(["mix, synthetic set", "stored labels %", "teacher online %", "online − stored, per pipeline",
                    "mean [95% t-interval]"], "lrrll", rows)]
    default = next(iter(MIX_AND_SELECTION))
    readings = [f"{v}: {'' if told_apart(paired(gap[v])) else 'not '}told apart from 0" for v in present]
    if default in present and len(present) > 1:
        vs, base = [], present[default]
        for v, r in present.items():
            if v == default:
                continue
            for what, a, b in (("stored labels", pipeline_means(r, STORED), pipeline_means(base, STORED)),
                               ("online − stored", gap[v], gap[default])):
                diffs = paired(a, b)
                vs.append([f"{what}: {v} − {default}", ", ".join(pts(d) for d in diffs), interval(diffs)])
                if what == "online − stored":
                    readings.append(f"the gap under {v} is {'' if told_apart(diffs) else 'not '}told apart from "
                                    f"the default's")
        body += ["", f"Each variant against the default ({default}), paired per pipeline (the same teacher):", "",
                 *table(["paired, points", "per pipeline", "mean [95% t-interval]"], "lll", vs)]
    first = next(iter(present.values()))
    teachers = ", ".join(f"{100 * t:.2f}%" for t in first.get("teacher_test_accuracy"))
    seeds = sorted({len(a) for r in present.values() for run in r.get("runs").values()
                    for a in r.get("accuracy", data=run).values()})
    intro = (f"MNIST, three pipelines of one-epoch ResNet-20 teachers ({teachers}; every variant uses the same three), "
             f"IPC 10, 300 student epochs at temperature 4 unless the row says otherwise, "
             f"{'/'.join(map(str, seeds))} student seeds per pipeline. MixUp replaces "
             "CutMix in the stored labels' export and in the online students' views alike; a random synthetic set "
             "draws 10 training images per class, seeded by the pipeline seed, instead of the teacher's 10 most "
             "confident. Each pipeline's figure is the mean of its students; differences are paired per pipeline, "
             "95% t-interval over the pipelines (sample std, n−1). Result files: "
             + ", ".join(link(r.name) for r in present.values()) + ".")
    return section(
        "Stored labels against the teacher online, by mix, synthetic set and temperature (MNIST, IPC 10, three "
        "pipelines)",
        "does the students' mix (CutMix or MixUp), how the synthetic set was chosen, or the students' temperature "
        "open a gap between stored labels and the same teacher's labels online?",
        shown("label-sources", *(MIX_AND_SELECTION[v][0] for v in present)), machine_line(first.get("env")) +
        "; two 1-thread processes side by side (no time here is a speed measurement).",
        [intro, "", *body], "teacher online − stored labels: " + "; ".join(readings) + ".")


# --- same views --------------------------------------------------------------------------------------------------

SAME_VIEW_PAIRS = [  # (label, a, b, skip stream 0: the stream a was converted from)
    ("teacher on the stored views − stored labels (control)", "teacher on the stored views", STORED, False),
    ("projector, 9,600 steps (the default) − stored labels", "tuned/9600 on the stored views", STORED, False),
    ("its 4-bit copy − stored labels", "tuned/9600-int4 on the stored views", STORED, False),
    ("projector, 4,800 steps − stored labels", "tuned/4800 on the stored views", STORED, False),
    ("its 4-bit copy − stored labels", "tuned/4800-int4 on the stored views", STORED, False),
    ("4-bit (4,800) − pruned labels of equal bytes", "tuned/4800-int4 on the stored views",
     "pruned stored labels at the bytes of tuned/4800-int4", False),
    ("4-bit (9,600) − the same pruned labels", "tuned/9600-int4 on the stored views",
     "pruned stored labels at the bytes of tuned/4800-int4", False),
    ("`convert` (3,000 steps, from stream 0) − stored labels, unseen streams",
     "reconverted-100-epochs-3000-steps on the stored views", STORED, True),
]


def same_views(results: Path) -> list[str]:
    r = Result(results, SAME_VIEWS)
    acc: dict[tuple, dict[int, float]] = {}
    for row in r.get():
        if "accuracy" in row:
            key = (r.get("pipeline", data=row), r.get("source", data=row))
            acc.setdefault(key, {})[r.get("stream", data=row)] = row["accuracy"]
    pipelines = sorted({p for p, _ in acc})
    rows = []
    for label, a, b, unseen in SAME_VIEW_PAIRS:
        cells = []
        for p in pipelines:
            streams = sorted(s for s in set(acc.get((p, a), {})) & set(acc.get((p, b), {})) if s or not unseen)
            if len(streams) < 2:
                cells.append("—")
                continue
            d = paired_differences({"a": [acc[p, a][s] for s in streams], "b": [acc[p, b][s] for s in streams]},
                                   [("a", "b")])[0]
            above = sum(x > 0 for x in d["per_seed"])
            cells.append(f"{pts(d['mean'])} [{pts(d['interval'][0])}, {pts(d['interval'][1])}], "
                         f"{above} of {len(streams)} above")
        rows.append([label, *cells])
    stored = [f"{100 * statistics.mean(acc[p, STORED].values()):.2f} ± "
              f"{100 * sample_std(list(acc[p, STORED].values())):.2f}" for p in pipelines]
    body = table(["paired over crop streams, points", *(f"pipeline {p}" for p in pipelines)],
                 "l" * (1 + len(pipelines)),
                 [["stored labels' students, % (mean ± std over streams)", *stored], *rows])
    return section(
        "Label sources on the same views (IPC 50, three pipelines)",
        "with crops, flips, CutMix boxes and the student's initial weights held equal, how far are a projector's "
        "labels (and its 4-bit copy, and `convert`'s) from the stored labels, and from pruning of equal bytes?",
        "python -m benchmarks.same_views benchmarks/work/pipeline-P --ipc 50 --student-epochs 100 \\\n"
        "    --streams 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 --projectors tuned/9600 tuned/9600-int4 tuned/4800 \\\n"
        f"    tuned/4800-int4 --pruned-like tuned/4800-int4 --json benchmarks/results/{SAME_VIEWS}\n"
        f"python -m benchmarks.same_views --summary benchmarks/results/{SAME_VIEWS}",
        "2 CPU cores (Intel Xeon, AVX-512), torch 2.14.1, 1 thread per process, two student processes sharing "
        "the cores (2026-12-02; no time here is a speed measurement). The file's rows do not record the machine or "
        "torch version: both are taken from the commits that wrote it (`648d25e`, `2cddff2`).",
        [(f"Stream s is a label directory exported from the pipeline's teacher with crop seed s (stream 0: the "
         f"pipeline's own); every source replays it and its student starts from seed s, so two students of one "
         f"stream differ by their labels alone. The control is the teacher run again on those views (it differs "
         f"from the stored labels by their float16 rounding). Each cell: mean difference over the streams, its "
         f"95% t-interval (sample std, n−1), and in how many streams the first source is above. Pipelines 1 and 2 "
         f"were drawn anew at the defaults (teacher, synthetic set, labels, projector at 32 px). `convert` is paired "
         f"on the 15 streams it was not converted from. Every student: {link(SAME_VIEWS)}."), "", *body],
        "the 9,600-step float16 projector is level with the stored labels in every pipeline (every interval holds "
        "0); its 4-bit copy moves students in both directions (check a 4-bit copy's students before shipping it), "
        "yet stays ahead of pruning of its bytes in every pipeline.")


# --- throughput --------------------------------------------------------------------------------------------------

def ratio(r: Result, stats: dict) -> str:
    return f"{r.get('median', data=stats):.2f} [{r.get('p25', data=stats):.2f}, {r.get('p75', data=stats):.2f}]"


def throughput_rows(r: Result, setting: str) -> list[list]:
    rows, s = [], r.get("settings", setting)
    ms = {row["name"]: r.get("ms_per_batch", "median", data=row) for row in r.get("rows", data=s)}
    for name, base in r.get("bases", data=s).items():
        cost = r.get("cost_x_teacher", data=base)
        fast = next(ms[k] for k in (f"{name}: fast path (channels_last)", f"{name}: fast path (contiguous)") if k in ms)
        row = [name, f"{fast:,.1f}", ratio(r, r.get("fast", "best_layout", "paired", data=cost)),
               ratio(r, r.get("fast", "contiguous", "paired", data=cost)),
               ratio(r, r.get("merged/bare", "paired", data=base))]
        rows.append(row)
    teachers = [[n, f"{m:,.1f}", "—", "—", "—"] for n, m in ms.items() if n.startswith("teacher")]
    return teachers + rows


def throughput(results: Path) -> list[str]:
    imagenet, fashion = Result(results, THROUGHPUT_IMAGENET), Result(results, THROUGHPUT_FASHION)
    header = ["row", "fast path ms per batch (median)", "× teacher, fastest form", "× teacher, contiguous",
              "merged / bare base"]
    env = imagenet.get("environment")
    fenv = fashion.get("environment")
    body = [(f"ImageNet setting (1,000 classes, 224 px, batch {imagenet.get('settings', 'imagenet', 'batch_size')}, "
            f"ResNet-18 teacher; {link(imagenet.name)}):"), "",
            *table(header, "lrrrr", throughput_rows(imagenet, "imagenet")), "",
            (f"Fashion-MNIST setting (10 classes, batch {fashion.get('settings', 'fashion-mnist', 'batch_size')}, "
            f"ResNet-20 teacher, EfficientNet-Lite0 at 32/48/64 px; {link(fashion.name)}):"), "",
            *table(header, "lrrrr", throughput_rows(fashion, "fashion-mnist"))]
    machine = (f"{env['cpu_model']}, {env['cpus_available']} cores, {env['threads']} torch threads, torch "
               f"{env['torch']}, {env['dtype']} eager, commit `{env['git']}`, {env['repeats']} rounds after "
               f"{env['warmup']} warm-up (ImageNet); {fenv['cpu_model']}, {fenv['threads']} thread, torch "
               f"{fenv['torch']}, commit `{fenv['git']}`, {fenv['repeats']} rounds (Fashion-MNIST). The open_clip "
               f"bases and the teachers have random weights (no download here; speed does not depend on values).")
    return section(
        "Label generation throughput (CPU)",
        "what does a projector cost per batch against the teacher it replaces, and does LoRA cost anything once "
        "merged?",
        shown("throughput", "imagenet", "fashion-mnist"),
        machine,
        [("Fast path: `projector(images)` after `merge()` (BatchNorm folded, head as one matmul, `channels_last` for "
         "convolutional bases, CPU batches in chunks of at most 32 MiB per tensor; [fast-path.md](docs/fast-path.md)). "
         "Ratios: median and interquartile range [p25, p75] of the per-round paired ratios (every round runs every "
         "row once); \"fastest form\": the teacher's fastest row (`channels_last`, and at 224 px in chunks as "
         "the fast path runs). GPU, bf16 and `torch.compile` were not "
         "measured (no GPU here)."), "", *body],
        "at 224 px the EfficientNet-Lite0 projector costs less than the ResNet-18 teacher and the CLIP bases "
        "several times it; at 32 px the Fashion-MNIST projector costs what its teacher costs; merged runs at the "
        "bare base's cost within this machine's per-round noise.")


# --- storage, scale, reproduce -----------------------------------------------------------------------------------

def storage(results: Path) -> list[str]:
    small, large = Result(results, STORAGE.format(ipc=10)), Result(results, STORAGE.format(ipc=200))
    by_name = {row["name"]: row for row in large.get("rows")}
    rows = [[row["name"], f"{row['bytes']:,}", row["human"],
             f"{by_name[row['name']]['bytes']:,}" if row["name"] in by_name else "—"]
            for row in small.get("rows") if row.get("part_of") is None and row.get("counted", True)]
    sizes = Result(results, ADAPTER_SIZES)
    formats = ["float32", "float16", "int8", "int4"]
    adapter = [[base, f"{sizes.get('parameters', data=b):,}",
                *(f"{sizes.get('formats', f, 'adapter_file_bytes', data=b):,}" for f in formats)]
               for base, b in sizes.get("bases").items()]
    s = small.get("setting")
    return section(
        "Storage at ImageNet-1K scale",
        "how many bytes does each way of supplying soft labels take, against images per class and epochs?",
        shown("storage", "imagenet1k-ipc10", "imagenet1k-ipc200", "imagenet1k"),
        f"bytes only, no training: the same on any machine (the files record torch {small.get('torch_version')}, "
        "not the machine; the adapter sizes record neither, torch 2.14.1 being the repository's then).",
        [(f"SRe2L's relabelling of ImageNet-1K: {s['classes']:,} classes, batch {s['batch_size']:,}, {s['dtype']} "
         f"logits, {s['mix']} metadata, {s['epochs']} epochs; IPC 10 ({link(small.name)}) and IPC 200 "
         f"({link(large.name)}). The teacher and RN50 have random weights (sizes do not depend on them)."), "",
         *table(["label source", "bytes, IPC 10", "IPC 10", "bytes, IPC 200"], "lrrr", rows), "",
         f"Adapter files at 1,000 classes ({link(sizes.name)}; config.json adds about 20 kB):", "",
         *table(["base", "adapter parameters", *(f"{f} bytes" for f in formats)], "lrrrrr", adapter), "",
         f"![bytes against IPC](benchmarks/results/{STORAGE_PLOT})"],
        "stored labels, top-k and pruning grow with images and epochs; the teacher and an adapter do not.")


def scale(results: Path) -> list[str]:
    r = Result(results, SCALE)
    m, labels = r.get("machine"), r.get("labels")
    return section(
        "Label directories at ImageNet-1K size",
        "do `convert`, `eval --labels`, `storage` and the SRe2L shim start and run within memory on a real-sized "
        "label directory?",
        f"python -m benchmarks.scale run DATA/ipc10 --json benchmarks/results/{r.name}\n"
        f"python -m benchmarks.scale table benchmarks/results/{r.name}",
        f"{m['cpu']}, {m['cpu_capability']}, {m['threads']} threads, torch {m['torch']}, idle (load average "
        f"{r.get('load_average_before')[0]:.2f} before).",
        [(f"A synthetic SRe2L label directory: {labels['images']:,} images, {labels['classes']:,} classes, "
         f"{labels['epochs']} epochs of batch {labels['batch_size']:,}, {labels['files']:,} files, "
         f"{labels['bytes']:,} bytes. One run per verb (no spread); [scale.md](docs/scale.md) explains each "
         f"column."), "", scale_table(r.data)],
        "the first step comes in seconds and peak memory does not grow with the epochs stored.")


def reproduce(results: Path) -> list[str]:
    r = Result(results, CHECK)
    seeds = r.get("seeds")
    acc = [r.get(s, "accuracy", data=seeds) for s in seeds]
    m = r.get("env")
    rows = [[s, f"`{r.get(s, 'weights', data=seeds)}`", f"{100 * a:.2f}%"] for s, a in zip(seeds, acc)]
    mean, std = statistics.mean(acc), sample_std(acc)
    return section(
        "Reproducing the Fashion-MNIST figures",
        "does this machine reproduce the recorded figures, bit for bit or within their spread?",
        shown("reproduce", "check", "record-check"),
        f"{m['cpu']}, {m['cpu_capability']}, {m['threads']} threads, torch {m['torch']}, code version "
        f"`{r.get('code')}` ({link(r.name)}).",
        [(f"`--check` trains the teacher of pipeline seed 0 for {r.get('steps')} steps and compares it with the "
         f"record: identical weights print `REPRODUCED`; other weights on the same machine fields `NOT "
         f"REPRODUCED`; other weights where a machine field differs name the field and ask whether the test "
         f"accuracy is within the recorded seeds' mean ± 3 sample std (n−1) "
         f"([reproducing.md](docs/reproducing.md))."), "",
         *table(["seed", "weights digest", "test accuracy"], "rlr", rows), "",
         f"Band counted as within the recorded spread: {100 * (mean - 3 * std):.2f}%..{100 * (mean + 3 * std):.2f}%."],
        "bits repeat only on the same machine fields (torch build, CPU capability and model, threads); elsewhere "
        "the answer is the spread.")


# --- demo recipe (optional) --------------------------------------------------------------------------------------

def difference(r: Result, d: dict) -> str:
    """A demo result's paired difference ``d`` (:func:`hello_labels.demo.paired.paired_differences`) in points:
    ``mean [low, high]``, the mean alone where it has no interval (one seed)."""
    low_high = d.get("interval")
    spread = f" [{pts(low_high[0])}, {pts(low_high[1])}]" if low_high else ""
    return f"{pts(r.get('mean', data=d))}{spread}"


def machine_line(env: dict) -> str:
    """A demo result's machine as the report shows it: CPU, threads, torch."""
    threads = env.get("threads", "?")
    return (f"{env.get('cpu', 'unrecorded')}, {threads} thread{'' if threads == 1 else 's'}, "
            f"torch {env.get('torch', 'unrecorded')}")


def demo_recipe(results: Path) -> list[str]:
    files = sorted(results.glob(DEMO_RECIPE))
    if not files:
        return []
    body, machines, teachers = [], [], Counter()
    for path in files:
        r = Result(results, path.name)
        for c in r.get():
            rows = {r.get("labels", data=x): x for x in r.get("rows", data=c)}
            machines.append(machine_line(r.get("environment", data=c)))
            teachers[f"{r.get('teacher_accuracy', data=c):.1%}"] += 1
            nbytes = f"{r.get('label_bytes', data=rows[DISTILLED]):,}" if DISTILLED in rows else "—"
            for d in r.get("paired", data=c):
                body.append([r.get("candidate", data=c), r.get("seeds", data=c), nbytes,
                             f"{r.get('a', data=d)} − {r.get('b', data=d)}", difference(r, d)])
    return section(
        "Demo recipe (validation split)",
        "which projector recipe should the demo ship, chosen on held-out training images, never on its test "
        "images?",
        "python -m benchmarks.demo_recipe --seeds 4   # writes results/demo-recipe-<machine>-torch<version>.json",
        "; ".join(dict.fromkeys(machines)) + f" ({', '.join(link(p.name) for p in files)}).",
        [("Each candidate runs the whole demo on the split, students tested on the validation images; paired per "
         "student seed, 95% t-interval over seeds (sample std, n−1), in points. Sizes: "
         f"{SIZES_030['ipc']} images per class and {SIZES_030['label_epochs']} label epochs unless the name says "
         "otherwise. The teacher, on the validation images: "
         + "; ".join(f"{acc} ({n} candidates)" for acc, n in teachers.items())
         + " (one teacher per run of the script, shared by its candidates)."), "",
         *table(["candidate", "seeds", "adapter bytes", "paired", "mean [95% t-interval]"], "lrrll", body)],
        "a candidate is preferred only where its interval clears the alternatives'.")


def demo_pruning(results: Path) -> list[str]:
    files = sorted(results.glob(DEMO_PRUNING))
    if not files:
        return []
    body, machines = [], []
    for path in files:
        r = Result(results, path.name)
        machines.append(machine_line(r.get("environment")))
        paired = {(r.get("a", data=d), r.get("b", data=d)): d for d in r.get("paired")}
        stored = r.get("stored_bytes")
        for name, row in r.get("rows").items():
            accs = r.get("student_accs", data=row)
            cells = []
            for a, b in ((name, STORED_DEMO), (DISTILLED, name)):
                d = paired.get((a, b))
                cells.append("—" if d is None else difference(r, d))
            body.append([r.get("candidate"), name, f"{r.get('label_bytes', data=row):,}",
                         f"{r.get('label_bytes', data=row) / stored:.1%}",
                         f"{100 * statistics.mean(accs):.2f} ± {100 * sample_std(accs):.2f}", *cells])
    return section(
        "Demo: LPLD pruning against the adapter's bytes (validation split)",
        "in the demo's setting, at what bytes do pruned stored labels start to lose, against the adapter's bytes?",
        'python -m benchmarks.demo_recipe --pruning "int4, rank 4, 600 steps" --seeds 8 --threads 1',
        "; ".join(dict.fromkeys(machines)) + f" ({', '.join(link(p.name) for p in files)}).",
        [("On a candidate's run of the table above: students of its stored labels, of those labels pruned as LPLD "
          "prunes (whole batch files kept at random, one draw) to each fraction of the files, and of its distilled "
          "projector; tested on the validation images, paired per student seed, 95% t-interval over seeds."), "",
         *table(["candidate", "labels", "bytes", "of stored", "students %: mean ± std", "− stored labels",
                 "projector − this"], "llrrrll", body)],
        "an adapter beats pruning of its bytes only below the bytes where pruning's students fall off.")


def demo_recipe_line(recipe: dict | None) -> str:
    """A demo run's projector recipe in a few words: adapter dtype, LoRA rank(s), steps (runs before 0.2 did not
    record it)."""
    if recipe is None:
        return "unrecorded"
    ranks = "/".join(str(lora["rank"]) for lora in recipe.get("lora", []))
    return f"{recipe.get('adapter_dtype', '?')}, rank {ranks or '?'}, {recipe.get('steps', '?')} steps"


def demo_runs(results: Path) -> list[str]:
    files = sorted(p for p in results.glob(DEMO_RUN) if not p.match(DEMO_RECIPE) and not p.match(DEMO_PRUNING))
    if not files:
        return []
    body, test_images = [], set()
    for path in files:
        r = Result(results, path.name)
        test_images.add(r.get("test_images"))
        settings = r.get("settings")
        paired = {(r.get("a", data=d), r.get("b", data=d)): d for d in r.get("paired")}
        body.append([link(path.name), r.get("environment", "hello_labels"), machine_line(r.get("environment")),
                     f"{r.get('ipc', data=settings)} × {r.get('label_epochs', data=settings)}",
                     demo_recipe_line(r.data.get("recipe")), f"{r.get('teacher_accuracy'):.1%}",
                     f"{r.get('seconds'):.0f}",
                     *(difference(r, paired[pair]) if pair in paired else "—" for pair in DEMO_RUN_PAIRS)])
    return section(
        "Demo runs (test split)",
        "what does `hello-labels demo` report on each machine and commit it was run on?",
        "/usr/bin/time -v hello-labels demo --out /tmp/demo-run   # then copy OUT/demo.json to "
        "results/demo-<machine>-torch<version>-<commit>.json",
        "each row's own (CPU, threads, torch).",
        [(f"Each run from a fresh clone, 8 student seeds, tested on the demo's "
          f"{' or '.join(f'{n:,}' for n in sorted(test_images))} test images; "
          "paired per student seed, 95% t-interval over seeds, in points. Sizes: images per class × label epochs. "
          "Seconds: the demo's own clock, first stage to last. The README shows one of these runs."), "",
         *table(["run", "version", "machine", "sizes", "projector recipe", "teacher", "seconds",
                 *(f"{a} − {b}" for a, b in DEMO_RUN_PAIRS)], "lllllrrllll", body)],
        "the same code, seeds and thread count on one machine repeat every figure; another CPU moves each by its "
        "seed noise, so a target met on one machine is not met on another by right.")


# --- page --------------------------------------------------------------------------------------------------------

HISTORY = """## How the defaults were chosen

Each study below served one decision; a script or result no longer in the tree is in git at the commit named
beside it (`git show <commit>:<path>`). The whole former page: `git show 7f40ce5:BENCHMARKS.md`.

- **Base at 32 px** (Fashion-MNIST benchmark, demo): at 32 px the projector costs what the teacher costs and its
  students are level with the 64-px projector's (`benchmarks/frontier.py` and `results/frontier.png` at `2400c98`;
  results `fashion_mnist_ipc10_paths.json`, `throughput-cpu-frontier.json` at `7f40ce5`).
- **Distillation steps at IPC 50: 600 → 2,400 → 4,800 → 9,600**, each chosen on a validation split of the
  synthetic set (5 of 50 images per class held out), never on the test set; twice the steps fitted better than
  twice the LoRA rank or four times the head's rank (`benchmarks/distill_sweep.py`, results
  `distill-sweep-*-fashion-mnist-ipc50*.json`: in the tree, the sweep being in use).
- **`convert` steps**: at least one pass over every stored file and 300 views of each image, after one pass left
  IPC-50 conversions a point below their labels (`benchmarks/reconvert.py` at `2d45c04`, results
  `reconvert-ipc50*.json` at `7f40ce5`; in the demo's setting `benchmarks/convert_overfit.py` at `66d8472`).
- **`refine` is not a default**: its students were not above the unrefined images' at IPC 10 or 50
  (`fashion_mnist_ipc10_paths.json`, `fashion_mnist_ipc50_paths.json` at `7f40ce5`).
- **Quantized saves**: int8/4-bit copies first applied their head delta twice; fixed with a regression test in
  `e26abe7`, the rows re-measured from the cached float16 projectors (`benchmarks/fashion_mnist_quantized.py` at
  `2400c98`); int8/4-bit students in the demo's setting: `benchmarks/quantized_students.py` at `2400c98` (its result
  stays, [docs/storage.md](docs/storage.md)).
- **One-off timings** with no table here: drawing a crop and SRe2L's sampler order at ImageNet scale
  (`benchmarks/hot_paths.py` at `dce382b`); the SRe2L shim's per-batch overhead over a bare projector call
  (`benchmarks/shim_overhead.py` at `17cbe08`).
- **Fast path** (BatchNorm folded, "same" padding in the convolution, CLIP's attention pooling for one token,
  CPU batches in chunks that stay on malloc's heap): rounds measured on an Intel Xeon and an AMD EPYC, superseded
  by the table above (`throughput-cpu-imagenet-xeon*.json` in `1e8a7f9` and `6e9a3c2`,
  `throughput-cpu-imagenet.json` in `7f8c7b0`, `throughput-cpu.json` in `77d3065`, the round-3 rerun in
  `4e9c68a`; TorchScript freezing and inductor freezing smoke runs, not faster, in `c53082f`).
- **Online crop streams**: an online source's student seed s draws crop stream s since `3a78bec` (before, every
  seed drew stream 0, so no number of seeds averaged the stream out); the same-views harness
  (`benchmarks/same_views.py`) separates labels from crop streams.
- **Stage records**: every benchmark stage is cached with the code version, settings, input digests and machine
  fields that made it, so a stale cache is recomputed (`benchmarks/stages.py`).
"""


def render(results: Path = RESULTS) -> str:
    sections: list[Callable[[Path], list[str]]] = [label_sources, equal_bytes, one_recipe, mix_and_selection,
                                                    same_views, throughput,
                                                    storage, scale, reproduce, demo_runs, demo_recipe,
                                                    demo_pruning]
    parts = [s(results) for s in sections]
    titles = [p[0][3:] for p in parts if p]
    contents = []
    for title in titles:
        slug = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_").replace(" ", "-")
        contents.append(f"- [{title}](#{slug})")
    head = ["# Benchmarks", "",
            ("Generated by `python -m benchmarks report` from the result files in "
            "[benchmarks/results/](benchmarks/results/) (named `<benchmark>-<machine>-torch<version>[-<config>]`); "
            "`tests/test_benchmarks_report.py` checks this page equals that output, so edit "
            "`benchmarks/report.py`, not this page. Spreads: standard deviations are sample stds (n−1); paired "
            "differences carry a 95% t-interval; timings carry the interquartile range of paired per-round ratios. "
            "No pretrained CLIP could be downloaded where these ran: the pretrained base is EfficientNet-Lite0, and "
            "open_clip bases are timed with random weights."), "", *contents, ("- [How the defaults were chosen]"
            "(#how-the-defaults-were-chosen)"), ""]
    return "\n".join(head + [line for p in parts for line in p] + [HISTORY.rstrip("\n")]) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--write", action="store_true", help=f"write {PAGE.name} instead of printing it")
    p.add_argument("--check", action="store_true", help=f"exit 1 if {PAGE.name} differs from the output")
    args = p.parse_args(argv)
    try:
        text = render(args.results)
    except ResultFieldError as e:
        sys.exit(f"error: {e}")
    if args.write:
        PAGE.write_text(text)
    elif args.check:
        sys.exit(0 if PAGE.read_text() == text else f"{PAGE.name} differs from `python -m benchmarks report`")
    else:
        sys.stdout.write(text)
