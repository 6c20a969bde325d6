"""Atomic file writes: write to a temporary file in the target folder, fsync, then ``os.replace``.

A crash leaves either the old file or the new one, never half of one; what a kill mid-write leaves behind is a
hidden ``.<name>.<random>.tmp`` entry, which :func:`remove_stale_temps` clears when the next run starts. A write
that finds the disk full removes its temporary and stops with one line naming the file (:func:`disk_full_as_one_line`).

JSON that others may have written is read with :func:`loads_json`, which refuses deep nesting before parsing.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Union

from .errors import BadInputError, CorruptFileError, DiskFullError, HelloLabelsError

if TYPE_CHECKING:  # torch is imported by the writers that need it: the CLI reads files before importing torch
    import torch


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


def kind_of(mode: int) -> str:
    """What a ``stat`` mode is, as an error message names it: "a folder", "a named pipe (fifo)", ..."""
    kinds = [(stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
             (stat.S_ISFIFO, "a named pipe (fifo)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def not_a_file(path) -> Optional[str]:
    """What stands at ``path`` if it is neither a regular file (or a link to one) nor absent: "a folder", ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent, a dangling link: nothing a write would have to replace
        return None
    return None if stat.S_ISREG(mode) else kind_of(mode)


WRITE_CHECK = ".write-check."  # prefix of the probe files of writability and space checks (a kill may leave one)
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def out_of_space(err: BaseException, folder) -> bool:
    """Whether ``err``, raised while writing in ``folder``, means no space is left there: ENOSPC (or a full quota)
    anywhere in its chain, as an errno or in its message (safetensors' errors), or a ``RuntimeError`` while
    ``folder`` has no room left (``torch.save``'s file writer keeps no errno: "unexpected pos ...")."""
    seen, link = set(), err
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if (isinstance(link, OSError) and link.errno in _FULL) or any(os.strerror(c) in str(link) for c in _FULL):
            return True
        link = link.__cause__ or link.__context__
    return isinstance(err, RuntimeError) and not isinstance(err, HelloLabelsError) and _no_room(folder)


def _no_room(folder, probe: int = 1 << 20) -> bool:
    """Whether ``folder``'s file system refuses ``probe`` more bytes, tried with a file removed again. Free space
    as reported is no answer: ext4 refuses writes while it still reports a few blocks free."""
    try:
        fd, name = tempfile.mkstemp(prefix=WRITE_CHECK, suffix=".tmp", dir=folder)
    except OSError as err:
        return err.errno in _FULL
    try:
        block = memoryview(bytes(probe))
        while block:
            block = block[os.write(fd, block):]
        os.fsync(fd)  # network file systems report a full disk only here
    except OSError as err:
        return err.errno in _FULL
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
    return False


@contextlib.contextmanager
def disk_full_as_one_line(path, folder=None) -> Iterator[None]:
    """Re-raise an error of the block that means the disk holding ``folder`` (default: ``path``'s) is full as one
    line naming ``path``. Check before the block's partial files are removed: that frees the space again."""
    path = Path(path)
    try:
        yield
    except Exception as err:
        if not out_of_space(err, path.parent if folder is None else folder):
            raise
        raise disk_full(path) from err


def disk_full(path) -> DiskFullError:
    """The one line for a write of ``path`` that found its disk full (and undid itself)."""
    path = Path(path)
    return DiskFullError(f"no space left on the device of {path.parent} (writing {path.name}): free some and run "
                         f"again; nothing was left half-written")


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", tmp_dir=None, keep_name: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed (a full disk: one line).

    The temporary lives in ``tmp_dir`` (default: beside ``path``; it must be on the same filesystem). With
    ``keep_name`` it is ``<tmp_dir>/.<name>.<random>.tmp/<name>``, a file under the final name, for writers that
    record the file name inside the file (``torch.save`` names its zip archive after it)."""
    path = Path(path)
    kind = not_a_file(path)
    if kind:  # os.replace would fail only after the work (a folder), or replace a pipe or device
        raise BadInputError(f"{path} is {kind}: give a file name to write to")
    where = Path(tmp_dir) if tmp_dir is not None else path.parent
    with disk_full_as_one_line(path, where):
        path.parent.mkdir(parents=True, exist_ok=True)
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
        with disk_full_as_one_line(path, where):
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


def atomic_write_text(path, text: str, tmp_dir=None) -> None:
    with atomic_path(path, tmp_dir=tmp_dir) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path, obj, tmp_dir=None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", tmp_dir=tmp_dir)


def atomic_save_safetensors(tensors: Dict[str, "torch.Tensor"], path, metadata: Optional[Dict[str, str]] = None):
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def atomic_torch_save(obj, path, tmp_dir=None) -> None:
    """``torch.save(obj, path)`` atomically, with the archive named after ``path`` as a direct save names it."""
    import torch

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
