"""Label sources on the same views: students of stored labels and of models that label those labels' own crops,
flips and CutMix boxes online, so that two students of one stream differ by their labels alone.

    python -m benchmarks.same_views benchmarks/work/pipeline-0 --ipc 50 --student-epochs 100 --streams 0 1 2 3 \\
        --json benchmarks/results/same-views-xeon-torch2.14.1-fashion-mnist-ipc50.json
    python -m benchmarks.same_views --summary benchmarks/results/same-views-xeon-torch2.14.1-fashion-mnist-ipc50.json

In the benchmark the online sources (teacher online, projectors) draw fresh crops (stream ``s`` for student seed
``s``; before, stream 0 for every seed) while the stored labels replay the one stream of their files, so a
projector-minus-stored difference holds a draw of two crop streams, which student seeds average out only on the
online side (``--online-views stored`` removes it there). Here stream ``s`` is a label directory exported from
the pipeline's teacher with crop seed ``s`` (stream 0: the pipeline's own ``labels``), and every source replays
it: the stored logits, the teacher run again on those views (the control: it differs from the stored labels by
their float16 rounding only) and each projector (``--projectors``: folders of the pipeline). The students of
stream ``s`` start from seed ``s``; the student is the benchmark's. ``--pruned-like P`` adds LPLD pruning of the
stream's files at the bytes of projector ``P``'s adapter (:func:`keep_at_bytes`). Reads the pipeline's cached files
only; appends each student to ``--json`` as it finishes (a rerun trains only what is missing).
``--fresh`` adds each model run online as the benchmark runs it, on fresh crops, flips and CutMix drawn from seed
``s`` (stream 0: the benchmark's own online stream): paired with the same model on the stored views it
isolates what fresh views do, paired with the stored labels it is the benchmark's comparison, crop-stream draw
included. ``--fit N`` records instead how each projector's logits match the stored ones on the first N batch files
of each stream (mixed views, as the students see them): :func:`fit`. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hello_labels.demo.paired import describe, paired_differences
from hello_labels.files import atomic_write_json
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import PrunedTargets, StoredTargets, TeacherTargets
from hello_labels.model.directory import ADAPTER_FILE
from hello_labels.storage import storage_report
from hello_labels.train.evaluate import collect, kl_at

from . import label_sources as bench
from .label_sources import OnStoredViews

STORED = "full stored labels"
FRESH = "online, fresh crops"


def stream_labels(work: Path, args, teacher, synthetic, stream: int) -> LabelDir:
    """Stream ``stream``'s label directory: the pipeline's own for 0, else exported as the benchmark exports its
    labels (:func:`benchmarks.label_sources.export_labels`) with crop seed ``stream``."""
    if stream == 0:
        return LabelDir.scan(work / "labels")
    return bench.export_labels(teacher, synthetic, work / f"labels-stream-{stream}", args, stream)


def keep_at_bytes(labels: LabelDir, nbytes: int) -> float:
    """The keep fraction at which LPLD pruning of ``labels`` (whole batch files, as the benchmark's storage report
    counts them) holds ``nbytes``, to the nearest file and at least one."""
    full = storage_report(labels=str(labels.path), top_k=1, keep_ratio=1.0, teacher=None)
    per_file = full.row("full stored labels (SRe2L)").bytes / labels.total_files
    return max(1, round(nbytes / per_file)) / labels.total_files


def labeller(model):
    """What labels with ``model``: a projector's inference engine (:meth:`LabelProjector.for_labels`), or a
    teacher itself."""
    return model.for_labels() if hasattr(model, "for_labels") else model


def fit(projector, images, labels: LabelDir, files: int, temperature: float) -> dict:
    """How ``projector``'s logits match the stored ones on the views of the first ``files`` batch files (mixed, as
    students see them): agreement, KL at ``temperature``, the least-squares scale of its class-centred logits onto
    the stored ones, their correlation and residual std, and the largest per-class mean offset."""
    stored = StoredTargets(images, labels)
    logits, target, _ = collect(projector, stored, list(stored.plans(0, files)))
    z, t = (x.double() - x.double().mean(-1, keepdim=True) for x in (logits, target))
    return {"views": len(z), "agreement": float((logits.argmax(-1) == target.argmax(-1)).float().mean()),
            "kl": float(kl_at(logits, target, temperature).mean()), "scale": float((z * t).sum() / (z * z).sum()),
            "correlation": float((z * t).sum() / ((z * z).sum() * (t * t).sum()).sqrt()),
            "residual_std": float((z - t).std()), "class_offset": float((z - t).mean(0).abs().max())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.pipeline_args(p)
    p.add_argument("--summary", type=Path, nargs="+", help="instead: print each source minus the stored labels, "
                   "stream by stream, with a 95%% t-interval over streams")
    p.add_argument("--baseline", default=STORED, help="with --summary: the source the others are paired against "
                   f"(default: {STORED!r})")
    p.add_argument("--streams", type=int, nargs="+", help="crop streams to train on (default: 0); with --summary: "
                   "the streams to pair over (default: all)")
    p.add_argument("--projectors", nargs="*", default=["projector-effnet"],
                   help="projector folders of the pipeline's ipc folder")
    p.add_argument("--pruned-like", nargs="*", default=[], metavar="PROJECTOR",
                   help="also students of LPLD-pruned stored labels (a random share of the stream's batch files, "
                   "cycled) holding as many bytes as each of these projector folders' adapter")
    p.add_argument("--fresh", action="store_true", help="also each model online on fresh crops seeded by the "
                   "stream number, as the benchmark's online sources draw them (stream s for student seed s)")
    p.add_argument("--fit", type=int, default=0, metavar="FILES", help="instead of students: each projector's fit to "
                   "the stored logits on this many batch files of each stream")
    cli = p.parse_args(argv)
    if cli.summary:
        rows = [row for path in cli.summary for row in json.loads(path.read_text())]
        return print(summary([r for r in rows if r["stream"] in cli.streams] if cli.streams else rows, cli.baseline))
    if cli.pipeline is None:
        p.error("a pipeline folder (or --summary) is needed")
    args, work, seed, synthetic, teacher, test = bench.cached_pipeline(cli.pipeline, bench.pipeline_argv(cli),
                                                                       cli.threads)
    images = bench.student_views(synthetic, args)
    models = {"teacher": teacher} | {name: bench.load_projector(work / name) for name in cli.projectors}
    rows = json.loads(cli.json.read_text()) if cli.json and cli.json.is_file() else []
    done = {(r["pipeline"], r["stream"], r["source"], "fit" in r) for r in rows}
    adapter_bytes = {name: (work / name / ADAPTER_FILE).stat().st_size for name in cli.pruned_like}
    keeps = {}  # pruned sources' keep fractions, recorded with their students
    for stream in cli.streams or [0]:
        labels = stream_labels(work, args, teacher, synthetic, stream)
        if cli.fit:
            sources = {name: lambda m=models[name]: fit(m, images, labels, cli.fit, args.temperature)
                       for name in cli.projectors}
        else:
            sources = {STORED: lambda: StoredTargets(images, labels)}
            sources |= {f"{name} on the stored views": (lambda m=model: OnStoredViews(images, labels, labeller(m)))
                        for name, model in models.items()}
            if cli.fresh:
                sources |= {f"{name} {FRESH}": (lambda m=model, s=stream: TeacherTargets(images, labeller(m), seed=s))
                            for name, model in models.items()}
            for name in cli.pruned_like:
                keep = keep_at_bytes(labels, adapter_bytes[name])
                source = f"pruned stored labels at the bytes of {name}"
                sources[source] = lambda k=keep: PrunedTargets(images, labels, k, seed=stream)
                keeps[source] = keep
        for source, make in sources.items():
            if (seed, stream, source, bool(cli.fit)) in done:
                continue
            row = {"pipeline": seed, "ipc": cli.ipc, "stream": stream, "source": source}
            if source in keeps:
                row["keep"] = keeps[source]
            if cli.fit:
                row["fit"] = make()
            else:
                row |= bench.train_one_student(images, make, args.student_epochs * labels.batches_per_epoch, stream,
                                               args, test)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_class"}), flush=True)
            if cli.json:
                atomic_write_json(cli.json, rows)


def summary(rows, baseline: str = STORED) -> str:
    """Per pipeline, each source minus ``baseline`` (the stored labels) over the streams both have (paired: same
    views, same initial student), with the 95% t-interval over streams; with several pipelines, then each source
    over every (pipeline, stream) pair both have."""
    acc = {}
    for r in rows:
        if "accuracy" in r:  # students (not --fit rows)
            acc.setdefault(r["source"], {})[(r["pipeline"], r["stream"])] = r["accuracy"]
    pipelines = sorted({p for by_key in acc.values() for p, _ in by_key})
    lines = []
    for group in [[p] for p in pipelines] + ([pipelines] if len(pipelines) > 1 else []):
        for source in sorted(set(acc) - {baseline}):
            keys = sorted(k for k in set(acc[source]) & set(acc.get(baseline, {})) if k[0] in group)
            if not keys or (len(group) > 1 and len({p for p, _ in keys}) < 2):  # pooled: two pipelines at least
                continue
            d = paired_differences({"a": [acc[source][k] for k in keys], "b": [acc[baseline][k] for k in keys]},
                                   [("a", "b")])[0]
            per = ", ".join(f"{100 * x:+.2f}" for x in d["per_seed"])
            described = describe(d | {"a": source, "b": baseline}, digits=2)
            where = (f"pipeline {group[0]}, streams {[s for _, s in keys]}" if len(group) == 1 else
                     f"pipelines {group}, {len(keys)} (pipeline, stream) pairs")
            lines.append(f"{where}: {described} (per {'stream' if len(group) == 1 else 'pair'} {per})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
