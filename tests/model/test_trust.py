"""Loading a projector never runs code its files name, unless the caller opts in."""
import json
import uuid
from types import SimpleNamespace

import pytest
import torch
from hub_server import hub  # noqa: F401  (fixture)

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.model.bases import is_own_code

SAFE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""

EVIL = """
from pathlib import Path

MARK = Path({mark!r})
MARK.touch()  # importing the module already runs code


def encoder():
    MARK.touch()
    from {safe} import build

    return build()
"""


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    """A projector whose config.json names ``evil_<id>:encoder``, a factory that creates ``mark`` (so does
    importing its module); the encoder it would build is the one the adapter was saved with."""
    tag = uuid.uuid4().hex[:8]
    mods, mark = tmp_path / "mods", tmp_path / "ran"
    mods.mkdir()
    (mods / f"safe_{tag}.py").write_text(SAFE)
    (mods / f"evil_{tag}.py").write_text(EVIL.format(mark=str(mark), safe=f"safe_{tag}"))
    monkeypatch.syspath_prepend(str(mods))
    exec(SAFE, namespace := {})
    projector = LabelProjector.from_base(namespace["build"](), base_factory=f"evil_{tag}:encoder",
                                         base_mean=[0.5] * 3, base_std=[0.5] * 3, base_image_size=16,
                                         class_names=["a", "b", "c"], head_init="random",
                                         lora_targets=[{"pattern": "0.weight", "rank": 2}])
    projector.save_pretrained(tmp_path / "projector")
    assert not mark.exists()
    return SimpleNamespace(path=tmp_path / "projector", mark=mark, factory=f"evil_{tag}:encoder", tmp=tmp_path)


def _source(crafted, hub, where):
    if where == "hub":
        hub.add_repo("lab/crafted", crafted.path)
        return "lab/crafted"
    return str(crafted.path)


def _library(source, tmp, trust, data):
    LabelProjector.from_pretrained(source, trust_remote_code=trust)


def _cli(*verb):
    def run(source, tmp, trust, data):
        argv = [a.format(source=source, tmp=tmp, data=data) for a in verb] + (["--trust-remote-code"] if trust else [])
        if main(argv) != 0:
            raise HelloLabelsError("exit 2")
    return run


def _sre2l(source, tmp, trust, data):
    from hello_labels.adapters import sre2l

    sre2l.ProjectorLabels(source, SimpleNamespace(mix_type=None), [], trust_remote_code=trust)


def _rded(source, tmp, trust, data):
    from hello_labels.adapters import rded

    rded.teacher(source, trust_remote_code=trust)


ENTRY_POINTS = {
    "from_pretrained": _library,
    "info": _cli("info", "{source}"),
    "storage": _cli("storage", "--classes", "3", "--ipc", "1", "--epochs", "1", "--batch-size", "3",
                    "--teacher", "none", "--top-k", "2", "--projector", "{source}"),
    "eval": _cli("eval", "{source}", "--data", "{tmp}/no-data", "--teacher", "timm:test_resnet"),
    "export-fkd": _cli("export-fkd", "{source}", "--data", "{tmp}/no-data", "--out", "{tmp}/fkd", "--epochs", "1",
                       "--batch-size", "2"),
    "refine": _cli("refine", "{source}", "--data", "{tmp}/no-data", "--teacher", "timm:test_resnet",
                   "--out", "{tmp}/refined"),
    # distill reads its data first; other normalisation than the projector's stops it right after loading
    "distill --init": _cli("distill", "--init", "{source}", "--data", "{data}", "--teacher", "timm:test_resnet",
                           "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--out", "{tmp}/run"),
    "sre2l shim": _sre2l,
    "rded shim": _rded,
}


@pytest.mark.parametrize("where", ["local", "hub"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_factory_named_in_config_never_runs_without_opt_in(entry, where, crafted, hub, capsys, tmp_path,
                                                            toy_folder):
    source = _source(crafted, hub, where)
    with pytest.raises(HelloLabelsError) as err:
        ENTRY_POINTS[entry](source, tmp_path, trust=False, data=toy_folder)
    message = str(err.value) if str(err.value) != "exit 2" else capsys.readouterr().err.strip()
    assert f"refusing to run base factory '{crafted.factory}'" in message and "--trust-remote-code" in message
    assert "\n" not in message
    assert not crafted.mark.exists()


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_trust_remote_code_lets_it_run(entry, crafted, hub, tmp_path, toy_folder):
    # whatever the verb does next (these have no data), the factory ran: the opt-in reached the loader
    try:
        ENTRY_POINTS[entry](_source(crafted, hub, "hub" if entry == "info" else "local"), tmp_path, trust=True,
                            data=toy_folder)
    except HelloLabelsError:
        pass
    assert crafted.mark.exists()


def test_trusted_load_rebuilds_the_same_projector_and_a_handed_in_module_runs_nothing(crafted):
    from hello_labels.model.bases import tensors_sha256

    exec(SAFE, namespace := {})
    x = torch.rand(2, 3, 16, 16)
    handed = LabelProjector.from_pretrained(crafted.path, base_module=namespace["build"]())
    assert not crafted.mark.exists()
    trusted = LabelProjector.from_pretrained(crafted.path, trust_remote_code=True)
    assert crafted.mark.exists()
    with torch.no_grad():
        assert torch.equal(handed(x), trusted(x))
    assert tensors_sha256(handed.base.encoder) == tensors_sha256(trusted.base.encoder)


def test_factories_inside_hello_labels_are_trusted(tmp_path):
    from hello_labels.train.students import conv_net

    torch.manual_seed(0)  # build_base seeds the factory call with the config's seed (0)
    p = LabelProjector.from_base(conv_net(num_classes=8, width=8), base_factory="hello_labels.train.students:conv_net",
                                 base_mean=[0.5] * 3, base_std=[0.5] * 3, base_image_size=16,
                                 class_names=["a", "b"], head_init="random",
                                 lora_targets=[{"pattern": "0.weight", "rank": 2}])
    p.save_pretrained(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    config["base"]["kwargs"] = {"num_classes": 8, "width": 8}
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    q = LabelProjector.from_pretrained(tmp_path / "p")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(q(x), p(x))
    assert is_own_code("hello_labels.train.students:conv_net")
    assert not is_own_code("hello_labels_extra.evil:f") and not is_own_code("os:system")


def test_config_keys_cannot_become_constructor_arguments(crafted):
    """huggingface_hub's mixin turns config.json keys that match __init__ parameters into arguments."""
    config = json.loads((crafted.path / "config.json").read_text())
    config["trust_remote_code"] = True
    (crafted.path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match=r"unknown keys \['trust_remote_code'\]"):
        LabelProjector.from_pretrained(crafted.path)
    assert not crafted.mark.exists()
