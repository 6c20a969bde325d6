"""``ProjectorConfig``, the dataclass (torch-free, so that ``distill --help`` shows its flags without torch): what
``config.json`` holds. Its reading and checking are :mod:`hello_labels.model.config`'s. Fields with ``help`` in
their metadata are flags of ``distill`` and ``convert`` (:mod:`hello_labels.options`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..constants import HEAD_INITS, IMAGENET_MEAN, IMAGENET_STD
from ..options import option
from ..version import __version__

FORMAT_VERSION = 1


@dataclass
class ProjectorConfig:
    """Everything needed to rebuild a projector around its adapter tensors (saved as ``config.json``; the fields'
    meaning: :mod:`hello_labels.model.config`)."""

    base: Dict[str, Any]
    class_names: List[str]
    head_init: str = option("text", "how the head starts (default: text for open_clip bases; prototype, from the "
                                    "synthetic images, for bases without a text tower)", choices=HEAD_INITS)
    templates: Optional[List[str]] = option(None, "prompt templates of a text head: openai (80) or simple (7) "
                                                  "(default: openai)", type=str)
    head_rank: int = option(64, "rank of the head delta (clamped to the head's shape)")
    head_alpha: Optional[float] = None
    lora: List[Dict[str, Any]] = field(default_factory=list)
    input_mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    input_std: List[float] = field(default_factory=lambda: list(IMAGENET_STD))
    input_channels: int = 3
    image_size: Optional[List[int]] = option(None, "resolution fed to the base (default: its own)", type=int)
    interpolation: str = "bilinear"
    normalize_features: bool = True
    seed: int = 0
    adapter_dtype: str = "float32"
    metadata: Dict[str, Any] = field(default_factory=dict)
    library_version: str = __version__
    format_version: int = FORMAT_VERSION
    base_pin: Optional[Dict[str, Any]] = None
    adapter_sha256: Optional[str] = None

    @classmethod
    def from_dict(cls, data, source: str = "projector config") -> "ProjectorConfig":
        """Validate a parsed ``config.json`` (:func:`hello_labels.model.config.check_config`); ``source`` names it
        in errors."""
        from .config import check_config

        check_config(data, source)
        return cls(**data)


# the fields a caller chooses for a new projector; the others record what was built (its base, class names, LoRA
# targets, the base pin, the writer's version, the adapter file's digest)
SETTINGS = ("head_init", "templates", "head_rank", "head_alpha", "input_mean", "input_std", "input_channels",
            "image_size", "interpolation", "normalize_features", "seed", "metadata")
