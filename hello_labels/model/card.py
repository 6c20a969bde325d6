"""The model card (``README.md``) written beside every saved projector, with Hub metadata."""
from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

from ..version import __version__


def _base_name(base: dict) -> str:
    name = base.get("name") or base.get("factory") or "custom module"
    tag = base.get("pretrained")
    return f"{base['kind']}:{name}" + (f" ({tag})" if isinstance(tag, str) else "")


def model_card(projector, dtype=None) -> ModelCard:
    """Card with YAML metadata (base, teacher, dataset, classes, ranks, adapter bytes at ``dtype``, default the
    configured one) and a usage snippet."""
    cfg = projector.config
    dtype = dtype or cfg.adapter_dtype
    meta = cfg.metadata
    ranks = sorted({t["rank"] for t in cfg.lora})
    summary = {
        "base": _base_name(cfg.base),
        "teacher": meta.get("teacher", "unknown"),
        "dataset": meta.get("dataset", "unknown"),
        "num_classes": projector.num_classes,
        "head_init": cfg.head_init,
        "head_rank": cfg.head_rank,
        "lora_ranks": ranks,
        "lora_targets": [t["pattern"] for t in cfg.lora],
        "adapter_parameters": projector.num_adapter_parameters(),
        "adapter_bytes": projector.num_adapter_bytes(dtype),
        "adapter_dtype": dtype,
    }
    data = ModelCardData(library_name="hello-labels", pipeline_tag="image-classification",
                         tags=["hello-labels", "dataset-distillation", "soft-labels", "label-projector"],
                         hello_labels=summary)
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.items())
    body = f"""
# Label projector: {summary['dataset']} ({projector.num_classes} classes)

A [hello-labels](https://arxiv.org/abs/2408.08201) label projector: the public base encoder
`{summary['base']}` plus {summary['adapter_parameters']:,} adapter parameters
({summary['adapter_bytes']:,} bytes, {dtype}) that reproduce the teacher's soft labels
online. Only the adapter is stored here; the base weights come from their own public source.

| field | value |
| --- | --- |
{rows}

## Usage

```python
from hello_labels import LabelProjector
projector = LabelProjector.from_pretrained("<this repo or directory>")
soft_label = projector(images)   # images normalised as your student sees them -> logits [B, {projector.num_classes}]
```

Written by hello-labels {__version__}.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
