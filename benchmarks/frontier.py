"""The cost/fidelity frontier: the Fashion-MNIST projector's base at several resolutions, its labels' cost against
its students' accuracy, beside the teacher online.

    python -m benchmarks.fashion_mnist_bench ... --projectors effnet effnet@48px effnet@32px --name NAME
    python -m benchmarks.throughput --setting fashion-mnist --effnet-size 32 48 64 --batch-size 50 --threads 1 \\
        --json benchmarks/results/throughput-epyc-torch2.14.1-fashion-mnist.json
    python -m benchmarks.frontier \\
        benchmarks/results/NAME.json benchmarks/results/throughput-epyc-torch2.14.1-fashion-mnist.json \\
        --png benchmarks/results/frontier.png

Per resolution: the label cost of one student batch (the throughput run: the fast path's median ms per batch and
its paired cost against the ResNet-20 teacher in its faster layout), the label cost per student step inside the
benchmark's students (seconds per step minus the hard-label students', mean over pipelines), agreement and KL
with the teacher, and the students' accuracy with its paired difference from the reference projector (the base
at the benchmark's ``--effnet-size``) in each pipeline. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .paired import paired

TEACHER = "teacher online (RDED)"


def sizes(results: dict) -> dict:
    """``{source name: base resolution}`` of the effnet projectors in a results file."""
    from .label_sources import PROJECTORS

    default = results["settings"]["effnet_size"]
    found = {}
    for name in (r["source"] for r in results["rows"]):
        key = name.removeprefix("projector ")
        if name.startswith("projector ") and key in PROJECTORS and PROJECTORS[key][:3] == PROJECTORS["effnet"][:3]:
            found[name] = PROJECTORS[key][3].get("effnet_size", default)
    return found


def frontier(results: dict, throughput: dict) -> list:
    """One row per resolution (and the teacher online): the figures of the module docstring."""
    runs, rows = results["runs"], {r["source"]: r for r in results["rows"]}
    by_size = sizes(results)
    reference = next(n for n, s in by_size.items() if s == results["settings"]["effnet_size"])
    bases = throughput["settings"]["fashion-mnist"]["bases"]
    teacher_ms = next(r["ms_per_batch"]["median"] for r in throughput["settings"]["fashion-mnist"]["rows"]
                      if r["role"] == "teacher")
    out = []
    for name in [*sorted(by_size, key=by_size.get), TEACHER]:
        row = rows[name]
        timed = bases.get(f"EfficientNet-Lite0 @{by_size[name]}") if name in by_size else None
        fast = next((r for r in throughput["settings"]["fashion-mnist"]["rows"]
                     if timed and r["role"] == "fast" and r["base"] == f"EfficientNet-Lite0 @{by_size[name]}"), None)
        diff = paired(runs, name, reference) if name != reference else None
        out.append({"source": name, "size": by_size.get(name),
                    "ms_per_batch": fast["ms_per_batch"]["median"] if fast else teacher_ms,
                    "cost_x_teacher": timed["cost_x_teacher"]["fast"]["best_layout"]["paired"] if timed else None,
                    "label_ms_per_step": row["label_ms_per_step"], "agreement": row["agreement"], "kl": row["kl"],
                    "acc_mean": row["acc_mean"], "pipelines": row["pipelines"],
                    "vs_reference": diff and {"per_pipeline": diff["per_pipeline"], "mean": diff["mean"]}})
    return out


def table(rows: list, reference: str) -> str:
    lines = ["| label source | base px | ms per batch of 50 (× teacher, paired median [IQR]) | label ms per student "
             "step | agreement, KL | student acc | − " + reference + ", per pipeline (mean) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        cost = r["cost_x_teacher"]
        times = f"{r['ms_per_batch']:.1f}" + (f" ({cost['median']:.2f}× [{cost['p25']:.2f}, {cost['p75']:.2f}])"
                                               if cost else "")
        fid = f"{r['agreement']:.1%}, {r['kl']:.3f}" if r["agreement"] is not None else "—"
        diff = r["vs_reference"]
        vs = "—" if not diff else (", ".join(f"{100 * d:+.2f}" for d in diff["per_pipeline"].values()) +
                                   f" ({100 * diff['mean']:+.2f})")
        step = f"+{r['label_ms_per_step']:.1f}" if r["label_ms_per_step"] is not None else "—"
        lines.append(f"| {r['source']} | {r['size'] or '—'} | {times} | {step} | {fid} | "
                     f"{r['acc_mean']:.2%} ({r['pipelines']} pipelines) | {vs} |")
    return "\n".join(lines)


def plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        marker = "s" if r["size"] is None else "o"
        ax.scatter(r["label_ms_per_step"], 100 * r["acc_mean"], marker=marker)
        ax.annotate(r["source"].removeprefix("projector "), (r["label_ms_per_step"], 100 * r["acc_mean"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("label cost per student step (ms, inside the students' loop)")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title("Fashion-MNIST IPC 10: cost vs fidelity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("throughput", type=Path)
    p.add_argument("--png", type=Path)
    args = p.parse_args(argv)
    results, throughput = json.loads(args.results.read_text()), json.loads(args.throughput.read_text())
    rows = frontier(results, throughput)
    reference = next(r["source"] for r in rows if r["size"] == results["settings"]["effnet_size"])
    print(table(rows, reference))
    if args.png:
        plot(rows, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
