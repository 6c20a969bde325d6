"""The main job on an embedded default: everything runs offline from what the package ships."""
from __future__ import annotations

import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Optional

import torch

from .projector import LabelProjector

TINY_BASE = files("hello_labels") / "configs" / "tiny-clip-rn"


def tiny_base() -> str:
    """``local-dir:`` name of the shipped tiny open_clip ModifiedResNet config (random init, seeded)."""
    return f"local-dir:{TINY_BASE}"


def quick_demo(out_dir: Optional[str] = None, batch_size: int = 32, image_size: int = 32,
               num_classes: int = 10, echo=print) -> dict:
    """Build a tiny projector, save it, load it back, label a batch; returns and prints bytes and timings."""
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="hello-labels-demo-"))
    names = [f"class {i}" for i in range(num_classes)]
    t0 = time.perf_counter()
    projector = LabelProjector.from_base(tiny_base(), class_names=names, templates="simple", head_rank=8)
    t_build = time.perf_counter() - t0
    projector.save_pretrained(out / "projector", dtype="float16")
    t0 = time.perf_counter()
    loaded = LabelProjector.from_pretrained(out / "projector")
    t_load = time.perf_counter() - t0
    images = torch.randn(batch_size, 3, image_size, image_size)
    with torch.no_grad():
        loaded(images)  # warm-up
        t0 = time.perf_counter()
        labels = loaded.soft_labels(images, temperature=1.0)
        t_label = time.perf_counter() - t0
    adapter_file = out / "projector" / "adapter.safetensors"
    result = {"projector_dir": str(out / "projector"), "adapter_parameters": loaded.num_adapter_parameters(),
              "adapter_bytes": loaded.num_adapter_bytes(), "adapter_file_bytes": adapter_file.stat().st_size,
              "build_s": t_build, "load_s": t_load, "label_batch_s": t_label,
              "images_per_s": batch_size / t_label, "soft_labels_shape": list(labels.shape)}
    echo(f"projector saved to {result['projector_dir']}")
    echo(f"adapter: {result['adapter_parameters']:,} parameters, {result['adapter_bytes']:,} bytes fp16 "
         f"({result['adapter_file_bytes']:,} bytes on disk with header)")
    echo(f"build {t_build:.2f}s  load {t_load:.2f}s  label {batch_size} images {t_label * 1000:.1f} ms "
         f"({result['images_per_s']:.0f} images/s)  soft labels {result['soft_labels_shape']}")
    return result
