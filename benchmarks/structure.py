"""How the package is put together, measured: call depth from a shim to the encoder, a shim's memory, code sizes.

    python -m benchmarks.structure                 # all three, printed and written to benchmarks/results/
    python -m benchmarks.structure --skip-memory   # no EfficientNet-Lite0 / RN50 builds

* frames: from ``ProjectorLabels.__iter__`` (SRe2L shim) to the encoder's convolution on the second batch (the
  first also measures chunk sizes), counted on the Python stack at that call: all of them, and those in
  hello_labels' own files.
* memory: a fresh process loads a saved projector through the SRe2L shim and labels one batch at the base's size;
  reported: the base's weight bytes, the bytes of the distinct CPU tensor storages alive after the batch
  (``tensor_bytes_alive``: the weights the shim holds, plus the batch; a shim that holds the base's weights once
  holds about one copy of them), the process's resident memory after the imports, after the batch, and its peak
  (``ru_maxrss``; the allocator keeps freed pages, so resident memory moves less than the tensors alive).
* sizes: the largest classes and functions of ``hello_labels/`` in lines (``ast`` end - start + 1).
Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hello_labels"


def frames() -> dict:
    """Frames between the SRe2L shim's ``__iter__`` and the encoder's first convolution (tiny module base)."""
    import torch
    from torch import nn

    from hello_labels import LabelProjector
    from hello_labels.adapters.sre2l import ProjectorLabels

    encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    projector = LabelProjector.from_base(encoder, class_names=["a", "b"], head_init="random", base_mean=[0.5] * 3,
                                         base_std=[0.25] * 3, base_image_size=16)
    batch = (torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool),
             torch.rand(4, 4))
    shim = ProjectorLabels(projector, SimpleNamespace(mix_type=None), [batch, batch], device="cpu")
    seen = []

    def hook(module, _args):
        if isinstance(module, nn.Conv2d):
            seen.append(traceback.extract_stack()[:-1])

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        list(shim)
    finally:
        handle.remove()
    stack = seen[-1]  # the second batch: what every batch after the first runs
    start = max(i for i, f in enumerate(stack) if f.name == "__iter__" and f.filename.endswith("sre2l.py"))
    between = stack[start + 1:]
    own = [f for f in between if str(PACKAGE) in f.filename or "/hello_labels/" in f.filename]
    return {"frames": len(between), "package_frames": len(own),
            "package_path": [f"{Path(f.filename).name}:{f.name}" for f in own]}


MEMORY_CHILD = r"""
import gc, json, resource, sys
from types import SimpleNamespace
import torch
torch.set_num_threads(2)
from hello_labels.adapters.sre2l import ProjectorLabels
from hello_labels import LabelProjector

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

folder, size = sys.argv[1], int(sys.argv[2])
before = rss()
batch = (torch.randn(8, 3, size, size), torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.bool),
         torch.rand(8, 4))
shim = ProjectorLabels(folder, SimpleNamespace(mix_type="cutmix"), [batch], device="cpu")
next(iter(shim))
gc.collect()
storages = {}  # every CPU tensor alive, by storage: what the shim holds (weights) and the batch
for obj in gc.get_objects():
    if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and obj.layout == torch.strided:
        storages[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
print(json.dumps({"tensor_bytes_alive": sum(storages.values()), "rss_after_imports": before, "rss_after_batch": rss(),
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def memory(bases) -> dict:
    """Per base: weight bytes and the shim process's memory (see the module docstring)."""
    import torch

    from hello_labels import LabelProjector

    out = {}
    for base in bases:
        projector = LabelProjector.from_base(base, class_names="imagenet", head_init="zero")
        weights = sum(t.numel() * t.element_size() for t in projector.base.encoder.state_dict().values())
        size = projector.inputs.size[0]
        with tempfile.TemporaryDirectory() as tmp:
            projector.save_pretrained(tmp)
            del projector
            result = subprocess.run([sys.executable, "-c", MEMORY_CHILD, tmp, str(size)], capture_output=True,
                                    text=True, check=True, cwd=ROOT)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        out[base] = {"base_weight_bytes": weights, "image_size": size, **measured,
                     "grown_by_batch": measured["rss_after_batch"] - measured["rss_after_imports"]}
        torch.cuda.empty_cache()
    return out


def sizes(top: int = 5) -> dict:
    """The ``top`` largest classes and functions (methods included) under ``hello_labels/``, in lines."""
    classes, functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{node.name}" if hasattr(node, "name") else None
            if isinstance(node, ast.ClassDef):
                classes.append((node.end_lineno - node.lineno + 1, where))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, where))
    pick = lambda rows: [{"lines": n, "name": name} for n, name in sorted(rows, reverse=True)[:top]]  # noqa: E731
    return {"classes": pick(classes), "functions": pick(functions)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", nargs="+", default=["hello-labels:efficientnet-lite0", "RN50"])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--name", help="results file: benchmarks/results/NAME.json (default: "
                                        "structure-<machine>-torch<version>)")
    args = parser.parse_args(argv)
    from benchmarks.machine import machine, result_name

    args.name = args.name or result_name("structure")

    result = {"machine": machine(2), "frames": frames(), "sizes": sizes()}
    if not args.skip_memory:
        result["memory"] = memory(args.bases)
    print(json.dumps(result, indent=1))
    (ROOT / "benchmarks" / "results" / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
