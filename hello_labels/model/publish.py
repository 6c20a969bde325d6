"""Publishing a projector directory: check that none of its files names this machine, then upload them
(``config.json``, the adapter, the card and its plot) to a Hub repo in one commit with ``huggingface_hub``.
Run files (``train_state.pt``, ``metrics.json``) stay local."""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

from ..errors import HelloLabelsError
from . import directory
from .config import read_config
from .hub import translate_errors

_MODEL_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def local_base(base: dict) -> Optional[str]:
    """What in a base spec is a file or folder of this machine (``local-dir:``, a weights file, a timm
    checkpoint), else None: others could not rebuild that base."""
    if base.get("kind") == "open_clip":
        name, tag = str(base.get("name")), base.get("pretrained")
        if name.startswith("local-dir:"):
            return f"an open_clip folder ({name})"
        if isinstance(tag, str) and (os.sep in tag or "/" in tag or tag.endswith(_MODEL_FILE_SUFFIXES)):
            return f"a weights file ({tag})"
    if base.get("kind") == "timm" and base.get("checkpoint"):
        return f"a timm checkpoint ({base['checkpoint']})"
    return None


def check_portable_config(config: dict, source: str = "config.json") -> None:
    """Refuse (one line) a projector whose base is a local file or folder: published, it names the author's
    file system and nobody else can load it."""
    where = local_base(config.get("base") or {})
    if where:
        raise HelloLabelsError(
            f"{source}: the base is {where} on this machine: others could not rebuild it; publish a projector "
            f"built on a base they can fetch (an open_clip name + pretrained tag, hf-hub:ORG/NAME, a timm name)")


def machine_markers(folder=None) -> List[str]:
    """Absolute paths that identify this machine: the home and working directories, the temporary directory and
    ``folder`` (resolved and as given)."""
    marks = {str(Path.home()), os.getcwd(), tempfile.gettempdir()}
    if folder is not None:
        marks |= {str(Path(folder).resolve()), os.path.abspath(folder)}
    return sorted({m.rstrip("/\\") for m in marks if len(m.rstrip("/\\")) > 1}, key=len, reverse=True)


def _header(path: Path) -> str:
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        return fh.read(min(size, 1 << 24)).decode("utf-8", "replace")


_BOUNDARY = r"(?<![\w.~/\\-])"  # a path starts here, not inside a relative path or a repo id (../tmp, org/x)


def find_local_path(text: str, marks) -> Optional[str]:
    """The first absolute path of this machine in ``text``: one under a :func:`machine_markers` path, or any
    absolute path that exists here; None if there is none."""
    for mark in marks:
        found = re.search(_BOUNDARY + re.escape(mark) + r"(?=[/\\\s\"',;)\]]|$)", text)
        if found:
            return re.match(r"[^\s\"',;)\]]+", text[found.start():]).group(0)
    for found in re.finditer(_BOUNDARY + r"/[^\s\"',;:@()\[\]<>|`*]+", text):
        if len(found.group(0).rstrip("/")) > 1 and os.path.exists(found.group(0)):
            return found.group(0)
    return None


def check_publishable(folder, config=None) -> None:
    """Refuse (one line, naming the file and the path) a directory whose published files hold an absolute path
    of this machine (:func:`find_local_path`) or whose base is local (:func:`check_portable_config`).
    ``config``: the directory's config.json as already read, if it was."""
    folder = Path(folder)
    config = config or read_config(str(folder / directory.CONFIG_FILE))
    check_portable_config(asdict(config), str(folder / directory.CONFIG_FILE))
    marks = machine_markers(folder)
    texts = {name: (folder / name).read_text(encoding="utf-8", errors="replace")
             for name in (directory.CONFIG_FILE, directory.CARD_FILE) if (folder / name).is_file()}
    texts[directory.ADAPTER_FILE] = _header(folder / directory.ADAPTER_FILE)
    for name, text in texts.items():
        path = find_local_path(text, marks)
        if path:
            raise HelloLabelsError(f"{folder / name} holds a local path of this machine ({path[:80]!r}): it would "
                                   f"be published; save it again with this hello-labels version, or remove the path")


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HelloLabelsError(f"'{repo_id}' is not a valid Hub repo id (ORG/NAME)") from err


def push_directory(folder, repo_id: str, *, revision: Optional[str] = None, private: Optional[bool] = None,
                   commit_message: Optional[str] = None, token=None, license: Optional[str] = None):
    """Upload the projector in ``folder`` to ``repo_id`` (created if missing; ``private`` for a new repo) on
    branch ``revision`` (created from ``main`` if missing; default ``main``) in one commit: config.json, the
    adapter, README.md and fidelity.png when present. Checks first: the config is valid, the adapter is the one
    it was saved with, no file names this machine. The card (in ``folder`` too) then names ``repo_id`` in its usage
    snippets and ``license`` (if given) in its metadata. Returns huggingface_hub's ``CommitInfo`` (``.oid``)."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / directory.CONFIG_FILE).is_file():
        raise HelloLabelsError(f"'{folder}' is not a projector directory (no {directory.CONFIG_FILE})")
    check_repo_id(repo_id)
    config = read_config(str(folder / directory.CONFIG_FILE))
    _, path = directory.read_adapter(str(folder), config.adapter_sha256, lambda name: str(folder / name))
    if Path(path) != folder / directory.ADAPTER_FILE:
        raise HelloLabelsError(f"{folder} holds an unfinished save: load and save the projector again first")
    check_publishable(folder, config)
    _name_repo_in_card(folder, repo_id, license)
    api = HfApi(token=token)
    with translate_errors(repo_id, revision):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                 allow_patterns=list(directory.PUBLISHED),
                                 commit_message=commit_message or "Upload label projector (hello-labels)")


def _name_repo_in_card(folder: Path, repo_id: str, license: Optional[str]) -> None:
    from ..files import atomic_write_text
    from .card import card_for_repo

    path = folder / directory.CARD_FILE
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        new = card_for_repo(text, repo_id, license)
        if new != text:
            atomic_write_text(path, new)
