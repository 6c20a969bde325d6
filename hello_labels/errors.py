"""The exceptions the library raises; every message is a single line naming the culprit.

``HelloLabelsError`` is the base (a ``ValueError``, so older ``except ValueError`` callers keep working). Its
subclasses are for what a caller handles differently: retry later (:class:`FolderBusyError`,
:class:`HubUnreachableError`), free disk space (:class:`DiskFullError`), ask the user (:class:`TrustRefusedError`),
replace the file (:class:`CorruptFileError`), fix the call (:class:`BadInputError`).

Messages quote names read from files written by others, so ``str(err)`` shows their control characters as visible
escapes (:func:`escape`): a class name cannot clear the screen, retitle the terminal or forge a second line.
"""
import re


class HelloLabelsError(ValueError):
    """Bad input or an unusable file/repo. ``str(err)`` is one line, fit for a CLI ``error:`` message: control
    characters a file put in it are escaped (:func:`escape`)."""

    def __str__(self) -> str:
        return escape(super().__str__())


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


# C0 and C1 controls (ESC, CR, LF, BEL, DEL, CSI...), line/paragraph separators, bidi overrides and isolates (text
# shown in another order than stored), lone surrogates (undecodable file names: printing them would fail)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: "re.Match") -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text) -> str:
    """``text`` with every character that a terminal would act on, or that would reorder or break the line, shown
    as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``); everything else, other scripts included,
    unchanged. Idempotent: an escaped text has nothing left to escape."""
    return _UNSAFE.sub(_visible, str(text))
