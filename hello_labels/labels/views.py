"""Image sources and batch plans.

A *source* yields raw ``(image, label)`` (an ImageFolder tree, as SRe2L/RDED write synthetic sets, or tensors).
:class:`AugmentedImages` turns a *key* into an augmented view: ``(index, seed)`` draws a fresh crop + flip from
``seed``; ``(index, coords, flip)`` replays stored ones; ``(index, None)`` takes the whole image. A *plan* fixes
everything random about one training step (keys, mix parameters, stored targets) as a function of the step
number alone, so runs resume exactly and do not depend on the number of DataLoader workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from ..errors import BadInputError
from ..model.inputs import IMAGENET_MEAN, IMAGENET_STD
from ..seeds import derive_seed
from .augment import crop_flip, draw_crop, draw_mix, normalize


class TensorImages(Dataset):
    """``images [N, C, H, W]`` (uint8 0-255 or float 0-1) with integer ``labels [N]``."""

    def __init__(self, images: torch.Tensor, labels, classes: Optional[Sequence[str]] = None):
        labels = torch.as_tensor(labels).long()
        if images.ndim != 4 or images.shape[0] != labels.shape[0] or 0 in images.shape[2:]:
            raise BadInputError(f"images must be [N, C, H, W] with N labels and H, W > 0; got {list(images.shape)} "
                                f"and {list(labels.shape)}")
        self.images, self.labels = images, labels
        self.classes = list(classes) if classes is not None else [str(c) for c in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def open_images(data, labels=None, classes=None) -> Dataset:
    """An ImageFolder path or tensors. An ImageFolder's labels follow its folders' sorted order, as torchvision
    and SRe2L number them; :class:`~hello_labels.labels.classes.ClassOrder` maps them to a projector's order."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise BadInputError("tensor images need labels")
        return TensorImages(data, labels, classes)
    from torchvision.datasets import ImageFolder

    path = Path(data)
    if not path.is_dir():
        raise BadInputError(f"image folder not found: {path}")
    try:
        return ImageFolder(str(path))
    except (FileNotFoundError, RuntimeError) as err:
        raise BadInputError(f"{path} is not an ImageFolder tree (class sub-folders of images): {err}") from err


def class_names_for(source, names: Union[None, str, Sequence[str]] = None) -> list:
    """Class names for the head, in output order: a list, ``"imagenet"``, a text file (one per line), or the
    folder names (``_`` read as a space). The folder's classes are matched to them by name, not position."""
    folder = list(getattr(source, "classes", []))
    if names is None:
        names = [c.replace("_", " ") for c in folder]
    elif isinstance(names, str) and names != "imagenet":
        path = Path(names)
        if not path.is_file():
            raise BadInputError(f"class-name file not found: {path}")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if folder and not isinstance(names, str) and len(names) != len(folder):
        raise BadInputError(f"{len(names)} class names given but the image folder has {len(folder)} classes")
    return names


class AugmentedImages(Dataset):
    """Keys -> ``(image [C, S, S] normalised, label, flip bool, coords [4])``, SRe2L's per-sample tuple. C is
    ``len(mean)``: with one channel, images of a folder are read as their luma (PIL's "L")."""

    def __init__(self, source: Dataset, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bilinear"):
        if int(size) <= 0:  # crops to 0 px would fail mid-run, in a resize deep inside a worker
            raise BadInputError(f"input size must be a positive number of pixels, got {size}")
        self.source, self.size = source, int(size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.scale, self.ratio, self.interpolation = tuple(scale), tuple(ratio), interpolation

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key):
        index, rest = key[0], key[1:]
        image, label = self.source[index]
        if len(self.mean) == 1 and isinstance(image, Image.Image) and image.mode != "L":
            image = image.convert("L")  # a folder (its loader gives RGB) for a one-channel projector: the luma
        if len(rest) == 2:
            coords, flip = torch.as_tensor(rest[0], dtype=torch.float32), bool(rest[1])
        elif rest[0] is None:
            coords, flip = torch.tensor([0.0, 0.0, 1.0, 1.0]), False
        else:
            coords, flip = draw_crop(image, self.scale, self.ratio, seed=int(rest[0]))
        view = crop_flip(image, coords, flip, self.size, self.interpolation)
        if len(self.mean) != view.shape[0]:
            raise BadInputError(f"images have {view.shape[0]} channels but mean/std give {len(self.mean)}")
        return normalize(view, self.mean, self.std), label, flip, coords


@dataclass
class BatchPlan:
    """Everything random about one step: dataset keys, image indices, mix parameters, stored targets."""

    step: int
    keys: list
    indices: torch.Tensor
    mix: tuple = (None, None, None)
    mix_type: Optional[str] = None
    targets: Optional[torch.Tensor] = None
    info: Dict = field(default_factory=dict)


class PlannedBatches(Sampler):
    """A DataLoader ``batch_sampler`` yielding each plan's keys, keeping the plans for the training loop.

    It runs in the main process, so ``pop(step)`` sees every plan the loader has started to fetch."""

    def __init__(self, plans: Iterable[BatchPlan], length: int):
        self._plans, self._length = plans, length
        self.pending: Dict[int, BatchPlan] = {}

    def __iter__(self) -> Iterator[list]:
        for plan in self._plans:
            self.pending[plan.step] = plan
            yield plan.keys

    def __len__(self) -> int:
        return self._length

    def pop(self, step: int) -> BatchPlan:
        return self.pending.pop(step)


def stream_plans(num_images: int, batch_size: int, seed: int, start_step: int, num_steps: int,
                 rank: int = 0, world_size: int = 1, augment: bool = True, mix_type: Optional[str] = None,
                 image_size: int = 224, cutmix_alpha: float = 1.0, mixup_alpha: float = 0.8) -> Iterator[BatchPlan]:
    """Steps ``start_step..num_steps-1`` over an endless stream of seeded per-epoch permutations.

    Step ``s`` covers stream positions ``[s*G, (s+1)*G)`` with ``G = batch_size * world_size``; rank ``r`` takes
    its ``batch_size`` slice. Seeds come from :func:`~hello_labels.seeds.derive_seed`: epoch ``e``'s permutation
    from ``(seed, "perm", e)``, position ``p``'s crop from ``(seed, "crop", p)``, the mix of (step, rank) from
    ``(seed, "mix", step, rank)``.
    """
    if num_images <= 0:
        raise BadInputError("no images to draw batches from")
    global_batch = batch_size * world_size
    perms: Dict[int, torch.Tensor] = {}

    def index_at(position: int) -> int:
        epoch, offset = divmod(position, num_images)
        if epoch not in perms:
            perms.clear()
            gen = torch.Generator().manual_seed(derive_seed(seed, "perm", epoch))
            perms[epoch] = torch.randperm(num_images, generator=gen)
        return int(perms[epoch][offset])

    for step in range(start_step, num_steps):
        first = step * global_batch + rank * batch_size
        positions = range(first, first + batch_size)
        indices = [index_at(p) for p in positions]
        keys = [(i, derive_seed(seed, "crop", p) if augment else None) for i, p in zip(indices, positions)]
        mix = draw_mix(mix_type, batch_size, image_size, image_size, derive_seed(seed, "mix", step, rank),
                       cutmix_alpha, mixup_alpha)
        yield BatchPlan(step, keys, torch.tensor(indices), mix, mix_type)


def loader(dataset: Dataset, plans: Iterable[BatchPlan], length: int, num_workers: int = 0):
    """A DataLoader over planned batches, plus the sampler holding the plans."""
    batches = PlannedBatches(plans, length)
    data = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                                       generator=torch.Generator().manual_seed(0),
                                       persistent_workers=False, pin_memory=torch.cuda.is_available())
    return data, batches
