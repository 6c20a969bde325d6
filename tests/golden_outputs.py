"""What the package writes and the labels its shims yield, for fixed inputs: the fixture that keeps refactors honest.

``python tests/golden_outputs.py [FOLDER]`` (from the repository root) records them in ``tests/golden/`` (or
FOLDER): the sha256 of every file a save (four dtypes) and an FKD export write, and the labels of both shims, with
the machine that made them.
``tests/test_golden_outputs.py`` recomputes them: files byte-identical everywhere where their bytes do not depend on
float rounding (configs, adapters, cards), labels bit-identical on the recording machine and within the fast path's
tolerance elsewhere.
"""
import hashlib
import json
import platform
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
CLASSES = sorted(["red stripes", "green dots", "blue stripes", "yellow dots", "grey stripes"])  # the toy folders
SIZE = 32
DTYPES = ("float32", "float16", "int8", "int4")


def tiny_encoder() -> nn.Module:
    """A seeded conv + BatchNorm encoder ``[B, 3, 32, 32] -> [B, 16]`` (the fast path folds and chunks it)."""
    generator = torch.random.fork_rng(devices=[])
    with generator:
        torch.manual_seed(0)
        encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())
        for bn in (encoder[1], encoder[4]):  # running statistics other than 0/1, so folding changes the weights
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.1, 0.1)
    return encoder.eval()


def machine() -> dict:
    """What decides the bits of float results here."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(folder: Path, version: str) -> dict:
    """``{relative path: sha256}`` of the regular files under ``folder``; the library version in a file is
    replaced first, so that a version bump alone changes nothing."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out[str(path.relative_to(folder))] = _digest(path.read_bytes().replace(version.encode(), b"VERSION"))
    return out


def outputs(work: Path):
    """``(files, labels)``: ``{name: sha256}`` of what saves and an FKD export write, ``{name: tensor}`` of the
    labels the shims yield and the export stores, all from seeded inputs under ``work``."""
    sys.path.insert(0, str(HERE))
    import sre2l_reference as ref
    from conftest import make_toy_folder

    from hello_labels import LabelProjector, __version__
    from hello_labels.adapters import rded, sre2l
    from hello_labels.labels.export import export_fkd

    folder = make_toy_folder(work / "toy", per_class=4)
    projector = LabelProjector.from_base(
        tiny_encoder(), class_names=CLASSES, head_init="random", head_rank=4, lora_rank=2,
        base_mean=[0.5, 0.5, 0.5], base_std=[0.25, 0.25, 0.25], base_image_size=SIZE,
        base_factory="golden_outputs:tiny_encoder", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained adapter's worth of non-zero deltas
        for tensor in projector.adapter_state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    files, labels = {}, {}
    for dtype in DTYPES:
        projector.save_pretrained(work / dtype, dtype=dtype)
        files.update({f"save-{dtype}/{k}": v for k, v in _files(work / dtype, __version__).items()})

    loaded = work / "float32"
    torch.manual_seed(0)
    dataset = ref.ReferenceFKDFolder(str(folder), "fkd_save", input_size=SIZE, min_scale=0.25)
    sampler = torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(42))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, sampler=sampler)
    shim = sre2l.ProjectorLabels(str(loaded), SimpleNamespace(mix_type="cutmix"), loader, device="cpu",
                                 trust_remote_code=True)
    batches = [(batch[0][0], batch[-1]) for batch in shim]
    labels.update({f"sre2l/{b}/soft_label": soft_label for b, (_, soft_label) in enumerate(batches)})
    teacher = rded.teacher(str(loaded), device="cpu", trust_remote_code=True)
    with torch.no_grad():
        labels["rded/logits"] = teacher(batches[0][0])

    export = work / "export"
    export_fkd(LabelProjector.from_pretrained(loaded, trust_remote_code=True), folder, export, epochs=2,
               batch_size=8, mix_type="cutmix", input_size=SIZE, min_scale=0.25, progress=False)
    for path in sorted(export.rglob("*.tar")):
        name = f"export/{path.relative_to(export)}"
        files[name] = _digest(path.read_bytes())
        stored = torch.load(path, weights_only=False)
        labels[f"{name}/soft_label"] = torch.as_tensor(stored[-1])
    return files, labels


def record(folder: Path = GOLDEN) -> None:
    """Write ``record.json`` and ``labels.safetensors`` into ``folder`` (default: ``tests/golden/``)."""
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        files, labels = outputs(Path(tmp))
    folder.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in labels.items()}, str(folder / "labels.safetensors"))
    (folder / "record.json").write_text(json.dumps({"machine": machine(), "files": files}, indent=1) + "\n")
    print(f"recorded {len(files)} files and {len(labels)} label tensors in {folder}")


if __name__ == "__main__":
    record(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN)
