"""Real-data benchmark on the full Fashion-MNIST: label sources side by side, students trained identically.

    apt-get install dataset-fashion-mnist && pip install -e ".[bench]"
    python -m benchmarks.fashion_mnist_bench --work benchmarks/work --results benchmarks/results

Stages (each cached in ``--work``, so an interrupted run resumes): a ResNet-20 teacher trained on the 60k training
images; the synthetic set (the teacher's 10 most confident training images per class); SRe2L-format stored labels
for every student epoch; projectors distilled from the teacher on the synthetic set (EfficientNet-Lite0, ImageNet
pretrained, prototype head; and the shipped tiny open_clip ViT, random init; MSE on logits, plus a KL ablation);
then ConvNet students, each trained identically (same steps, crops, CutMix, seeds) from one label source and tested
on the 10k test images. Results: BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hello_labels.files import atomic_write_json
from hello_labels.labels.export import export_fkd
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import StoredTargets, TeacherTargets
from hello_labels.labels.views import AugmentedImages, TensorImages
from hello_labels.model.projector import LabelProjector
from hello_labels.storage import storage_report
from hello_labels.train.distill import DistillConfig
from hello_labels.train.jobs import distill_from_teachers, evaluate, prototype_batch
from hello_labels.train.students import accuracy, conv_net, most_confident, train_student

from . import effnet
from .fashion_mnist import CLASSES, load
from .models import resnet20

MEAN, STD = (0.2860,), (0.3530,)
SIZE = 28


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="benchmarks/work")
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--student-epochs", type=int, default=300)
    p.add_argument("--student-batch", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--min-scale", type=float, default=0.5)
    p.add_argument("--effnet-size", type=int, default=64, help="resolution EfficientNet-Lite0 runs at")
    p.add_argument("--distill-steps", type=int, default=600)
    p.add_argument("--distill-lr", type=float, default=3e-3)
    p.add_argument("--top-k", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--keep", type=float, nargs="+", default=[0.25, 0.1, 0.03])
    p.add_argument("--temperature", type=float, default=4.0, help="students' KL temperature")
    p.add_argument("--only", nargs="+", help="label sources to run (default: all)")
    return p.parse_args()


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# ----------------------------------------------------------------------------------------------- stages
def teacher_stage(work: Path, args, train, test):
    from safetensors.torch import load_file, save_file

    path = work / "teacher.safetensors"
    model = resnet20(10)
    if not path.exists():
        log(f"training the ResNet-20 teacher on {len(train[1]):,} images for {args.teacher_epochs} epochs")
        images = AugmentedImages(TensorImages(*train), SIZE, MEAN, STD, scale=(0.64, 1.0))
        steps = args.teacher_epochs * math.ceil(len(train[1]) / 128)
        train_student(model, images, None, steps=steps, batch_size=128, lr=2e-3, weight_decay=5e-4, seed=0,
                      mix_type=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    model.load_state_dict(load_file(str(path)))
    model.eval().requires_grad_(False)
    acc = accuracy(model, *test, MEAN, STD)
    log(f"teacher test accuracy {acc:.2%}")
    return model, acc


def synthetic_stage(work: Path, args, teacher, train):
    """Indices of the teacher's ``ipc`` most confident training images per class."""
    path = work / f"synthetic_ipc{args.ipc}.pt"
    if not path.exists():
        torch.save(torch.cat(most_confident(teacher, *train, len(CLASSES), args.ipc, MEAN, STD)), path)
    index = torch.load(path, weights_only=True)
    return TensorImages(train[0][index], train[1][index], CLASSES)


def labels_stage(work: Path, args, teacher, synthetic) -> LabelDir:
    """SRe2L-format labels from the teacher, one epoch of crops per student epoch (resumable export)."""
    return export_fkd(teacher, synthetic, work / "labels", args.student_epochs, args.student_batch, "cutmix",
                      fp16=True, input_size=SIZE, min_scale=args.min_scale, mean=MEAN, std=STD, progress=False)


# name -> (base, LoRA targets (None: the default, rank 8 on every convolution / attention projection), head rank,
#          distillation loss overrides). Default: the library's default loss, MSE on logits (the paper's).
SMALL = [{"pattern": "*_project_conv.weight", "rank": 2}]
KL_T1, KL_T4 = {"loss": "kl", "temperature": 1.0}, {"loss": "kl", "temperature": 4.0}
PROJECTORS = {
    "effnet": ("effnet", None, 8, {}),
    "effnet-small": ("effnet", SMALL, 4, {}),
    "tiny-vit": ("hello-labels:tiny-clip-vit", None, 8, {}),
    # loss ablation: KL at T=1 (sharp targets) vs at the students' T=4
    "effnet, KL at T=1": ("effnet", None, 8, KL_T1),
    "effnet, KL at T=4": ("effnet", None, 8, KL_T4),
    "effnet-small, KL at T=1": ("effnet", SMALL, 4, KL_T1),
    "effnet-small, KL at T=4": ("effnet", SMALL, 4, KL_T4),
    "tiny-vit, KL at T=1": ("hello-labels:tiny-clip-vit", None, 8, KL_T1),
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "_" for c in name)


def projector_stage(work: Path, args, name, synthetic, teacher_spec, images):
    out = work / f"projector-{_slug(name)}"
    if not (out / "adapter.safetensors").exists():
        base, targets, head_rank, overrides = PROJECTORS[name]
        common = dict(class_names=CLASSES, input_mean=MEAN, input_std=STD, input_channels=1, head_rank=head_rank,
                      lora_targets=targets)
        if base == "effnet":  # ImageNet-pretrained, no text tower: prototype head from the synthetic images
            prototypes, labels = prototype_batch(images)
            projector = LabelProjector.from_base(
                effnet.efficientnet_lite0(), base_mean=effnet.MEAN, base_std=effnet.STD,
                base_image_size=args.effnet_size, base_factory=effnet.FACTORY, head_init="prototype",
                prototype_images=prototypes, prototype_labels=labels, **common)
        else:  # random init, text head from the class names (random text tower)
            projector = LabelProjector.from_base(base, templates="simple", **common)
        config = DistillConfig(**{"steps": args.distill_steps, "batch_size": 64, "lr": args.distill_lr,
                                  "warmup_steps": 50, "checkpoint_every": 100,
                                  "save_dtype": "float16", **overrides})
        log(f"distilling the {name} projector ({projector.num_adapter_parameters():,} adapter parameters)")
        t0 = time.perf_counter()
        distill_from_teachers(synthetic, [teacher_spec], out, projector, config, images=images,
                              min_scale=args.min_scale, resume=True, progress=False)
        (out / "distill_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    projector = LabelProjector.from_pretrained(out).merge()
    return projector


# ----------------------------------------------------------------------------------------------- codecs
class TopKTargets(StoredTargets):
    """FKD / LPQLD-style stored labels: the top-k probabilities (at the students' T) and their class indices per
    crop; the remaining mass is spread evenly over the other classes (SRe2L's ``keep_top_k`` smoothing)."""

    def __init__(self, images, labels, k):
        super().__init__(images, labels)
        self.k = k

    def probabilities(self, plan, mixed, temperature):
        p = F.softmax(plan.targets.to(mixed.device) / temperature, dim=-1)
        values, indices = p.topk(self.k, dim=-1)
        values = values.half().float()  # stored as fp16
        rest = (1 - values.sum(-1, keepdim=True)).clamp_min(0) / (p.shape[-1] - self.k)
        return rest.expand_as(p).scatter(-1, indices, values)


class PrunedTargets(StoredTargets):
    """LPLD-style pruned labels: a random ``keep`` fraction of the batch files is kept and cycled through."""

    def __init__(self, images, labels, keep, seed=0):
        super().__init__(images, labels)
        kept = max(1, int(keep * self.total_files + 0.5))
        self.kept = torch.randperm(self.total_files, generator=torch.Generator().manual_seed(seed))[:kept].sort().values

    def plans(self, start, steps, rank=0, world_size=1, batch_size=None):
        for step in range(start, steps):
            yield self._plan(step, int(self.kept[step % len(self.kept)]))


# ----------------------------------------------------------------------------------------------- main
def main():
    args = parse()
    work, results = Path(args.work), Path(args.results)
    work.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    train, test = load(True), load(False)
    teacher, teacher_acc = teacher_stage(work, args, train, test)
    synthetic = synthetic_stage(work, args, teacher, train)
    images = AugmentedImages(synthetic, SIZE, MEAN, STD, scale=(args.min_scale, 1.0))
    label_dir = labels_stage(work, args, teacher, synthetic)
    teacher_spec = f"module:benchmarks.models:resnet20@{work / 'teacher.safetensors'}"
    projectors = {name: projector_stage(work, args, name, synthetic, teacher_spec, images) for name in PROJECTORS
                  if not args.only or f"projector {name}" in args.only or (work / f"projector-{_slug(name)}").exists()}

    storage = storage_report(labels=str(label_dir.path), top_k=1, keep_ratio=1.0, teacher=None)
    full_bytes = storage.row("full stored labels (SRe2L)").bytes
    teacher_bytes = sum(t.numel() * t.element_size() for t in teacher.state_dict().values())
    steps = args.student_epochs * label_dir.batches_per_epoch
    sources = {
        "full stored labels": (lambda: StoredTargets(images, label_dir), full_bytes),
        "hard labels": (lambda: None, 0),
        "teacher online (RDED)": (lambda: TeacherTargets(images, teacher), teacher_bytes),
    }
    for name, projector in projectors.items():
        adapter = (work / f"projector-{_slug(name)}" / "adapter.safetensors").stat().st_size
        sources[f"projector {name}"] = (lambda p=projector: TeacherTargets(images, p), adapter)
    for k in args.top_k:
        kb = storage_report(labels=str(label_dir.path), top_k=k, keep_ratio=1.0, teacher=None)
        sources[f"top-{k} stored labels"] = (lambda k=k: TopKTargets(images, label_dir, k),
                                             kb.row(f"top-k labels (FKD/LPQLD, k={k})").bytes)
    for keep in args.keep:
        pb = storage_report(labels=str(label_dir.path), top_k=1, keep_ratio=keep, teacher=None)
        sources[f"pruned stored labels {keep:g}"] = (lambda keep=keep: PrunedTargets(images, label_dir, keep),
                                                     pb.row(f"pruned labels (LPLD, keep {keep:.4g})").bytes)

    cache_path = work / "students.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for name, (make, nbytes) in sources.items():
        if args.only and name not in args.only:
            continue
        for seed in range(args.seeds):
            key = f"{name}|{seed}|{args.student_epochs}"
            if key in cache:
                continue
            torch.manual_seed(seed)
            student = conv_net(10, in_channels=1)
            out = train_student(student, images, make(), steps=steps, batch_size=args.student_batch, lr=3e-3,
                                seed=seed, temperature=args.temperature)
            cache[key] = {"accuracy": accuracy(student, *test, MEAN, STD), "seconds": out["seconds"],
                          "bytes": nbytes}
            atomic_write_json(cache_path, cache)
            log(f"{name} seed {seed}: {cache[key]['accuracy']:.2%} ({out['seconds']:.0f}s)")

    views = dict(views=2000, batch_size=200, input_size=SIZE, min_scale=args.min_scale)
    fidelity = {name: evaluate(p, synthetic, teachers=[teacher], **views).agreement for name, p in projectors.items()}
    report(args, results, cache, sources, fidelity, teacher_acc, full_bytes, label_dir)


def report(args, results, cache, sources, fidelity, teacher_acc, full_bytes, label_dir):
    import statistics

    rows = []
    for name, (_, nbytes) in sources.items():
        accs = [v["accuracy"] for k, v in cache.items() if k.startswith(f"{name}|") and
                k.endswith(f"|{args.student_epochs}")]
        if not accs:
            continue
        projector = name.startswith("projector ")
        rows.append({"source": name, "bytes": nbytes, "bytes_vs_full": nbytes / full_bytes,
                     "agreement": fidelity.get(name[len("projector "):]) if projector else None,
                     "acc_mean": statistics.mean(accs), "acc_std": statistics.pstdev(accs), "seeds": len(accs)})
    out = {"teacher_test_accuracy": teacher_acc, "label_dir": {"epochs": label_dir.epochs,
           "batch_size": label_dir.batch_size, "images": label_dir.num_images, "bytes": full_bytes},
           "settings": vars(args), "rows": rows}
    atomic_write_json(results / "fashion_mnist.json", out)
    plot(rows, results / "fashion_mnist.png", teacher_acc)
    print(table(rows))


def table(rows) -> str:
    lines = ["| label source | bytes | vs full | agreement | student test acc (mean ± std) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        agree = "—" if r["agreement"] is None else f"{r['agreement']:.1%}"
        lines.append(f"| {r['source']} | {r['bytes']:,} | {r['bytes_vs_full']:.2%} | {agree} | "
                     f"{r['acc_mean']:.2%} ± {r['acc_std']:.2%} (n={r['seeds']}) |")
    return "\n".join(lines)


def plot(rows, path, teacher_acc):
    """Accuracy against bytes (log x). Ablations (``, KL at T=…``) hollow; hard and full labels as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    colours = iter(plt.cm.tab10.colors * 2)
    for r in rows:
        family = r["source"].split()[0]
        if family in ("hard", "full"):
            style = dict(color="0.4", ls=":" if family == "hard" else "--", lw=1)
            ax.axhline(100 * r["acc_mean"], label=f"{r['source']} ({100 * r['acc_mean']:.1f}%)", **style)
            if family == "hard":
                continue
        ablation = ", KL at" in r["source"]
        marker = {"projector": "*", "top-1": "s", "top-2": "s", "top-5": "s", "pruned": "D",
                  "teacher": "^"}.get(family, "o")
        colour = next(colours)
        ax.errorbar(r["bytes"], 100 * r["acc_mean"], yerr=100 * r["acc_std"], fmt=marker, capsize=3,
                    ms=(12 if marker == "*" else 7) * (0.75 if ablation else 1), color=colour,
                    mfc="none" if ablation else colour, label=r["source"])
    ax.set_xscale("log")
    ax.set_xlabel("bytes: stored labels / adapter.safetensors (fp16) / teacher weights (log scale)")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title(f"Fashion-MNIST, 10 img/class, ResNet-20 teacher ({teacher_acc:.1%}), ConvNet students, "
                 f"mean ± std over seeds", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
