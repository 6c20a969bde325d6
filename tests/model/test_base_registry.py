"""Base kinds are one registry (``bases.BASE_KINDS``): a new family is one entry, and a spec means one thing
(a timm base gets the weights its name implies unless the call says ``pretrained=False``)."""
import json
import re
from pathlib import Path

import pytest
import torch
from hub_server import hub, set_offline, use_cache  # noqa: F401  (fixture)
from torch import nn

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.model import bases
from hello_labels.model.bases import Base, BaseKind, build_base, parse_base
from hello_labels.model.card import card_facts
from hello_labels.model.publish import check_portable_config
from hello_labels.storage.measure import base_size, computed_adapter_size


def _toy_build(spec, seed, module):
    width = 2 if spec["file"] is None else 4  # the weightless spec builds another architecture: we can tell
    encoder = nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Base(encoder, [0.5] * 3, [0.25] * 3, 16, spec)


TOY = BaseKind("toy", schema={"name": (lambda v: isinstance(v, str), "a string"),
                              "file": (lambda v: v is None or isinstance(v, str), "a string or null")},
               build=_toy_build, spec=lambda base, pretrained: {"kind": "toy", "name": base[4:], "file": pretrained},
               weights=lambda spec: f"toy weights {spec['file']}", prefixes=("toy:",),
               local=lambda spec: spec["file"] and f"a toy file ({spec['file']})",
               weightless=lambda spec: dict(spec, file=None), head="random")


def test_a_new_base_family_is_one_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(bases.BASE_KINDS, "toy", TOY)
    p = LabelProjector.from_base("toy:small", "w.bin", class_names=["a", "b"],
                                 lora_targets=[{"pattern": "0.weight", "rank": 2}])
    assert p.config.base == {"kind": "toy", "name": "small", "file": "w.bin"} and p.config.head_init == "random"
    assert p.base.mean == (0.5,) * 3 and p.base.feature_dim == 4
    p.save_pretrained(tmp_path / "p")
    q = LabelProjector.from_pretrained(tmp_path / "p")  # config.json validated with the entry's schema
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(q(x), p(x))
    assert card_facts(q.config, q.adapter_facts())["base weights"].startswith("toy weights w.bin; tensors sha256 ")
    with pytest.raises(HelloLabelsError, match=r"the base is a toy file \(w.bin\) on this machine"):
        check_portable_config(q.config_dict())
    assert base_size(q.config.base, text_head=False).encoder_params == 3 * 2 * 9 + 2  # the weightless build
    size, spec, head = computed_adapter_size("toy:small", ["a", "b"])
    assert spec == {"kind": "toy", "name": "small", "file": None} and head == "random"
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    config["base"]["extra"] = 1
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match=r"a toy base needs exactly \['file', 'name'\]: unknown \['extra'\]"):
        LabelProjector.from_pretrained(tmp_path / "p")
    monkeypatch.undo()
    config["base"].pop("extra")
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match=r"base 'kind' must be one of \['module', 'open_clip', 'timm'\]"):
        LabelProjector.from_pretrained(tmp_path / "p")  # unregistered: nothing builds it


def test_only_the_module_kind_names_code():
    code = {name: kind.code for name, kind in bases.BASE_KINDS.items()}
    assert sorted(code) == ["module", "open_clip", "timm"]
    specs = {"open_clip": {"name": "os:system", "pretrained": "os:system"},
             "timm": {"name": "os:system", "pretrained": True, "checkpoint": "os:system"},
             "module": {"factory": "os:system", "kwargs": {}}}
    assert {name: code[name](dict(spec, kind=name)) for name, spec in specs.items()} == {
        "open_clip": None, "timm": None, "module": "os:system"}


def test_a_timm_base_means_the_weights_its_name_implies():
    usage = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text(encoding="utf-8")
    example = re.search(r'from_base\("(timm:[^"]+)"', usage).group(1)
    assert parse_base(example)["pretrained"] is True  # docs/usage.md's DINOv2 example gets DINOv2's weights
    assert parse_base("timm:resnet50") == {"kind": "timm", "name": "resnet50", "pretrained": True, "checkpoint": None}
    assert parse_base("resnet50", False)["pretrained"] is False
    assert parse_base("timm:resnet50", "ckpt.pth") == {"kind": "timm", "name": "resnet50", "pretrained": True,
                                                      "checkpoint": "ckpt.pth"}
    with pytest.raises(HelloLabelsError, match="pretrained must be True, False or a checkpoint path"):
        parse_base("timm:resnet50", 1)


def test_a_timm_base_without_published_weights_is_refused_not_random():
    with pytest.raises(HelloLabelsError, match="'botnet50ts_256' has no pretrained weights.*pretrained=False"):
        build_base(parse_base("timm:botnet50ts_256"))


def test_offline_a_pretrained_timm_base_fails_in_one_line(monkeypatch, tmp_path):
    use_cache(monkeypatch, tmp_path / "hf")
    set_offline(monkeypatch)
    with pytest.raises(HelloLabelsError) as err:
        LabelProjector.from_base("timm:test_resnet", class_names=["a", "b"], head_init="random")
    assert "cannot build timm base 'test_resnet': its weights are not in the local cache" in str(err.value)
    assert "pretrained=False" in str(err.value) and "\n" not in str(err.value)
    p = LabelProjector.from_base("timm:test_resnet", False, class_names=["a", "b"], head_init="random")
    assert card_facts(p.config, p.adapter_facts())["base weights"].startswith("random init (pretrained=False")


def _published_test_resnet(hub, tmp_path):
    """timm's ``test_resnet`` weights as the Hub serves them (``timm/test_resnet.r160_in1k``), here seeded ones."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    state = timm.create_model("test_resnet").state_dict()
    (tmp_path / "repo").mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "repo" / "model.safetensors"))
    hub.add_repo("timm/test_resnet.r160_in1k", tmp_path / "repo")
    return state


def test_a_timm_base_loads_its_published_weights_and_says_so(hub, tmp_path, capsys):
    state = _published_test_resnet(hub, tmp_path)
    built = build_base(parse_base("timm:test_resnet")).encoder.state_dict()
    assert built.keys() == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(built[k], state[k]) for k in built)  # the published weights, not a random init
    p = LabelProjector.from_base("timm:test_resnet", class_names=["a", "b"], head_init="random", image_size=32)
    assert p.config.base_pin["hub_id"] == "timm/test_resnet.r160_in1k" and p.config.base_pin["tag"] == "r160_in1k"
    p.save_pretrained(tmp_path / "p")
    assert main(["info", str(tmp_path / "p")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("base weights:"))
    assert ("pretrained: timm's test_resnet weights; tag r160_in1k, hub_id timm/test_resnet.r160_in1k; "
            "tensors sha256 ") in line
    card = (tmp_path / "p" / "README.md").read_text()
    assert "pretrained: timm's test_resnet weights" in card and "base_model: timm/test_resnet.r160_in1k" in card

    random = LabelProjector.from_base("timm:test_resnet", False, class_names=["a", "b"], head_init="random")
    random.save_pretrained(tmp_path / "r")
    assert main(["info", str(tmp_path / "r")]) == 0
    assert "base weights:   random init (pretrained=False; seeded)" in capsys.readouterr().out
    assert "random init (pretrained=False; seeded)" in (tmp_path / "r" / "README.md").read_text()


def test_a_timm_checkpoint_is_named_by_its_file(tmp_path):
    import timm

    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), tmp_path / "mine.pth")
    p = LabelProjector.from_base("timm:test_resnet", str(tmp_path / "mine.pth"), class_names=["a", "b"],
                                 head_init="random")
    facts = card_facts(p.config, p.adapter_facts())
    assert facts["base weights"].startswith("pretrained: checkpoint file mine.pth; file mine.pth sha256 ")


def test_weights_given_to_a_base_that_brings_its_own_are_refused(tmp_path, capsys):
    """Before: ``pretrained`` set to a file on the shipped ``hello-labels:tiny-clip-vit`` (a ``local-dir:`` name,
    for which open_clip ignores ``pretrained``) loaded the random-init config, and ``info`` and the card called
    the ignored file the weights ("pretrained: weights file passwd": the open_clip weights line did not know
    shipped names and printed the tag's file name, never the path, as for any weights file). From --pretrained the
    file was dropped without a word; on hello-labels:efficientnet-lite0 it was refused only once the base was
    built."""
    from hello_labels.errors import BadInputError, CorruptFileError
    from hello_labels.model.config import ProjectorConfig

    weights = tmp_path / "passwd"
    weights.write_text("root:x:0:0\n")
    for name in ("hello-labels:tiny-clip-vit", "hello-labels:efficientnet-lite0", "local-dir:/some/dir",
                 "hf-hub:org/model"):
        with pytest.raises(BadInputError, match=rf"base '{name}' brings its own weights.*drop the pretrained "
                                                rf"argument \(CLI: --pretrained\)"):
            parse_base(name, str(weights))
    assert parse_base("hello-labels:tiny-clip-vit", True)["pretrained"] is None  # "its own weights": as before

    p = LabelProjector.from_base("hello-labels:tiny-clip-vit", class_names=["a", "b"], head_init="random",
                                 head_rank=2)
    p.save_pretrained(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    config["base"]["pretrained"] = str(weights)
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    assert main(["info", str(tmp_path / "p")]) == 2
    out = capsys.readouterr()
    assert "passwd" not in out.out and out.err.count("\n") == 1
    assert "base 'hello-labels:tiny-clip-vit' brings its own weights (or none), so open_clip would ignore " \
           "'pretrained'" in out.err and "it must be null" in out.err

    lite = dict(config, base={"kind": "timm", "name": "hello-labels:efficientnet-lite0", "pretrained": True,
                              "checkpoint": str(weights)})
    with pytest.raises(CorruptFileError, match=r"config.json: base 'hello-labels:efficientnet-lite0' brings its "
                                               r"own weights: its 'checkpoint' must be null"):
        ProjectorConfig.from_dict(lite, source="config.json")  # when config.json is read, before any build
