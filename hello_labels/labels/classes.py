"""Class order: the one contract between image folders, projectors and teachers.

Output index ``i`` of a projector is class ``config.class_names[i]``, which is the teacher's logit index ``i``.
An image folder maps onto that order by folder name, never by sort order alone (ImageFolder sorts its folders
alphabetically; Fashion-MNIST, CIFAR-100 superclasses or any hand-ordered list do not). A folder class matches, in
this order: an explicit class map ``{folder: class name or index}``; the class of the same name (``_`` in a folder
name reads as a space), where ImageNet classes answer to their open_clip name and WordNet id (``n01440764``)
alike (:func:`name_lookup`); for numbered folders (SRe2L's ``new000``, ``00042``), the class of that index.
Anything else is refused in one line.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..errors import BadInputError, CorruptFileError
from ..files import loads_json

ClassMap = Union[None, str, Path, Dict[str, Union[str, int]]]
_NUMBERED = re.compile(r"^\D*?(\d+)$")


def _load_map(class_map: ClassMap) -> Optional[dict]:
    if class_map is None or isinstance(class_map, dict):
        return class_map
    path = Path(class_map)
    try:
        loaded = loads_json(path.read_bytes())
    except (OSError, ValueError) as err:
        raise CorruptFileError(f"cannot read class map {path}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(loaded, dict):
        raise BadInputError(f"class map {path} must be a JSON object {{folder name: class name or index}}")
    return loaded


@lru_cache(maxsize=1)
def imagenet_names() -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """ImageNet-1k's WordNet ids (timm's ``ImageNetInfo``) and open_clip's class names, both in class-index order."""
    import open_clip
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names()), tuple(open_clip.IMAGENET_CLASSNAMES)


def imagenet_indices(names: Sequence[str]) -> Optional[List[int]]:
    """Each name's ImageNet-1k class index when every name is one: all open_clip class names, all WordNet ids, or
    exactly 1000 names numbered 0-999 (RDED's ``00000``-``00999``, SRe2L's ``new000``); else None."""
    names = [str(n) for n in names]
    numbers = [_NUMBERED.match(n) for n in names]
    if len(names) == 1000 and all(numbers) and sorted(int(m.group(1)) for m in numbers) == list(range(1000)):
        return [int(m.group(1)) for m in numbers]
    for table, where in zip(imagenet_names(), _imagenet_where()):
        if names == list(table):
            return list(range(len(table)))
        if all(n in where for n in names):
            return [where[n] for n in names]
    return None


@lru_cache(maxsize=1)
def _imagenet_where() -> Tuple[Dict[str, int], ...]:
    """``{name: class index}`` per table of :func:`imagenet_names`, without the names two classes share (open_clip
    calls 'missile' and 'sunglasses' two classes each)."""
    tables = imagenet_names()
    return tuple({n: i for i, n in enumerate(t) if t.count(n) == 1} for t in tables)


def name_lookup(names: Sequence[str], wanted: Sequence[str]) -> Dict[str, int]:
    """``{name: index}`` of ``names``; when some of ``wanted`` is not among them (nor with ``_`` read as a space)
    and they are ImageNet classes (:func:`imagenet_indices`), each class's WordNet id and open_clip name too, so a
    folder or class map may say either. (The aliases cost an open_clip and timm import: only when needed.)"""
    lookup = {n: i for i, n in enumerate(names)}
    if all(w in lookup or w.replace("_", " ") in lookup for w in wanted):
        return lookup  # the aliases are only ever added with setdefault: they could not change these
    indices = imagenet_indices(names)
    for row, k in enumerate(indices or []):
        for table, where in zip(imagenet_names(), _imagenet_where()):
            if table[k] in where:
                lookup.setdefault(table[k], row)
    return lookup


def _by_map(folders: Sequence[str], names: Sequence[str], class_map: dict) -> List[int]:
    lookup = name_lookup(names, [v for v in class_map.values() if isinstance(v, str)])
    index = []
    for folder in folders:
        if folder not in class_map:
            raise BadInputError(f"class map has no entry for folder '{folder}'")
        value = class_map[folder]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            index.append(value)
        elif isinstance(value, str) and value in lookup:
            index.append(lookup[value])
        else:
            raise BadInputError(f"class map sends folder '{folder}' to {value!r}, which is not one of the "
                                f"{len(names)} class names or indices")
    return index


def _by_convention(folders: Sequence[str], names: Sequence[str]) -> Optional[List[int]]:
    """Numbered folders: the class of that index; None if they are not all numbered."""
    numbers = [_NUMBERED.match(f) for f in folders]
    if all(numbers):
        return [int(m.group(1)) for m in numbers]
    return None


def class_index(folders: Sequence[str], class_names: Sequence[str], class_map: ClassMap = None,
                what: str = "image folder", owner: str = "projector") -> List[int]:
    """For each folder class, in the folder's order, the index of its class in ``class_names`` (see module doc).

    Raises a one-line :class:`HelloLabelsError` naming the count, or the first names missing on each side."""
    folders, names = [str(f) for f in folders], [str(n) for n in class_names]
    if len(folders) != len(names):
        raise BadInputError(f"the {what} has {len(folders)} classes but the {owner} has {len(names)}")
    class_map = _load_map(class_map)
    if class_map is not None:
        index = _by_map(folders, names, class_map)
    else:
        lookup = name_lookup(names, folders)
        found = [lookup.get(f, lookup.get(f.replace("_", " "))) for f in folders]
        index = found if all(i is not None for i in found) else None
        if index is None and all(i is None for i in found):
            index = _by_convention(folders, names)
        if index is None:
            matched = {i for i in found if i is not None}
            extra = [f for f, i in zip(folders, found) if i is None]
            missing = [n for i, n in enumerate(names) if i not in matched]
            raise BadInputError(f"class names differ: {what} classes not among the {owner}'s: {extra[:3]}; "
                                f"{owner} classes not in the {what}: {missing[:3]} (rename the folders or give "
                                f"a class map {{folder: class}})")
    if sorted(index) != list(range(len(names))):
        raise BadInputError(f"the {what}'s classes do not map one-to-one onto the {owner}'s {len(names)} classes "
                            f"(folder -> class index: {dict(list(zip(folders, index))[:4])}...)")
    return index


def subset_index(folders: Sequence[str], class_names: Sequence[str], class_map, what: str = "dataset",
                 owner: str = "projector") -> List[int]:
    """For each folder class, the index in ``class_names`` that ``class_map`` sends it to, each to a different
    class; unlike :func:`class_index` the folders may be fewer than the classes (a subset).

    ``class_map``: ``{folder: class name or index}``, a JSON file of one, or a list giving each folder's class in
    the folders' order."""
    folders, names = [str(f) for f in folders], [str(n) for n in class_names]
    if isinstance(class_map, (list, tuple)):
        if len(class_map) != len(folders):
            raise BadInputError(f"the class map lists {len(class_map)} classes but the {what} has {len(folders)}")
        class_map = dict(zip(folders, class_map))
    loaded = _load_map(class_map)
    if loaded is None:
        raise BadInputError(f"a class map is needed to place the {what}'s {len(folders)} classes among the "
                            f"{owner}'s {len(names)}")
    index = _by_map(folders, names, loaded)
    twice = next((i for k, i in enumerate(index) if i in index[:k]), None)
    if twice is not None:
        raise BadInputError(f"the class map sends two of the {what}'s classes to the {owner}'s class {twice} "
                            f"('{names[twice]}')")
    return index


def check_classes(folders: Sequence[str], class_names: Optional[Sequence[str]] = None,
                  model_classes: Optional[int] = None, class_map: ClassMap = None, what: str = "image folder",
                  model: str = "teacher", sorted_order: bool = False) -> Optional[List[int]]:
    """Check a folder's classes against a projector's ``class_names`` and a model's output count.

    ``sorted_order``: the folder's own (sorted) class numbers must equal the projector's, as where the labels
    leave for a codebase that numbers classes by sorted folder name (SRe2L's ImageFolder, training and validation).
    Returns the folder -> class index map (None without ``class_names``: then only the counts are compared)."""
    index = class_index(folders, class_names, class_map, what) if class_names is not None else None
    if sorted_order and index is not None and index != list(range(len(index))):
        k = next(k for k, i in enumerate(index) if i != k)
        raise BadInputError(f"the {what}'s folder '{folders[k]}' is class {k} in sorted folder order but class "
                            f"{index[k]} ('{class_names[index[k]]}') of the projector; SRe2L numbers classes by "
                            f"sorted folder name, so rename the folders to sort in the projector's class order")
    if model_classes is not None and model_classes != len(folders):
        raise BadInputError(f"the {model} outputs {model_classes} classes but the {what} has {len(folders)}")
    return index


@torch.no_grad()
def output_classes(model: torch.nn.Module, channels: int, size: int) -> int:
    """Number of logits ``model`` returns for one ``[1, channels, size, size]`` input (on the model's device)."""
    device = next(model.parameters(), torch.empty(0)).device
    return int(model(torch.zeros(1, channels, size, size, device=device)).shape[-1])


class ClassOrder(Dataset):
    """A labelled dataset (``.classes`` + ``(image, label)`` items, e.g. an ImageFolder) with its labels remapped
    to ``class_names``'s order by name; ``classes`` becomes ``class_names``."""

    def __init__(self, source: Dataset, class_names: Sequence[str], class_map: ClassMap = None):
        self.source = source.source if isinstance(source, ClassOrder) else source
        folders = list(getattr(self.source, "classes", []))
        self.index = class_index(folders, class_names, class_map)
        self.classes = list(class_names)
        self.folder_classes = folders

    @property
    def identity(self) -> bool:
        return self.index == list(range(len(self.index)))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        image, label = self.source[i]
        return image, self.index[label]
