"""Loading a projector never runs code its files name, unless the caller opts in: no factory, not even one of
hello_labels' own, and no key of the file can switch trust on."""
import importlib
import inspect
import json
import pkgutil
import uuid
from types import SimpleNamespace

import pytest
import torch
from hub_server import hub  # noqa: F401  (fixture)

import hello_labels
from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.errors import TrustRefusedError

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


def test_factories_inside_hello_labels_need_trust_too(tmp_path):
    """Package code called with keyword arguments from a file is code the file chose: refused like any other."""
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
    with pytest.raises(TrustRefusedError, match="refusing to run base factory 'hello_labels.train.students:conv_net'"):
        LabelProjector.from_pretrained(tmp_path / "p")
    q = LabelProjector.from_pretrained(tmp_path / "p", trust_remote_code=True)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(q(x), p(x))


def test_config_keys_cannot_become_constructor_arguments(crafted):
    """huggingface_hub's mixin turns config.json keys that match __init__ parameters into arguments."""
    config = json.loads((crafted.path / "config.json").read_text())
    config["trust_remote_code"] = True
    (crafted.path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match=r"unknown keys \['trust_remote_code'\]"):
        LabelProjector.from_pretrained(crafted.path)
    assert not crafted.mark.exists()


# ----------------------------------------------------------------------------- every function a config can reach
# Factories a config.json could name, each with keyword arguments that would create the marker file if it ran:
# before the registry, everything inside hello_labels was trusted, and build_base / cli.main / import_object
# reach anything.
PAYLOADS = ["os:system", "builtins:open", "hello_labels.files:atomic_write_text", "hello_labels.cli:main",
            "hello_labels.model.bases:import_object", "hello_labels.model.bases:build_base"]


def _payload_kwargs(factory, crafted):
    mark = str(crafted.mark)
    nested = {"kind": "module", "factory": "os:system", "kwargs": {"command": f"touch '{mark}'"},
              "mean": [0.5] * 3, "std": [0.5] * 3, "image_size": [16, 16]}
    return {"os:system": {"command": f"touch '{mark}'"},
            "builtins:open": {"file": mark, "mode": "w"},
            "hello_labels.files:atomic_write_text": {"path": mark, "text": "ran"},
            "hello_labels.cli:main": {"argv": ["storage", "--classes", "3", "--ipc", "1", "--epochs", "1",
                                               "--batch-size", "3", "--teacher", "none", "--top-k", "2",
                                               "--json", mark]},
            "hello_labels.model.bases:import_object": {"path": crafted.factory},  # its import creates the file
            "hello_labels.model.bases:build_base": {"spec": nested, "trust_remote_code": True}}[factory]


def _plant(crafted, **base):
    config = json.loads((crafted.path / "config.json").read_text())
    config["base"].update(base)
    (crafted.path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("where", ["local", "hub"])
@pytest.mark.parametrize("entry", ["from_pretrained", "info", "storage", "eval", "sre2l shim", "rded shim"])
@pytest.mark.parametrize("factory", PAYLOADS)
def test_no_payload_named_in_config_runs(factory, entry, where, crafted, hub, capsys, tmp_path, toy_folder):
    _plant(crafted, factory=factory, kwargs=_payload_kwargs(factory, crafted))
    source = _source(crafted, hub, where)
    with pytest.raises(HelloLabelsError) as err:
        ENTRY_POINTS[entry](source, tmp_path, trust=False, data=toy_folder)
    message = str(err.value) if str(err.value) != "exit 2" else capsys.readouterr().err.strip()
    assert f"refusing to run base factory '{factory}'" in message and "\n" not in message
    assert not crafted.mark.exists()


def _package_callables():
    """Every function and class hello_labels defines (walked): what the old prefix rule let a config name."""
    names = []
    for info in pkgutil.walk_packages(hello_labels.__path__, "hello_labels."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        names += [f"{info.name}:{attr}" for attr, obj in vars(module).items()
                  if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == info.name]
    return names


def test_no_function_of_the_package_nor_the_standard_library_can_be_named(crafted):
    names = _package_callables()
    assert len(names) > 200 and "hello_labels.model.bases:build_base" in names
    for factory in names + ["os:system", "builtins:exec", "builtins:open", "subprocess:run", "shutil:rmtree"]:
        _plant(crafted, factory=factory, kwargs={})
        with pytest.raises(TrustRefusedError) as err:
            LabelProjector.from_pretrained(crafted.path)
        assert f"'{factory}'" in str(err.value)
    assert not crafted.mark.exists()


def _string_leaves(value, path=()):
    """Paths of every string in a parsed config.json."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _string_leaves(item, path + (i,))


def test_no_config_field_imports_what_it_names(crafted):
    """Every string of config.json in turn names the module whose import creates the marker file: the load either
    refuses in one line or loads, and the module is never imported."""
    original = json.loads((crafted.path / "config.json").read_text())
    paths = list(_string_leaves(original))
    assert ("base", "kind") in paths and ("base", "factory") in paths and ("class_names", 0) in paths
    for path in paths:
        for payload in (crafted.factory, f"module:{crafted.factory}", crafted.factory.split(":")[0]):
            config = json.loads(json.dumps(original))
            target = config
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = payload
            (crafted.path / "config.json").write_text(json.dumps(config))
            try:
                LabelProjector.from_pretrained(crafted.path)
            except HelloLabelsError as err:
                assert "\n" not in str(err), path
            assert not crafted.mark.exists(), (path, payload)


@pytest.mark.parametrize("kind", ["module", "open_clip", "timm"])
def test_a_trust_key_inside_the_base_spec_is_refused(kind, crafted, tiny_vit_dir):
    from hello_labels.model.bases import build_base

    spec = {"module": None, "open_clip": {"kind": "open_clip", "name": f"local-dir:{tiny_vit_dir}", "pretrained": None},
            "timm": {"kind": "timm", "name": "test_resnet", "pretrained": False, "checkpoint": None}}[kind]
    config = json.loads((crafted.path / "config.json").read_text())
    config["base"] = dict(spec or config["base"], trust_remote_code=True)
    (crafted.path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match=rf"a {kind} base needs exactly .*unknown \['trust_remote_code'\]"):
        LabelProjector.from_pretrained(crafted.path)
    with pytest.raises(HelloLabelsError, match=r"unknown \['trust_remote_code'\]"):
        build_base(config["base"])  # a spec handed over in code is checked the same way
    assert not crafted.mark.exists()
