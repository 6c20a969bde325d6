"""What a saved projector says about its inputs: identities (names, counts, content hashes), never local paths.

``config.json`` and the model card travel to strangers (the Hub), so they record a teacher by its spec with
directories dropped plus a hash of its weights, a data set by its folder name, size and content fingerprint, and the
command that made the projector with every absolute path cut to its last component. Local paths stay in the
run's own files (``train_state.pt``, ``metrics.json``).
"""
from __future__ import annotations

import os
import shlex
from pathlib import PurePath
from typing import Optional, Sequence

from torch import nn

from .fingerprint import file_sha256, module_digest

_PREFIXES = ("local-dir:",)  # open_clip's schema that names a local folder


def portable(text: str) -> str:
    """``text`` with each absolute path cut to its last component: ``/a/b/ckpt.pth`` -> ``ckpt.pth``, also after
    ``--flag=``, a spec's ``@`` (``timm:resnet18@/a/ckpt.pth``) and ``local-dir:``."""
    if text.startswith("-") and "=" in text:
        flag, _, value = text.partition("=")
        return f"{flag}={portable(value)}"
    if "@" in text:
        head, _, tail = text.partition("@")
        return f"{head}@{portable(tail)}"
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            return prefix + portable(text[len(prefix):])
    if os.path.isabs(text) or text.startswith("~"):
        return PurePath(text.rstrip("/\\")).name or text
    return text


def command_line(argv: Sequence[str], program: str = "hello-labels") -> str:
    """The command as the user typed it (shell-quoted), absolute paths cut to their names (:func:`portable`)."""
    return shlex.join([program, *(portable(str(a)) for a in argv)])


def teacher_identity(spec, module: nn.Module, weight: Optional[float] = None) -> dict:
    """A teacher spec (or module) and the teacher as loaded -> ``{spec, weights_sha256 | tensors, weight}``:
    the checkpoint file's sha256 (compare with ``sha256sum``) when the spec names one, else a digest of the
    loaded tensors (published weights, modules)."""
    if isinstance(spec, nn.Module):
        out = {"spec": f"module {type(spec).__qualname__}"}
    else:
        out = {"spec": portable(spec)}
        checkpoint = spec.partition("@")[2]
        if checkpoint and os.path.isfile(checkpoint):
            out["weights_sha256"] = file_sha256(checkpoint)
    if "weights_sha256" not in out:
        out["tensors_digest"] = module_digest(module)
    if weight is not None:
        out["weight"] = float(weight)
    return out


def data_identity(name: str, fingerprint: dict, num_classes: int) -> dict:
    """A synthetic set's name, image and class counts and content fingerprint (from
    :func:`hello_labels.fingerprint.source_fingerprint`)."""
    images = fingerprint.get("files", fingerprint.get("images"))
    return {"name": portable(name), "images": images, "classes": num_classes,
            "fingerprint": fingerprint.get("sha256")}
