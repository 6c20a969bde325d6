"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (idx files, 60k train / 10k test), read as
:mod:`benchmarks.datasets` reads idx files, and the small subset the package ships for its offline demo."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .datasets import FASHION_MNIST_CLASSES as CLASSES
from .datasets import fashion_mnist_split


def load(train: bool, cache: Optional[Path] = None):
    """``(images uint8 [N, 1, 28, 28], labels int64 [N])`` of the train (60k) or test (10k) split (unpacked once
    into ``cache``, by default the library's cache folder)."""
    from hello_labels.errors import HelloLabelsError

    try:
        return fashion_mnist_split(train, cache)
    except HelloLabelsError as err:
        raise SystemExit(f"error: {err}")


def make_demo_subset(path, train_per_class: int = 100, test_per_class: int = 200) -> None:
    """Write the demo subset: the first ``train_per_class`` / ``test_per_class`` images of each class."""
    arrays = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images, labels = load(split == "train")
        keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(CLASSES))])
        keep = keep.sort().values
        arrays[f"{split}_images"] = images[keep].numpy()
        arrays[f"{split}_labels"] = labels[keep].numpy().astype(np.uint8)
    np.savez_compressed(path, classes=np.array(CLASSES), **arrays)


if __name__ == "__main__":
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "hello_labels/demo/data/fashion_mnist_subset.npz"
    make_demo_subset(out)
    print(f"wrote {out} ({Path(out).stat().st_size:,} bytes)")
