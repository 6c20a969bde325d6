"""Adapter file sizes at ImageNet-1K scale, per storage format: ``python -m benchmarks.adapter_sizes --json F``.

Builds each base with random init (no download; the sizes depend on shapes only), a 1000-class projector with the
default ranks, and saves it in every format to a temporary folder: the figures are the real file sizes."""
import argparse
import tempfile
from pathlib import Path

from hello_labels import LabelProjector, __version__
from hello_labels.files import atomic_write_json
from hello_labels.model.config import ADAPTER_DTYPES


def sizes(base: str) -> dict:
    projector = LabelProjector.from_base(base, class_names="imagenet", head_init="zero")
    out = {"parameters": projector.num_adapter_parameters(), "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ADAPTER_DTYPES:
            projector.save_pretrained(Path(tmp) / dtype, dtype=dtype)
            out["formats"][dtype] = {"tensor_bytes": projector.num_adapter_bytes(dtype),
                                     "adapter_file_bytes": (Path(tmp) / dtype / "adapter.safetensors").stat().st_size,
                                     "config_bytes": (Path(tmp) / dtype / "config.json").stat().st_size}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bases", nargs="+", default=["RN50", "ViT-B-32"])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = {"hello_labels": __version__, "classes": 1000, "bases": {b: sizes(b) for b in args.bases}}
    for base, r in result["bases"].items():
        print(f"{base}: {r['parameters']:,} adapter parameters")
        for dtype, f in r["formats"].items():
            print(f"  {dtype:9s} tensors {f['tensor_bytes']:>10,} B   "
                  f"adapter.safetensors {f['adapter_file_bytes']:>10,} B")
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
