"""Atomic file writes: write to a temporary file in the target folder, fsync, then ``os.replace``.

A crash leaves either the old file or the new one, never half of one; what a kill mid-write leaves behind is a
hidden ``.<name>.<random>.tmp`` entry, which :func:`remove_stale_temps` clears when the next run starts.

JSON that others may have written is read with :func:`loads_json`, which refuses deep nesting before parsing.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import torch

from .errors import BadInputError, CorruptFileError


_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value) -> bool:
    """Whether ``value`` is a sha256 hex digest (64 lowercase hex digits): the only shape a name read from a file
    may take before it becomes part of a path (``"/../../x"`` would leave the folder)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _default_mode() -> int:
    """The mode ``open()`` gives a new file (mkstemp's are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", tmp_dir=None, keep_name: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed.

    The temporary lives in ``tmp_dir`` (default: beside ``path``; it must be on the same filesystem). With
    ``keep_name`` it is ``<tmp_dir>/.<name>.<random>.tmp/<name>``, a file under the final name, for writers that
    record the file name inside the file (``torch.save`` names its zip archive after it)."""
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the work, with a raw IsADirectoryError
        raise BadInputError(f"{path} is a folder: give a file name to write to")
    path.parent.mkdir(parents=True, exist_ok=True)
    where = Path(tmp_dir) if tmp_dir is not None else path.parent
    where.mkdir(parents=True, exist_ok=True)
    if keep_name:
        holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=where))
        tmp = holder / path.name
        tmp.touch()
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=where)
        os.close(fd)
        holder = tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _default_mode())
        os.replace(tmp, path)
    finally:
        _remove(holder)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def is_temp(name: str) -> bool:
    """Whether ``name`` is a temporary of :func:`atomic_path` (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def remove_stale_temps(folder, recursive: bool = True) -> List[Path]:
    """Delete the temporaries a killed writer left in ``folder`` (and below); returns what was removed.

    Only safe while no other process writes there: call it holding the folder's run lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in (folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")) if is_temp(p.name)]
    for p in found:
        _remove(p)
    return found


def changed_settings(saved: dict, current: dict, prefix: str = "") -> List[str]:
    """``key: old -> new`` for every setting that differs: what keeps a killed job from resuming."""
    return [f"{prefix}{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]


# hello-labels' own files nest a few levels; the parser recurses once per level (RecursionError near 1,000), and so
# would a check, a copy or a dump of what it returned
MAX_JSON_DEPTH = 100
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (brackets inside strings do not count), found by
    linear scans of the text, without recursion."""
    brackets = re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def loads_json(text: Union[str, bytes], max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for files from others: a text nested deeper than ``max_depth`` is refused first
    (:class:`CorruptFileError`, a ``ValueError`` as the parser's own errors are), so no depth reaches a
    ``RecursionError``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    depth = json_depth(text)
    if depth > max_depth:
        raise CorruptFileError(f"JSON nested {depth} levels deep; at most {max_depth} are read")
    return json.loads(text)


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_safetensors(tensors: Dict[str, torch.Tensor], path, metadata: Optional[Dict[str, str]] = None):
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def atomic_torch_save(obj, path, tmp_dir=None) -> None:
    """``torch.save(obj, path)`` atomically, with the archive named after ``path`` as a direct save names it."""
    with atomic_path(path, tmp_dir=tmp_dir, keep_name=True) as tmp:
        torch.save(obj, tmp)


def fsync_dir(path) -> None:
    """Make the renames and unlinks done in folder ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
