"""Label sources side by side on a real dataset (Fashion-MNIST by default), students trained identically.

    apt-get install dataset-fashion-mnist && pip install -e ".[bench]"
    python -m benchmarks.label_sources --work benchmarks/work --results benchmarks/results
    python -m benchmarks.label_sources --check     # does this machine reproduce the committed check record?
    python -m benchmarks.label_sources --dataset mnist            # or a folder: idx files, an ImageFolder, ...
    python -m benchmarks.datasets show PATH                       # what --dataset PATH reads (benchmarks/datasets.py)

``--dataset`` names the data (``fashion-mnist``, ``mnist`` or a path: benchmarks/datasets.py), ``--classes``,
``--mean``, ``--std`` replace its own; a dataset other than Fashion-MNIST has its pipelines in ``--work/<name>`` and
its name and content digests in every stage record. Each pipeline seed (``--pipeline-seeds``) draws the whole
pipeline anew: a ResNet-20 teacher trained on the training images; the synthetic set (the teacher's ``--ipc`` most
confident training images per class, or with ``--selection random`` a seeded draw); SRe2L-format stored labels for
every student epoch; projectors distilled from the teacher on the synthetic set (by default EfficientNet-Lite0,
ImageNet pretrained, at 32 px, prototype head, at rank 8 and a small variant, MSE on logits, each also saved at int8
and 4-bit; ``--projectors`` adds the random-init tiny open_clip ViT, KL ablations and the base at fixed resolutions;
``--convert`` projectors fitted to the stored labels alone, ``--refine`` students on images refined by a projector);
then ConvNet students, each trained identically (same steps, crops, mixes: CutMix, or MixUp with ``--mix-type``,
seeds) from one label source and tested on the test images. Every stage is cached in ``--work/pipeline-<seed>`` with
a record of the code version and settings that made it (benchmarks/stages.py): an interrupted run resumes, a stale
cache is recomputed; the teacher is shared by every ``--ipc``, the rest lives in ``pipeline-<seed>/ipc<N>``
(``ipc<N>-mixup``, ``ipc<N>-random``: a variant's own). A stage repeats bit for bit only under the same seed, code
and machine fields (torch build, CPU capability and model, ``--threads``, kernel variables: benchmarks/machine.py),
which every record and result holds; ``--check`` says which differ, and where one does, whether this machine's check
figure falls within the recorded spread. Each pipeline seed can run in its own process (one thread each on a 2-core
machine); a last call with all the seeds then only reports. Results: BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from hello_labels.errors import HelloLabelsError
from hello_labels.files import atomic_write_json
from hello_labels.fingerprint import module_digest, tensor_digest
from hello_labels.labels.export import export_fkd
from hello_labels.labels.fkd import LabelDir
from hello_labels.labels.targets import PrunedTargets, StoredTargets, TeacherTargets
from hello_labels.labels.views import AugmentedImages, TensorImages
from hello_labels.model.projector import LabelProjector
from hello_labels.storage import storage_report
from hello_labels.train.distill import DistillConfig, distill
from hello_labels.train.jobs import convert_steps, distill_from_teachers, evaluate, prototype_batch
from hello_labels.train.refine import RefineConfig, refine_batch
from hello_labels.train.students import accuracy, conv_net, most_confident, train_student

from . import effnet
from .datasets import BenchData, open_dataset
from .machine import machine, result_name
from .models import resnet20
from .reproduce import recorded_seeds, verdict
from .stages import Stage, code_version, deterministic

# The committed --check record of the Fashion-MNIST teacher (benchmarks/results/).
FASHION_MNIST_CHECK = "reproduce-epyc-torch2.14.1-fashion-mnist-check.json"

def dataset_args(p) -> None:
    """The dataset flags (:func:`benchmarks.datasets.open_dataset`), for the benchmark and the scripts beside it."""
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist, mnist, or a folder: idx files, a torchvision dataset folder (<Name>/raw), an "
                        "ImageFolder with train/ and test/ (benchmarks/datasets.py)")
    p.add_argument("--classes", help="class names, comma-separated or a file of one per line (default: the "
                                     "dataset's own, an ImageFolder's folder names, else the label numbers)")
    p.add_argument("--mean", type=float, nargs="+", help="input mean per channel (default: the dataset's own or "
                                                         "computed from its training images)")
    p.add_argument("--std", type=float, nargs="+", help="input std per channel (default: as --mean)")
    p.add_argument("--image-size", type=int, help="resize an ImageFolder's images to this square size")


def open_data(args) -> BenchData:
    """The dataset the parsed ``args`` name (one-line error on bad input; nothing is read yet)."""
    try:
        return open_dataset(args.dataset, args.classes, args.mean, args.std, args.image_size)
    except HelloLabelsError as err:
        raise SystemExit(f"error: {err}")


def open_split(data: BenchData, train: bool):
    """``data``'s training or test split, read (one-line error on a missing or bad file)."""
    try:
        return data.load(train)
    except HelloLabelsError as err:
        raise SystemExit(f"error: {err}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    dataset_args(p)
    p.add_argument("--work", default="benchmarks/work", help="work folder (a dataset other than Fashion-MNIST: its "
                                                            "<name> folder inside)")
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--student-epochs", type=int, default=300)
    p.add_argument("--student-batch", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3, help="student seeds per pipeline seed")
    p.add_argument("--pipeline-seeds", type=int, nargs="+", default=[0],
                   help="seeds of whole pipelines (teacher, synthetic set, labels, projectors, pruning) to run")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (results depend on it; recorded)")
    p.add_argument("--check", action="store_true",
                   help="re-run the first --check-steps steps of the teacher stage (first of --check-seeds) and "
                        f"compare with the committed record (results/{FASHION_MNIST_CHECK}; another dataset: its "
                        "reproduce-*-<name>-check.json): bit for bit where "
                        "the machine fields match, else within the recorded seeds' spread of test accuracy")
    p.add_argument("--record-check", action="store_true",
                   help="write that record, one run per --check-seeds: reproduce-<machine>-torch<version>-<name>-"
                        "check.json")
    p.add_argument("--check-steps", type=int, default=100)
    p.add_argument("--check-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--min-scale", type=float, default=0.5)
    p.add_argument("--effnet-size", type=int, default=32,
                   help="resolution EfficientNet-Lite0 runs at (32: chosen from the cost/fidelity frontier, "
                        "BENCHMARKS.md; the IPC 10/50 tables there were run at 64)")
    p.add_argument("--distill-steps", type=int,
                   help="projector distillation steps of 64 views (default: 2400 at IPC 10 and below, 9600 above: "
                        "each chosen on a validation split of the synthetic set, benchmarks.distill_sweep, at MNIST "
                        "IPC 10 and Fashion-MNIST IPC 50; the committed Fashion-MNIST tables ran 600)")
    p.add_argument("--distill-lr", type=float, default=3e-3)
    p.add_argument("--top-k", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--keep", type=float, nargs="+", default=[0.25, 0.1, 0.03, 0.01, 0.003],
                   help="LPLD pruning: fractions of the label files kept")
    p.add_argument("--projectors", nargs="+", default=["effnet", "effnet-small"],
                   help=f"projectors to distill (of: {', '.join(PROJECTORS)})")
    p.add_argument("--adapter-dtypes", nargs="*", default=["int8", "int4"],
                   help="also train students from each projector saved in these dtypes")
    p.add_argument("--temperature", type=float, default=4.0, help="students' KL temperature")
    p.add_argument("--online-views", choices=["fresh", "stored"], default="fresh",
                   help="what the online sources (teacher, projectors) label: fresh crops, flips and CutMix drawn "
                        "from the student seed, as RDED draws them; or the stored labels' own views, so that their "
                        "students and the stored labels' differ by the labels alone (docs/online-labels.md)")
    p.add_argument("--mix-type", choices=["cutmix", "mixup"], default="cutmix",
                   help="the mix of every crop stream: the stored labels' export, the online sources', the "
                        "projectors' distillation and the hard-label students' (library default alphas)")
    p.add_argument("--selection", choices=["confident", "random"], default="confident",
                   help="the synthetic set: the teacher's most confident training images per class, or a random "
                        "draw per class seeded by the pipeline seed")
    p.add_argument("--only", nargs="+", help="label sources to run (default: all)")
    p.add_argument("--convert", nargs="*", default=[], metavar="FRACTION",
                   help="also convert the stored labels into an effnet projector (`hello-labels convert`'s job, the "
                        "projectors' recipe) from the first FRACTION of their epochs (1: all), each with a student "
                        "row, and a row of students on those epochs of stored labels alone")
    p.add_argument("--refine", nargs="*", default=[], metavar="PROJECTOR",
                   help="also refine the synthetic images with PROJECTOR and the teacher (HeLlO's image update, "
                        "`hello-labels refine`'s defaults at this input size) and train its students on them")
    p.add_argument("--name", help="results file stem (default label-sources-<machine>-torch<version>-<name>-ipc<ipc>)")
    args = p.parse_args(argv)
    args.data = open_data(args)
    if args.distill_steps is None:
        args.distill_steps = 2400 if args.ipc <= 10 else 9600
    return args


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# ----------------------------------------------------------------------------------------------- stages
def train_teacher(train, steps: int, seed: int, data: BenchData):
    """A ResNet-20 trained for ``steps`` batches of 128 crops of the training images, seeded ``seed``."""
    torch.manual_seed(seed)  # the initial weights
    model = resnet20(data.num_classes, data.channels)
    images = AugmentedImages(TensorImages(*train), data.size, data.mean, data.std, scale=(0.64, 1.0))
    train_student(model, images, None, steps=steps, batch_size=128, lr=2e-3, weight_decay=5e-4, seed=seed,
                  mix_type=None)
    return model


def load_teacher(path: Path, data: BenchData):
    """The ResNet-20 teacher of ``data`` saved at ``path``, frozen for labelling."""
    from safetensors.torch import load_file

    model = resnet20(data.num_classes, data.channels)
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False)


def student_views(source, args) -> AugmentedImages:
    """``source``'s augmented views as every student and projector here sees them (crops of scale min_scale-1)."""
    return AugmentedImages(source, args.data.size, args.data.mean, args.data.std, scale=(args.min_scale, 1.0))


def pipeline_args(p) -> None:
    """Add to the parser ``p`` of a script beside the benchmark what :func:`pipeline_argv` and
    :func:`cached_pipeline` read: the pipeline folder, the dataset flags, ``--ipc``, ``--student-epochs``,
    ``--threads``; and ``--json``."""
    dataset_args(p)
    p.add_argument("pipeline", type=Path, nargs="?", help="a benchmark work folder, e.g. benchmarks/work/pipeline-0")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--student-epochs", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)


def pipeline_argv(cli) -> list:
    """The benchmark's arguments a script beside it sets from its own ``cli`` (``ipc``, ``student_epochs``, the
    dataset flags given and an ``effnet_size`` when it has one set); the rest stay the benchmark's defaults."""
    argv = ["--ipc", str(cli.ipc), "--student-epochs", str(cli.student_epochs)]
    for flag in ("dataset", "classes", "mean", "std", "image_size"):
        value = getattr(cli, flag, None)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    return argv + (["--effnet-size", str(cli.effnet_size)] if getattr(cli, "effnet_size", None) else [])


def cached_pipeline(path: Path, argv, threads: int):
    """``(args, work, seed, synthetic, teacher, test)`` of a benchmark pipeline folder (its teacher and synthetic
    set files, not their stage records), ``args`` the benchmark's defaults under ``argv``; for scripts that run
    beside the benchmark at any code version."""
    deterministic(threads)
    args = parse(argv)
    work, seed = path / f"ipc{args.ipc}", int(path.name.rsplit("-", 1)[1])
    synthetic = load_synthetic(work / f"synthetic_ipc{args.ipc}.pt", args.data)
    return args, work, seed, synthetic, load_teacher(path / "teacher.safetensors", args.data), args.data.test


def teacher_fidelity(projector, synthetic, teacher, args):
    """The projector's agreement and KL with ``teacher`` as the tables measure them (:func:`fidelity_views`)."""
    return evaluate(projector, synthetic, teachers=[teacher], **fidelity_views(args))


def fidelity_views(args) -> dict:
    """How a projector's agreement and KL with its source are measured (``evaluate``'s view settings)."""
    return {"views": 2000, "batch_size": 200, "input_size": args.data.size, "min_scale": args.min_scale,
            "temperature": args.temperature}


def teacher_settings(args, seed: int) -> dict:
    """The teacher stage's record: epochs and seed, and the dataset's identity unless it is Fashion-MNIST (whose
    records predate datasets). Every later stage depends on the teacher's digest, so on the dataset too."""
    identity = args.data.identity()
    return {"epochs": args.teacher_epochs, "seed": seed} | ({"dataset": identity} if identity else {})


def work_root(args) -> Path:
    """The folder of the pipelines: ``--work``, or its ``<dataset>`` folder for a dataset other than Fashion-MNIST."""
    return Path(args.work) / args.data.slug if args.data.recorded else Path(args.work)


def teacher_stage(work: Path, args, train, test, seed: int, env: dict):
    from safetensors.torch import save_file

    path = work / "teacher.safetensors"
    stage = Stage(work, "teacher", teacher_settings(args, seed), [path], env, log)
    if not stage.fresh():
        log(f"training the ResNet-20 teacher on {len(train[1]):,} images for {args.teacher_epochs} epochs")
        model = train_teacher(train, args.teacher_epochs * math.ceil(len(train[1]) / 128), seed, args.data)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        stage.done()
    model = load_teacher(path, args.data)
    acc = accuracy(model, *test, args.data.mean, args.data.std)
    log(f"teacher test accuracy {acc:.2%}")
    return model, acc


def variant(args) -> str:
    """The suffix of a pipeline's ``ipc<N>`` folder for a non-default ``--mix-type`` or ``--selection`` (none for
    the defaults), so that each variant's synthetic set, labels, projectors and students are cached apart."""
    return "".join(f"-{v}" for v, default in ((args.mix_type, "cutmix"), (args.selection, "confident"))
                   if v != default)


def synthetic_stage(work: Path, args, teacher, train, seed: int, env: dict):
    """Indices of ``ipc`` training images per class: the teacher's most confident (``--selection confident``) or a
    random draw seeded by the pipeline ``seed`` (``random``)."""
    path = work / f"synthetic_ipc{args.ipc}.pt"
    settings = {"ipc": args.ipc, "teacher": module_digest(teacher)}
    if args.selection != "confident":  # the default's records keep the keys they had before the option
        settings |= {"selection": args.selection, "seed": seed}
    stage = Stage(work, f"synthetic_ipc{args.ipc}", settings, [path], env, log)
    if not stage.fresh():
        data = args.data
        if args.selection == "random":
            chosen = random_per_class(train[1], data.num_classes, args.ipc, seed)
        else:
            chosen = most_confident(teacher, *train, data.num_classes, args.ipc, data.mean, data.std)
        torch.save(torch.cat(chosen), path)
        stage.done()
    return load_synthetic(path, args.data)


def random_per_class(labels: torch.Tensor, num_classes: int, ipc: int, seed: int) -> list:
    """Per class, the indices of ``ipc`` training images drawn at random (seeded by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        out.append(members[torch.randperm(len(members), generator=g)[:ipc]])
    return out


def load_synthetic(path: Path, data: BenchData) -> TensorImages:
    """The synthetic set of ``data`` whose training-image indices ``synthetic_stage`` saved at ``path``."""
    index = torch.load(path, weights_only=True)
    return TensorImages(data.train[0][index], data.train[1][index], data.class_names)


def labels_stage(work: Path, args, teacher, synthetic, seed: int, env: dict) -> LabelDir:
    """SRe2L-format labels from the teacher, one epoch of crops per student epoch (the export itself resumes)."""
    out = work / "labels"
    settings = {"epochs": args.student_epochs, "batch": args.student_batch, "min_scale": args.min_scale,
                "seed": seed, "teacher": module_digest(teacher), "images": len(synthetic)}
    stage = Stage(work, "labels", settings, [out, out.parent / f"{out.name}.hello-labels"], env, log)
    stage.fresh()  # removes stale label files; export_labels resumes matching ones (export_fkd checks its record)
    label_dir = export_labels(teacher, synthetic, out, args, seed)
    stage.done()
    return label_dir


def export_labels(teacher, synthetic, out: Path, args, seed: int) -> LabelDir:
    """The teacher's SRe2L-format labels of ``synthetic`` in ``out`` (resumable): one epoch of mixed crops
    (``--mix-type``) per student epoch, in student batches, float16, crops and mixes drawn from ``seed``."""
    return export_fkd(teacher, synthetic, out, epochs=args.student_epochs, batch_size=args.student_batch,
                      mix_type=args.mix_type, fp16=True, input_size=args.data.size, min_scale=args.min_scale,
                      mean=args.data.mean, std=args.data.std, seed=seed, progress=False)


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
    # the cost/fidelity frontier: the base at a fixed resolution, whatever --effnet-size
    "effnet@64px": ("effnet", None, 8, {"effnet_size": 64}),
    "effnet@48px": ("effnet", None, 8, {"effnet_size": 48}),
    "effnet@32px": ("effnet", None, 8, {"effnet_size": 32}),
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "_" for c in name)


def new_projector(args, name, images, lora_rank=None, head_rank=None, effnet_size=None):
    """The untrained projector ``name`` of :data:`PROJECTORS` and its distillation settings; ``lora_rank`` (of the
    default LoRA targets), ``head_rank`` and ``effnet_size`` replace the name's (the recipe sweep's options)."""
    base, targets, named_head_rank, overrides = PROJECTORS[name]
    overrides = dict(overrides)
    named_size = overrides.pop("effnet_size", args.effnet_size)
    size = effnet_size or named_size
    if lora_rank and targets:
        raise ValueError(f"{name} names its own LoRA targets: a LoRA rank applies to the default ones only")
    data = args.data
    common = dict(class_names=data.class_names, input_mean=data.mean, input_std=data.std, input_channels=data.channels,
                  head_rank=head_rank or named_head_rank, lora_targets=targets, lora_rank=lora_rank)
    if base == "effnet":  # ImageNet-pretrained, no text tower: prototype head from the synthetic images
        prototypes, labels = prototype_batch(images)
        projector = LabelProjector.from_base(
            effnet.efficientnet_lite0(), base_mean=effnet.MEAN, base_std=effnet.STD,
            base_image_size=size, base_factory=effnet.FACTORY, head_init="prototype",
            prototype_images=prototypes, prototype_labels=labels, **common)
    else:  # random init, text head from the class names (random text tower)
        projector = LabelProjector.from_base(base, templates="simple", **common)
    return projector, overrides


def distill_config(args, seed: int, overrides: dict) -> DistillConfig:
    return DistillConfig(**{"steps": args.distill_steps, "batch_size": 64, "lr": args.distill_lr, "warmup_steps": 50,
                            "checkpoint_every": 100, "save_dtype": "float16", "seed": seed, **overrides})


def projector_stage(work: Path, args, name, synthetic, teacher_spec, images, seed: int, env: dict):
    out = work / f"projector-{_slug(name)}"
    settings = {"projector": list(PROJECTORS[name]), "steps": args.distill_steps, "lr": args.distill_lr,
                "effnet_size": args.effnet_size, "min_scale": args.min_scale, "seed": seed,
                "teacher": module_digest(teacher_spec[1]), "images": len(synthetic)}
    stage = Stage(work, f"projector-{_slug(name)}", settings, [out], env, log)
    stage.fresh()  # a stale projector directory is removed; a matching unfinished one resumes from its checkpoint
    if not (out / "adapter.safetensors").exists():
        projector, overrides = new_projector(args, name, images)
        log(f"distilling the {name} projector ({projector.num_adapter_parameters():,} adapter parameters)")
        t0 = time.perf_counter()
        distill_from_teachers(synthetic, [teacher_spec[0]], out, projector, distill_config(args, seed, overrides),
                              mix_type=args.mix_type, images=images, min_scale=args.min_scale,
                              resume=(out / "train_state.pt").exists(), progress=False)
        (out / "distill_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    stage.done()


def first_epochs(label_dir: LabelDir, fraction: float) -> int:
    return max(1, round(fraction * label_dir.epochs))


def convert_stage(work: Path, args, fraction: float, label_dir: LabelDir, images, seed: int, env: dict) -> Path:
    """The effnet projector fitted to the first ``fraction`` of the stored epochs, no teacher (what
    ``hello-labels convert`` runs: :func:`hello_labels.train.distill.distill` on the stored crops, its default
    steps: :func:`hello_labels.train.jobs.convert_steps`), the effnet projector's recipe otherwise (the runs in
    BENCHMARKS.md before that default used the recipe's 600 steps; those before its views-per-image floor, one pass)."""
    epochs = first_epochs(label_dir, fraction)
    out = work / f"converted-{epochs}-epochs"
    targets = StoredTargets(images, LabelDir.scan(label_dir.path, epochs, seed=label_dir.seed))
    steps = convert_steps(targets)
    settings = {"projector": list(PROJECTORS["effnet"]), "steps": steps, "lr": args.distill_lr,
                "effnet_size": args.effnet_size, "seed": seed, "labels": label_dir.fingerprint(), "epochs": epochs}
    stage = Stage(work, out.name, settings, [out], env, log)
    stage.fresh()
    if not (out / "adapter.safetensors").exists():
        projector, overrides = new_projector(args, "effnet", images)
        log(f"converting the first {epochs} of {label_dir.epochs} stored epochs into an effnet projector")
        t0 = time.perf_counter()
        distill(projector, targets, out, replace(distill_config(args, seed, overrides), steps=steps),
                resume=(out / "train_state.pt").exists(), progress=False,
                metadata={"labels_trained": {"first_file": label_dir.fingerprint()["first_file"], "epochs": epochs}})
        (out / "distill_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    stage.done()
    return out


def refine_stage(work: Path, args, name, projector, teacher, synthetic, env: dict) -> TensorImages:
    """The synthetic images refined by ``projector`` against ``teacher`` (:func:`hello_labels.train.refine.
    refine_batch`, `hello-labels refine`'s defaults at this input size and crop scale, its batches of 32), kept as
    float tensors (the CLI writes 8-bit files)."""
    path = work / f"refined-{_slug(name)}.pt"
    cfg = RefineConfig(input_size=args.data.size, min_scale=args.min_scale)
    settings = {"projector": module_digest(projector), "teacher": module_digest(teacher), "config": vars(cfg),
                "images": len(synthetic)}
    stage = Stage(work, path.stem, settings, [path], env, log)
    if not stage.fresh():
        log(f"refining the {len(synthetic)} synthetic images with the {name} projector")
        t0 = time.perf_counter()
        out = []
        for start in range(0, len(synthetic), cfg.batch_size):
            index = list(range(start, min(start + cfg.batch_size, len(synthetic))))
            images = synthetic.images[index]
            images = images.float() / 255 if images.dtype == torch.uint8 else images
            out.append(refine_batch(projector, teacher, images, index, cfg)[0])
        torch.save({"images": torch.cat(out), "seconds": time.perf_counter() - t0}, path)
        stage.done()
    return TensorImages(torch.load(path, weights_only=True)["images"], synthetic.labels, args.data.class_names)


# ----------------------------------------------------------------------------------------------- sources
def online_targets(model, images, label_dir: LabelDir, args, student_seed: int):
    """``model`` run online for one student, as the benchmark runs the teacher (RDED) and the projectors: on fresh
    crops, flips and mixes (``--mix-type``) drawn from the student seed (seed 0: the stream every student of an
    online source drew before, whatever its seed), or with ``--online-views stored`` on the stored labels' own
    views, so that it and the stored labels differ by their labels alone (:class:`OnStoredViews`)."""
    if args.online_views == "stored":
        return OnStoredViews(images, label_dir, model)
    return TeacherTargets(images, model, seed=student_seed, mix_type=args.mix_type)


class OnStoredViews(StoredTargets):
    """``model`` run online on a label directory's own views (its crops, flips and mixes), not its stored logits."""

    def __init__(self, images, labels: LabelDir, model):
        super().__init__(images, labels)
        self.model = model

    @torch.no_grad()
    def __call__(self, plan, mixed):
        return self.model(mixed).float()


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


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    args = parse(argv)
    unknown = [n for n in args.projectors if n not in PROJECTORS]
    if unknown:
        raise SystemExit(f"unknown --projectors {unknown}: choose from {list(PROJECTORS)}")
    env = deterministic(args.threads)
    work, results = work_root(args), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    train, test = open_split(args.data, True), open_split(args.data, False)
    if args.check or args.record_check:
        record = new_check_record(results, args.data, env) if args.record_check else check_record(results, args.data)
        return check(args, record, train, test, env)
    runs = {seed: pipeline(work / f"pipeline-{seed}", args, seed, train, test, env) for seed in args.pipeline_seeds}
    report(args, results, runs, env)


def pipeline(work: Path, args, seed: int, train, test, env: dict) -> dict:
    """Every stage of one pipeline seed at ``--ipc``; returns its sources' bytes, student accuracies (overall and
    per class), seconds per student step and the projectors' fidelity to the teacher."""
    work.mkdir(parents=True, exist_ok=True)
    log(f"pipeline seed {seed} in {work}, {args.ipc} images per class")
    teacher, teacher_acc = teacher_stage(work, args, train, test, seed, env)
    work = work / f"ipc{args.ipc}{variant(args)}"  # everything below depends on the synthetic set and the mix
    work.mkdir(exist_ok=True)
    synthetic = synthetic_stage(work, args, teacher, train, seed, env)
    images = student_views(synthetic, args)
    label_dir = labels_stage(work, args, teacher, synthetic, seed, env)
    factory = "resnet20" if args.data.channels == 1 else "resnet20_rgb"
    teacher_spec = (f"module:benchmarks.models:{factory}@{work.parent / 'teacher.safetensors'}", teacher)
    wanted = [n for n in args.projectors if not args.only or f"projector {n}" in args.only or
              any(f"projector {n} {d}" in args.only for d in args.adapter_dtypes)]
    projectors, adapter_bytes = {}, {}
    for name in wanted:
        projector_stage(work, args, name, synthetic, teacher_spec, images, seed, env)
        folder = work / f"projector-{_slug(name)}"
        saved = {f"projector {name}": folder}
        float16 = projectors[f"projector {name}"] = load_projector(folder)
        for dtype in args.adapter_dtypes:  # saved again beside it on every run, so never stale
            label, out = f"projector {name} {dtype}", folder.with_name(f"{folder.name}-{dtype}")
            float16.save_pretrained(out, dtype=dtype)
            saved[label], projectors[label] = out, load_projector(out)
        adapter_bytes |= {label: (path / "adapter.safetensors").stat().st_size for label, path in saved.items()}
    for fraction in map(float, args.convert):
        folder = convert_stage(work, args, fraction, label_dir, images, seed, env)
        label = f"converted effnet, {first_epochs(label_dir, fraction)} epochs"
        projectors[label] = load_projector(folder)
        adapter_bytes[label] = (folder / "adapter.safetensors").stat().st_size

    storage = storage_report(labels=str(label_dir.path), top_k=1, keep_ratio=1.0, teacher=None)
    full_bytes = storage.row("full stored labels (SRe2L)").bytes
    teacher_bytes = sum(t.numel() * t.element_size() for t in teacher.state_dict().values())
    steps = args.student_epochs * label_dir.batches_per_epoch
    # each source: (its targets for a student seed, its bytes[, the images its students train on])
    sources = {
        "full stored labels": (lambda s: StoredTargets(images, label_dir), full_bytes),
        "hard labels": (lambda s: None, 0),
        "teacher online (RDED)": (lambda s: online_targets(teacher, images, label_dir, args, s), teacher_bytes),
    }
    for name, projector in projectors.items():
        sources[name] = (lambda s, p=projector: online_targets(p.for_labels(), images, label_dir, args, s),
                         adapter_bytes[name])
    for fraction in (f for f in map(float, args.convert) if first_epochs(label_dir, f) < label_dir.epochs):
        epochs = first_epochs(label_dir, fraction)
        kb = storage_report(labels=str(label_dir.path), top_k=1, keep_ratio=fraction, teacher=None)
        sources[f"stored labels, first {epochs} epochs"] = (
            lambda s, f=fraction: PrunedTargets(images, label_dir, f, first=True),
            kb.row(f"pruned labels (LPLD, keep {fraction:.4g})").bytes)
    refined = {}
    for name in args.refine:
        label = f"projector {name}"
        refined[label] = refine_stage(work, args, name, projectors[label], teacher, synthetic, env)
        on = student_views(refined[label], args)  # other images: fresh views whatever --online-views
        sources[f"{label}, refined images"] = (
            lambda s, p=projectors[label], on=on: TeacherTargets(on, p.for_labels(), seed=s, mix_type=args.mix_type),
            adapter_bytes[label], on)
    for k in args.top_k:
        kb = storage_report(labels=str(label_dir.path), top_k=k, keep_ratio=1.0, teacher=None)
        sources[f"top-{k} stored labels"] = (lambda s, k=k: TopKTargets(images, label_dir, k),
                                             kb.row(f"top-k labels (FKD/LPQLD, k={k})").bytes)
    for keep in args.keep:
        pb = storage_report(labels=str(label_dir.path), top_k=1, keep_ratio=keep, teacher=None)
        sources[f"pruned stored labels {keep:g}"] = (
            lambda s, keep=keep: PrunedTargets(images, label_dir, keep, seed),
            pb.row(f"pruned labels (LPLD, keep {keep:.4g})").bytes)

    # one record for all students: their settings and the teacher and labels upstream; each projector's student
    # holds that projector's digest, so adding or re-distilling one projector leaves the other students cached
    upstream = {"teacher": module_digest(teacher), "labels": label_dir.fingerprint()}
    digests = source_digests(projectors, refined)
    settings = {k: getattr(args, k) for k in ("student_epochs", "student_batch", "temperature", "min_scale")}
    if args.online_views != "fresh":  # the default's records keep the keys they had before the option
        settings["online_views"] = args.online_views
    cache_path = work / "students.json"
    stage = Stage(work, "students", {**settings, "upstream": upstream}, [cache_path], env, log)
    cache = json.loads(cache_path.read_text()) if stage.fresh() else {}
    stale = stale_students(cache, digests)
    if stale:
        log(f"recomputing {len(stale)} students of re-distilled projectors")
    cache = {k: v for k, v in cache.items() if k not in stale}
    stage.done()  # the cache holds finished students only: each entry is complete once written
    for student_seed in range(args.seeds):  # every source's first student before any source's second
        for name, (make, nbytes, *on) in sources.items():
            if args.only and name not in args.only:
                continue
            key = f"{name}|{student_seed}"
            if key in cache:
                continue
            student = train_one_student(on[0] if on else images, partial(make, student_seed), steps, student_seed,
                                        args, test)
            cache[key] = student | {"steps": steps, "bytes": nbytes, "projector": digests.get(name)}
            atomic_write_json(cache_path, cache)
            log(f"pipeline {seed}, {name}, student seed {student_seed}: {cache[key]['accuracy']:.2%} "
                f"({cache[key]['seconds']:.0f}s)")

    views = fidelity_views(args)
    fidelity = {}
    for n, p in projectors.items():
        r = evaluate(p, synthetic, teachers=[teacher], **views)
        fidelity[n] = {"agreement": r.agreement, "kl": r.kl, "per_class_agreement": r.per_class}
        if n.startswith("converted"):  # against the stored crops: the last stored epoch (held out unless all used)
            s = evaluate(p, synthetic, labels=str(label_dir.path), **views)
            fidelity[n] |= {"stored_kl": s.kl, "stored_agreement": s.agreement, "stored_in_sample": s.in_sample}
    for label, on in refined.items():  # the projector's fidelity on the refined images
        r = evaluate(projectors[label], on, teachers=[teacher], **views)
        fidelity[f"{label}, refined images"] = {"agreement": r.agreement, "kl": r.kl,
                                                "per_class_agreement": r.per_class}
    runs = {}
    for key, value in cache.items():  # the sources of this run (a projector left out by --only is kept, unreported)
        if (name := key.rsplit("|", 1)[0]) in sources:
            runs.setdefault(name, []).append(value)
    return {"teacher_accuracy": teacher_acc, "full_bytes": full_bytes,
            "bytes": {n: b for n, (_, b, *_) in sources.items()},
            "accuracy": {n: [v["accuracy"] for v in vs] for n, vs in runs.items()},
            "per_class": {n: [v["per_class"] for v in vs] for n, vs in runs.items()},
            "seconds_per_step": {n: [v["seconds"] / v["steps"] for v in vs] for n, vs in runs.items()},
            "fidelity": fidelity, "steps": steps,
            "label_dir": {"epochs": label_dir.epochs, "batch_size": label_dir.batch_size,
                          "images": label_dir.num_images}}


def source_digests(projectors: dict, refined: dict) -> dict:
    """What each projector-made source's students depend on: its projector's digest; for a refined-images source
    also the refined images' (``refined``: projector label -> images)."""
    digests = {name: module_digest(p) for name, p in projectors.items()}
    for label, images in refined.items():
        pixels = tensor_digest({"images": images.images})
        digests[f"{label}, refined images"] = f"{digests[label]}+{pixels}"
    return digests


def stale_students(cache: dict, digests: dict) -> list:
    """Keys of cached students whose source was re-made (its digest in ``digests`` differs). Only the sources of
    this run are judged: a student of a projector this run does not load (``--only``) is kept for a later run."""
    return [key for key, v in cache.items()
            if (name := key.rsplit("|", 1)[0]) in digests and v.get("projector") != digests[name]]


def load_projector(folder: Path) -> LabelProjector:
    # the EfficientNet base is built by this benchmark's own module (benchmarks.effnet): trusted code
    return LabelProjector.from_pretrained(folder, trust_remote_code=True).merge().eval()


def train_one_student(images, make_targets, steps: int, seed: int, args, test) -> dict:
    """A ConvNet student trained on ``make_targets()`` (None: hard labels) as every student here is trained; its
    test ``accuracy``, ``per_class`` accuracy and training ``seconds``."""
    data = args.data
    torch.manual_seed(seed)
    student = conv_net(data.num_classes, in_channels=data.channels)
    out = train_student(student, images, make_targets(), steps=steps, batch_size=args.student_batch, lr=3e-3, seed=seed,
                        temperature=args.temperature, mix_type=args.mix_type)  # the mix of hard-label students
    return {"accuracy": accuracy(student, *test, data.mean, data.std), "per_class": per_class(student, test, data),
            "seconds": out["seconds"]}


@torch.no_grad()
def per_class(student, test, data: BenchData) -> dict:
    """Test accuracy of ``student`` on each class's test images."""
    images, labels = test
    return {name: accuracy(student, images[labels == i], labels[labels == i], data.mean, data.std)
            for i, name in enumerate(data.class_names) if (labels == i).any()}


def check_run(train, test, steps: int, seed: int, data: BenchData) -> dict:
    """The teacher trained for ``steps`` steps with pipeline seed ``seed``: its weights digest and test accuracy."""
    model = train_teacher(train, steps, seed, data).eval()
    return {"weights": module_digest(model), "accuracy": accuracy(model, *test, data.mean, data.std)}


def check(args, path: Path, train, test, env: dict) -> None:
    """``--record-check``: write the check record (one run per ``--check-seeds``); ``--check``: repeat the first
    seed and print :func:`benchmarks.reproduce.verdict` on it (exit status 1 unless it is reproduced)."""
    seeds = args.check_seeds if args.record_check else args.check_seeds[:1]
    if not args.record_check:  # before minutes of training
        if not path.is_file():
            raise SystemExit(f"no committed record {path}: run with --record-check first")
        saved = json.loads(path.read_text())
        if saved["steps"] != args.check_steps:
            raise SystemExit(f"the record is of {saved['steps']} steps: pass --check-steps {saved['steps']}")
        if str(seeds[0]) not in recorded_seeds(saved):
            raise SystemExit(f"the record has no seed {seeds[0]}: pass --check-seeds with one of "
                             f"{' '.join(recorded_seeds(saved))}")
    runs = {}
    for seed in seeds:
        t0 = time.perf_counter()
        runs[str(seed)] = check_run(train, test, args.check_steps, seed, args.data)
        log(f"teacher seed {seed} after {args.check_steps} steps: weights {runs[str(seed)]['weights']}, test "
            f"accuracy {runs[str(seed)]['accuracy']:.2%} ({time.perf_counter() - t0:.0f}s)")
    log(f"this machine: {env}")
    if args.record_check:
        atomic_write_json(path, {"stage": "teacher", "steps": args.check_steps, "seeds": runs, "env": env,
                                 "code": code_version()})
        log(f"recorded {path}")
        return
    result = verdict(saved, {"seed": seeds[0], **runs[str(seeds[0])], "env": env, "code": code_version()})
    for line in result.lines:
        log(line)
    if not result.ok:
        raise SystemExit(1)


def report(args, results, runs: dict, env: dict):
    """Write the results JSON (settings, every run, :func:`report_rows`) and its plot; print the table."""
    import statistics

    rows, first = report_rows(runs), next(iter(runs.values()))
    teacher = [run["teacher_accuracy"] for run in runs.values()]
    out = {"ipc": args.ipc, "teacher_test_accuracy": teacher,
           "label_dir": first["label_dir"] | {"bytes": first["full_bytes"]}, "student_steps": first["steps"],
           "settings": settings_record(args), "env": env, "code": code_version(),
           "runs": {str(k): v for k, v in runs.items()}, "rows": rows}
    stem = getattr(args, "name", None) or results_stem(args)
    atomic_write_json(results / f"{stem}.json", out)
    plot(rows, results / f"{stem}.png", statistics.mean(teacher), args, len(runs))
    print(table(rows))


def check_record(results: Path, data: BenchData) -> Path:
    """The record ``--check`` compares with: the committed one for Fashion-MNIST; for another dataset the one
    ``--record-check`` wrote under ``results`` (``reproduce-<machine>-torch<version>-<dataset>-check.json``)."""
    if not data.recorded:
        return results / FASHION_MNIST_CHECK
    found = sorted(results.glob(f"reproduce-*-{data.slug}-check.json"))
    if len(found) > 1:
        raise SystemExit(f"several check records of {data.name} in {results}: {', '.join(p.name for p in found)}; "
                         "keep the one to compare with")
    return found[0] if found else new_check_record(results, data, machine(torch.get_num_threads()))


def new_check_record(results: Path, data: BenchData, env: dict) -> Path:
    """Where ``--record-check`` writes: ``reproduce-<machine>-torch<version>-<dataset>-check.json``, named by the
    machine record ``env`` so that it never replaces a record made elsewhere."""
    return results / f"{result_name('reproduce', f'{data.slug}-check', env)}.json"


def results_stem(args) -> str:
    """The default results file stem: ``label-sources-<machine>-torch<version>-<dataset>-ipc<N>``
    (:func:`benchmarks.machine.result_name`), so a run elsewhere never replaces a committed file."""
    return result_name("label-sources", f"{args.data.slug}-ipc{args.ipc}")


def settings_record(args) -> dict:
    """The parsed settings as a results file holds them: the dataset as its name, classes and normalisation."""
    data = args.data
    return {k: v for k, v in vars(args).items() if k != "data"} | {
        "dataset": data.name, "classes": data.class_names, "mean": list(data.mean), "std": list(data.std)}


def report_rows(runs: dict) -> list:
    """Per source: mean over pipeline seeds of each pipeline's student mean, the spread across pipelines (std of
    those means), the student-seed spread (mean over pipelines of the std across student seeds), the projectors'
    fidelity to the teacher, seconds per student step (None where not measured), and how many bytes pruning needs
    to match each projector."""
    import statistics

    rows, first = [], next(iter(runs.values()))
    hard = [x for run in runs.values() for x in run["seconds_per_step"].get("hard labels", [])]
    for name in first["bytes"]:
        per_pipeline = [run["accuracy"][name] for run in runs.values() if name in run["accuracy"]]
        if not per_pipeline:
            continue
        means = [statistics.mean(a) for a in per_pipeline]
        fid = [run["fidelity"][name] for run in runs.values() if name in run["fidelity"]]
        nbytes = statistics.mean(run["bytes"][name] for run in runs.values())
        steps = [x for run in runs.values() for x in run["seconds_per_step"].get(name, [])]
        step = statistics.mean(steps) if steps else None
        per = [pc for run in runs.values() for pc in run["per_class"].get(name, [])]
        names = list(dict.fromkeys(c for pc in per for c in pc))
        classes = [statistics.mean(pc[c] for pc in per if c in pc) for c in names]
        rows.append({"source": name, "bytes": round(nbytes), "bytes_vs_full": nbytes / first["full_bytes"],
                     "agreement": statistics.mean(f["agreement"] for f in fid) if fid else None,
                     "kl": statistics.mean(f["kl"] for f in fid) if fid else None,
                     "acc_mean": statistics.mean(means),
                     "acc_std": statistics.pstdev(means) if len(means) > 1 else None,
                     "student_std": statistics.mean(spreads) if (spreads := [statistics.pstdev(a) for a in
                                                                             per_pipeline if len(a) > 1]) else None,
                     "per_class": dict(zip(names, classes)),
                     "seconds_per_step": step,
                     "label_ms_per_step": 1000 * (step - statistics.mean(hard)) if hard and steps else None,
                     "pipelines": len(means), "seeds": [len(a) for a in per_pipeline]})
    pruning = pruning_curve(rows)
    for r in rows:
        if r["source"].startswith("projector"):
            r["pruning_at_equal_bytes"] = interpolate(pruning, r["bytes"])
            r["pruning_bytes_to_match"] = bytes_to_match(pruning, r["acc_mean"])
    if len(runs) > 1:  # paired: each pipeline's projector against that pipeline's own pruning curve
        curves = {seed: sorted((run["bytes"][n], statistics.mean(a)) for n, a in run["accuracy"].items()
                               if on_pruning_curve(n)) for seed, run in runs.items()}
        for r in rows:
            if r["source"].startswith("projector"):
                r["gap_to_pruning_per_pipeline"] = {
                    seed: statistics.mean(run["accuracy"][r["source"]]) - at
                    for seed, run in runs.items() if r["source"] in run["accuracy"] and
                    (at := interpolate(curves[seed], run["bytes"][r["source"]])) is not None}
    return rows


def on_pruning_curve(source: str) -> bool:
    """LPLD pruning's points, full stored labels being pruning that keeps everything."""
    return source.startswith("pruned") or source == "full stored labels"


def pruning_curve(rows) -> list:
    """``(bytes, accuracy)`` of LPLD pruning (:func:`on_pruning_curve`), by bytes."""
    return sorted((r["bytes"], r["acc_mean"]) for r in rows if on_pruning_curve(r["source"]))


def interpolate(curve, nbytes):
    """Accuracy of ``curve`` at ``nbytes`` (linear in log bytes), or None outside its range."""
    for (b0, a0), (b1, a1) in itertools.pairwise(curve):
        if b0 <= nbytes <= b1:
            return a0 + (a1 - a0) * (math.log(nbytes / b0) / math.log(b1 / b0) if b1 > b0 else 0)
    return None


def bytes_to_match(curve, acc):
    """The fewest bytes at which ``curve`` (linear in log bytes between its points) reaches ``acc``: the point
    where it crosses that accuracy; None if it never does."""
    if curve and curve[0][1] >= acc:
        return curve[0][0]
    for (b0, a0), (b1, a1) in itertools.pairwise(curve):
        if a0 < acc <= a1:
            return round(b0 * (b1 / b0) ** ((acc - a0) / (a1 - a0)))
    return None


def table(rows) -> str:
    lines = [("| label source | bytes | vs full | agreement, KL at T | student test acc: mean ± pipeline std | "
              "student-seed std | label cost per step |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        fid = "—" if r["agreement"] is None else f"{r['agreement']:.1%}, {r['kl']:.3f}"
        spread = "" if r["acc_std"] is None else f" ± {r['acc_std']:.2%}"
        student = "—" if r["student_std"] is None else f"{r['student_std']:.2%}"
        cost = "—" if r["label_ms_per_step"] is None or r["source"] == "hard labels" else \
            f"{r['label_ms_per_step']:+.1f} ms"
        lines.append(f"| {r['source']} | {r['bytes']:,} | {r['bytes_vs_full']:.2%} | {fid} | "
                     f"{r['acc_mean']:.2%}{spread} ({r['pipelines']} pipeline{'s' * (r['pipelines'] > 1)}) | "
                     f"{student} (n={'/'.join(map(str, r['seeds']))}) | {cost} |")
    for r in rows:
        if "pruning_bytes_to_match" in r:
            at = r["pruning_at_equal_bytes"]
            match = r["pruning_bytes_to_match"]
            lines.append(f"\n{r['source']}: pruning at its {r['bytes']:,} bytes "
                         f"{'is outside the pruning range' if at is None else f'gives {at:.2%}'}; pruning matches "
                         f"its {r['acc_mean']:.2%} " + ("never" if match is None else f"at {match:,} bytes "
                                                          f"({match / r['bytes']:.2g}x the adapter)"))
            if r.get("gap_to_pruning_per_pipeline"):
                gaps = r["gap_to_pruning_per_pipeline"].values()
                lines[-1] += (f"; against its own pipeline's pruning at equal bytes "
                              f"{', '.join(f'{100 * g:+.2f}' for g in gaps)} points")
    return "\n".join(lines)


def plot(rows, path, teacher_acc, args, pipelines):
    """Accuracy against bytes (log x): pruning and top-k as curves, projectors as stars, the teacher as a
    triangle, hard labels as a line; a cross marks where pruning's curve reaches each float16 projector's accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    colours = iter(plt.cm.tab10.colors * 3)

    def err(r):
        return 100 * (r["acc_std"] if r["acc_std"] is not None else r["student_std"] or 0)

    for family, pick, marker in (("LPLD pruning (+ full labels)", on_pruning_curve, "D"),
                                 ("top-k stored", lambda n: n.startswith("top-"), "s")):
        curve = sorted((r for r in rows if pick(r["source"])), key=lambda r: r["bytes"])
        if curve:
            ax.errorbar([r["bytes"] for r in curve], [100 * r["acc_mean"] for r in curve],
                        yerr=[err(r) for r in curve], fmt=f"-{marker}", capsize=3, ms=5, color=next(colours),
                        label=family)
    hard = next((r for r in rows if r["source"] == "hard labels"), None)
    if hard:
        ax.axhline(100 * hard["acc_mean"], color="0.4", ls=":", lw=1,
                   label=f"hard labels ({100 * hard['acc_mean']:.1f}%)")
    for r in rows:
        if r["source"].startswith("projector") or r["source"].startswith("teacher"):
            colour = next(colours)
            star = r["source"].startswith("projector")
            ax.errorbar(r["bytes"], 100 * r["acc_mean"], yerr=err(r), fmt="*" if star else "^", capsize=3,
                        ms=11 if star else 7, color=colour, label=r["source"])
            match = r.get("pruning_bytes_to_match")
            if star and match and not r["source"].endswith(("int8", "int4")):
                ax.plot(match, 100 * r["acc_mean"], "x", color=colour, ms=10, mew=2)
                ax.plot([r["bytes"], match], [100 * r["acc_mean"]] * 2, ":", color=colour, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("bytes: stored labels / adapter.safetensors / teacher weights (log scale)")
    ax.set_ylabel("student test accuracy (%)")
    seeds = max(n for r in rows for n in r["seeds"])
    spread = (f"mean ± std over {pipelines} pipeline seeds" if pipelines > 1 else
              "mean ± std over student seeds" if seeds > 1 else "one pipeline, one student seed: no error bars")
    ax.set_title(f"{args.data.title or args.data.name}, {args.ipc} img/class, {args.student_epochs} epochs of labels, "
                 f"ResNet-20 teacher ({teacher_acc:.1%}), ConvNet students\n{spread}; x: where pruning matches the "
                 "projector",
                 fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
