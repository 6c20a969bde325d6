"""Regenerate SRe2L-format label directories from an adapter: ship the < 1 MB adapter, rebuild the gigabytes
locally for codebases that can only read files.

Same conventions as SRe2L's ``relabel/generate_soft_label.py``: batches of a ``RandomSampler`` seeded
``fkd_seed`` over the ImageFolder, fresh RandomResizedCrop + flip per image, one CutMix/Mixup per batch, the
label computed on the mixed batch. Every random choice is seeded by (seed, epoch, batch), so an interrupted export
resumes (existing files are complete: they were written atomically) and yields the same files.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import torch
from tqdm.auto import tqdm

from ..distributed import DistEnv, all_ok, on_main
from ..errors import BadInputError, CorruptFileError, first_line
from ..files import atomic_write_json, loads_json, remove_stale_temps
from ..fingerprint import module_digest, source_fingerprint, tensor_digest
from ..model.fastpath import label_dtype
from ..runs import RunLock, check_settings, ensure_writable
from ..seeds import derive_seed
from .augment import apply_mix, draw_mix
from .classes import ClassMap, check_classes, output_classes
from .fkd import FKD_SEED, FKDBatch, LabelDir, SamplerOrder, batch_path, sampler_order, save_batch
from .recorded import LABEL_RECORD, RECORD_FILE, run_folder, write_label_record
from .views import AugmentedImages, BatchPlan, loader, open_images


def _plans(order: SamplerOrder, files, seed, mix_type, size, cutmix_alpha, mixup_alpha) -> Iterator[BatchPlan]:
    """One plan per ``(epoch, batch)`` in ``files``; its draws depend on (seed, epoch, batch) alone: image ``k``'s
    crop on ``derive_seed(seed, "crop", epoch, batch, k)``, the mix on ``derive_seed(seed, "mix", epoch, batch)``."""
    for step, (epoch, number) in enumerate(files):
        indices = order.batch(epoch, number)
        keys = [(i, derive_seed(seed, "crop", epoch, number, k)) for k, i in enumerate(indices)]
        mix = draw_mix(mix_type, len(indices), size, size, derive_seed(seed, "mix", epoch, number), cutmix_alpha,
                       mixup_alpha)
        yield BatchPlan(step, keys, torch.tensor(indices), mix, mix_type, info={"file": (epoch, number)})


@torch.no_grad()
def export_fkd(projector, data, out_dir, epochs: int, batch_size: int, mix_type: Optional[str] = None,
               fp16: bool = False, input_size: int = 224, min_scale: float = 0.08, max_scale: float = 1.0,
               fkd_seed: int = FKD_SEED, seed: int = 0, cutmix_alpha: float = 1.0, mixup_alpha: float = 0.8,
               gvbsm_index: bool = False, num_workers: int = 0, progress: bool = True, mean=None,
               std=None, class_map: ClassMap = None, device=None) -> LabelDir:
    """Write ``out_dir/epoch_<e>/batch_<b>.tar`` for ``epochs`` epochs with the projector's logits as soft labels.

    ``data``: the synthetic ImageFolder (or tensors); images are normalised with the projector's input mean/std.
    ``gvbsm_index`` appends G-VBSM's seventh element (the batch's image indices). Returns the scanned directory.
    Any other model (a teacher: SRe2L's own relabelling) works too, given the input ``mean``/``std``.
    Soft-label columns are the model's class order, images SRe2L's (sampler over the sorted folders). A
    projector's class names must match the folder's classes by name (or ``class_map``) in sorted folder order,
    the order SRe2L's student numbers classes in; a plain model's class count must match the folder's.

    A projector labels through its fast path (:meth:`LabelProjector.fast_path`; it is not merged by this). The
    model moves to ``device`` (default: CUDA when available, ``cuda:LOCAL_RANK`` under ``torchrun``). Under
    ``torchrun`` each process writes every ``world_size``-th missing batch file and rank 0 the settings record;
    ``out_dir`` must be one folder all processes see (a shared file system across machines). Every file is a
    function of (seed, epoch, batch) alone, so the files are the same bytes as a one-process run's, and a rerun
    after a kill writes only what is missing, with any number of processes. Once every file is written, the
    settings readers need (``fkd_seed``, ``input_size``) are recorded inside ``out_dir`` too, so that they travel
    with the labels (:mod:`hello_labels.labels.recorded`).
    """
    is_projector = hasattr(projector, "merge")
    if is_projector:
        mean, std = projector.config.input_mean, projector.config.input_std
    elif mean is None or std is None:
        raise BadInputError("exporting from a plain model needs the input mean and std")
    if epochs <= 0 or batch_size <= 0:
        raise BadInputError("epochs and batch size must be positive")
    images = AugmentedImages(open_images(data), input_size, mean, std, scale=(min_scale, max_scale))
    check_classes(getattr(images.source, "classes", []), projector.config.class_names if is_projector else None,
                  None if is_projector else output_classes(projector.eval(), len(mean), input_size), class_map,
                  model="model", sorted_order=True)  # before anything is written
    out = Path(out_dir)
    side = run_folder(out)
    env = DistEnv.setup(device)
    settings = {"model": _model_fingerprint(projector, is_projector), "data": source_fingerprint(images.source),
                "batch_size": batch_size, "mix_type": mix_type, "fp16": fp16, "input_size": input_size,
                "scale": [min_scale, max_scale], "mean": list(mean), "std": list(std), "fkd_seed": fkd_seed,
                "seed": seed, "cutmix_alpha": cutmix_alpha, "mixup_alpha": mixup_alpha,
                "gvbsm_index": gvbsm_index,
                "label_dtype": label_dtype(projector.fast_options, env.device) if is_projector else "float32"}
    order = sampler_order(len(images), batch_size, fkd_seed)  # epoch by epoch: never all epochs in memory
    lock = RunLock(side, what=str(out))  # rank 0 writes the record, so rank 0 alone holds it
    with _removed_if_refused(side, out):
        try:
            missing = on_main(env, lambda: _start(lock, out, side, settings, epochs, order.batches_per_epoch))
            projector.to(env.device)
            all_ok(env, lambda: _write(projector, is_projector, images, out, side, order, env.share(missing),
                                       epochs * order.batches_per_epoch - len(missing), epochs, mix_type, fp16,
                                       input_size, seed, cutmix_alpha, mixup_alpha, gvbsm_index, num_workers,
                                       progress and env.main, env.world_size))  # ends when all ranks have written
            on_main(env, lambda: write_label_record(out, settings))  # last: the folder holds only labels till then
        finally:
            lock.release()  # before _removed_if_refused looks at the folder the lock file lives in
    return LabelDir.scan(out, seed=fkd_seed)


@contextlib.contextmanager
def _removed_if_refused(*folders: Path):
    """Folders this call creates are removed again if it stops while they are still empty (a refusal)."""
    created = [f for f in folders if not f.exists()]
    try:
        yield
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: label files or a settings record to resume from
                folder.rmdir()
        raise


def _model_fingerprint(model, is_projector: bool) -> dict:
    if is_projector:
        config = {k: v for k, v in model.config_dict().items() if k != "metadata"}
        return {"config": config, "adapter": tensor_digest(model.adapter_state_dict())}
    return {"class": type(model).__name__, "weights": module_digest(model)}


def _record(path: Path, out: Path, settings: dict, epochs: int) -> None:
    """Check ``settings`` against the record of the run that wrote ``out`` (more epochs may be added), or
    start one; label files without a record are of unknown origin and never mixed with ours."""
    if path.is_file():
        try:
            saved = loads_json(path.read_bytes())
        except ValueError as err:
            raise CorruptFileError(f"settings record {path} is damaged ({first_line(err)}): export into a new "
                                   f"folder") from err
        check_settings(saved.get("settings", {}), settings, f"{out} holds label files exported with other settings",
                       "rerun with the original settings or export into a new folder")
        epochs = max(epochs, int(saved.get("epochs", 0)))
    elif any(out.glob("epoch_*/batch_*.tar")):
        raise BadInputError(f"{out} holds label files but no record of their settings ({path}): export into a "
                            f"new folder")
    atomic_write_json(path, {"settings": settings, "epochs": epochs})


def _start(lock: RunLock, out: Path, side: Path, settings: dict, epochs: int, batches: int) -> list:
    """Rank 0, before any work: lock, clear a killed run's temporaries, check or write the settings record;
    returns the ``(epoch, batch)`` files ``out`` still lacks."""
    lock.acquire()
    ensure_writable(out)
    for folder in (side, out):  # older versions kept their temporaries inside epoch_<e>
        remove_stale_temps(folder)
    if any(not p.name.startswith("epoch_") and p.name != LABEL_RECORD for p in out.iterdir()):
        # SRe2L counts every entry of the folder as an epoch: keep it clean
        raise BadInputError(f"{out} holds files other than epoch_<e> folders; export into an empty folder")
    _record(side / RECORD_FILE, out, settings, epochs)
    return [(e, b) for e in range(epochs) for b in range(batches) if not batch_path(out, e, b).exists()]


def _write(projector, is_projector, images, out, side, order, files, done, epochs, mix_type, fp16, input_size,
           seed, cutmix_alpha, mixup_alpha, gvbsm_index, num_workers, progress, world_size) -> None:
    """Write the label ``files`` (``(epoch, batch)`` pairs; temporaries in ``side``); ``done`` files exist."""
    labeller = projector.fast_path() if is_projector else projector.eval()
    device = next(projector.parameters()).device
    plans = _plans(order, files, seed, mix_type, input_size, cutmix_alpha, mixup_alpha)
    data_loader, batches = loader(images, plans, len(files), num_workers)
    total = epochs * order.batches_per_epoch
    bar = tqdm(total=total, initial=done, desc="export-fkd", disable=not progress, dynamic_ncols=True)
    with torch.no_grad():
        for step, (views, _, flip, coords) in enumerate(data_loader):
            plan = batches.pop(step)
            mixed = apply_mix(views.to(device), mix_type, *plan.mix)
            logits = labeller(mixed).float().cpu()
            index, lam, bbox = plan.mix
            batch = FKDBatch(coords, flip, index, lam, bbox, logits, plan.indices.clone() if gvbsm_index else None)
            epoch, number = plan.info["file"]
            save_batch(batch_path(out, epoch, number), batch, fp16=fp16, tmp_dir=side)
            bar.update(min(world_size, total - bar.n))  # the other processes write alongside
    bar.close()
