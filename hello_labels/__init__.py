"""hello-labels: replace stored soft labels with a tiny label projector (HeLlO, arXiv 2408.08201).

``LabelProjector`` and ``ProjectorConfig`` are imported on first use, so that importing the package (the command
line's ``--help`` and ``--version``) does not import torch."""
from .errors import HelloLabelsError
from .version import __version__

__all__ = ["LabelProjector", "ProjectorConfig", "HelloLabelsError", "__version__"]


def __getattr__(name):
    if name in ("LabelProjector", "ProjectorConfig"):
        from .model import projector

        return getattr(projector, name)
    raise AttributeError(f"module 'hello_labels' has no attribute {name!r}")
