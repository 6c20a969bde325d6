"""A logging filter for open_clip's warnings about weights a base is meant to lack.

open_clip warns on the root logger ("Local config loaded, but no CLIP weights found in ...", "No pretrained weights
loaded for model ...") whenever it builds a model without weights. For the configs shipped in
``hello_labels/model/configs`` (random init by design, e.g. ``hello-labels:tiny-clip-vit``) that is noise on every
load, so :func:`install` drops exactly those records, naming a shipped config, and lets every other record through;
:func:`random_init_expected` drops them for any model while inside (storage accounting builds bases without
weights on purpose); :func:`dropping` drops other open_clip records hello-labels reports itself, in its own words,
while inside. Nothing else about logging changes: no logger is disabled.
"""
from __future__ import annotations

import contextlib
import logging
import os

_MESSAGES = ("no CLIP weights found", "No pretrained weights loaded")
SHIPPED_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


class Dropped(logging.Filter):
    """Drops records whose message contains one of ``messages`` and ``where`` (anywhere: "")."""

    def __init__(self, messages, where: str = ""):
        super().__init__()
        self.messages, self.where = tuple(messages), where

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (self.where in message and any(m in message for m in self.messages))


class RandomInitWarnings(Dropped):
    """Drops open_clip's no-weights warnings about models whose message contains ``where`` (any model: "")."""

    def __init__(self, where: str = ""):
        super().__init__(_MESSAGES, where)


def install() -> None:
    """Drop the warnings about shipped configs, once per process (on the root logger, where open_clip logs)."""
    root = logging.getLogger()
    if not any(isinstance(f, RandomInitWarnings) and f.where == SHIPPED_CONFIGS for f in root.filters):
        root.addFilter(RandomInitWarnings(SHIPPED_CONFIGS))


@contextlib.contextmanager
def dropping(*messages: str):
    """Inside: root-logger records (open_clip logs there) containing one of ``messages`` are dropped; others pass."""
    root, quiet = logging.getLogger(), Dropped(messages)
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def random_init_expected():
    """Inside: open_clip's no-weights warnings are dropped for every model; other records pass."""
    return dropping(*_MESSAGES)
