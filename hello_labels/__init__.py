"""hello-labels: replace stored soft labels with a tiny label projector (HeLlO, arXiv 2408.08201)."""
from .errors import HelloLabelsError
from .model.projector import LabelProjector, ProjectorConfig
from .version import __version__

__all__ = ["LabelProjector", "ProjectorConfig", "HelloLabelsError", "__version__"]
