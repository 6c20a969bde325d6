"""Per-batch overhead of the SRe2L shim (``ProjectorLabels``) over a bare ``projector(images)`` call.

    python -m benchmarks.shim_overhead                       # CPU, batch 64 at 32 px, the shipped tiny ViT base
    python -m benchmarks.shim_overhead --device cuda --batch-size 256 --size 224

The base is the package's tiny open_clip ViT config (random init; no download, no EfficientNet). The loader hands
over ready batches (``images, target, flip, coords``) from memory, so the shim's own work is what is timed: drawing
the mix parameters, mixing, the device copy and the call. Each round times one bare call and one shim batch,
alternating which goes first, after ``--warmup`` rounds; reported: median and interquartile range of each, and of
the per-round difference (shim - bare). Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import torch

from hello_labels import LabelProjector
from hello_labels.adapters.sre2l import ProjectorLabels


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(values):
    q1, med, q3 = np.percentile(np.asarray(values) * 1e3, [25, 50, 75])
    return f"{med:8.3f} ms  (IQR {q1:.3f}-{q3:.3f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--mix-type", choices=["cutmix", "mixup", "none"], default="cutmix")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    projector = LabelProjector.from_base("hello-labels:tiny-clip-vit",
                                         class_names=[f"class {i}" for i in range(args.classes)],
                                         templates="simple").to(device).merge().eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(args.batch_size, 3, args.size, args.size, generator=gen),
             torch.randint(args.classes, (args.batch_size,), generator=gen),
             torch.zeros(args.batch_size, dtype=torch.bool), torch.rand(args.batch_size, 4, generator=gen))
    shim = ProjectorLabels(projector, SimpleNamespace(mix_type=None if args.mix_type == "none" else args.mix_type),
                           [batch])

    def bare():
        with torch.no_grad():
            projector(batch[0].to(device))
        _sync(device)

    def shimmed():
        for out in shim:
            pass
        _sync(device)

    times = {"bare": [], "shim": []}
    for round_ in range(args.warmup + args.rounds):
        order = [("bare", bare), ("shim", shimmed)][:: 1 if round_ % 2 else -1]
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    diff = np.asarray(times["shim"]) - np.asarray(times["bare"])
    print(f"device {device}, batch {args.batch_size} x 3 x {args.size} x {args.size}, {args.mix_type}, "
          f"{args.rounds} rounds, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"bare projector(images)   {_stats(times['bare'])}")
    print(f"ProjectorLabels batch    {_stats(times['shim'])}")
    print(f"overhead (paired)        {_stats(diff)}")
    print(f"overhead / bare (median) {np.median(diff) / np.median(times['bare']):+.1%}")


if __name__ == "__main__":
    main()
