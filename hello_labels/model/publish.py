"""Publishing a projector directory: read the files a projector consists of (``config.json``, the adapter, the card
and its plot), each a regular file of the folder itself, check that none of them names this machine, then upload
those very bytes to a Hub repo in one commit with ``huggingface_hub``. Run files (``train_state.pt``,
``metrics.json``) stay local; a symlink or hard link under a published name is refused, so nothing from outside
the folder is uploaded."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import BadInputError, CorruptFileError, HelloLabelsError, first_line
from . import directory
from .bases import local_source
from .config import ProjectorConfig, parse_config
from .hub import translate_errors


def check_portable_config(config: dict, source: str = "config.json") -> None:
    """Refuse (one line) a projector whose base is a local file or folder: published, it names the author's
    file system and nobody else can load it (what is local is the base kind's ``local``, bases.BASE_KINDS)."""
    where = local_source(config["base"]) if config.get("base") else None
    if where:
        raise BadInputError(
            f"{source}: the base is {where} on this machine: others could not rebuild it; publish a projector "
            f"built on a base they can fetch (an open_clip name + pretrained tag, hf-hub:ORG/NAME, a timm name)")


def published_files(folder) -> Dict[str, bytes]:
    """``{name: bytes}`` of the files a push uploads (those of ``directory.PUBLISHED`` present in ``folder``), each
    read once. Each must be a regular file of ``folder`` itself with no other name: a symlink, a hard link, a
    folder or a device under a published name is refused in one line, so no file from outside is uploaded."""
    folder = Path(folder)
    out = {}
    for name in directory.PUBLISHED:
        path = folder / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise BadInputError(f"{path} is a symbolic link (to {os.readlink(path)!r}): push uploads only regular "
                                f"files inside {folder}; put the file itself there")
        if not stat.S_ISREG(st.st_mode):
            raise BadInputError(f"{path} is not a regular file: push uploads only regular files inside {folder}")
        if st.st_nlink != 1:
            raise BadInputError(f"{path} is a hard link ({st.st_nlink} names; it may be a file from outside "
                                f"{folder}): push uploads only files of the folder itself; replace it by a copy")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as err:
            raise BadInputError(f"cannot read {path} to publish it ({first_line(err)})") from err
        with os.fdopen(fd, "rb") as fh:
            now = os.fstat(fh.fileno())
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):  # replaced between the check and the open
                raise BadInputError(f"{path} changed while being read for the push: try again")
            out[name] = fh.read()
    return out


def machine_markers(folder=None) -> List[str]:
    """Absolute paths that identify this machine: the home and working directories, the temporary directory and
    ``folder`` (resolved and as given)."""
    marks = {str(Path.home()), os.getcwd(), tempfile.gettempdir()}
    if folder is not None:
        marks |= {str(Path(folder).resolve()), os.path.abspath(folder)}
    return sorted({m.rstrip("/\\") for m in marks if len(m.rstrip("/\\")) > 1}, key=len, reverse=True)


def _header(adapter: bytes) -> str:
    size = int.from_bytes(adapter[:8], "little")
    return adapter[8:8 + min(size, 1 << 24)].decode("utf-8", "replace")


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


def check_publishable(folder, config: Optional[ProjectorConfig] = None,
                      files: Optional[Dict[str, bytes]] = None) -> None:
    """Refuse (one line, naming the file and the path) a directory whose published files hold an absolute path
    of this machine (:func:`find_local_path`) or whose base is local (:func:`check_portable_config`).
    ``files``: :func:`published_files` as already read; ``config``: its config.json, parsed."""
    folder = Path(folder)
    files = published_files(folder) if files is None else files
    config = config or parse_config(files[directory.CONFIG_FILE], str(folder / directory.CONFIG_FILE))
    check_portable_config(asdict(config), str(folder / directory.CONFIG_FILE))
    marks = machine_markers(folder)
    texts = {name: files[name].decode("utf-8", errors="replace")
             for name in (directory.CONFIG_FILE, directory.CARD_FILE) if name in files}
    texts[directory.ADAPTER_FILE] = _header(files.get(directory.ADAPTER_FILE, b""))
    for name, text in texts.items():
        path = find_local_path(text, marks)
        if path:
            raise BadInputError(f"{folder / name} holds a local path of this machine ({path[:80]!r}): it would "
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
    adapter, README.md and fidelity.png when present, as :func:`published_files` reads them. Checks first: those
    are regular files of the folder, the config is valid, the adapter is the one it was saved with and fitted for
    the config's class order, no file names this machine, the card's metadata is plain YAML data
    (:func:`~hello_labels.model.card.read_card`); the bytes checked are the bytes uploaded. The card (in ``folder``
    too) then names ``repo_id`` in its usage snippets and ``license`` (if given) in its metadata. Returns
    huggingface_hub's ``CommitInfo`` (``.oid``)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    if not os.path.lexists(folder / directory.CONFIG_FILE):
        raise BadInputError(f"'{folder}' is not a projector directory (no {directory.CONFIG_FILE})")
    check_repo_id(repo_id)
    files = published_files(folder)
    config = parse_config(files[directory.CONFIG_FILE], str(folder / directory.CONFIG_FILE))
    _, path = directory.read_adapter(str(folder), config.adapter_sha256, lambda name: str(folder / name),
                                     class_names=config.class_names)
    adapter = files.get(directory.ADAPTER_FILE, b"")
    if Path(path) != folder / directory.ADAPTER_FILE or (
            config.adapter_sha256 and hashlib.sha256(adapter).hexdigest() != config.adapter_sha256):
        raise HelloLabelsError(f"{folder} holds an unfinished save: load and save the projector again first")
    check_publishable(folder, config, files)
    if directory.CARD_FILE in files:
        files[directory.CARD_FILE] = _name_repo_in_card(folder, files[directory.CARD_FILE], repo_id, license)
    api = HfApi(token=token)
    with translate_errors(repo_id, revision):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
        return api.create_commit(repo_id, operations, revision=revision,
                                 commit_message=commit_message or "Upload label projector (hello-labels)")


def _name_repo_in_card(folder: Path, card: bytes, repo_id: str, license: Optional[str]) -> bytes:
    """The card naming ``repo_id`` (and ``license``), written back to ``folder`` so the folder and the Hub agree."""
    from ..files import atomic_write_text
    from .card import card_for_repo, read_card

    path = folder / directory.CARD_FILE
    text = read_card(card, str(path))  # plain data before huggingface_hub parses it
    try:
        new = card_for_repo(text, repo_id, license)
    except ValueError as err:  # huggingface_hub's: metadata that is not a mapping, a malformed model-index
        raise CorruptFileError(f"{path}: its metadata is not a model card's ({first_line(err)})") from None
    if new != text:
        atomic_write_text(folder / directory.CARD_FILE, new)
    return new.encode("utf-8")
