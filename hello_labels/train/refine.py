"""Refine the synthetic images so the projector's labels match the teacher's (HeLlO's image update).

The projector is a low-rank approximation of the teacher, so on some images their labels differ. Refinement
optimises a per-image pixel delta (Adam, in 0-1 pixel space) that shrinks the teacher–projector discrepancy (KL at
T, or MSE of logits) over the students' augmentations of each image: RandomResizedCrop + flip, then CutMix/Mixup
within the batch. Gradients reach the pixels through both frozen models. After each step the delta is clamped to
``[-epsilon, epsilon]`` and the image to ``[0, 1]``, so refined images stay within ``epsilon`` of the originals.
Optionally (RDED-style stitched images with their high-resolution sources known) a second term pulls the
projector's encoder features of each stored low-resolution patch, upsampled, towards those of its source.

The output folder mirrors the input: same class folders, file names and formats (PNG lossless; JPEG re-encoded at
``jpeg_quality`` with 4:4:4 chroma, so its pixel change can exceed the budget by the encoding error; a one-channel
projector reads, refines and writes every image as its luma). Each file is
written atomically, so on a rerun the files already in the output are complete and are skipped; batches are fixed
by the whole file list and every random draw by the file, step and view, so a resumed run writes the same files
as an uninterrupted one. ``OUT/refine.json`` holds the settings (checked on resume) and, at the end, the report.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from tqdm.auto import tqdm

from ..constants import LOSSES
from ..distributed import DistEnv, gather, on_main
from ..errors import BadInputError, CorruptFileError, escape, first_line
from ..files import atomic_path, atomic_write_json, loads_json, remove_stale_temps
from ..fingerprint import check_image_files, module_digest, tensor_digest
from ..labels.augment import apply_mix, crop_flip, draw_crop, draw_mix, normalize
from ..labels.classes import check_classes, output_classes
from ..labels.views import open_images
from ..model.fastpath import FastOptions, label_dtype
from ..runs import LOCK_FILE, RunLock, check_apart, check_settings
from ..seeds import derive_seed
from .evaluate import discrepancy, fidelity
from .settings import RefineConfig  # noqa: F401  (defined torch-free for the CLI; imported from here)

REPORT_FILE = "refine.json"
GREY_MODES = ("L",)  # kept greyscale; every other mode is handled (and saved) as RGB, as the loader sees it,
# except for a one-channel projector, which sees (and refines, and saves) every image as its luma ("L")
# How each format is written back: PNG (and other lossless formats) exactly; JPEG at high quality, no chroma
# subsampling; WebP losslessly.
_SAVE_OPTIONS = {"JPEG": lambda q: {"quality": q, "subsampling": 0}, "WEBP": lambda q: {"lossless": True}}


class ImageFile(NamedTuple):
    """One image of the folder: path relative to the folder, ImageFolder index and class, ``(H, W)``, channels."""

    rel: str
    index: int
    label: int
    size: Tuple[int, int]
    channels: int


# ----------------------------------------------------------------------------- the optimisation (no I/O)
def augmented_views(images: torch.Tensor, indices: Sequence[int], step: int, cfg: RefineConfig,
                    mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``images [B, C, H, W]`` in 0-1 -> normalised, mixed views ``[B*views, C, S, S]``, differentiably.

    Crop/flip of view ``v`` of image ``indices[b]`` at ``step`` come from ``derive_seed(seed, "crop", index, step,
    v)``; the mix from ``derive_seed(seed, "mix", min(indices), step)``."""
    scale, ratio, size = (cfg.min_scale, cfg.max_scale), (3 / 4, 4 / 3), cfg.input_size
    views = []
    for v in range(cfg.views):
        for image, index in zip(images, indices):
            coords, flip = draw_crop(image, scale, ratio, derive_seed(cfg.seed, "crop", index, step, v))
            views.append(crop_flip(image, coords, flip, size))
    views = normalize(torch.stack(views), mean, std)
    mix = draw_mix(cfg.mix_type, len(views), size, size, derive_seed(cfg.seed, "mix", min(indices), step))
    return apply_mix(views, cfg.mix_type, *mix)


class Patch(NamedTuple):
    """A stored low-resolution patch ``box = (top, left, h, w)`` of image ``image`` (batch position) and the
    projector features ``[D]`` of its high-resolution source."""

    image: int
    box: Tuple[int, int, int, int]
    target: torch.Tensor


def patch_feature_loss(projector, images: torch.Tensor, patches: Sequence[Patch]) -> torch.Tensor:
    """Mean ``1 - cos(features(upsampled patch), features(source))`` over ``patches``; ``images`` in 0-1."""
    size = list(projector.inputs.size)
    crops = [TF.resize(images[p.image, :, p.box[0]:p.box[0] + p.box[2], p.box[1]:p.box[1] + p.box[3]], size,
                       antialias=True) for p in patches]
    cfg = projector.config
    feats = projector.features(normalize(torch.stack(crops), cfg.input_mean, cfg.input_std))
    targets = torch.stack([p.target for p in patches]).to(feats)
    return (1 - F.cosine_similarity(feats, targets, dim=-1)).mean()


def refine_batch(projector, teacher, images: torch.Tensor, indices: Sequence[int], cfg: RefineConfig,
                 patches: Sequence[Patch] = ()) -> Tuple[torch.Tensor, Optional[float], Optional[float]]:
    """Refine ``images [B, C, H, W]`` (0-1, C = 1 or 3, one size) of folder indices ``indices [B]``; grey images
    are fed to a three-channel projector as three equal channels.

    Returns the refined images ``[B, C, H, W]`` (``|Δ| <= epsilon``, in 0-1) and the loss at the first and last
    step. Neither model's parameters receive gradients."""
    mean, std = projector.config.input_mean, projector.config.input_std
    delta = torch.zeros_like(images, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=cfg.lr)
    losses = []
    for step in range(cfg.steps):
        x = (images + delta).expand(-1, projector.config.input_channels, -1, -1)
        views = augmented_views(x, indices, step, cfg, mean, std)
        loss = discrepancy(projector(views).float(), teacher(views).float(), cfg.loss, cfg.temperature)
        if patches and cfg.feature_weight:
            loss = loss + cfg.feature_weight * patch_feature_loss(projector, x, patches)
        delta.grad, = torch.autograd.grad(loss, delta)
        optimizer.step()
        with torch.no_grad():
            delta.clamp_(-cfg.epsilon, cfg.epsilon)
            delta.copy_((images + delta).clamp_(0, 1) - images)
        losses.append(loss.item())
    return (images + delta).detach(), (losses[0] if losses else None), (losses[-1] if losses else None)


# ----------------------------------------------------------------------------- files
def list_images(data, channels: int = 3) -> Tuple[List[ImageFile], List[str]]:
    """The images of an ImageFolder tree (its path, or the folder opened) in ImageFolder order (headers only are
    read), and its class names; ``channels``: the projector's (1: every image is read as grey)."""
    folder = open_images(data)
    root = Path(folder.root)
    files = []
    for index, (path, label) in enumerate(folder.samples):
        with Image.open(path) as img:
            files.append(ImageFile(Path(path).relative_to(root).as_posix(), index, label, (img.height, img.width),
                                   1 if read_mode(img.mode, channels) == "L" else 3))
    return files, list(folder.classes)


def plan_batches(files: Sequence[ImageFile], batch_size: int) -> List[List[ImageFile]]:
    """Batches of at most ``batch_size`` images of one size and channel count, in folder order per group."""
    groups: Dict[tuple, List[ImageFile]] = {}
    for f in files:
        groups.setdefault((f.size, f.channels), []).append(f)
    return [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def read_mode(mode: str, channels: int) -> str:
    """The PIL mode an image of ``mode`` is read in for a projector of ``channels``: "L" for greyscale images or a
    one-channel projector, else "RGB" (as the students' loader converts)."""
    return "L" if channels == 1 or mode in GREY_MODES else "RGB"


def read_image(path, channels: int = 3) -> Tuple[torch.Tensor, str]:
    """``[C, H, W]`` uint8 in the mode :func:`read_mode` gives and the PIL format."""
    with Image.open(path) as img:
        return TF.pil_to_tensor(img.convert(read_mode(img.mode, channels))), img.format


def read_pixels(path, channels: int) -> torch.Tensor:
    """The image at ``path`` as a projector of ``channels`` input channels takes it: ``[channels, H, W]`` in 0-1."""
    return TF.to_dtype(read_image(path, channels)[0], torch.float32, scale=True).expand(channels, -1, -1)


def write_image(image: torch.Tensor, path, fmt: str, jpeg_quality: int = 95) -> None:
    """Quantise ``[C, H, W]`` 0-1 to uint8 and write it atomically as ``fmt`` (PIL format name)."""
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    pil = TF.to_pil_image(array)
    options = _SAVE_OPTIONS.get(fmt, lambda q: {})(jpeg_quality)
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        pil.save(tmp, format=fmt, **options)


def pixel_change(data, out_dir, files: Sequence[ImageFile], channels: int = 3) -> dict:
    """Change of the saved files against the originals (as a projector of ``channels`` reads them) in 0-255
    levels: mean and max ``|Δ|``, PSNR (dB) over all pixels and for the worst image (``None`` where nothing
    changed)."""
    total_abs, total_sq, count, max_abs, worst_mse = 0.0, 0.0, 0, 0, 0.0
    for f in files:
        a = read_image(Path(data) / f.rel, channels)[0].numpy().astype(np.float64)
        b = read_image(Path(out_dir) / f.rel, channels)[0].numpy().astype(np.float64)
        if a.shape != b.shape:
            raise CorruptFileError(f"{Path(out_dir) / f.rel} has shape {b.shape}, the original {a.shape}")
        diff = np.abs(a - b)
        total_abs, total_sq, count = total_abs + diff.sum(), total_sq + (diff ** 2).sum(), count + diff.size
        max_abs, worst_mse = max(max_abs, int(diff.max())), max(worst_mse, float((diff ** 2).mean()))
    return {"unit": "0-255 levels", "images": len(files), "mean_abs": float(total_abs / max(count, 1)),
            "max_abs": max_abs, "psnr_db": _psnr(total_sq / max(count, 1)), "min_psnr_db": _psnr(worst_mse)}


def _psnr(mse: float) -> Optional[float]:
    return None if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def load_patches(patches, data) -> Dict[str, List[Tuple[Tuple[int, int, int, int], Path]]]:
    """A patch map: a dict or a JSON file ``{relative image path: [{"box": [top, left, h, w], "source": path}]}``.

    Relative ``source`` paths are resolved against the JSON file's folder (or ``data`` for a dict)."""
    base = Path(data)
    if isinstance(patches, (str, Path)):
        path = Path(patches)
        try:
            patches, base = loads_json(path.read_bytes()), path.parent
        except (OSError, ValueError) as err:
            raise CorruptFileError(f"cannot read patch map {path} ({first_line(err)})") from err
    if not isinstance(patches, dict):
        raise BadInputError("a patch map must be a JSON object {relative image path: [patches]}")
    out = {}
    for rel, entries in patches.items():
        try:
            out[Path(rel).as_posix()] = [(tuple(int(v) for v in e["box"]), base / e["source"]) for e in entries]
        except (KeyError, TypeError, ValueError) as err:
            raise BadInputError(f"patch map entry for '{rel}' must be a list of "
                                f'{{"box": [top, left, h, w], "source": path}}: {err}') from err
        for box, source in out[Path(rel).as_posix()]:
            if len(box) != 4 or min(box[2:]) <= 0 or min(box[:2]) < 0:
                raise BadInputError(f"patch box {list(box)} of '{rel}' must be [top, left, h, w] with h, w > 0")
            if not source.is_file():
                raise BadInputError(f"patch source {source} of '{rel}' not found")
    return out


def check_patches(files: Sequence[ImageFile], patch_map) -> None:
    """Every patch map key is an image of the folder and every box lies inside its image."""
    sizes = {f.rel: f.size for f in files}
    for rel, entries in patch_map.items():
        if rel not in sizes:
            raise BadInputError(f"patch map names '{rel}', which is not an image of the folder")
        for box, _ in entries:
            if box[0] + box[2] > sizes[rel][0] or box[1] + box[3] > sizes[rel][1]:
                raise BadInputError(f"patch box {list(box)} lies outside '{rel}' ({sizes[rel][0]}x{sizes[rel][1]})")


@torch.no_grad()
def source_patches(projector, rels: Sequence[str], patch_map) -> List[Patch]:
    """The patches of the images ``rels`` (batch order), with their sources' projector features."""
    out, cfg = [], projector.config
    for position, rel in enumerate(rels):
        for box, source in patch_map.get(rel, ()):
            image = read_pixels(source, cfg.input_channels)
            target = projector.features(normalize(image[None].to(projector.device), cfg.input_mean, cfg.input_std))
            out.append(Patch(position, box, target[0]))
    return out


@torch.no_grad()
def patch_distance(projector, data, patch_map) -> Optional[float]:
    """Mean ``1 - cos`` between the features of the stored patches of ``data``, upsampled, and their sources."""
    total, count = 0.0, 0
    for rel in patch_map:
        patches = source_patches(projector, [rel], patch_map)
        if patches:
            image = read_pixels(Path(data) / rel, projector.config.input_channels)
            total += float(patch_feature_loss(projector, image[None].to(projector.device), patches)) * len(patches)
            count += len(patches)
    return total / count if count else None


# ----------------------------------------------------------------------------- fidelity
@torch.no_grad()
def teacher_fidelity(projector, teacher, data, cfg: RefineConfig, class_map=None) -> dict:
    """Agreement and KL at T of projector vs teacher on held-out unmixed views of ``data`` (a folder, or the folder
    opened), overall and per class (the views of ``hello-labels eval``: same seed, same views for the input and the
    refined folder)."""
    from ..labels.targets import TeacherTargets
    from .jobs import augmented

    images = augmented(data, cfg.input_size, projector.config.input_mean, projector.config.input_std,
                       cfg.min_scale, cfg.max_scale, projector.config.class_names, class_map)
    targets = TeacherTargets(images, teacher, seed=cfg.seed, mix_type=None)
    r = fidelity(projector, targets, targets.held_out(cfg.eval_views, cfg.eval_batch_size),
                 list(images.source.classes), cfg.temperature)
    per_class = {name: {"views": r.per_class_views[name], "agreement": r.per_class[name], "kl": r.per_class_kl[name]}
                 for name in r.per_class}
    return {"views": r.views, "agreement": r.agreement, "kl": r.kl, "temperature": cfg.temperature,
            "per_class": per_class}


def report_table(report: dict) -> str:
    """A :func:`refine` report as text: overall and per-class agreement and KL before -> after, pixel change; class
    names escaped (:func:`hello_labels.errors.escape`)."""
    b, a, px = report["before"], report["after"], report["pixel_change"]
    psnr = "inf" if px["psnr_db"] is None else f"{px['psnr_db']:.1f}"
    lines = [f"{report['images']} images ({report['refined_this_run']} refined now, {report['kept_from_earlier_run']} "
             f"kept from an earlier run) in {report['output']}",
             f"held-out views {a['views']}   agreement {b['agreement']:.2%} -> {a['agreement']:.2%}   "
             f"KL@T={a['temperature']:g} {b['kl']:.4f} -> {a['kl']:.4f}",
             f"pixel change (0-255): mean |d| {px['mean_abs']:.2f}, max |d| {px['max_abs']}, PSNR {psnr} dB"]
    if report.get("patch_feature_distance"):
        d = report["patch_feature_distance"]
        lines.append(f"patch feature distance (1 - cos) {d['before']:.4f} -> {d['after']:.4f}")
    lines.append(f"{'class':<24} {'views':>6} {'agreement':>17} {'KL':>17}")
    for name, before in b["per_class"].items():
        after = a["per_class"].get(name, {"agreement": float("nan"), "kl": float("nan")})
        lines.append(f"{escape(name)[:24]:<24} {before['views']:>6} {before['agreement']:>7.1%} -> "
                     f"{after['agreement']:>6.1%} {before['kl']:>7.4f} -> {after['kl']:.4f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the job
def _settings(cfg: RefineConfig, data: Path, files, projector, teacher, patch_map, device,
              options: FastOptions) -> dict:
    """What determines the refined files: the config, the input (every image decoded and hashed), the projector's
    config and adapter, the teachers' weights (ensemble weights included), the patch map, the precision of the
    projector's label passes on ``device``."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in RefineConfig.RESUMABLE}
    patches = json.dumps({k: [[list(box), str(src)] for box, src in e] for k, e in sorted(patch_map.items())})
    config = {k: v for k, v in projector.config_dict().items() if k != "metadata"}
    settings.update(input=str(data.resolve()), images=len(files),
                    data=check_image_files([str(data / f.rel) for f in files], data),
                    projector={"config": config, "adapter": tensor_digest(projector.adapter_state_dict())},
                    teacher=module_digest(teacher),
                    patches=hashlib.sha256(patches.encode()).hexdigest()[:16] if patch_map else None,
                    label_dtype=label_dtype(options, device))
    return settings


def _start(out: Path, settings: dict) -> None:
    """Record the settings, or check them against an interrupted run's; refuse a foreign non-empty folder.
    Called holding the run lock on ``out``."""
    record = out / REPORT_FILE
    if record.is_file():
        try:
            saved = loads_json(record.read_bytes()).get("settings", {})
        except (ValueError, AttributeError) as err:
            raise CorruptFileError(f"{record} is damaged ({first_line(err)}): choose a new output folder") from err
        check_settings(saved, settings, f"{out} holds images refined with other settings",
                       "rerun with the original settings or choose another output folder")
        remove_stale_temps(out)  # temporaries of a killed run's atomic writes
    elif any(p.name != LOCK_FILE for p in out.iterdir()):
        raise BadInputError(f"{out} is not empty and holds no {REPORT_FILE}: choose a new output folder")
    atomic_write_json(record, {"status": "running", "settings": settings})


def refine(projector, teachers: Sequence, data, out_dir, config: Optional[RefineConfig] = None,
           teacher_weights: Optional[Sequence[float]] = None, patches: Union[None, str, Path, dict] = None,
           progress: bool = True, device=None, class_map=None, label_options: Optional[dict] = None) -> dict:
    """Refine the ImageFolder ``data`` into ``out_dir`` (same layout, names, formats) and report.

    ``teachers``: spec strings and/or modules (averaged with ``teacher_weights``), fed the same normalised views
    as the projector. ``patches``: optional patch map (see :func:`load_patches`) for the feature term. Files
    already in ``out_dir`` from an interrupted run with the same settings are kept. Returns the report (also in
    ``out_dir/refine.json``): before/after :func:`teacher_fidelity`, :func:`pixel_change`, counts, seconds.
    The projector and teachers are moved to ``device`` (default: CUDA when available, ``cuda:LOCAL_RANK`` under
    ``torchrun``); the projector's label passes run on its engine (:meth:`LabelProjector.for_labels` with
    ``label_options``, built once). The
    folder's classes are matched to the projector's by name (or ``class_map``, see
    :mod:`hello_labels.labels.classes`).

    Under ``torchrun`` each process refines every ``world_size``-th batch (batches are fixed by the file list, so
    the files are the same bytes as a one-process run's) into one ``out_dir`` all processes see; rank 0 holds the
    lock, records the settings, scores before and after and writes the report. A rerun after a kill, with any
    number of processes, refines only the images not yet written."""
    from ..labels.teachers import load_teachers

    cfg = config or RefineConfig()
    if cfg.loss not in LOSSES:
        raise BadInputError(f"unknown loss '{cfg.loss}'; expected one of {list(LOSSES)}")
    if cfg.steps < 0 or min(cfg.views, cfg.batch_size, cfg.eval_views, cfg.input_size) <= 0 \
            or not 0 <= cfg.epsilon <= 1:
        raise BadInputError("steps must be >= 0, views, batch_size, eval_views and input_size positive, epsilon in "
                            "[0, 1]")
    channels = projector.config.input_channels
    data, out = Path(data), Path(out_dir)
    check_apart(out, data)
    folder = open_images(data)  # once: listed here, scored before refining
    files, classes = list_images(folder, channels)
    teacher = load_teachers(teachers, teacher_weights, num_classes=projector.num_classes)
    check_classes(classes, projector.config.class_names, output_classes(teacher, channels, cfg.input_size), class_map)
    patch_map = load_patches(patches, data) if patches is not None else {}
    check_patches(files, patch_map)
    options = FastOptions(**(label_options or {}))
    env = DistEnv.setup(device)
    lock = RunLock(out)  # created here, writable, and rank 0's alone until refine returns
    try:
        settings = on_main(env, lambda: _begin(lock, cfg, data, out, files, projector, teacher, patch_map, env.device,
                                               options))
        return _refine(projector, teacher, folder, out, cfg, files, patch_map, settings, progress, env, class_map,
                       options)
    finally:
        lock.release()


def _begin(lock: RunLock, cfg: RefineConfig, data: Path, out: Path, files, projector, teacher, patch_map,
           device, options: FastOptions) -> dict:
    """Rank 0, before any work: lock ``out``, record the settings or check them against an interrupted run's."""
    lock.acquire()
    settings = _settings(cfg, data, files, projector, teacher, patch_map, device, options)
    _start(out, settings)
    return settings


def _refine(projector, teacher, folder, out: Path, cfg: RefineConfig, files, patch_map, settings, progress,
            env: DistEnv, class_map, options: FastOptions) -> dict:
    """:func:`refine` of the opened input ``folder`` once rank 0 holds the run lock on ``out``, with the classes
    checked: each process refines every ``world_size``-th batch; rank 0 scores before and after and writes the
    report."""
    data = Path(folder.root)
    projector.to(env.device).eval()
    teacher.to(env.device).eval()
    labeller = projector.for_labels(**asdict(options))  # BatchNorm folded, channels_last; gradients reach pixels
    t0 = time.perf_counter()
    before = teacher_fidelity(projector, teacher, folder, cfg, class_map) if env.main else None
    patches_before = patch_distance(labeller, data, patch_map) if patch_map and env.main else None
    done = sum((out / f.rel).is_file() for f in files)
    bar = tqdm(total=len(files), initial=done, disable=not (progress and env.main), desc="refine",
               dynamic_ncols=True)
    first, last, refined = [], [], 0
    for batch in env.share(plan_batches(files, cfg.batch_size)):
        todo = [f for f in batch if not (out / f.rel).is_file()]
        if not todo:
            continue
        loaded = [read_image(data / f.rel, projector.config.input_channels) for f in batch]
        images = TF.to_dtype(torch.stack([image for image, _ in loaded]).to(env.device), torch.float32, scale=True)
        result, loss0, loss1 = refine_batch(labeller, teacher, images, [f.index for f in batch], cfg,
                                            source_patches(labeller, [f.rel for f in batch], patch_map))
        for f, image, (_, fmt) in zip(batch, result, loaded):
            if f in todo:
                write_image(image, out / f.rel, fmt, cfg.jpeg_quality)
        refined += len(todo)
        if loss0 is not None:
            first.append(loss0)
            last.append(loss1)
            bar.set_postfix(loss=f"{loss0:.4f}->{loss1:.4f}", refresh=False)
        bar.update(min(len(todo) * env.world_size, bar.total - bar.n))  # the other processes refine alongside
    bar.close()
    shares = gather(env, (refined, first, last))  # also waits for every process's files
    refined = sum(share[0] for share in shares)
    first = [loss for share in shares for loss in share[1]]
    last = [loss for share in shares for loss in share[2]]
    return on_main(env, lambda: _report(projector, labeller, teacher, data, out, cfg, files, patch_map, settings,
                                        class_map, before, patches_before, refined, first, last, t0))


def _report(projector, labeller, teacher, data: Path, out: Path, cfg: RefineConfig, files, patch_map, settings,
            class_map, before, patches_before, refined, first, last, t0) -> dict:
    """Rank 0, once every image is written: score the refined folder and write ``OUT/refine.json``."""
    after = teacher_fidelity(projector, teacher, out, cfg, class_map)
    report = {"status": "done", "settings": settings, "input": str(data), "output": str(out),
              "classes": len({f.label for f in files}), "images": len(files), "refined_this_run": refined,
              "kept_from_earlier_run": len(files) - refined,
              "loss": {"first_step": float(np.mean(first)) if first else None,
                       "last_step": float(np.mean(last)) if last else None},
              "before": before, "after": after,
              "pixel_change": pixel_change(data, out, files, projector.config.input_channels),
              "patch_feature_distance": None if not patch_map else
              {"before": patches_before, "after": patch_distance(labeller, out, patch_map)},
              "seconds": time.perf_counter() - t0}
    atomic_write_json(out / REPORT_FILE, report)
    return report
