"""The one exception type the library raises for bad input; its message is a single line naming the culprit."""


class HelloLabelsError(ValueError):
    """Bad input or an unusable file/repo. ``str(err)`` is one line, fit for a CLI ``error:`` message."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (just the type when the message is empty, as for an empty file)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:limit]}" if lines else type(err).__name__
