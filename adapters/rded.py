"""RDED shim (``main.py`` and ``validation/main.py``).

RDED labels each batch online with ``softmax(teacher_model(mix_images) / T)`` on normalised, mixed images, and
wraps the teacher in ``torch.nn.DataParallel(...).cuda()``. :func:`teacher` returns the projector in that role:
its inference engine (:meth:`LabelProjector.for_labels`: no parametrizations, so DataParallel replicates it like any
model), frozen, in eval mode.

Classes: RDED's class ``i`` is folder ``f"{args.classes[i]:05d}"`` of its dataset and logit ``i`` of its
student. ``args.classes`` is ``range(nclass)`` for every named subset, so for ImageNet-Nette/-Woof it numbers the
subset's 10 classes, not ImageNet's. Rows are matched by name wherever names are known: a class map the user
gives, a projector named after RDED's folders, or the named subset's ImageNet classes (:data:`SUBSETS`; a
projector of any size naming them by open_clip name, WordNet id or ImageNet index ``00000``-``00999``). Only a
dataset of unknown classes with the projector's class count is taken by position (``classes`` picks the rows).

RDED's ``main.py`` synthesises first, and synthesis empties ``syn_data``: :func:`skip_synthesis` lets the patched
``main.py`` validate the images already there instead.
"""
from __future__ import annotations

import os
from numbers import Integral
from typing import List, Optional, Sequence

import torch
from torch import nn

from hello_labels.errors import HelloLabelsError
from hello_labels.labels.classes import subset_index

from ._load import load_projector, refuses_in_one_line

# ImageNet indices of RDED's named subsets, in the order of their sorted WordNet-id folders (fast.ai's
# Imagenette / Imagewoof), which RDED's folders 00000-00009 follow.
SUBSETS = {
    "imagenet-nette": [0, 217, 482, 491, 497, 566, 569, 571, 574, 701],
    "imagenet-woof": [155, 159, 162, 167, 182, 193, 207, 229, 258, 273],
}


def rded_classes(classes) -> List[int]:
    """RDED's ``args.classes`` as a list of distinct class numbers >= 0, or a one-line error."""
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise HelloLabelsError(f"RDED classes must be a list of class numbers, got {classes!r}")
    classes = list(classes)
    if not classes:
        raise HelloLabelsError("RDED classes is empty: it must list the dataset's class numbers")
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, Integral):
            raise HelloLabelsError(f"RDED classes must be integers; got {c!r} ({type(c).__name__}) (RDED's "
                                   f"`--classes` option splits its text into characters)")
        if c < 0:
            raise HelloLabelsError(f"RDED classes must be class numbers >= 0; got {int(c)}")
    classes = [int(c) for c in classes]
    twice = next((c for k, c in enumerate(classes) if c in classes[:k]), None)
    if twice is not None:
        raise HelloLabelsError(f"RDED classes list class {twice} twice")
    return classes


def parse_class_map(text: Optional[str]):
    """``--projector-classes`` text: a JSON file ``{folder: class name or index}``, a named subset of
    :data:`SUBSETS`, or comma-separated class names / indices, one per RDED class in order; None stays None."""
    if text is None or not isinstance(text, str):
        return text
    if text in SUBSETS or text.endswith(".json"):
        return text
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise HelloLabelsError(f"projector class map {text!r} has an empty entry")
    return [int(t) if t.isdigit() else t for t in items]


def _class_names(class_map) -> list:
    """Known subsets become open_clip's ImageNet class names (matched by name, so any projector naming them works)."""
    if isinstance(class_map, str) and class_map in SUBSETS:
        import open_clip

        return [open_clip.IMAGENET_CLASSNAMES[i] for i in SUBSETS[class_map]]
    return class_map


def projector_rows(classes, class_names: Sequence[str], class_map=None, subset: Optional[str] = None) -> List[int]:
    """For each RDED class, the projector row that labels it.

    ``classes``: RDED's ``args.classes``; ``class_map``: as :func:`parse_class_map` returns (also a dict or a JSON
    path); ``subset``: RDED's ``args.subset``. Without a map, a projector named after RDED's folders (``00000``...)
    is matched by those names, and a known subset (:data:`SUBSETS`) by its classes' names (open_clip's, WordNet
    ids, or a 1000-class projector's ``00000``-``00999``: :func:`hello_labels.labels.classes.name_lookup`), never
    by position; only an unknown dataset of the projector's class count is taken by position."""
    classes = rded_classes(classes)
    folders = [f"{c:05d}" for c in classes]
    if class_map is None and len(class_names) == len(folders) and set(class_names) == set(folders):
        class_map = folders  # a projector made on RDED's own folders: matched by folder name
    elif class_map is None and subset in SUBSETS:
        class_map = subset  # the subset's classes are known by name: matched by name, whatever the order
    if class_map is not None:
        return subset_index(folders, class_names, _class_names(class_map), what="RDED dataset")
    if len(classes) != len(class_names):
        raise HelloLabelsError(f"RDED's dataset{f' {subset}' if subset else ''} has {len(classes)} classes but the "
                               f"projector has {len(class_names)}: give a class map (--projector-classes: ImageNet "
                               f"indices or class names, one per RDED class) to say which of its classes they are")
    if max(classes) >= len(class_names):
        raise HelloLabelsError(f"RDED classes {classes[:5]}... select outside the projector's {len(class_names)} "
                               f"classes")
    return classes


class ProjectorTeacher(nn.Module):
    """``images [B, 3, H, W] -> logits [B, len(rows)]``: the projector's logits at ``rows`` (None: all)."""

    def __init__(self, projector, rows: Optional[Sequence[int]] = None, source: str = "object"):
        super().__init__()
        self.projector = projector
        keep = None if rows is None or list(rows) == list(range(projector.num_classes)) else list(rows)
        self.register_buffer("rows", None if keep is None else torch.tensor(keep), persistent=False)
        names = projector.config.class_names
        shown = "all its classes" if keep is None else ", ".join(
            f"{i}: {r} '{names[r]}'" for i, r in enumerate(keep[:4])) + (", ..." if len(keep) > 4 else "")
        base = projector.config.base
        self.description = (f"hello-labels projector {source} ({base['kind']}:{base.get('name') or 'module'}, "
                            f"{projector.num_classes} classes); RDED class -> projector class: {shown}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.projector(images)
        return logits if self.rows is None else logits[:, self.rows]


@refuses_in_one_line
def teacher(projector, classes: Optional[Sequence[int]] = None, device=None, trust_remote_code: bool = False,
            class_map=None, subset: Optional[str] = None) -> ProjectorTeacher:
    """``teacher_model`` for RDED: a LabelProjector (left unchanged), directory or Hub id; ``classes``, ``subset``
    as RDED's ``args.classes``, ``args.subset`` (None: the projector's classes); ``class_map`` as
    :func:`projector_rows` (text as ``--projector-classes`` is parsed); ``trust_remote_code`` as
    :meth:`LabelProjector.from_pretrained`. Its ``description`` says what labels RDED's classes."""
    source = repr(os.fsdecode(projector)) if isinstance(projector, (str, bytes, os.PathLike)) else "object"
    projector = load_projector(projector, device, trust_remote_code=trust_remote_code)
    names = projector.config.class_names
    rows = None if classes is None else projector_rows(classes, names, parse_class_map(class_map), subset)
    return ProjectorTeacher(projector, rows, source).eval().requires_grad_(False)


@refuses_in_one_line
def skip_synthesis(args) -> bool:
    """For RDED's ``main.py``: True when ``args.projector`` is given, after checking that ``args.syn_data_path``
    holds the ``args.ipc`` images of each of the ``args.nclass`` classes validation reads (synthesis would first
    empty that folder; the projector replaces the teacher only in validation). False without a projector."""
    if getattr(args, "projector", None) is None:
        return False
    path, ipc, nclass = args.syn_data_path, int(args.ipc), int(args.nclass)
    for c in range(nclass):
        folder = os.path.join(path, f"{c:05d}")
        count = len(os.listdir(folder)) if os.path.isdir(folder) else 0
        if count < ipc:
            raise HelloLabelsError(f"--projector validates the images already synthesised, but {folder} holds {count} "
                                   f"of the {ipc} images per class (--ipc): synthesise first with RDED's main.py "
                                   f"without --projector and the same --subset/--arch-name/--factor/--mipc/--ipc/"
                                   f"--num-crop")
    print(f"=> --projector given: synthesis skipped, {path} left as it is ({nclass} classes x {ipc} images)")
    return True
