"""The model card (``README.md``) written beside every saved projector, with the Hub's metadata conventions, and
the per-class fidelity plot (``fidelity.png``) it shows.

Everything here comes from ``config.json`` (identities, never local paths: see :mod:`hello_labels.identity`), so
a card tells a stranger what the projector is without access to the author's machine: base (and its Hub id as
``base_model``), classes, teacher, data, the fidelity measured at the end of training and the command that made
it. :func:`card_facts` is also what ``hello-labels info`` prints.
"""
from __future__ import annotations

import importlib.util
import io
from typing import Dict, Optional

from huggingface_hub import ModelCard, ModelCardData

from ..version import __version__
from .directory import PLOT_FILE
TAGS = ["hello-labels", "dataset-distillation", "soft-labels", "label-projector"]


def _base_name(base: dict) -> str:
    name = base.get("name") or base.get("factory") or "custom module"
    tag = base.get("pretrained")
    return f"{base['kind']}:{name}" + (f" ({tag})" if isinstance(tag, str) else "")


def base_model_id(config) -> Optional[str]:
    """The Hub id of the base weights (open_clip ``hf-hub:`` ids and pretrained tags, timm hub ids), else None."""
    hub_id = (config.base_pin or {}).get("hub_id")
    return hub_id.strip("/") if isinstance(hub_id, str) and hub_id.strip("/") else None


def _teacher(meta: dict) -> str:
    teachers = meta.get("teacher")
    if isinstance(teachers, list):
        return "; ".join(_teacher_line(t) for t in teachers)
    if isinstance(teachers, dict):  # convert: stored labels
        return _labels_line(teachers)
    return str(teachers) if teachers else "unknown"


def _teacher_line(t: dict) -> str:
    digest = f"sha256 {t['weights_sha256']}" if t.get("weights_sha256") else f"tensors {t.get('tensors_digest')}"
    weight = f", weight {t['weight']:.3g}" if t.get("weight") is not None else ""
    return f"{t.get('spec')} ({digest}{weight})"


def _labels_line(t: dict) -> str:
    if t.get("source") == "label_dir":
        return (f"stored labels {t.get('name')} (SRe2L label files: {t.get('epochs')} epochs, {t.get('files')} files, "
                f"{t.get('bytes'):,} bytes, first file sha256 {t.get('first_file')})")
    return f"stored labels {t.get('name')} (one per image, values {t.get('values')})"


def _dataset(meta: dict) -> str:
    d = meta.get("dataset")
    if isinstance(d, dict):
        return (f"{d.get('name')}: {d.get('images')} images, {d.get('classes')} classes, "
                f"fingerprint {d.get('fingerprint')}")
    return str(d) if d else "unknown"


def _fidelity(meta: dict) -> Optional[str]:
    f = meta.get("fidelity")
    if not isinstance(f, dict):
        return None
    kind = "in-sample (trained-on)" if f.get("in_sample") else "held-out"
    return (f"top-1 agreement {f['agreement']:.2%}, KL at T={f['temperature']:g} {f['kl']:.4f} "
            f"({f['views']} {kind} views)")


def card_facts(projector, dtype: Optional[str] = None) -> Dict[str, str]:
    """The key facts of a projector, one line each: base, classes, teacher, data, fidelity, adapter size."""
    cfg = projector.config
    dtype = dtype or cfg.adapter_dtype
    meta, pin = cfg.metadata, cfg.base_pin or {}
    weights = pin.get("weights_sha256") and f"file {pin.get('weights_file')} sha256 {pin['weights_sha256']}"
    facts = {"base": _base_name(cfg.base), "base_model": base_model_id(cfg) or "-",
             "base weights": "unpinned in the file it was loaded from (not checked)"
                             if getattr(projector, "base_unpinned", False)
                             else weights or f"tensors sha256 {pin.get('tensors_sha256', '?')}",
             "classes": f"{projector.num_classes} ({', '.join(cfg.class_names[:3])}"
                        f"{', …' if projector.num_classes > 3 else ''})",
             "teacher": _teacher(meta), "data": _dataset(meta), "fidelity": _fidelity(meta) or "not measured",
             "adapter": f"{projector.num_adapter_parameters():,} parameters, {projector.num_adapter_bytes(dtype):,} "
                        f"bytes {dtype}",
             "head": f"{cfg.head_init}, rank {cfg.head_rank}",
             "LoRA": ", ".join(f"{t['pattern']} r{t['rank']}" for t in cfg.lora) or "-"}
    if meta.get("license"):
        facts["license"] = meta["license"]
    return facts


def fidelity_plot(projector) -> Optional[bytes]:
    """PNG of the per-class agreement recorded at the end of training; None without figures or matplotlib."""
    f = projector.config.metadata.get("fidelity")
    if not isinstance(f, dict) or not f.get("per_class"):
        return None
    if importlib.util.find_spec("matplotlib") is None:
        return None
    buffer = io.BytesIO()
    agreement_plot(f["per_class"], f["agreement"], buffer)
    return buffer.getvalue()


def agreement_plot(per_class: Dict[str, float], overall: float, out) -> None:
    """Bar chart of per-class top-1 agreement with the overall figure dashed, as PNG into ``out`` (a path or a
    binary file object). Needs matplotlib (``pip install 'hello-labels[plot]'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_class)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(names) + 2), 3.2))
    ax.bar(range(len(names)), [per_class[n] for n in names], color="#3b7dd8")
    ax.axhline(overall, color="k", lw=1, ls="--", label=f"overall {overall:.1%}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 agreement")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png", metadata={"Software": None})
    plt.close(fig)


_SHIMS = """```python
from hello_labels.adapters import sre2l, rded   # pip install hello-labels
# SRe2L / CDA / G-VBSM / LPLD (validate/train_FKD.py, dataset in mode='fkd_save'): labels computed online
train_loader = sre2l.ProjectorLabels("{repo}", args, train_loader)
# RDED (validation/main.py): the projector takes the teacher's place
teacher_model = rded.teacher("{repo}", classes=args.classes)
```"""


def model_card(projector, dtype=None, plot: bool = False) -> ModelCard:
    """Card with Hub metadata (``library_name``, ``tags``, ``pipeline_tag``, ``base_model`` where the base has a
    Hub id, ``license`` if set) and the key facts under ``hello_labels``; ``plot``: a ``fidelity.png`` is saved
    beside it."""
    cfg = projector.config
    dtype = dtype or cfg.adapter_dtype
    meta = cfg.metadata
    facts = card_facts(projector, dtype)
    summary = {"base": cfg.base, "base_pin": cfg.base_pin, "num_classes": projector.num_classes,
               "teacher": meta.get("teacher"), "dataset": meta.get("dataset"),
               "fidelity": {k: v for k, v in meta["fidelity"].items() if k != "per_class"}
               if isinstance(meta.get("fidelity"), dict) else None,
               "adapter_parameters": projector.num_adapter_parameters(),
               "adapter_bytes": projector.num_adapter_bytes(dtype), "adapter_dtype": dtype,
               "head_init": cfg.head_init, "head_rank": cfg.head_rank,
               "lora_ranks": sorted({t["rank"] for t in cfg.lora})}
    data = ModelCardData(library_name="hello-labels", pipeline_tag="image-classification", tags=list(TAGS),
                         base_model=base_model_id(cfg), license=meta.get("license") or None,
                         hello_labels={k: v for k, v in summary.items() if v is not None})
    rows = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in facts.items())
    dataset = meta.get("dataset")
    title = dataset.get("name") if isinstance(dataset, dict) else (dataset or "a synthetic set")
    fidelity = _fidelity(meta)
    against = "the stored labels" if isinstance(meta.get("teacher"), dict) else "the teacher"
    fidelity_text = (f"Measured at the end of training against {against}: {fidelity}."
                     + (f"\n\n![per-class top-1 agreement]({PLOT_FILE})" if plot else "")
                     if fidelity else "Not measured at the end of training (`hello-labels eval` measures it).")
    command = meta.get("command")
    made = (f"```bash\n{command}\n```" if command else "Made from Python (no command line recorded).")
    body = f"""
# Label projector: {title} ({projector.num_classes} classes)

A [hello-labels](https://arxiv.org/abs/2408.08201) label projector: the public base encoder
`{facts['base']}` plus {summary['adapter_parameters']:,} adapter parameters
({summary['adapter_bytes']:,} bytes, {dtype}) that reproduce the teacher's soft labels
online. Only the adapter is stored here; the base weights come from their own public source.

| fact | value |
| --- | --- |
{rows}

## Fidelity

{fidelity_text}

## How it was made

{made}

## Usage

```python
from hello_labels import LabelProjector
projector = LabelProjector.from_pretrained("<this repo or directory>")
soft_label = projector(images)   # images normalised as your student sees them -> logits [B, {projector.num_classes}]
```

## Use it in SRe2L / RDED

{_SHIMS.format(repo="<this repo or directory>")}

The shims check the training set's classes against the projector's; their diffs against the upstream scripts are
in hello-labels' `examples/`.

Written by hello-labels {__version__}.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
