"""One writer per output folder, and runs that never mix settings.

A job (``distill``, ``refine``, ``export-fkd``) holds an exclusive ``fcntl.flock`` on a lock file while it
writes; the kernel drops the lock when the process exits or is killed, so a crash never leaves a folder locked
(the file itself may stay; the next run replaces it by its own). Holding the lock, a job clears what a killed
run's atomic writes left behind and compares its settings with those recorded by the run that wrote the folder: any
difference stops it with one line naming the differing keys.
"""
from __future__ import annotations

import contextlib
import os
import platform
import stat
import tempfile
import threading
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import BadInputError, FolderBusyError, HelloLabelsError, first_line
from .files import WRITE_CHECK, disk_full, disk_full_as_one_line, kind_of, out_of_space

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected against concurrent writers there
    fcntl = None

LOCK_FILE = ".hello-labels.lock"
_HELD = {}  # lock path -> id of the thread holding it, which may lock it again (a run's own save)
_HELD_GUARD = threading.Lock()


class RunLock:
    """``with RunLock(folder):`` makes this process the only hello-labels writer of ``folder`` (created if
    needed); a second one fails at once with a one-line :class:`FolderBusyError`. The lock file holds the pid.
    The thread holding it may take it again (``distill`` saving its projector into its locked ``--out``).

    The lock file is one this call creates (``O_EXCL``, never through a link) and writes its pid into; one left by a
    killed run is locked, unlinked and made anew, never written into (it may be a hard link to a file elsewhere).
    Anything but a regular file at the lock's path (a link, a pipe, a folder) is refused; a failure at any step
    closes and removes what this call made, so no lock stays held by a run that did not start."""

    def __init__(self, folder, what: Optional[str] = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what or str(self.folder)
        self._fd: Optional[int] = None
        self._nested = False  # a re-entry of a lock this thread already holds: releasing it does nothing
        self._key = ""

    def acquire(self) -> "RunLock":
        key = os.path.join(os.path.realpath(self.folder), LOCK_FILE)  # the folder's path, not a link's target
        with _HELD_GUARD:
            if _HELD.get(key) == threading.get_ident():  # held by this thread: the folder exists and is writable
                self._nested = True
                return self
        ensure_writable(self.folder)
        while True:
            opened = self._open()
            if opened is None:  # the holder released it between our look and our open: look again
                continue
            fd, created = opened
            try:
                if self._lock(fd, created):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # unlinked or replaced meanwhile (a release, or a killed run's file we just removed)
        self._fd = fd
        with _HELD_GUARD:
            _HELD[key] = threading.get_ident()
        self._key = key
        return self

    def _open(self) -> Optional[Tuple[int, bool]]:
        """``(fd, created)``: a new lock file, or the one already there if it is a regular file; None if it
        vanished before it could be opened."""
        nofollow = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o644), True
        except FileExistsError:
            pass  # a live run's lock, a killed run's, or something that is no lock at all
        except OSError as err:
            raise HelloLabelsError(f"cannot lock {self.path} ({first_line(err)})") from err
        try:
            self._check_regular(os.lstat(self.path))  # never open a pipe (it would block) or a device
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | nofollow)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise HelloLabelsError(f"cannot lock {self.path} ({first_line(err)})") from err
        try:
            self._check_regular(os.fstat(fd))  # swapped between the lstat and the open
        except BaseException:
            os.close(fd)
            raise
        return fd, False

    def _check_regular(self, status: os.stat_result) -> None:
        if not stat.S_ISREG(status.st_mode):
            raise BadInputError(f"cannot lock {self.folder}: {self.path} is {kind_of(status.st_mode)}, not a "
                                f"regular file (remove it)")

    def _lock(self, fd: int, created: bool) -> bool:
        """Lock ``fd`` and, if this call created it, write the pid: True when done. False when the path no longer
        names ``fd``'s file, or names a file this call did not create (now unlinked): open again."""
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            holder = holder if holder.isdigit() else "?"  # the file is anyone's to write: keep one line
            raise FolderBusyError(f"{self.what} is being written by another run (pid {holder}): wait for it "
                                  f"to finish or choose another output folder") from None
        except OSError as err:
            raise HelloLabelsError(f"cannot lock {self.path} ({first_line(err)})") from err
        try:  # the previous holder unlinks the file on release, and a lock on an unlinked file protects nothing
            if not self._names(fd):
                return False
            if not created:  # a killed run's file, or a stranger's: never write into it, make a new one
                self._unlink(fd)
                return False
        except OSError as err:
            raise HelloLabelsError(f"cannot lock {self.path} ({first_line(err)})") from err
        try:
            with disk_full_as_one_line(self.path):
                os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            with contextlib.suppress(OSError):
                self._unlink(fd)
            raise
        return True

    def _names(self, fd: int) -> bool:
        """Whether the lock's path names the file open as ``fd`` (without following a link)."""
        try:
            status = os.lstat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (status.st_dev, status.st_ino) == (mine.st_dev, mine.st_ino)

    def _unlink(self, fd: int) -> None:
        """Remove the lock's path if it still names ``fd``'s file; called holding the lock, so nobody locks the
        file being removed."""
        if self._names(fd):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def release(self) -> None:
        if self._nested:
            self._nested = False
            return
        if self._fd is not None:
            with _HELD_GUARD:
                _HELD.pop(self._key, None)
            try:
                self._unlink(self._fd)
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
        if out_of_space(err, folder):  # no room for the probe's name: a full disk, not a read-only folder
            raise disk_full(folder / WRITE_CHECK) from err
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
