"""Label generation throughput (images/s): the teacher, the bare base, and the projector unmerged, merged and on
its fast path, in both memory layouts.

    pip install -e ".[bench]"        # EfficientNet-Lite0 for the fashion-mnist setting
    python -m benchmarks.throughput --json benchmarks/results/throughput-cpu.json                 # CPU, both settings
    python -m benchmarks.throughput --device cuda --dtype bfloat16 --compile \\
        --json benchmarks/results/throughput-cuda-bf16-compile.json                               # a GPU, if any

Settings (``--setting``, default all):

- ``fashion-mnist``: ResNet-20 teacher on ``[B, 1, 28, 28]``; EfficientNet-Lite0 (ImageNet weights, custom-module
  base) at ``--effnet-size`` (32, as in the Fashion-MNIST benchmark; several sizes: a base each), 10 classes.
- ``imagenet``: torchvision ResNet-18 teacher on ``[B, 3, 224, 224]``; the shipped
  ``hello-labels:efficientnet-lite0`` (ImageNet weights) and open_clip ``RN50`` and ``ViT-B-32`` bases (random
  init: speed does not depend on the weights' values) (``--imagenet-bases``), 1000 classes.

Rows: what labelling one batch costs with each label source.

- teacher: the teacher's forward, in the default (contiguous) layout and in ``channels_last`` (module and input),
  so the projector is compared with the teacher in its own best layout too; on the CPU (eager) also in
  ``channels_last`` and in chunks, split as the fast path splits a batch (below), so the projector gets nothing
  the teacher does not.
- bare base: the projector's own forward (input conversion -> encoder -> L2-normalise -> ``exp(s) * F.linear + b``)
  with every parametrization removed and the original weights left as plain parameters. Same input conversion,
  same head matmul, same code: ``merged / bare base`` measures only what LoRA leaves behind after ``merge()``,
  and ``unmerged / bare base`` what the parametrizations cost.
- projector, unmerged: LoRA as parametrizations (``W + B @ A`` recomputed on every forward), as while training.
- projector, merged: ``projector(images)`` after ``projector.merge()``: the merged modules themselves, the same
  operations as the bare base.
- projector, fast path: the engine ``projector.for_labels()`` builds, as in the shims, ``export-fkd``, ``eval``
  and ``refine`` (:mod:`hello_labels.model.fastpath`: BatchNorm folded, the head as one matmul, ``channels_last``
  for convolutional bases, on the CPU a batch split into chunks whose tensors stay at most
  ``fastpath.CHUNK_BYTES``), the same in the other layout, and on the CPU (eager) the same in whole batches
  (``chunk_bytes=0``). Its autocast is that of ``--dtype`` (so a float32 run on CUDA stays float32); with
  ``--compile`` it is compiled by its own ``compile`` option (and not split).

The three are built separately from the same seeds (same weights). Their LoRA ``B`` matrices are set to small
random values (they start at zero) so that merged and unmerged logits can be compared; the check is reported.

Each timed run is one forward of one batch under ``torch.inference_mode()`` (and ``torch.autocast`` for
``--dtype bfloat16``), synchronised on CUDA. After ``--warmup`` rounds (the first call's time, compilation included,
is reported; with ``--compile`` the bare and merged projectors are the same graph, so the second of them compiles
almost nothing), ``--repeats`` rounds each run every row once, round-robin with a rotating start, so drift of the
machine (other processes, clocks) hits all rows alike. images/s is ``batch / seconds``: the table gives the median,
the interquartile range and min-max over repeats; ratios are of the medians, with the per-repeat (paired) ratio's
median and IQR beside them. Costs against the teacher (``cost x teacher``: seconds per batch over the teacher's,
paired per repeat) are given against the fastest teacher row (by median; the JSON keeps the key ``best_layout``)
and against the contiguous teacher. Speed
targets are read from this report, never asserted in tests.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from hello_labels import LabelProjector, __version__
from hello_labels.files import atomic_write_json
from hello_labels.model.fastpath import CHUNK_BYTES, Chunker, FastProjector, autocast_dtype
from hello_labels.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from hello_labels.runs import cpu_model

from .machine import env_vars

try:
    import resource  # Unix: page faults per timed call
except ImportError:  # pragma: no cover - Windows
    resource = None

SETTINGS = ("fashion-mnist", "imagenet")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TARGET = 0.03  # the target: merged projector within +-3% of the bare base
FASHION_MEAN, FASHION_STD = (0.286,), (0.353,)
ROOT = Path(__file__).resolve().parents[1]
TEACHER_ROLES = ("teacher", "teacher_cl", "teacher_chunks")


@dataclass
class Row:
    """One label source to time: ``role`` is one of :data:`TEACHER_ROLES` or bare / unmerged / merged / fast /
    fast_alt / fast_whole; ``base`` groups a base's rows."""

    name: str
    role: str
    module: nn.Module
    base: Optional[str] = None
    fn: Optional[Callable] = None
    first_call_s: Optional[float] = None
    seconds: List[float] = field(default_factory=list)
    chunks: int = 1  # how many parts the timed batch ran in
    page_faults: List[int] = field(default_factory=list)  # minor page faults per call, warm-up calls included


@dataclass
class Setting:
    """One benchmark setting: its teacher, the input it times, and the projector bases to compare."""

    name: str
    teacher: Row
    input_shape: Sequence[int]  # [C, H, W] the teacher and the projector receive
    num_classes: int
    bases: Dict[str, Callable[[], LabelProjector]]  # label -> builds a fresh projector (adapter at init)
    mean: Sequence[float] = IMAGENET_MEAN  # the inputs' normalisation (the timed batch is normalised pixels)
    std: Sequence[float] = IMAGENET_STD


# ---------------------------------------------------------------------------------------------------- settings
def fashion_mnist(args) -> Setting:
    from . import effnet
    from .fashion_mnist import CLASSES
    from .models import resnet20

    def build(size: int) -> LabelProjector:
        return LabelProjector.from_base(
            effnet.efficientnet_lite0(), base_mean=effnet.MEAN, base_std=effnet.STD,
            base_image_size=size, base_factory=effnet.FACTORY, class_names=CLASSES, head_init="zero",
            input_mean=FASHION_MEAN, input_std=FASHION_STD, input_channels=1, head_rank=8)

    return Setting("fashion-mnist", Row("teacher: ResNet-20", "teacher", resnet20(len(CLASSES))), (1, 28, 28),
                   len(CLASSES), {f"EfficientNet-Lite0 @{s}": (lambda s=s: build(s)) for s in args.effnet_size},
                   FASHION_MEAN, FASHION_STD)


def imagenet(args) -> Setting:
    import torchvision

    bases = {name: (lambda name=name: LabelProjector.from_base(name, class_names="imagenet", head_init="zero"))
             for name in args.imagenet_bases}  # head_init zero: no text tower needed; speed is the same
    size = args.imagenet_size
    return Setting("imagenet", Row("teacher: ResNet-18", "teacher", torchvision.models.resnet18()), (3, size, size),
                   1000, bases)


BUILDERS = {"fashion-mnist": fashion_mnist, "imagenet": imagenet}


def pixels(batch: int, setting: Setting, gen: torch.Generator) -> torch.Tensor:
    """A batch as the label sources receive one: uniform pixels in [0, 1], normalised with the setting's mean/std
    (what a projector's input range check accepts; standard normal values can fall outside it)."""
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (setting.mean, setting.std))
    return (torch.rand(batch, *setting.input_shape, generator=gen) - mean) / std


# ---------------------------------------------------------------------------------------------------- variants
def randomise_adapter(projector: LabelProjector, seed: int = 0, std: float = 0.01) -> None:
    """Set every LoRA ``B`` (zero at init) to seeded ``N(0, std^2)``: a non-trivial delta (about 1% of a conv
    weight) so that merged and unmerged outputs can be compared. Speed does not depend on the values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in projector.adapter_state_dict().items():
            if name.endswith(".lora_B"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * std)


def strip_lora(projector: LabelProjector) -> LabelProjector:
    """Remove every parametrization, keeping the original (un-adapted) weights: the bare base's cost."""
    for module in list(projector.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    return projector


def is_plain(module: nn.Module) -> bool:
    return not any(parametrize.is_parametrized(m) for m in module.modules())


def chunked_rows(args) -> bool:
    """Whether the rows that split batches run: on the CPU, eager (the fast path splits only there)."""
    return not args.compile and torch.device(args.device).type == "cpu"


def base_rows(label: str, build: Callable[[], LabelProjector], args) -> List[Row]:
    """Bare base, unmerged, merged and fast-path projectors (the fast path in both layouts, and on the CPU in
    whole batches too), built three times
    (bases and adapters are seeded, so the weights are the same). Not ``copy.deepcopy``: a copy shares torch's
    generated ``Parametrized*`` classes with its original, and merging one removes the weight property from both.
    The fast rows are engines built by ``merged.for_labels()`` (copies: the merged row stays as it is)."""
    projector, merged, bare = build(), build(), build()
    randomise_adapter(projector)
    randomise_adapter(merged)
    merged.merge()
    strip_lora(bare)
    if projector.merged or is_plain(projector) or not is_plain(merged) or not is_plain(bare):
        raise RuntimeError("internal: the unmerged/merged/bare variants are not what they claim")
    options = dict(autocast="bfloat16" if args.dtype == "bfloat16" else False,
                   compile={"mode": args.compile_mode, "backend": args.compile_backend} if args.compile else False)
    fast = merged.for_labels(**options)
    other = merged.for_labels(**options, channels_last=not fast.channels_last)
    layout = {True: "channels_last", False: "contiguous"}
    rows = [Row(f"{label}: bare base", "bare", bare, label),
            Row(f"{label}: projector, unmerged", "unmerged", projector, label),
            Row(f"{label}: projector, merged", "merged", merged, label),
            Row(f"{label}: fast path ({layout[fast.channels_last]})", "fast", fast, label),
            Row(f"{label}: fast path ({layout[other.channels_last]})", "fast_alt", other, label)]
    if chunked_rows(args):
        whole = merged.for_labels(**options, chunk_bytes=0)
        name = f"{label}: fast path ({layout[fast.channels_last]}), whole batches"
        rows.append(Row(name, "fast_whole", whole, label))
    return rows


class ChannelsLast(nn.Module):
    """``module`` (converted) fed ``channels_last`` input: a teacher in that layout."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.contiguous(memory_format=torch.channels_last))


def chunks_of(module: nn.Module, x: torch.Tensor, dtype: str) -> int:
    """How many parts ``module`` splits the batch ``x`` into (after it has run on that shape)."""
    if isinstance(module, FastProjector):
        with torch.inference_mode(), precision(x.device, dtype):
            return module.chunks(x.shape[0], module.inputs(x), autocast_dtype(module.autocast, x.device))
    if isinstance(module, InChunks):
        return module.chunker.count(module.module, x.shape[0], x)
    return 1


class InChunks(nn.Module):
    """``module`` run on a CPU batch in chunks by the fast path's own :class:`Chunker` (same limit): the teacher
    given what the projector gets."""

    def __init__(self, module: nn.Module, limit: int = CHUNK_BYTES):
        super().__init__()
        self.module, self.chunker = module, Chunker(limit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chunker(self.module, self.module, x)


def teacher_rows(teacher: Row, args) -> List[Row]:
    """The teacher in the default layout and in ``channels_last``, and on the CPU (eager) also in
    ``channels_last`` and in chunks as the fast path splits a batch."""
    rows = [teacher, Row(f"{teacher.name}, channels_last", "teacher_cl", ChannelsLast(teacher.module))]
    if chunked_rows(args):
        rows.append(Row(f"{teacher.name}, channels_last, in chunks", "teacher_chunks",
                        InChunks(ChannelsLast(teacher.module))))
    return rows


# ---------------------------------------------------------------------------------------------------- timing
def precision(device: torch.device, dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def minor_faults() -> Optional[int]:
    """Minor page faults of this process so far (first touches of fresh pages), where the OS counts them."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else None


def timed(fn: Callable, x: torch.Tensor, device: torch.device, row: Row) -> float:
    """Seconds one call of ``fn(x)`` takes; its page faults are appended to ``row.page_faults``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    faults, start = minor_faults(), time.perf_counter()
    fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if faults is not None:
        row.page_faults.append(minor_faults() - faults)
    return seconds


def measure(rows: List[Row], x: torch.Tensor, device: torch.device, dtype: str, warmup: int, repeats: int) -> None:
    """Fill each row's ``first_call_s`` and ``seconds`` (one per repeat), round-robin with a rotating start."""
    with torch.inference_mode(), precision(device, dtype):
        for w in range(warmup):
            for row in rows:
                seconds = timed(row.fn, x, device, row)
                if w == 0:
                    row.first_call_s = seconds
        gc.collect()
        gc.disable()  # a collection inside one timed run would charge it to that row only
        try:
            for r in range(repeats):
                k = r % len(rows)
                for row in rows[k:] + rows[:k]:
                    row.seconds.append(timed(row.fn, x, device, row))
        finally:
            gc.enable()


def merge_check(rows: List[Row], x: torch.Tensor, device: torch.device, dtype: str) -> dict:
    """Max |merged - unmerged| logit difference per base (eager, on two images), with max |logit| for scale,
    max |merged - bare| (non-zero: the adapter does change the labels) and max |fast path - unmerged| (both
    layouts; uncompiled: the compiled copy is compiled when timed), and on the CPU max |fast path - the same in
    whole batches| over the whole batch (what splitting it changes)."""
    out = {}
    with torch.inference_mode(), precision(device, dtype):
        for label in dict.fromkeys(r.base for r in rows if r.base):
            by_role = {r.role: r.module for r in rows if r.base == label}
            logits = {role: by_role[role](x[:2]).float() for role in ("bare", "unmerged", "merged")}
            for role in ("fast", "fast_alt"):
                logits[role] = by_role[role].body(by_role[role].inputs(x[:2])).float()
            out[label] = {"max_abs_diff": float((logits["merged"] - logits["unmerged"]).abs().max()),
                          "max_abs_diff_bare": float((logits["merged"] - logits["bare"]).abs().max()),
                          "max_abs_diff_fast": max(float((logits[r] - logits["unmerged"]).abs().max())
                                                   for r in ("fast", "fast_alt")),
                          "batchnorm_folded": by_role["fast"].folded,
                          "max_abs_diff_chunks": (float((by_role["fast"](x) - by_role["fast_whole"](x)).abs().max())
                                                  if "fast_whole" in by_role else None),
                          "max_abs_logit": float(logits["unmerged"].abs().max())}
    return out


# ---------------------------------------------------------------------------------------------------- statistics
def spread(values: Sequence[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)), "p75": float(np.percentile(a, 75)),
            "min": float(a.min()), "max": float(a.max())}


def ratio(num: Row, den: Row, batch: int) -> dict:
    """``num / den`` in images/s: the ratio of medians, and the per-repeat (paired) ratios' spread."""
    paired = [d / n for n, d in zip(num.seconds, den.seconds)]
    medians = spread([batch / s for s in num.seconds])["median"] / spread([batch / s for s in den.seconds])["median"]
    return {"of_medians": medians, "paired": spread(paired)}


def summarise(setting: Setting, rows: List[Row], batch: int, check: dict) -> dict:
    out_rows = []
    for row in rows:
        out_rows.append({"name": row.name, "role": row.role, "base": row.base,
                         "images_per_s": spread([batch / s for s in row.seconds]),
                         "ms_per_batch": spread([1e3 * s for s in row.seconds]),
                         "first_call_s": row.first_call_s, "seconds": row.seconds, "chunks": row.chunks,
                         "page_faults": row.page_faults[-len(row.seconds):] if row.page_faults else None})
    ratios = {}
    teacher = {r.role: r for r in rows if r.role in TEACHER_ROLES}
    best = min(teacher.values(), key=lambda r: float(np.median(r.seconds)))
    fast_roles = [role for role in ("merged", "fast", "fast_alt", "fast_whole") if role in {r.role for r in rows}]
    for label in setting.bases:
        by_role = {r.role: r for r in rows if r.base == label}
        projector = by_role["unmerged"].module
        ratios[label] = {
            "base_input": [3, *projector.inputs.size],
            **{f"{role}/bare": ratio(row, by_role["bare"], batch)  # merged, unmerged, fast..., teacher... / bare
               for role, row in {**teacher, **by_role}.items() if role != "bare"},
            "cost_x_teacher": {role: {"best_layout": ratio(best, by_role[role], batch),
                                      "contiguous": ratio(teacher["teacher"], by_role[role], batch)}
                               for role in fast_roles},
            "teacher_best_layout": best.role,
            "merged_vs_unmerged": check[label],
            "adapter_parameters": projector.num_adapter_parameters(),
            "lora_weights": sum(name.endswith(".lora_A") for name in projector.adapter_state_dict()),
        }
    return {"batch_size": batch, "input_shape": [batch, *setting.input_shape], "num_classes": setting.num_classes,
            "rows": out_rows, "bases": ratios}


# ---------------------------------------------------------------------------------------------------- report
def git_revision() -> Optional[str]:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def environment(device: torch.device, args) -> dict:
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "hello_labels": __version__,
        "git": git_revision(),
        "dtype": args.dtype,
        "compile": {"mode": args.compile_mode, "backend": args.compile_backend} if args.compile else None,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        # what changes the kernels or what torch.compile makes of the model (TORCHINDUCTOR_FREEZING, ...)
        "env_vars": env_vars() | {k: v for k, v in sorted(os.environ.items()) if k.startswith("TORCHINDUCTOR_")},
    }


def _ips(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def format_setting(name: str, result: dict) -> str:
    rows = result["rows"]
    bases = result["bases"]
    base_inputs = ", ".join(f"{_shape(b['base_input'])} ({label})" for label, b in bases.items())
    lines = [f"## {name}: batch {result['batch_size']}, input {_shape(result['input_shape'][1:])}, "
             f"base input {base_inputs}, {result['num_classes']} classes", "",
             "| row | images/s (median) | IQR | min-max | ms/batch | / bare base | first call s | chunks | "
             "page faults/batch |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        ips = row["images_per_s"]
        if row["role"] in TEACHER_ROLES:  # against the bare base when there is one
            rel = (f"{next(iter(bases.values()))[row['role'] + '/bare']['of_medians']:.3f}" if len(bases) == 1
                   else "-")
        else:
            rel = f"{bases[row['base']][row['role'] + '/bare']['of_medians']:.3f}" if row["role"] != "bare" else "1"
        first = f"{row['first_call_s']:.2f}" if row["first_call_s"] is not None else "-"
        faults = f"{np.median(row['page_faults']):,.0f}" if row.get("page_faults") else "-"
        lines.append(f"| {row['name']} | {_ips(ips['median'])} | {_ips(ips['p25'])}-{_ips(ips['p75'])} | "
                     f"{_ips(ips['min'])}-{_ips(ips['max'])} | {row['ms_per_batch']['median']:.1f} | {rel} | "
                     f"{first} | {row['chunks']} | {faults} |")
    lines.append("")
    for label, b in bases.items():
        for key in ("merged/bare", "unmerged/bare", "teacher/bare"):
            r = b[key]
            p = r["paired"]
            verdict = ""
            if key == "merged/bare":
                inside = abs(r["of_medians"] - 1) <= TARGET
                verdict = f": {'within' if inside else 'OUTSIDE'} the +-{TARGET:.0%} target"
            lines.append(f"- {label}, {key.replace('/', ' / ').replace('bare', 'bare base')}: "
                         f"{r['of_medians']:.3f} (paired per repeat: median {p['median']:.3f}, "
                         f"IQR {p['p25']:.3f}-{p['p75']:.3f}){verdict}")
        teacher = next(row["name"] for row in rows if row["role"] == b["teacher_best_layout"])
        for role in ("fast", "fast_alt", "fast_whole", "merged"):
            if role not in b["cost_x_teacher"]:
                continue
            r, c = b["cost_x_teacher"][role]["best_layout"], b["cost_x_teacher"][role]["contiguous"]
            name = next(row["name"] for row in rows if row["base"] == label and row["role"] == role)
            lines.append(f"- {name}: cost x teacher {r['of_medians']:.3f} against the fastest teacher row ({teacher}; "
                         f"paired median {r['paired']['median']:.3f}, IQR {r['paired']['p25']:.3f}-"
                         f"{r['paired']['p75']:.3f}), {c['of_medians']:.3f} against the contiguous teacher")
        c = b["merged_vs_unmerged"]
        lines.append(f"- {label}, merged vs unmerged logits: max |diff| {c['max_abs_diff']:.2e} "
                     f"(max |logit| {c['max_abs_logit']:.2e}, max |merged - bare| {c['max_abs_diff_bare']:.2e}); "
                     f"fast path vs unmerged: max |diff| {c['max_abs_diff_fast']:.2e}, {c['batchnorm_folded']} "
                     f"BatchNorm folded; adapter {b['adapter_parameters']:,} parameters, LoRA on "
                     f"{b['lora_weights']} weights")
        if c.get("max_abs_diff_chunks") is not None:
            fast = next(row for row in rows if row["base"] == label and row["role"] == "fast")
            lines.append(f"- {label}, fast path in chunks vs whole batches: max |diff| {c['max_abs_diff_chunks']:.2e} "
                         f"over the batch ({fast['chunks']} chunks)")
    return "\n".join(lines)


def format_header(report: dict) -> str:
    env = report["environment"]
    compiled = ("torch.compile(mode={mode}, backend={backend})".format(**env["compile"]) if env["compile"]
                else "eager")
    load = env["load_average"]
    head = ["# Label generation throughput", "",
            f"command: `{report['command']}`  ",
            f"device: {env['device']}" + (f" ({env['device_name']})" if env["device"] != "cpu" else "") +
            f"; CPU {env['cpu_model']}, {env['threads']} torch threads of {env['cpus_available']} CPUs; "
            f"torch {env['torch']}; {env['dtype']}, {compiled}; warm-up {env['warmup']}, repeats {env['repeats']}; "
            f"git {env['git']}  ",
            f"load average (1/5/15 min) at start: {' / '.join(f'{v:.2f}' for v in load) if load else '-'}", ""]
    return "\n".join(head)


# ---------------------------------------------------------------------------------------------------- main
def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="bfloat16 runs under torch.autocast")
    p.add_argument("--compile", action="store_true", help="wrap every timed module in torch.compile")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (inductor; eager to test)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds (compilation happens in the first)")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds; each runs every row once")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--effnet-size", type=int, nargs="+", default=[32],
                   help="fashion-mnist: EfficientNet-Lite0 resolution(s), each a base of its own")
    p.add_argument("--imagenet-bases", nargs="+", default=["hello-labels:efficientnet-lite0", "RN50", "ViT-B-32"],
                   help="imagenet: bases (open_clip ones with random init)")
    p.add_argument("--imagenet-size", type=int, default=224, help="imagenet: input resolution")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input batch")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--batch-size and --repeats must be >= 1, --warmup >= 0")
    if args.compile and args.warmup < 1:
        p.error("--compile needs --warmup >= 1 (compilation would be timed)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    return args


@contextlib.contextmanager
def quiet_logging():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    report = {"command": shlex.join(["python", "-m", "benchmarks.throughput", *argv]),
              "environment": environment(device, args), "settings": {}}
    print(format_header(report), flush=True)
    for name in args.setting:
        print(f"{name}: building the teacher and 3 projectors (+2 or 3 fast paths) per base", file=sys.stderr,
              flush=True)
        torch.manual_seed(args.seed)  # the teacher's random init; bases and adapters seed themselves
        with quiet_logging():  # open_clip logs "No pretrained weights loaded" for each build: intended here
            setting = BUILDERS[name](args)
            rows = teacher_rows(setting.teacher, args) + [r for label, p in setting.bases.items()
                                                    for r in base_rows(label, p, args)]
        gen = torch.Generator().manual_seed(args.seed)
        x = pixels(args.batch_size, setting, gen).to(device)
        for row in rows:
            row.module.to(device).eval()
        check = merge_check(rows, x, device, args.dtype)
        if args.compile:
            torch._dynamo.reset()  # a fresh compile cache (and recompile budget) per setting
        for row in rows:  # the fast rows compile themselves (their compile option), as the library does
            row.fn = (torch.compile(row.module, mode=args.compile_mode, backend=args.compile_backend)
                      if args.compile and not row.role.startswith("fast") else row.module)
        print(f"{name}: timing {len(rows)} rows, {args.warmup} warm-up + {args.repeats} timed rounds",
              file=sys.stderr, flush=True)
        measure(rows, x, device, args.dtype, args.warmup, args.repeats)
        for row in rows:
            row.chunks = chunks_of(row.module, x, args.dtype)
        report["settings"][name] = summarise(setting, rows, args.batch_size, check)
        report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        print(format_setting(name, report["settings"][name]) + "\n", flush=True)
        if args.json:  # after every setting, so a long run keeps what it has measured
            atomic_write_json(args.json, report)
        del rows, setting
        gc.collect()
    end = report["load_average_end"]
    print(f"load average (1/5/15 min) at end: {' / '.join(f'{v:.2f}' for v in end) if end else '-'}")
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
