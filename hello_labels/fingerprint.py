"""Fingerprints of what a job's output depends on, taken (and checked) before the long work starts.

Weights are hashed byte for byte, every parameter and buffer included (non-persistent buffers such as a teacher
ensemble's weights are left out of ``state_dict()`` but change the output). An image folder is hashed file by file
while every image is decoded, so a corrupt file is named before step 0 rather than surfacing mid-run.
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .errors import CorruptFileError, first_line


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) over names, dtypes, shapes and raw bytes of ``tensors``."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def file_sha256(path) -> str:
    """sha256 of a file, as ``sha256sum`` prints it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def module_digest(module: torch.nn.Module) -> str:
    """Digest of every parameter and buffer of ``module``, non-persistent buffers included."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    return tensor_digest(tensors)


def _check_image(path: str) -> tuple:
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode every pixel, as the training loader will
    except Exception as err:
        raise CorruptFileError(f"image {path} cannot be read ({first_line(err)}): replace or remove it") from err
    return len(data), hashlib.sha256(data).hexdigest()


def check_image_files(paths: Sequence[str], root=None) -> dict:
    """Decode every image (threads: PIL releases the GIL) and fingerprint the set: count, bytes, content hash.

    Raises a one-line :class:`HelloLabelsError` naming the first file that does not open."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_check_image, paths))
    h = hashlib.sha256()
    for path, (size, digest) in zip(paths, results):
        name = Path(path).relative_to(root).as_posix() if root is not None else str(path)
        h.update(f"{name}|{size}|{digest}\n".encode())
    return {"files": len(paths), "bytes": sum(size for size, _ in results), "sha256": h.hexdigest()[:16]}


def source_fingerprint(source) -> dict:
    """An image source (ImageFolder, tensors, or another dataset) -> what identifies its content.

    An ImageFolder's images are all decoded on the way (see :func:`check_image_files`). A wrapper that keeps its
    dataset in ``.source`` and remaps labels with ``.index`` (``labels.classes.ClassOrder``) is seen through."""
    inner = getattr(source, "source", None)
    if inner is not None and getattr(source, "samples", None) is None:
        return dict(source_fingerprint(inner), label_index=list(getattr(source, "index", [])))
    samples = getattr(source, "samples", None)
    if samples is not None:  # torchvision ImageFolder / DatasetFolder
        out = check_image_files([path for path, _ in samples], getattr(source, "root", None))
        return {"kind": "image_folder", "classes": list(getattr(source, "classes", [])),
                "labels": hashlib.sha256(str([label for _, label in samples]).encode()).hexdigest()[:16], **out}
    images, labels = getattr(source, "images", None), getattr(source, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        return {"kind": "tensors", "images": len(images), "sha256": tensor_digest({"images": images,
                                                                                  "labels": labels})}
    return {"kind": type(source).__name__, "images": len(source)}  # opaque dataset: its size is all we can check
