"""Hot paths of label replay and export: drawing one crop, and SRe2L's sampler order at ImageNet scale.

    python -m benchmarks.hot_paths                       # ~1 min on 2 CPU cores
    python -m benchmarks.hot_paths --images 50000 --batch-size 100 --epochs 300 --crops 20000

- ``crop``: ``draw_crop`` (RandomResizedCrop parameters + flip from a per-crop seed) on a 375x500 image, median of
  ``--rounds`` rounds of ``--crops`` calls, in microseconds per crop.
- ``sampler``: ``LabelDir.image_order(e, b)`` for every batch file of every epoch, as convert replays a label
  directory (``--images`` images, ``--batch-size``, ``--epochs``): wall time of the first call and of the whole
  pass, the peak of Python allocations (tracemalloc, a separate run) and the peak RSS increase. Each measurement
  runs in a fresh subprocess so no cache carries over.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path


def _crop(args) -> dict:
    import torch

    from hello_labels.labels.augment import draw_crop

    torch.set_num_threads(1)
    image = torch.empty(3, 375, 500)
    times = []
    for r in range(args.rounds):
        start = time.perf_counter()
        for k in range(args.crops):
            draw_crop(image, (0.08, 1.0), (3 / 4, 4 / 3), r * args.crops + k)
        times.append((time.perf_counter() - start) / args.crops * 1e6)
    return {"us_per_crop_median": statistics.median(times), "us_per_crop_all": times}


def _sampler(args, trace: bool) -> dict:
    import torch

    from hello_labels.labels.fkd import LabelDir

    torch.set_num_threads(1)
    batches = -(-args.images // args.batch_size)
    info = LabelDir(Path("unused"), args.epochs, batches, args.batch_size, args.images, 1000, torch.float16)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    info.image_order(0, 0)
    first = time.perf_counter() - start
    total = 0
    for e in range(args.epochs):
        for b in range(batches):
            total += len(info.image_order(e, b))
    whole = time.perf_counter() - start
    assert total == args.images * args.epochs
    out = {"first_call_s": first, "all_files_s": whole,
           "peak_rss_increase_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}
    if trace:
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2 ** 20
    return out


def _child(what: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.hot_paths", "--child", what, "--images", str(args.images),
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--crops", str(args.crops),
           "--rounds", str(args.rounds)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--crops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=["crop", "sampler", "sampler-trace"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = {"crop": lambda: _crop(args), "sampler": lambda: _sampler(args, False),
                  "sampler-trace": lambda: _sampler(args, True)}[args.child]()
        print(json.dumps(result))
        return 0
    crop, sampler, traced = _child("crop", args), _child("sampler", args), _child("sampler-trace", args)
    print(f"draw_crop: {crop['us_per_crop_median']:.1f} us/crop (median of {args.rounds} x {args.crops})")
    print(f"sampler order, {args.images:,} images x {args.epochs} epochs, batch {args.batch_size}: first call "
          f"{sampler['first_call_s']:.2f} s, all {args.epochs * -(-args.images // args.batch_size):,} files "
          f"{sampler['all_files_s']:.2f} s, peak RSS +{sampler['peak_rss_increase_mib']:.0f} MiB, "
          f"tracemalloc peak {traced['tracemalloc_peak_mib']:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
