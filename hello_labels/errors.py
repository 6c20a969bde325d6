"""The one exception type the library raises for bad input; its message is a single line naming the culprit."""


class HelloLabelsError(ValueError):
    """Bad input or an unusable file/repo. ``str(err)`` is one line, fit for a CLI ``error:`` message."""
