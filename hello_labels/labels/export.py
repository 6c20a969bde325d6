"""Regenerate SRe2L-format label directories from an adapter: ship the < 1 MB adapter, rebuild the gigabytes
locally for codebases that can only read files.

Same conventions as SRe2L's ``relabel/generate_soft_label.py``: batches of a ``RandomSampler`` seeded
``fkd_seed`` over the ImageFolder, fresh RandomResizedCrop + flip per image, one CutMix/Mixup per batch, the
label computed on the mixed batch. Every random choice is seeded by (seed, epoch, batch), so an interrupted export
resumes (existing files are complete: they were written atomically) and yields the same files.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator, Optional

import torch
from tqdm.auto import tqdm

from ..distributed import DistEnv, all_ok, on_main
from ..errors import BadInputError, CorruptFileError, first_line
from ..files import atomic_write_json, loads_json, remove_stale_temps
from ..fingerprint import module_digest, source_fingerprint, tensor_digest
from ..model.fastpath import FastOptions, label_dtype
from ..runs import RunLock, check_settings, ensure_writable
from ..seeds import derive_seed
from .augment import apply_mix, draw_mix
from .classes import ClassMap, check_classes, output_classes
from .fkd import FKDBatch, LabelDir, SamplerOrder, batch_path, sampler_order, save_batch
from .recorded import LABEL_RECORD, RECORD_FILE, run_folder, write_label_record
from .settings import ExportConfig
from .views import AugmentedImages, BatchPlan, loader, open_images


def _plans(order: SamplerOrder, files, cfg: ExportConfig) -> Iterator[BatchPlan]:
    """One plan per ``(epoch, batch)`` in ``files``; its draws depend on (seed, epoch, batch) alone: image ``k``'s
    crop on ``derive_seed(seed, "crop", epoch, batch, k)``, the mix on ``derive_seed(seed, "mix", epoch, batch)``."""
    for step, (epoch, number) in enumerate(files):
        indices = order.batch(epoch, number)
        keys = [(i, derive_seed(cfg.seed, "crop", epoch, number, k)) for k, i in enumerate(indices)]
        mix = draw_mix(cfg.mix_type, len(indices), cfg.input_size, cfg.input_size,
                       derive_seed(cfg.seed, "mix", epoch, number), cfg.cutmix_alpha, cfg.mixup_alpha)
        yield BatchPlan(step, keys, torch.tensor(indices), mix, cfg.mix_type, info={"file": (epoch, number)})


# export_fkd's positional arguments before ExportConfig (0.2), still taken for one release with a warning
_POSITIONAL = ("epochs", "batch_size", "mix_type", "fp16", "input_size", "min_scale", "max_scale", "fkd_seed", "seed",
               "cutmix_alpha", "mixup_alpha", "gvbsm_index", "num_workers", "progress", "mean", "std", "class_map",
               "device", "label_options")


def _positional(values: tuple, settings: dict) -> dict:
    """The keyword arguments of an old-style call's positional ``values`` (warned about), none also in
    ``settings``."""
    if len(values) > len(_POSITIONAL):
        raise TypeError(f"export_fkd takes at most {len(_POSITIONAL) + 3} positional arguments")
    given = dict(zip(_POSITIONAL, values))
    if set(given) & set(settings):
        raise TypeError(f"export_fkd got multiple values for {sorted(set(given) & set(settings))}")
    warnings.warn("export_fkd(projector, data, out, epochs, batch_size, ...) is deprecated: pass the settings as "
                  "keywords or as an ExportConfig", DeprecationWarning, stacklevel=4)  # past no_grad's wrapper
    return given


@torch.no_grad()
def export_fkd(projector, data, out_dir, config: Optional[ExportConfig] = None, *positional, progress: bool = True,
               mean=None, std=None, class_map: ClassMap = None, device=None, label_options: Optional[dict] = None,
               **settings) -> LabelDir:
    """Write ``out_dir/epoch_<e>/batch_<b>.tar`` with the projector's logits as soft labels, as ``config`` (an
    :class:`~hello_labels.labels.settings.ExportConfig`; ``settings``: its fields, over it) says: ``epochs`` and
    ``batch_size`` are required.

    ``data``: the synthetic ImageFolder (or tensors, or the opened images); images are normalised with the
    projector's input mean/std. Returns the scanned directory. Any other model (a teacher: SRe2L's own
    relabelling) works too, given the input ``mean``/``std``.
    Soft-label columns are the model's class order, images SRe2L's (sampler over the sorted folders). A
    projector's class names must match the folder's classes by name (or ``class_map``) in sorted folder order,
    the order SRe2L's student numbers classes in; a plain model's class count must match the folder's.

    A projector labels through its engine (:meth:`LabelProjector.for_labels` with ``label_options``, built once
    from a copy: the projector is left as it is). The model moves to ``device`` (default: CUDA when available,
    ``cuda:LOCAL_RANK`` under ``torchrun``). Under ``torchrun`` each process writes every ``world_size``-th missing
    batch file and rank 0 the settings record; ``out_dir`` must be one folder all processes see (a shared file
    system across machines). Every file is a function of (seed, epoch, batch) alone, so the files are the same
    bytes as a one-process run's, and a rerun after a kill writes only what is missing, with any number of
    processes. Once every file is written, the settings readers need (``fkd_seed``, ``input_size``) are recorded
    inside ``out_dir`` too, so that they travel with the labels (:mod:`hello_labels.labels.recorded`).
    """
    if positional or not isinstance(config, (ExportConfig, type(None))):  # an old-style call
        named = dict(progress=progress, mean=mean, std=std, class_map=class_map, device=device,
                     label_options=label_options)
        return export_fkd(projector, data, out_dir, **{**named, **_positional((config, *positional), settings),
                                                       **settings})
    cfg = replace(config or ExportConfig(), **settings)
    is_projector = hasattr(projector, "for_labels")
    options = FastOptions(**(label_options or {}))
    if is_projector:
        mean, std = projector.config.input_mean, projector.config.input_std
    elif mean is None or std is None:
        raise BadInputError("exporting from a plain model needs the input mean and std")
    if not all(isinstance(n, int) and n > 0 for n in (cfg.epochs, cfg.batch_size)):
        raise BadInputError(f"epochs and batch size must be positive integers, got {cfg.epochs} and "
                            f"{cfg.batch_size}")
    images = AugmentedImages(open_images(data), cfg.input_size, mean, std, scale=(cfg.min_scale, cfg.max_scale))
    check_classes(getattr(images.source, "classes", []), projector.config.class_names if is_projector else None,
                  None if is_projector else output_classes(projector.eval(), len(mean), cfg.input_size), class_map,
                  model="model", sorted_order=True)  # before anything is written
    out = Path(out_dir)
    side = run_folder(out)
    env = DistEnv.setup(device)
    record = {"model": _model_fingerprint(projector, is_projector), "data": source_fingerprint(images.source),
              "batch_size": cfg.batch_size, "mix_type": cfg.mix_type, "fp16": cfg.fp16, "input_size": cfg.input_size,
              "scale": [cfg.min_scale, cfg.max_scale], "mean": list(mean), "std": list(std),
              "fkd_seed": cfg.fkd_seed, "seed": cfg.seed, "cutmix_alpha": cfg.cutmix_alpha,
              "mixup_alpha": cfg.mixup_alpha, "gvbsm_index": cfg.gvbsm_index,
              "label_dtype": label_dtype(options, env.device) if is_projector else "float32"}
    order = sampler_order(len(images), cfg.batch_size, cfg.fkd_seed)  # epoch by epoch: never all epochs in memory
    lock = RunLock(side, what=str(out))  # rank 0 writes the record, so rank 0 alone holds it
    with _removed_if_refused(side, out):
        try:
            missing = on_main(env, lambda: _start(lock, out, side, record, cfg.epochs, order.batches_per_epoch))
            projector.to(env.device)
            labeller = projector.for_labels(**asdict(options)) if is_projector else projector.eval()
            all_ok(env, lambda: _write(labeller, images, out, side, order, env.share(missing),
                                       cfg.epochs * order.batches_per_epoch - len(missing), cfg,
                                       progress and env.main, env.world_size))  # ends when all ranks have written
            on_main(env, lambda: write_label_record(out, record))  # last: the folder holds only labels till then
        finally:
            lock.release()  # before _removed_if_refused looks at the folder the lock file lives in
    return LabelDir.scan(out, seed=cfg.fkd_seed)


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


def _write(labeller, images, out, side, order, files, done, cfg: ExportConfig, progress, world_size) -> None:
    """Write the label ``files`` (``(epoch, batch)`` pairs; temporaries in ``side``); ``done`` files exist."""
    device = next(labeller.parameters()).device
    plans = _plans(order, files, cfg)
    data_loader, batches = loader(images, plans, len(files), cfg.num_workers)
    total = cfg.epochs * order.batches_per_epoch
    bar = tqdm(total=total, initial=done, desc="export-fkd", disable=not progress, dynamic_ncols=True)
    with torch.no_grad():
        for step, (views, _, flip, coords) in enumerate(data_loader):
            plan = batches.pop(step)
            mixed = apply_mix(views.to(device), cfg.mix_type, *plan.mix)
            logits = labeller(mixed).float().cpu()
            index, lam, bbox = plan.mix
            batch = FKDBatch(coords, flip, index, lam, bbox, logits,
                             plan.indices.clone() if cfg.gvbsm_index else None)
            epoch, number = plan.info["file"]
            save_batch(batch_path(out, epoch, number), batch, fp16=cfg.fp16, tmp_dir=side)
            bar.update(min(world_size, total - bar.n))  # the other processes write alongside
    bar.close()
