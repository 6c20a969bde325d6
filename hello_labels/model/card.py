"""The model card (``README.md``) written beside every saved projector, in the Hub's conventions
(``ModelCard`` / ``ModelCardData`` / ``EvalResult``), and the per-class fidelity plot (``fidelity.png``) it shows.

Everything here comes from ``config.json`` and the adapter as saved (identities, never local paths: see
:mod:`hello_labels.identity`), so a card tells a stranger what the projector is without access to the author's
machine. Its first screen is the input contract (channels, mean/std, size), the base and its weights' identity,
the classes and the teacher; the metadata carries ``base_model`` where the base weights have a Hub id,
``model-index`` with the fidelity measured at the end of training, ``library_name``, ``tags`` and ``license``.
:func:`card_facts` is also what ``hello-labels info`` prints.
"""
from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from ..errors import CorruptFileError, first_line
from ..version import __version__
from .bases import hub_model, weights_source
from .config import COUNT, FIDELITY, TEXT, check_fields
from .directory import PLOT_FILE

TAGS = ["hello-labels", "dataset-distillation", "soft-labels", "label-projector"]
CODE_URL = "https://pypi.org/project/hello-labels/"  # the package: its README, install line and code
PAPER_URL = "https://arxiv.org/abs/2408.08201"
REPO_PLACEHOLDER = "<this repo or directory>"  # the usage snippet's id until a push names the repo
# what `list` reads of a card's `hello_labels` metadata, each with its shape (config.check_fields); the rest is free
CARD_FACTS = {"base": ({"kind": (*TEXT, True), "name": (*TEXT, False), "factory": (*TEXT, False)}, "an object", False),
              "num_classes": (*COUNT, False), "fidelity": (FIDELITY, "an object", False),
              "adapter_bytes": (*COUNT, False), "adapter_dtype": (*TEXT, False)}


@dataclass(frozen=True)
class AdapterFacts:
    """The adapter as one save writes it: ``parameters`` (every stored value), ``file_bytes`` (the
    ``adapter.safetensors`` file's size), ``dtype``, ``head_rank`` (the head delta's rank after clamping to the
    head's shape; 0: none) and the input size the base is fed (``image_size`` ``(H, W)``)."""

    parameters: int
    file_bytes: int
    dtype: str
    head_rank: int
    image_size: Sequence[int]


def _base_name(base: dict) -> str:
    name = base.get("name") or base.get("factory") or "custom module"
    tag = base.get("pretrained")
    if isinstance(tag, str):
        return f"{base['kind']}:{name} ({tag})"
    return f"{base['kind']}:{name}" + (" (random init)" if tag is False else "")


def base_model_id(config) -> Optional[str]:
    """The Hub id of the base weights (open_clip ``hf-hub:`` ids and pretrained tags, timm hub ids, the shipped
    EfficientNet-Lite0), else None."""
    hub_id = (config.base_pin or {}).get("hub_id")
    if isinstance(hub_id, str) and hub_id.strip("/"):
        return hub_id.strip("/")
    return hub_model(config.base) if (config.base_pin or {}).get("weights_sha256") else None


def _numbers(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def input_contract(config, image_size: Sequence[int]) -> str:
    """One line: what a caller must feed (channels, normalisation) and what the base is fed (size)."""
    channels = config.input_channels
    return (f"{channels} channel{'s' if channels > 1 else ''} [B, {channels}, H, W]: 0-1 pixels normalised with mean "
            f"{_numbers(config.input_mean)} and std {_numbers(config.input_std)}; any H x W, resized to "
            f"{image_size[0]} x {image_size[1]} ({config.interpolation}) for the base")


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
    text = (f"top-1 agreement {f['agreement']:.2%}, KL at T={f['temperature']:g} {f['kl']:.4f} "
            f"({f['views']} {kind} views)")
    m = meta.get("fidelity_mixed")
    if isinstance(m, dict):  # held-out views mixed as the students' batches are
        text += (f"; on {m['views']} held-out {m.get('mix_type')}-mixed views, as students see them: "
                 f"{m['agreement']:.2%}, KL {m['kl']:.4f}")
    return text


def _base_weights(config, unpinned: bool) -> str:
    if unpinned:
        return "unpinned in the file it was loaded from (not checked)"
    pin, source = config.base_pin or {}, weights_source(config.base)
    if pin.get("weights_sha256"):
        return f"{source}; file {pin.get('weights_file')} sha256 {pin['weights_sha256']}"
    where = ", ".join(f"{k} {pin[k]}" for k in ("tag", "hub_id") if pin.get(k))
    return f"{source}; " + (f"{where}; " if where else "") + f"tensors sha256 {pin.get('tensors_sha256', '?')}"


def card_facts(config, adapter: AdapterFacts, unpinned: bool = False) -> Dict[str, str]:
    """The key facts of a projector, one line each, the input contract first: input, base, base weights,
    base_model, classes, teacher, data, fidelity, adapter (file bytes), head (rank as built), LoRA, license.
    ``unpinned``: the projector came from a file without a base pin (``LabelProjector.base_unpinned``)."""
    meta, names = config.metadata, config.class_names
    facts = {"input": input_contract(config, adapter.image_size), "base": _base_name(config.base),
             "base weights": _base_weights(config, unpinned), "base_model": base_model_id(config) or "-",
             "classes": f"{len(names)} ({', '.join(names[:5])}{', …' if len(names) > 5 else ''})",
             "teacher": _teacher(meta), "data": _dataset(meta), "fidelity": _fidelity(meta) or "not measured",
             "adapter": f"{adapter.parameters:,} parameters, adapter.safetensors {adapter.file_bytes:,} bytes "
                        f"({adapter.dtype})",
             "head": f"{config.head_init}, rank {adapter.head_rank}",
             "LoRA": ", ".join(f"{t['pattern']} r{t['rank']}" for t in config.lora) or "-"}
    if meta.get("license"):
        facts["license"] = meta["license"]
    return facts


def fidelity_plot(config) -> Optional[bytes]:
    """PNG of the per-class agreement recorded at the end of training; None without figures or matplotlib."""
    f = config.metadata.get("fidelity")
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


def _title(meta: dict, classes: int) -> str:
    dataset = meta.get("dataset")
    name = dataset.get("name") if isinstance(dataset, dict) else (dataset or "a synthetic set")
    return f"Label projector: {name} ({classes} classes)"


def eval_results(config) -> List[EvalResult]:
    """``model-index`` entries: top-1 agreement with the teacher (or stored labels) and KL at T, on the views of
    the training set's images that the end-of-training check scored."""
    meta = config.metadata
    f, d = meta.get("fidelity"), meta.get("dataset")
    if not isinstance(f, dict):
        return []
    against = "stored labels" if isinstance(meta.get("teacher"), dict) else "teacher"
    name = d.get("name") if isinstance(d, dict) else str(d or "synthetic set")
    split = f"{f['views']} {'in-sample' if f.get('in_sample') else 'held-out'} augmented views"
    common = dict(task_type="image-classification", task_name=f"soft-label fidelity to the {against}",
                  dataset_type="imagefolder", dataset_name=name, dataset_split=split)
    return [EvalResult(metric_type="accuracy", metric_name=f"top-1 agreement with the {against}",
                       metric_value=round(float(f["agreement"]), 6), **common),
            EvalResult(metric_type="kl_divergence", metric_name=f"KL({against} || projector) at T={f['temperature']:g}",
                       metric_value=round(float(f["kl"]), 6), metric_config=f"T={f['temperature']:g}", **common)]


_SHIMS = """```python
from hello_labels.adapters import sre2l, rded   # pip install hello-labels
# SRe2L / CDA / LPLD (dataset in mode='fkd_save'; G-VBSM, EDC: layout='gvbsm'): labels computed online
train_loader = sre2l.ProjectorLabels("{repo}", args, train_loader)
# RDED (validation/main.py): the projector takes the teacher's place
teacher_model = rded.teacher("{repo}", classes=args.classes)
```"""


def model_card(config, adapter: AdapterFacts, plot: bool = False, repo_id: Optional[str] = None) -> ModelCard:
    """The card: Hub metadata (``library_name``, ``tags``, ``base_model``, ``datasets`` where the metadata names
    Hub datasets, ``model-index``, ``license`` if set; no ``pipeline_tag``: no Hub widget can run a projector) and
    a body whose first screen is the input contract, base, classes and teacher. ``plot``: a ``fidelity.png`` is
    saved beside it. ``repo_id``: the id the usage snippets name (default a placeholder, until a push)."""
    meta = config.metadata
    facts = card_facts(config, adapter)
    summary = {"base": config.base, "base_pin": config.base_pin, "num_classes": len(config.class_names),
               "input_channels": config.input_channels, "input_mean": config.input_mean,
               "input_std": config.input_std, "teacher": meta.get("teacher"), "dataset": meta.get("dataset"),
               "fidelity": {k: v for k, v in meta["fidelity"].items() if k != "per_class"}
               if isinstance(meta.get("fidelity"), dict) else None,
               "fidelity_mixed": meta.get("fidelity_mixed") if isinstance(meta.get("fidelity_mixed"), dict) else None,
               "adapter_parameters": adapter.parameters, "adapter_bytes": adapter.file_bytes,
               "adapter_dtype": adapter.dtype, "head_init": config.head_init, "head_rank": adapter.head_rank,
               "lora_ranks": sorted({t["rank"] for t in config.lora})}
    title = _title(meta, len(config.class_names))
    results = eval_results(config)
    datasets = [d for d in meta.get("datasets") or [] if isinstance(d, str)] or None
    data = ModelCardData(library_name="hello-labels", tags=list(TAGS), base_model=base_model_id(config),
                         datasets=datasets, license=meta.get("license") or None,
                         model_name=title if results else None, eval_results=results or None,
                         hello_labels={k: v for k, v in summary.items() if v is not None})
    repo = repo_id or REPO_PLACEHOLDER
    rows = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in facts.items())
    fidelity = _fidelity(meta)
    stored = isinstance(meta.get("teacher"), dict)  # convert: stored labels stand for the teacher
    against = "the stored labels" if stored else "the teacher"
    reproduced = "the stored soft labels" if stored else "the teacher's soft labels"
    fidelity_text = (f"Measured at the end of training against {against}: {fidelity}."
                     + (f"\n\n![per-class top-1 agreement]({PLOT_FILE})" if plot else "")
                     if fidelity else "Not measured at the end of training (`hello-labels eval` measures it).")
    command = meta.get("command")
    made = (f"```bash\n{command}\n```" if command else "Made from Python (no command line recorded).")
    mean, std = tuple(config.input_mean), tuple(config.input_std)
    body = f"""
# {title}

**Input**: {facts['input']}. Feed it the batch your student sees: images normalised otherwise (e.g. with
ImageNet's mean/std) get wrong labels.

A [hello-labels]({CODE_URL}) label projector ([HeLlO, arXiv 2408.08201]({PAPER_URL})): the public base
`{facts['base']}` plus {adapter.parameters:,} adapter parameters (adapter.safetensors, {adapter.file_bytes:,}
bytes, {adapter.dtype}) that reproduce {reproduced} online. Only the adapter is stored here; the base
weights come from their own public source.

| fact | value |
| --- | --- |
{rows}

## Usage

```python
import torch
from hello_labels import LabelProjector   # pip install hello-labels
projector = LabelProjector.from_pretrained("{repo}")
images = torch.rand(8, {config.input_channels}, 64, 64)   # 0-1 pixels; then normalise as the student does:
images = (images - torch.tensor({mean}).view(1, -1, 1, 1)) / torch.tensor({std}).view(1, -1, 1, 1)
logits = projector(images)   # teacher-scale logits [8, {len(config.class_names)}]
```

```bash
hello-labels info {repo}
```

## Fidelity

{fidelity_text}

## How it was made

{made}

## Use it in SRe2L / RDED

{_SHIMS.format(repo=repo)}

The shims check the training set's classes against the projector's; their diffs against the upstream scripts are
in hello-labels' `examples/`.

Written by hello-labels {__version__}.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def read_card_facts(card: dict, source: str) -> dict:
    """The ``hello_labels`` facts of a card's metadata (``card``: as parsed; ``{}`` without them), checked against
    :data:`CARD_FACTS`: a wrong type raises a one-line :class:`~hello_labels.errors.CorruptFileError` naming
    ``source`` and the field."""
    facts = card.get("hello_labels", {})
    check_fields(facts, CARD_FACTS, "hello_labels", source)
    return facts


MAX_YAML_DEPTH = 100  # hello-labels' cards nest 6 levels (model-index); PyYAML builds a node per level, recursively
_OPENS = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
          yaml.FlowSequenceStartToken)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def read_card(data: bytes, source: str) -> str:
    """A card's text, once its YAML metadata is known to be plain data: UTF-8, no tag (``!!python/object``...), no
    anchor or alias (``&a`` / ``*a``: a few lines of them expand to billions of nodes), at most
    :data:`MAX_YAML_DEPTH` levels deep (all three checked token by token with PyYAML's scanner, before anything is
    built), then valid YAML holding a mapping. Otherwise a one-line
    :class:`~hello_labels.errors.CorruptFileError` naming ``source``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{source} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    match = REGEX_YAML_BLOCK.search(text)  # the block ModelCard parses
    block, depth = match.group(2) if match else "", 0
    try:
        for token in yaml.scan(block, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.TagToken):
                raise CorruptFileError(f"{source}: its metadata holds the YAML tag {''.join(token.value)!r}: a card "
                                       f"holds plain data only")
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                mark = "&" if isinstance(token, yaml.AnchorToken) else "*"
                raise CorruptFileError(f"{source}: its metadata holds the YAML anchor or alias {mark}{token.value}: "
                                       f"a card holds plain data only (aliases can expand without bound)")
            depth += isinstance(token, _OPENS) - isinstance(token, _CLOSES)
            if depth > MAX_YAML_DEPTH:
                raise CorruptFileError(f"{source}: its metadata nests deeper than {MAX_YAML_DEPTH} levels")
        data = yaml.safe_load(block)  # plain data, bounded: safe to build now
    except yaml.YAMLError as err:
        raise CorruptFileError(f"{source}: its metadata is not valid YAML ({first_line(err)})") from None
    if not isinstance(data, (dict, type(None))):
        raise CorruptFileError(f"{source}: its metadata must be a mapping of keys, got {type(data).__name__}")
    return text


def card_for_repo(text: str, repo_id: str, license: Optional[str] = None) -> str:
    """A saved card's text with its usage snippets naming ``repo_id`` (and ``license`` in its metadata, if
    given): what a push publishes."""
    card = ModelCard(text.replace(REPO_PLACEHOLDER, repo_id))
    if license:
        card.data.license = license
    return str(card)
