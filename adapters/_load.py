"""Shared by the shims: accept a projector object, a directory or a Hub id, without touching the caller's state;
refuse in one line.

The projector comes back as its inference engine (:meth:`LabelProjector.for_labels`: BatchNorm folded,
channels_last, bf16 autocast on CUDA; see :mod:`hello_labels.model.fastpath`), holding the base's weights once.
``HELLO_LABELS_COMPILE=1`` in the environment also compiles it with ``torch.compile`` (the first batches then take
longer).

A shim's refusal (:class:`ScriptRefusal`) ends the training script it patches with one line, as argparse's errors
do, where any other exception would print a traceback."""
import functools
import os

import torch

from hello_labels.errors import HelloLabelsError


class ScriptRefusal(HelloLabelsError, SystemExit):
    """A HelloLabelsError (``except HelloLabelsError`` catches it) that, uncaught, ends the script as SystemExit
    does: Python prints only ``hello-labels: error: <message>`` and exits with status 1, no traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = f"hello-labels: error: {message}"  # what Python prints for an uncaught SystemExit


def refuses_in_one_line(function):
    """``function``, its HelloLabelsErrors raised as :class:`ScriptRefusal` with the same message."""

    @functools.wraps(function)
    def refusing(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ScriptRefusal:
            raise
        except HelloLabelsError as err:
            raise ScriptRefusal(str(err)) from None  # under mp.spawn, one traceback, not two

    return refusing


def _looks_local(name: str) -> bool:
    """A path no Hub id can be ('./x', '/x', '~/x', 'a/b/c'), or one whose first folder exists here."""
    first = name.split("/")[0]
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (first != name and os.path.isdir(first))


def _from_path(name: str, trust_remote_code: bool = False):
    from hello_labels import LabelProjector

    if not os.path.isdir(name) and _looks_local(name):
        raise HelloLabelsError(f"projector directory '{name}' not found (working directory {os.getcwd()})")
    try:
        return LabelProjector.from_pretrained(name, trust_remote_code=trust_remote_code)
    except HelloLabelsError as err:
        if os.path.isdir(name):
            raise
        raise HelloLabelsError(f"no local directory '{name}' (working directory {os.getcwd()}), and as a Hub id: "
                               f"{err}") from err


COMPILE_ENV = "HELLO_LABELS_COMPILE"


def load_projector(projector, device=None, trust_remote_code: bool = False, compile=None):
    """The inference engine (:class:`~hello_labels.model.fastpath.FastProjector`, frozen, in eval mode) of a
    projector, on ``device`` (default: CUDA if available); ``compile`` as :meth:`LabelProjector.for_labels` (None:
    True if ``$HELLO_LABELS_COMPILE`` is set and not ``0``).

    ``projector``: a LabelProjector (the engine is built from a copy: the caller's object is left as it was), or a
    directory or Hub id (loaded here, its encoder becomes the engine's: the base's weights once in memory);
    ``trust_remote_code`` as :meth:`LabelProjector.from_pretrained` (a custom base's factory may run). The training
    script's random streams are left untouched."""
    from hello_labels import LabelProjector

    if projector is None:
        raise HelloLabelsError("no projector given: pass --projector with a hello-labels projector directory or "
                               "Hub id")
    loaded = isinstance(projector, (str, bytes)) or hasattr(projector, "__fspath__")
    if loaded:
        projector = _from_path(os.fsdecode(projector), trust_remote_code)
    elif not isinstance(projector, LabelProjector):
        raise HelloLabelsError(f"expected a LabelProjector, a directory or a Hub id, got {type(projector).__name__}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else projector.device
    if compile is None:
        compile = os.environ.get(COMPILE_ENV, "0") not in ("", "0")
    if loaded:  # ours: moved first, then its encoder becomes the engine's
        return projector.to(device).for_labels(copy=False, compile=compile).eval().requires_grad_(False)
    return projector.for_labels(compile=compile).to(device).eval().requires_grad_(False)
