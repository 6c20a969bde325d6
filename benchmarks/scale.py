"""A user's first step at its real size: an SRe2L ImageNet-1K label directory (IPC 10: 10,000 images, 300 epochs,
1,000 classes, batch 1024, fp16 logits, ~6 GB) run through ``convert``, ``eval --labels``, ``storage`` and the
SRe2L shim's first epoch, each a subprocess whose peak RSS, wall time, time to first step and open files are
recorded.

    python -m benchmarks.scale generate DATA/ipc10 --ipc 10       # images/ and labels/ (~6 GB)
    python -m benchmarks.scale run DATA/ipc10 --json benchmarks/results/scale-<machine>.json

``generate`` writes the label files as SRe2L's ``relabel/generate_soft_label.py`` does (``--use-fp16``, CutMix):
a plain ``torch.save`` of ``[coords float32 [B, 4], flip bool [B], mix_index int64 [B], mix_lam float,
mix_bbox numpy.int64 x 4, soft_label float16 [B, C]]`` per ``epoch_<e>/batch_<b>.tar``, its boxes from SRe2L's
``rand_bbox`` at ``--image-size``; the logits are random (the label side is the point, not what is learnt). The
images are small random PNGs in 1,000 class folders. The base is the shipped random-init ``hello-labels:tiny-clip-vit``.

``run`` measures each verb over the full directory and over one of its first ``--few-epochs`` epochs (symlinks to
the same files), so that what grows with epochs shows as a difference. Per run: peak RSS (``/usr/bin/time -v``'s
"Maximum resident set size"), wall and CPU time, the times from launch to the first label file read and to the first
step (convert: the first optimiser step; eval: the first batch through the projector; shim: its first labelled
batch), and the most open file descriptors seen (``/proc/PID/fd`` sampled every 20 ms). The shim stage needs
``HELLO_LABELS_SRE2L_CHECKOUT`` (SRe2L's ``ImageFolder_FKD_MIX`` in ``fkd_save`` mode, as the patched
``train_FKD.py`` builds it) and is skipped without one. ``run`` also times reaching epoch ``--sampler-epoch`` of
the image order (:class:`hello_labels.labels.fkd.SamplerOrder`) against building every epoch's order on the way,
as the code before it did. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

SRE2L_BATCH = 1024  # relabel.sh / train_FKD.sh: -b 1024
TINY_BASE = "hello-labels:tiny-clip-vit"


# ----------------------------------------------------------------------------------------------------- generate
def rand_bbox(size, lam, rng):
    """SRe2L's ``relabel/utils_fkd.rand_bbox`` (its numpy.int64 results, its dim-2 'W'), on ``rng``."""
    import numpy as np

    w, h = size[2], size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(w * cut_rat), int(h * cut_rat)
    cx, cy = rng.integers(w), rng.integers(h)
    return [np.clip(cx - cut_w // 2, 0, w), np.clip(cy - cut_h // 2, 0, h), np.clip(cx + cut_w // 2, 0, w),
            np.clip(cy + cut_h // 2, 0, h)]


def sre2l_batch(rows: int, classes: int, size: int, rng, gen) -> list:
    """One batch file's list as SRe2L's ``save`` builds it, with ``--use-fp16`` and ``--mix-type cutmix``."""
    import torch

    hw = torch.empty(rows, 2).uniform_(0.3, 1.0, generator=gen)
    corner = torch.rand(rows, 2, generator=gen) * (1 - hw)
    coords = torch.cat([corner, hw], 1).float()  # (i/H, j/W, h/H, w/W), as RandomResizedCropWithCoords stores
    flip = torch.rand(rows, generator=gen) < 0.5
    mix_index = torch.randperm(rows, generator=gen)
    lam = float(rng.beta(1.0, 1.0))
    bbox = rand_bbox((rows, 3, size, size), lam, rng)
    logits = torch.randn(rows, classes, generator=gen).mul_(3).half()
    return [coords, flip, mix_index, lam, bbox, logits]


def generate(out: Path, ipc: int, classes: int, epochs: int, batch_size: int, size: int, seed: int) -> None:
    import numpy as np
    import torch
    from PIL import Image

    images, labels = out / "images", out / "labels"
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    if not (out / "images-done").exists():
        for c in range(classes):
            folder = images / f"class_{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(ipc):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
        (out / "images-done").touch()
    n = ipc * classes
    rows = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    progress = out / "labels-epochs-done"  # beside labels/: SRe2L counts every entry of it as an epoch
    done = int(progress.read_text()) if progress.exists() else 0
    t0 = time.perf_counter()
    for e in range(done, epochs):
        folder = labels / f"epoch_{e}"
        folder.mkdir(parents=True, exist_ok=True)
        for b, r in enumerate(rows):
            torch.save(sre2l_batch(r, classes, size, rng, gen), folder / f"batch_{b}.tar")
        progress.write_text(str(e + 1))
        if e % 10 == 0 or e + 1 == epochs:
            print(f"epoch {e + 1}/{epochs}: {time.perf_counter() - t0:.0f} s", flush=True)



# ---------------------------------------------------------------------------------------------- instrumentation
def _mark(path: str, name: str) -> None:
    """``name``'s wall clock and this process's CPU seconds so far (all threads), appended to ``path``."""
    with open(path, "a") as f:
        f.write(json.dumps({name: [time.time(), time.process_time()]}) + "\n")


def _once(path: str, name: str, fn):
    """``fn`` that marks ``name`` in ``path`` on its first call."""
    done = []

    def wrapped(*args, **kwargs):
        if not done:
            done.append(True)
            _mark(path, name)
        return fn(*args, **kwargs)
    return wrapped


def child(marks: str, argv: list) -> None:
    """The CLI (``hello-labels ARGV``) with marks at its first label file read and its first step."""
    from hello_labels.cli import main as cli
    from hello_labels.labels import fkd, targets
    from hello_labels.train import distill

    fkd.load_batch = _once(marks, "first_label_file", fkd.load_batch)
    distill.loss_fn = _once(marks, "first_step", distill.loss_fn)  # convert: the first optimiser step
    targets.StoredTargets.__call__ = _once(marks, "first_step", targets.StoredTargets.__call__)  # eval's first batch
    sys.exit(cli(argv))


def shim_epoch(marks: str, projector: str, images: str, labels: str, size: int, batch_size: int) -> None:
    """SRe2L's patched ``train_FKD.py`` data path for one epoch: ``ImageFolder_FKD_MIX`` in ``fkd_save`` mode (its
    ``fkd_path`` still given, as the diff leaves it) under the seeded sampler, wrapped by ``ProjectorLabels``; the
    student is a linear probe on pooled pixels (one KL step per batch at T=20 as ``train_FKD.sh``)."""
    import torch
    import torch.nn.functional as F
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    from hello_labels.adapters.sre2l import ProjectorLabels

    sys.path.insert(0, str(Path(os.environ["HELLO_LABELS_SRE2L_CHECKOUT"]) / "SRe2L"))
    from relabel.utils_fkd import (
        ComposeWithCoords,
        ImageFolder_FKD_MIX,
        RandomHorizontalFlipWithRes,
        RandomResizedCropWithCoords,
    )

    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    dataset = ImageFolder_FKD_MIX(fkd_path=labels, mode="fkd_save", args_epoch=300, args_bs=batch_size, root=images,
                                  transform=ComposeWithCoords(transforms=[
                                      RandomResizedCropWithCoords(size=size, scale=(0.08, 1),
                                                                  interpolation=InterpolationMode.BILINEAR),
                                      RandomHorizontalFlipWithRes(), transforms.ToTensor(), normalize]))
    generator = torch.Generator().manual_seed(42)
    sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    args = argparse.Namespace(mix_type="cutmix", cutmix=1.0, start_epoch=0)
    loader = ProjectorLabels(projector, args, torch.utils.data.DataLoader(dataset, batch_size=batch_size,
                                                                          sampler=sampler, num_workers=0),
                             device="cpu")
    student = torch.nn.Linear(3, len(dataset.classes))
    optimizer = torch.optim.AdamW(student.parameters())
    for number, batch_data in enumerate(loader):
        images_, *_ = batch_data[0]
        soft_label = batch_data[4]
        if number == 0:
            _mark(marks, "first_step")
        loss = F.kl_div(F.log_softmax(student(images_.mean((2, 3))) / 20, -1), F.softmax(soft_label / 20, -1),
                        reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"shim epoch: {number + 1} batches")


# ------------------------------------------------------------------------------------------------------ measure
def _child_pid(pid: int) -> Optional[int]:
    """The first child of ``pid`` (``/proc/PID/task/PID/children``), None while it has none."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _time_v(path: Path) -> dict:
    """``/usr/bin/time -v``'s report as ``{field: value}``."""
    fields = {}
    for line in path.read_text().splitlines():
        name, _, value = line.strip().rpartition(": ")
        if name:
            fields[name] = value
    return fields


def measure(command: list, marks: Path, log: Path, env: Optional[dict] = None) -> dict:
    """Run ``command`` under ``/usr/bin/time -v``: its peak RSS ("Maximum resident set size"), wall and CPU time,
    its marks (seconds after launch) and the most file descriptors ``/proc/PID/fd`` showed it holding."""
    marks.unlink(missing_ok=True)
    report = log.with_suffix(".time")
    start = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(report), *command], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    most_fds, stop = [0], threading.Event()

    def sample():
        pid = None
        while not stop.is_set():
            pid = pid or _child_pid(proc.pid)
            try:
                most_fds[0] = max(most_fds[0], len(os.listdir(f"/proc/{pid}/fd"))) if pid else most_fds[0]
            except OSError:
                pass
            stop.wait(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.time() - start
    stop.set()
    sampler.join()
    seen = {}
    if marks.exists():
        for line in marks.read_text().splitlines():
            for name, (when, cpu) in json.loads(line).items():
                seen.setdefault(name, (round(when - start, 2), round(cpu, 2)))
    timed = _time_v(report)
    cpu = float(timed["User time (seconds)"]) + float(timed["System time (seconds)"])
    first_file, first_step = seen.get("first_label_file", (None, None)), seen.get("first_step", (None, None))
    return {"rc": rc, "peak_rss_mb": round(int(timed["Maximum resident set size (kbytes)"]) / 1024, 1),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "first_label_file_s": first_file[0],
            "first_step_s": first_step[0], "first_step_cpu_s": first_step[1], "max_open_fds": most_fds[0],
            **({"log_tail": log.read_text()[-2000:]} if rc else {})}


def label_file_calls(command: list, labels: Path, log: Path, env: Optional[dict] = None) -> dict:
    """``command`` under ``strace -f``: its ``stat``-family and ``open`` calls on ``labels``' batch files, and its
    opens of ``labels``' folders (listings)."""
    trace = log.with_suffix(".strace")
    with open(log, "w") as out:
        subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=openat,open,stat,lstat,newfstatat,statx",
                        *command], stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    counts = {"stat": 0, "open": 0, "folder_open": 0}
    root = str(labels.resolve())
    with open(trace) as lines:
        for line in lines:
            if root not in line and str(labels) not in line:
                continue
            call = "open" if "open" in line.split("(", 1)[0] else "stat"
            if ".tar\"" in line:
                counts[call] += 1
            elif call == "open" and "O_DIRECTORY" in line:
                counts["folder_open"] += 1
    trace.unlink()
    return counts


def sampler_reach(num_images: int, batch_size: int, epoch: int) -> dict:
    """Seconds to the image order of ``epoch``: :class:`SamplerOrder` (epochs on the way skipped) against a
    ``RandomSampler`` pass per epoch on the way (each epoch's order built, as before); the same order either way."""
    import torch

    from hello_labels.labels.fkd import SamplerOrder

    t0 = time.perf_counter()
    order = SamplerOrder(num_images, batch_size).epoch(epoch)
    t1 = time.perf_counter()
    sampler = torch.utils.data.RandomSampler(range(num_images), generator=torch.Generator().manual_seed(42))
    for _ in range(epoch + 1):
        passed = torch.tensor(list(sampler), dtype=torch.int64)
    t2 = time.perf_counter()
    assert torch.equal(order, passed), "SamplerOrder disagrees with RandomSampler"
    return {"images": num_images, "epoch": epoch, "skipping_s": round(t1 - t0, 2), "every_pass_s": round(t2 - t1, 2)}


def few_epochs(labels: Path, epochs: int, out: Path) -> Path:
    """A label directory of the first ``epochs`` epochs of ``labels`` (symlinks: no bytes copied)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for e in range(epochs):
        (out / f"epoch_{e}").symlink_to((labels / f"epoch_{e}").resolve(), target_is_directory=True)
    return out


def run(data: Path, few: int, steps: int, size: int, threads: int, json_path: Optional[Path] = None,
        strace: bool = False, sampler_epoch: int = 299) -> dict:
    import torch

    from hello_labels.labels.fkd import LabelDir
    from hello_labels.runs import cpu_model

    from .machine import machine

    images, full = data / "images", data / "labels"
    work = data / "runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    info = LabelDir.scan(full)
    dirs = {info.epochs: full, few: few_epochs(full, few, work / f"labels-{few}ep")}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    py = [sys.executable, "-m", "benchmarks.scale"]
    projector = work / "projector"
    results = {"benchmark": "scale", "machine": machine(threads), "cpu": cpu_model(), "torch": torch.__version__,
               "labels": {"epochs": info.epochs, "images": info.num_images, "classes": info.num_classes,
                          "batch_size": info.batch_size, "files": info.total_files, "dtype": str(info.dtype),
                          "bytes": sum(f.stat().st_size for e in range(info.epochs)
                                       for f in (full / f"epoch_{e}").iterdir())},
               "steps": steps, "input_size": size, "load_average_before": os.getloadavg(), "runs": []}
    results["sampler_order"] = sampler_reach(info.num_images, info.batch_size, sampler_epoch)
    print(json.dumps(results["sampler_order"]), flush=True)
    # the floor every verb stands on: the libraries imported, nothing read
    imports = "import torch, torchvision, open_clip, timm, hello_labels.train.jobs, hello_labels.storage"
    results["runs"].append({"verb": "imports only", "epochs": None,
                            **measure([sys.executable, "-c", imports], work / "marks", work / "log", env)})
    print(json.dumps(results["runs"][-1]), flush=True)
    for epochs, labels in sorted(dirs.items(), reverse=True):
        out = work / f"convert-{epochs}ep"
        stages = {
            "convert": ["child", str(work / "marks"), "--", "convert", "--data", str(images), "--labels", str(labels),
                        "--input-size", str(size), "--base", TINY_BASE, "--head-init", "random", "--out", str(out),
                        "--steps", str(steps), "--quiet"],
            "eval --labels": ["child", str(work / "marks"), "--", "eval", str(out), "--data", str(images),
                              "--labels", str(labels), "--input-size", str(size)],
            "storage": ["child", str(work / "marks"), "--", "storage", "--labels", str(labels), "--teacher", "none",
                        "--projector", str(out)],
        }
        for name, argv in stages.items():
            print(f"{name}, {epochs} epochs ...", flush=True)
            row = {"verb": name, "epochs": epochs, **measure(py + argv, work / "marks", work / "log", env)}
            if strace:
                if name == "convert":  # convert again into a fresh folder: the same work, traced
                    shutil.rmtree(out)
                row["label_file_calls"] = label_file_calls(py + argv, labels, work / "log", env)
            print(json.dumps(row), flush=True)
            results["runs"].append(row)
        if epochs == info.epochs:
            shutil.copytree(out, projector, ignore=shutil.ignore_patterns("train_state.pt"))
    if os.environ.get("HELLO_LABELS_SRE2L_CHECKOUT"):
        argv = ["shim-epoch", str(work / "marks"), str(projector), str(images), str(full), "--image-size", str(size)]
        print("shim first epoch ...", flush=True)
        row = {"verb": "sre2l shim, first epoch", "epochs": info.epochs,
               **measure(py + argv, work / "marks", work / "log", env)}
        print(json.dumps(row), flush=True)
        results["runs"].append(row)
    else:
        results["shim"] = "skipped: HELLO_LABELS_SRE2L_CHECKOUT not set"
    results["load_average_after"] = os.getloadavg()
    if json_path:
        from hello_labels.files import atomic_write_json

        atomic_write_json(json_path, results)
    return results

def table(results: dict) -> str:
    """The runs of a results JSON as a markdown table."""
    header = ("| verb | epochs | peak RSS (MB) | first label file (s) | first step (s wall / s CPU) | wall (s) | "
              "CPU (s) | most open fds | label-file stat / open calls |")
    lines = [header, "|" + "---|" * 9]
    for r in results["runs"]:
        calls = r.get("label_file_calls")
        calls = f"{calls['stat']:,} / {calls['open']:,}" if calls else "-"
        lines.append(f"| {r['verb']} | {r['epochs'] or '-'} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['first_label_file_s'] or '-'} | {r['first_step_s'] or '-'} / "
                     f"{r.get('first_step_cpu_s') or '-'} | {r['wall_s']} | {r.get('cpu_s', '-')} | "
                     f"{r['max_open_fds']} | {calls} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write images/ and labels/ (SRe2L's layout) under OUT")
    g.add_argument("out", type=Path)
    g.add_argument("--ipc", type=int, default=10)
    g.add_argument("--classes", type=int, default=1000)
    g.add_argument("--epochs", type=int, default=300)
    g.add_argument("--batch-size", type=int, default=SRE2L_BATCH)
    g.add_argument("--image-size", type=int, default=32, help="images and the CutMix boxes' pixel frame")
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run", help="measure convert, eval --labels, storage and the shim over DATA (generate's OUT)")
    r.add_argument("data", type=Path)
    r.add_argument("--few-epochs", type=int, default=30, help="the comparison directory's epochs")
    r.add_argument("--steps", type=int, default=3, help="convert steps (one batch file each)")
    r.add_argument("--image-size", type=int, default=32)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--json", type=Path)
    r.add_argument("--sampler-epoch", type=int, default=299, help="the epoch whose image order is timed")
    r.add_argument("--strace", action="store_true", help="run each verb once more under strace -f, counting its "
                                                          "stat and open calls on label files")
    t = sub.add_parser("table", help="print a results JSON's runs as a markdown table")
    t.add_argument("results", type=Path)
    c = sub.add_parser("child", help="(internal) the CLI with marks")
    c.add_argument("marks")
    c.add_argument("argv", nargs=argparse.REMAINDER)
    s = sub.add_parser("shim-epoch", help="(internal) the shim's first epoch")
    s.add_argument("marks")
    s.add_argument("projector")
    s.add_argument("images")
    s.add_argument("labels")
    s.add_argument("--image-size", type=int, default=32)
    s.add_argument("--batch-size", type=int, default=SRE2L_BATCH)
    args = p.parse_args(argv)
    if args.command == "generate":
        generate(args.out, args.ipc, args.classes, args.epochs, args.batch_size, args.image_size, args.seed)
    elif args.command == "run":
        run(args.data, args.few_epochs, args.steps, args.image_size, args.threads, args.json, args.strace,
            args.sampler_epoch)
    elif args.command == "table":
        print(table(json.loads(args.results.read_text())))
    elif args.command == "child":
        child(args.marks, args.argv[1:] if args.argv[:1] == ["--"] else args.argv)
    else:
        shim_epoch(args.marks, args.projector, args.images, args.labels, args.image_size, args.batch_size)


if __name__ == "__main__":
    main()
