"""The exceptions the library raises; every message is a single line naming the culprit.

``HelloLabelsError`` is the base (a ``ValueError``, so older ``except ValueError`` callers keep working). Its
subclasses are for what a caller handles differently: retry later (:class:`FolderBusyError`,
:class:`HubUnreachableError`), free disk space (:class:`DiskFullError`), ask the user (:class:`TrustRefusedError`),
replace the file (:class:`CorruptFileError`), fix the call (:class:`BadInputError`).
"""


class HelloLabelsError(ValueError):
    """Bad input or an unusable file/repo. ``str(err)`` is one line, fit for a CLI ``error:`` message."""


class BadInputError(HelloLabelsError):
    """An argument, image batch or setting the caller can fix (wrong range, shape, class count, flag value)."""


class CorruptFileError(HelloLabelsError):
    """A file that cannot be what it claims: unreadable, truncated, inconsistent, NaN/inf, bad metadata."""


class TrustRefusedError(HelloLabelsError):
    """A file asked to run or import code the caller did not trust (see ``trust_remote_code``)."""


class FolderBusyError(HelloLabelsError):
    """Another process holds the folder's lock (a save, distill or export in progress): retry later."""


class DiskFullError(HelloLabelsError):
    """The disk ran out of space mid-write; the write was undone: free some space and run again."""


class HubUnreachableError(HelloLabelsError):
    """The Hugging Face Hub cannot be reached (offline mode, no network, endpoint down): retry or work offline."""


def clip(text: str, limit: int = 200) -> str:
    """``text``'s first line, cut to at most ``limit`` characters at a word boundary, with "…" where cut."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else ""
    if len(line) <= limit:
        return line
    cut = line[:limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def first_line(err: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (just the type when the message is empty, as for an empty file),
    cut at a word boundary (:func:`clip`)."""
    line = clip(str(err), limit)
    return f"{type(err).__name__}: {line}" if line else type(err).__name__
