"""One-release aliases of the engine's 0.2 spelling, when it was built and cached behind ``projector(images)``:
``fast_options``, ``fast_path()`` and ``merge(compile=, autocast=)``. Each warns; build the engine with
:meth:`~hello_labels.model.projector.LabelProjector.for_labels` instead. They go in the next release."""
from __future__ import annotations

import warnings
from typing import Optional, Union

from .fastpath import FastOptions, FastProjector


class DeprecatedEngineAliases:
    """Mixed into :class:`~hello_labels.model.projector.LabelProjector`."""

    @property
    def fast_options(self) -> FastOptions:
        """Deprecated: pass the options to ``for_labels``. What :meth:`fast_path` builds with."""
        warnings.warn("LabelProjector.fast_options is deprecated: pass the options to for_labels(...)",
                      DeprecationWarning, stacklevel=2)
        return self._deprecated_options()

    def _deprecated_options(self) -> FastOptions:
        return self.__dict__.setdefault("_fast_options", FastOptions())

    def fast_path(self, cache: bool = True) -> FastProjector:
        """Deprecated: ``for_labels(**options)`` once, then call its result. A new engine on every call (no cache),
        built with the options of :attr:`fast_options`; ``cache`` is ignored."""
        warnings.warn("LabelProjector.fast_path() is deprecated and builds a new engine on every call: build one "
                      "with for_labels(...) and reuse it", DeprecationWarning, stacklevel=2)
        return FastProjector(self, self._deprecated_options())

    def _merge_options(self, compile: Optional[Union[bool, dict]], autocast: Optional[Union[bool, str]]) -> None:
        """``merge(compile=, autocast=)``: what the deprecated :meth:`fast_path` builds with (warned about)."""
        if compile is None and autocast is None:
            return
        warnings.warn("merge(compile=, autocast=) is deprecated: pass them to for_labels(...)", DeprecationWarning,
                      stacklevel=3)
        options = self._deprecated_options()
        options.compile = options.compile if compile is None else compile
        options.autocast = options.autocast if autocast is None else autocast
