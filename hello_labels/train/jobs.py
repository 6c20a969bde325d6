"""The jobs behind the CLI, as library calls: distil from teachers, convert label files, evaluate fidelity.

Every job reads the image folder's labels in the projector's class order (mapped by name, see
:mod:`hello_labels.labels.classes`) and checks the teachers' class count, so a hard label (the CE term, per-class
agreement, a prototype head) always means the class of that projector output."""
from __future__ import annotations

import copy
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..errors import BadInputError
from ..identity import teacher_identity
from ..labels.classes import ClassMap, ClassOrder, check_classes, output_classes
from ..labels.fkd import LabelDir
from ..labels.recorded import label_settings
from ..labels.targets import ImageLabelTargets, StoredTargets, TeacherTargets, load_image_labels
from ..labels.teachers import load_teachers
from ..labels.views import AugmentedImages, class_names_for, open_images
from ..model.heads import resolve_class_names
from ..model.inputs import IMAGENET_MEAN, IMAGENET_STD
from ..model.projector import LabelProjector
from ..runs import check_apart
from .distill import DistillConfig, distill
from .evaluate import FidelityReport, fidelity


def augmented(data, input_size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD, min_scale: float = 0.08,
              max_scale: float = 1.0, class_names=None, class_map: ClassMap = None) -> AugmentedImages:
    """The synthetic set with SRe2L's RandomResizedCrop(input_size, scale=(min_scale, max_scale)) + flip; with
    ``class_names``, its labels are indices into them (folders matched by name, ``class_map`` if given)."""
    images = AugmentedImages(open_images(data), input_size, mean, std, scale=(min_scale, max_scale))
    return in_class_order(images, class_names, class_map) if class_names is not None else images


def in_class_order(images: AugmentedImages, class_names, class_map: ClassMap = None) -> AugmentedImages:
    """``images`` whose labels index ``class_names`` (a projector's order), matched by folder name; a source
    without ``classes`` (a custom dataset) is taken as already in that order."""
    source = images.source
    if not hasattr(source, "classes") or (isinstance(source, ClassOrder) and source.classes == list(class_names)
                                          and class_map is None):
        return images
    ordered = copy.copy(images)
    ordered.source = ClassOrder(source, class_names, class_map)
    return ordered


def check_teachers(teachers, images: AugmentedImages, num_classes: int) -> None:
    """The teachers' logits must have one entry per projector class (probed with one blank input)."""
    check_classes(range(num_classes), model_classes=output_classes(teachers, len(images.mean), images.size),
                  what="projector")


def check_normalisation(projector: LabelProjector, images: AugmentedImages, name: str = "the projector") -> None:
    """``images`` must be normalised as ``projector`` expects its inputs (mean, std, channels): views normalised
    otherwise would be labelled and fitted silently wrong."""
    if (tuple(projector.config.input_mean), tuple(projector.config.input_std)) != (tuple(images.mean),
                                                                                 tuple(images.std)):
        raise BadInputError(f"{name} expects inputs normalised with mean {list(projector.config.input_mean)} "
                            f"std {list(projector.config.input_std)}, the images use {list(images.mean)} "
                            f"{list(images.std)}")


def make_projector(images: AugmentedImages, base: Optional[str] = None, pretrained=None, init: Optional[str] = None,
                   class_names=None, class_map: ClassMap = None, trust_remote_code: bool = False,
                   check_base: bool = True, **options) -> LabelProjector:
    """A fresh projector on ``base`` (input normalisation taken from the data) or an existing one (``init``,
    loaded with ``trust_remote_code`` / ``check_base`` as :meth:`LabelProjector.from_pretrained`).

    ``class_names`` (default: the folder names) fix the output order; the folder must match them by name."""
    if init:
        ignored = [k for k, v in {"base": base, "pretrained": pretrained, "class_names": class_names, **options}.items()
                   if v is not None]
        if ignored:
            raise BadInputError(f"init={init!r} starts from a saved projector: {', '.join(ignored)} would have no "
                                f"effect; leave them out or start from a base")
        projector = LabelProjector.from_pretrained(init, trust_remote_code=trust_remote_code, check_base=check_base)
        check_normalisation(projector, images, name=f"projector {init}")
        return projector
    if not base:
        raise BadInputError("give a base (--base) or an existing projector to start from (--init)")
    names = resolve_class_names(class_names_for(images.source, class_names))
    images = in_class_order(images, names, class_map)  # checked here; prototype labels in the head's order
    if options.get("head_init") == "prototype" and "prototype_images" not in options:
        options["prototype_images"], options["prototype_labels"] = prototype_batch(images)
    return LabelProjector.from_base(base, pretrained, class_names=names, input_mean=images.mean,
                                    input_std=images.std, input_channels=len(images.mean), **options)


def prototype_batch(images: AugmentedImages):
    """Every synthetic image, whole (centre view), for a prototype head."""
    views = [images[(i, None)] for i in range(len(images))]
    return torch.stack([v[0] for v in views]), torch.tensor([v[1] for v in views])


def distill_from_teachers(data, teachers: Sequence, out_dir, projector: LabelProjector,
                          config: Optional[DistillConfig] = None, teacher_weights=None, mix_type="cutmix",
                          input_size: int = 224, min_scale: float = 0.08, max_scale: float = 1.0, resume=False,
                          progress=True, images: Optional[AugmentedImages] = None, class_map: ClassMap = None,
                          command: Optional[str] = None, license: Optional[str] = None) -> dict:
    """``hello-labels distill``: fit ``projector`` to the (weighted) average of ``teachers`` on the synthetic set.
    ``command`` (the command line, paths cut: :func:`hello_labels.identity.command_line`) and ``license`` (a Hub
    license id) go into ``config.json`` and the card. ``images``: the synthetic set already opened and normalised as
    the projector expects (checked), else opened here with ``input_size``, ``min_scale``, ``max_scale``."""
    config = config or DistillConfig()
    check_apart(out_dir, data)
    images = images or augmented(data, input_size, projector.config.input_mean, projector.config.input_std,
                                 min_scale, max_scale)
    check_normalisation(projector, images)
    images = in_class_order(images, projector.config.class_names, class_map)
    ensemble = load_teachers(teachers, teacher_weights, num_classes=projector.num_classes)
    check_teachers(ensemble, images, projector.num_classes)
    names = ", ".join(t if isinstance(t, str) else type(t).__name__ for t in teachers)
    targets = TeacherTargets(images, ensemble, seed=config.seed, mix_type=mix_type, description=names)
    weights = ensemble.weights.tolist() if len(teachers) > 1 else [None] * len(teachers)
    identities = [teacher_identity(spec, model, weight)
                  for spec, model, weight in zip(teachers, ensemble.teachers, weights)]
    return distill(projector, targets, out_dir, config, resume=resume, progress=progress,
                   metadata=_run_metadata(command, license, teacher=identities), data_name=_data_name(data))


def _data_name(data) -> str:
    return Path(data).resolve().name if isinstance(data, (str, os.PathLike)) else type(data).__name__


def _run_metadata(command: Optional[str], license: Optional[str], **entries) -> dict:
    """``config.json`` metadata of a job: identities only (it is published), the command line and license if
    given."""
    return dict(entries, **{k: v for k, v in {"command": command, "license": license}.items() if v})


def convert_labels(data, labels, out_dir, projector: LabelProjector, config: Optional[DistillConfig] = None,
                   input_size: Optional[int] = None, epochs: Optional[int] = None, fkd_seed: Optional[int] = None,
                   resume=False, progress=True, images: Optional[AugmentedImages] = None,
                   class_map: ClassMap = None, command: Optional[str] = None, license: Optional[str] = None) -> dict:
    """``hello-labels convert``: fit ``projector`` to stored labels, no teacher needed (``command``, ``license``
    as :func:`distill_from_teachers`).

    ``labels``: an SRe2L label directory (crops, flips and mixes replayed on ``data``), or a file of one soft label
    per image ``[N, C]`` (``.pt``/``.npy``/``.safetensors``); their columns are the projector's class order.
    ``config.steps=None`` (the default): :func:`convert_steps`; fewer steps than a label directory has batch files
    leave its last epochs unused, which is warned about (:class:`UnusedLabelsWarning`).
    ``input_size`` / ``fkd_seed`` (None: not given) default to what ``export-fkd`` recorded for the directory, else
    224 / 42; a value contradicting the record is refused (:func:`hello_labels.labels.recorded.label_settings`).
    ``images``: the synthetic set already opened at that size and normalised as the projector expects (the CLI's;
    both checked), else opened here."""
    config = config or DistillConfig(steps=None)
    check_apart(out_dir, data)
    settings = label_settings(labels, input_size=input_size, fkd_seed=fkd_seed)
    input_size, fkd_seed = settings["input_size"], settings["fkd_seed"]
    images = images or augmented(data, input_size, projector.config.input_mean, projector.config.input_std)
    if images.size != input_size:
        raise BadInputError(f"the images are opened at {images.size} px but the labels were made at {input_size} px")
    check_normalisation(projector, images)
    images = in_class_order(images, projector.config.class_names, class_map)
    targets = _stored_targets(projector, images, labels, epochs, fkd_seed, seed=config.seed, description=str(labels))
    config = replace(config, steps=convert_steps(targets, config.steps))
    found = targets.fingerprint()
    identity = {"source": found["source"], "name": Path(labels).resolve().name, "images": found["images"]}
    if isinstance(targets, StoredTargets):  # files in use, their bytes, the first file's sha256
        identity.update(epochs=found["epochs"], batch_size=found["batch_size"], **found["files"])
    else:
        identity["values"] = found["values"]
    entries = {"teacher": identity}
    if isinstance(targets, StoredTargets):
        # which epochs of which label files were trained on, so that `evaluate` can tell held-out epochs from
        # in-sample ones
        entries["labels_trained"] = {"first_file": identity["first_file"], "epochs": identity["epochs"]}
    return distill(projector, targets, out_dir, config, resume=resume, progress=progress,
                   metadata=_run_metadata(command, license, **entries), data_name=_data_name(data))


class UnusedLabelsWarning(UserWarning):
    """A conversion whose steps replay only part of a label directory's batch files."""


# the views of each image a conversion makes at least: SRe2L's students see each image once an epoch for 300
# epochs. Fewer underfit: on the Fashion-MNIST benchmark at IPC 50 (100 stored epochs) one pass (100 views of each
# image) left the students 1.05 points below the labels, 3,000 steps (this floor) 0.40 (BENCHMARKS.md, "more steps")
CONVERT_VIEWS_PER_IMAGE = 300


def convert_steps(targets, steps: Optional[int] = None) -> int:
    """Steps of a conversion, one stored batch file each: ``steps`` if given (warning when it leaves stored files
    unused), else one pass over every file of a label directory, at least :data:`CONVERT_VIEWS_PER_IMAGE` views of
    each image (a directory of fewer epochs, pruned or short, is cycled through) and at least
    ``DistillConfig().steps`` (per-image label files: that default).

    Without the pass, a fixed step count silently ignores the last epochs of larger directories: on the
    Fashion-MNIST benchmark at IPC 50 (1,000 files), 600 steps used 60 of 100 epochs (BENCHMARKS.md)."""
    files = getattr(targets, "total_files", None)
    if steps is None:
        views = -(-CONVERT_VIEWS_PER_IMAGE * targets.labels.num_images // targets.fixed_batch_size) if files else 0
        return max(DistillConfig().steps, files or 0, views)
    if files and steps < files:
        epochs = targets.labels.epochs
        warnings.warn(f"convert: {steps:,} steps replay {steps:,} of the {files:,} stored batch files "
                      f"({steps * epochs / files:.1f} of {epochs} epochs); leave --steps unset for one pass over all",
                      UnusedLabelsWarning, stacklevel=3)
    return steps


def _stored_targets(projector, images, labels, epochs, fkd_seed, **options):
    """An SRe2L label directory or a per-image label file as targets, checked against the projector's classes."""
    if Path(labels).is_dir():
        targets = StoredTargets(images, LabelDir.scan(labels, epochs, seed=fkd_seed))
        classes = targets.labels.num_classes
    else:
        targets = ImageLabelTargets(images, load_image_labels(str(labels)), **options)
        classes = targets.labels.shape[1]
    if classes != projector.num_classes:
        raise BadInputError(f"labels have {classes} classes but the projector has {projector.num_classes}")
    return targets


def evaluate(projector: LabelProjector, data, teachers: Optional[Sequence] = None, labels=None,
             teacher_weights=None, views: int = 512, batch_size: int = 64, temperature: float = 1.0,
             input_size: Optional[int] = None, min_scale: float = 0.08, max_scale: float = 1.0, seed: int = 0,
             epochs: Optional[int] = None, fkd_seed: Optional[int] = None, num_workers: int = 0,
             class_map: ClassMap = None, mix_type: Optional[str] = None) -> FidelityReport:
    """``hello-labels eval``: agreement and KL against teachers on held-out views, or against stored labels.
    Per-class figures group views by the image's class, matched to the projector's classes by folder name.
    ``input_size`` / ``fkd_seed`` as :func:`convert_labels` (with teachers: 224 by default). ``mix_type``
    (teachers only): mix the held-out views as students' batches are (stored labels replay their own mixes)."""
    if (teachers is None) == (labels is None):
        raise BadInputError("evaluate against either teachers or stored labels")
    if mix_type is not None and teachers is None:
        raise BadInputError("a mix type applies to teacher views only: stored labels replay their own mixes")
    settings = label_settings(labels, input_size=input_size, fkd_seed=fkd_seed)
    input_size, fkd_seed = settings["input_size"], settings["fkd_seed"]
    images = augmented(data, input_size, projector.config.input_mean, projector.config.input_std, min_scale, max_scale,
                       class_names=projector.config.class_names, class_map=class_map)
    if teachers is not None:
        ensemble = load_teachers(teachers, teacher_weights, num_classes=projector.num_classes).to(projector.device)
        check_teachers(ensemble, images, projector.num_classes)
        targets = TeacherTargets(images, ensemble, seed=seed, mix_type=None)
        plans = targets.held_out(views, batch_size, mix_type)
    else:
        targets = _stored_targets(projector, images, labels, epochs, fkd_seed)
        plans = targets.held_out(views, batch_size)
    return fidelity(projector, targets, plans, projector.config.class_names, temperature,
                    num_workers,
                    in_sample=_in_sample(projector, targets, labels))


def _in_sample(projector, targets, labels) -> bool:
    """Whether ``targets.held_out`` views were trained on: stored epochs are, unless the projector was converted
    from fewer epochs of this very label directory (then the last epoch evaluated is one it never saw)."""
    if not targets.held_out_in_sample or not isinstance(targets, StoredTargets):
        return targets.held_out_in_sample
    trained = projector.config.metadata.get("labels_trained") or {}
    return not (trained.get("first_file") == targets.labels.fingerprint()["first_file"]
                and trained.get("epochs") is not None and trained["epochs"] < targets.labels.epochs)
