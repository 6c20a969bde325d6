"""One writer per output folder, and runs that never mix settings.

A job (``distill``, ``refine``, ``export-fkd``) holds an exclusive ``fcntl.flock`` on a lock file while it
writes; the kernel drops the lock when the process exits or is killed, so a crash never leaves a folder locked
(the file itself may stay; the next run reuses it). Holding the lock, a job clears what a killed run's atomic
writes left behind and compares its settings with those recorded by the run that wrote the folder: any difference
stops it with one line naming the differing keys.
"""
from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import threading
from pathlib import Path
from typing import List, Optional

from .errors import BadInputError, FolderBusyError, HelloLabelsError, first_line

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected against concurrent writers there
    fcntl = None

LOCK_FILE = ".hello-labels.lock"
WRITE_CHECK = ".write-check."  # prefix of ensure_writable's probe file (a kill may leave one: .write-check.*.tmp)
_HELD = {}  # lock path -> id of the thread holding it, which may lock it again (a run's own save)
_HELD_GUARD = threading.Lock()


class RunLock:
    """``with RunLock(folder):`` makes this process the only hello-labels writer of ``folder`` (created if
    needed); a second one fails at once with a one-line :class:`FolderBusyError`. The lock file holds the pid.
    The thread holding it may take it again (``distill`` saving its projector into its locked ``--out``)."""

    def __init__(self, folder, what: Optional[str] = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what or str(self.folder)
        self._fd: Optional[int] = None
        self._nested = False  # a re-entry of a lock this thread already holds: releasing it does nothing
        self._key = ""

    def acquire(self) -> "RunLock":
        key = os.path.realpath(self.path)
        with _HELD_GUARD:
            if _HELD.get(key) == threading.get_ident():  # held by this thread: the folder exists and is writable
                self._nested = True
                return self
        ensure_writable(self.folder)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                holder = holder if holder.isdigit() else "?"  # the file is anyone's to write: keep one line
                os.close(fd)
                raise FolderBusyError(f"{self.what} is being written by another run (pid {holder}): wait for it "
                                      f"to finish or choose another output folder") from None
            except OSError as err:
                os.close(fd)
                raise HelloLabelsError(f"cannot lock {self.path} ({first_line(err)})") from err
            # the previous holder unlinks the file on release: a lock on an unlinked file protects nothing
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        with _HELD_GUARD:
            _HELD[key] = threading.get_ident()
        self._key = key
        return self

    def release(self) -> None:
        if self._nested:
            self._nested = False
            return
        if self._fd is not None:
            with _HELD_GUARD:
                _HELD.pop(self._key, None)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # while still locked, so nobody locks the file being removed
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._nested

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def ensure_writable(folder) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it: fail now, not after hours of work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=WRITE_CHECK, suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise BadInputError(f"cannot write to output folder {folder} ({first_line(err)})") from err
    return folder


def check_apart(out, data) -> None:
    """Refuse an output folder that is ``data``, lies inside it or contains it: the run would write into its own
    input (an ImageFolder gains a class folder; files read as data get replaced)."""
    if not isinstance(data, (str, os.PathLike)):
        return
    data, out = Path(data).resolve(), Path(out).resolve()
    if out == data or data in out.parents or out in data.parents:
        raise BadInputError(f"output folder {out} must lie outside the input folder {data} and not contain it")


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested dicts -> ``{"a.b": value}``, so a difference names its exact key."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _normal(value):
    """JSON and ``torch.load`` give lists where the settings held tuples; compare them alike."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def differing_keys(saved: dict, current: dict, ignore=()) -> List[str]:
    """The dotted keys whose values differ between two (nested) settings dicts."""
    a, b = flatten(_normal(saved)), flatten(_normal(current))
    return [k for k in sorted(set(a) | set(b)) if k not in ignore and a.get(k, "<absent>") != b.get(k, "<absent>")]


def _short(value, limit: int = 40) -> str:
    text = "absent" if value == "<absent>" else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def settings_difference(saved: dict, current: dict, ignore=()) -> Optional[str]:
    """``None`` when the settings agree, else one line: how many keys differ, which, and the first values."""
    keys = differing_keys(saved, current, ignore)
    if not keys:
        return None
    a, b = flatten(_normal(saved)), flatten(_normal(current))
    names = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
    values = "; ".join(f"{k}: {_short(a.get(k, '<absent>'))} -> {_short(b.get(k, '<absent>'))}" for k in keys[:3])
    return f"settings differ in {len(keys)} key{'s' if len(keys) > 1 else ''} [{names}] ({values})"


def check_settings(saved: dict, current: dict, lead: str, hint: str, ignore=()) -> None:
    """Raise ``"<lead>: settings differ in N keys [...] (...); <hint>"`` unless ``saved`` equals ``current``."""
    difference = settings_difference(saved, current, ignore)
    if difference:
        raise BadInputError(f"{lead}: {difference}; {hint}")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; elsewhere ``platform.processor()``) and architecture, as run
    records (the demo's, the benchmarks') name the machine."""
    name = ""
    with contextlib.suppress(OSError):
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text(errors="replace").splitlines()
                     if line.startswith("model name")), "")
    return f"{name or platform.processor() or 'unknown'} ({platform.machine()})"
