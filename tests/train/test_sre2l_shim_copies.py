"""The SRe2L shim uploads each batch once: it yields the images and the soft label on the projector's device, so
the loop's ``images.cuda()`` / ``soft_label.cuda()`` copy nothing. The meta device stands in for an accelerator."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hello_labels.adapters import sre2l


class _MetaProjector(nn.Module):
    """A projector stand-in on the meta device (no data: shapes and devices only)."""

    device = torch.device("meta")

    def merge(self):
        return self

    def forward(self, images):
        return torch.empty(images.shape[0], 5, device=images.device)


@pytest.mark.parametrize("mix_type", ["cutmix", "mixup", None])
def test_shim_yields_images_and_labels_on_the_projectors_device(mix_type, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sre2l, "load_projector", lambda projector, **kw: projector)  # the stand-in is no projector
    batch = (torch.rand(4, 3, 8, 8), torch.arange(4), torch.zeros(4, dtype=torch.bool), torch.rand(4, 4))
    shim = sre2l.ProjectorLabels(_MetaProjector(), SimpleNamespace(mix_type=mix_type), [batch])
    (images, target, _, _), _, _, _, soft_label = next(iter(shim))
    assert images.device.type == "meta" and soft_label.device.type == "meta"
    assert soft_label.dtype == torch.float32 and target.device.type == "cpu"
