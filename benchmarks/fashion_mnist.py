"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (idx files, 60k train / 10k test), read with
torchvision's own FashionMNIST reader, and the small subset the package ships for its offline demo."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch

DEBIAN_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load(train: bool, cache: Optional[Path] = None):
    """``(images uint8 [N, 1, 28, 28], labels int64 [N])`` of the train (60k) or test (10k) split (unpacked once
    into ``cache``, by default the library's cache folder)."""
    import torchvision

    from hello_labels.model.heads import cache_dir

    cache = Path(cache) if cache else cache_dir() / "fashion-mnist"

    raw = cache / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in DEBIAN_DIR.glob("*-ubyte.gz"):
        target = raw / gz.name[:-3]
        if not target.exists():
            if not gz.is_file():
                raise SystemExit(f"{gz} missing: apt-get install dataset-fashion-mnist")
            with gzip.open(gz) as src, open(f"{target}.tmp", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(f"{target}.tmp", target)
    if not any(raw.iterdir()):
        raise SystemExit(f"no Fashion-MNIST idx files under {DEBIAN_DIR}: apt-get install dataset-fashion-mnist")
    ds = torchvision.datasets.FashionMNIST(str(cache), train=train, download=False)
    return ds.data.unsqueeze(1).clone(), ds.targets.clone()


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
