"""The verbs as a stranger meets them: checks before work (plotting, Hub login), defaults that fit the input (a
prototype head without a text tower, top-k clamped to the classes), and ``info``'s facts agreeing with the files."""
import json

import pytest
from hub_server import hub  # noqa: F401  (fixture)

from hello_labels import LabelProjector
from hello_labels.cli import main

BASE = "hello-labels:tiny-clip-vit"


def _fail(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_eval_plot_without_matplotlib_fails_before_loading(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib -> ImportError
    err = _fail(["eval", str(tmp_path / "no-such-projector"), "--data", str(tmp_path), "--teacher", "timm:resnet18",
                 "--plot", str(tmp_path / "p.png")], capsys)
    assert "matplotlib" in err  # not the missing projector: nothing was loaded


def test_push_checks_login_and_reachability_before_training(hub, monkeypatch, toy_folder, tmp_path, capsys):
    argv = ["distill", "--data", str(toy_folder), "--teacher", "timm:resnet18", "--base", BASE, "--steps", "1",
            "--out", str(tmp_path / "run"), "--push-to-hub", "lab/x"]
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert "not logged in" in _fail(argv, capsys)
    monkeypatch.setenv("HF_TOKEN", "hf_loopback")
    hub.stop()
    assert "unreachable" in _fail(argv, capsys)
    assert "unreachable" in _fail(["push", str(tmp_path), "lab/x"], capsys)
    assert not (tmp_path / "run").exists()  # no training happened


@pytest.mark.slow
def test_distill_on_a_base_without_text_tower_uses_prototypes(toy_folder, toy_teacher, tmp_path, capsys):
    _, spec = toy_teacher
    out = tmp_path / "run"
    assert main(["distill", "--data", str(toy_folder), "--teacher", spec, "--base", "timm:test_resnet",
                 "--no-base-pretrained", "--input-size", "32", "--steps", "2", "--batch-size", "8",
                 "--eval-views", "8", "--quiet", "--out", str(out)]) == 0
    assert "no text tower" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["head_init"] == "prototype" and config["base"]["pretrained"] is False


def test_storage_on_fewer_than_ten_classes_clamps_top_k(tmp_path, capsys):
    import torch

    from hello_labels.labels.fkd import FKDBatch, batch_path, save_batch

    for epoch in range(2):  # an SRe2L label directory of 4 classes, 6 images in files of 4
        for number, n in enumerate((4, 2)):
            save_batch(batch_path(tmp_path / "labels", epoch, number),
                       FKDBatch(torch.rand(n, 4) / 2, torch.zeros(n, dtype=torch.bool), None, None, None,
                                torch.randn(n, 4)))
    assert main(["storage", "--labels", str(tmp_path / "labels"), "--teacher", "none", "--base", BASE]) == 0
    assert "top-k labels (FKD/LPQLD, k=4)" in capsys.readouterr().out
    assert main(["storage", "--classes", "4", "--ipc", "2", "--epochs", "2", "--teacher", "none",
                 "--base", BASE]) == 0
    assert "top-k labels (FKD/LPQLD, k=4)" in capsys.readouterr().out
    assert "exceeds the 4 classes" in _fail(["storage", "--classes", "4", "--ipc", "2", "--top-k", "5",
                                             "--teacher", "none", "--base", BASE], capsys)  # an explicit k: checked


@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_info_states_the_input_contract_and_sizes_that_agree(tmp_path, capsys, dtype):
    p = LabelProjector.from_base(BASE, class_names=["cat", "dog", "car"], templates="simple", head_rank=64,
                                 input_mean=(0.286,) * 3, input_std=(0.353,) * 3)
    p.save_pretrained(tmp_path / "p", dtype=dtype)
    assert main(["info", str(tmp_path / "p")]) == 0
    shown = capsys.readouterr().out
    assert "input:          3 channels [B, 3, H, W]: 0-1 pixels normalised with mean (0.286, 0.286, 0.286) and std " \
           "(0.353, 0.353, 0.353)" in shown and "resized to 32 x 32" in shown
    size = (tmp_path / "p" / "adapter.safetensors").stat().st_size
    assert f"adapter.safetensors {size:,} bytes ({dtype})" in shown and f"{size:,} bytes {dtype}" in shown  # + repr
    clamped = p.adapter.head_rank
    assert clamped == 3 and f"head:           text, rank {clamped}" in shown  # the head delta's rank as built
    total = next(line for line in shown.splitlines() if line.startswith("total"))
    assert total.split()[-1] == f"{p.num_adapter_parameters():,}"  # the same total as the parameters line
    assert f"{p.num_adapter_parameters():,} parameters" in shown
    card = (tmp_path / "p" / "README.md").read_text()
    assert f"adapter.safetensors {size:,} bytes ({dtype})" in card and f"text, rank {clamped}" in card


def test_list_finds_projectors_by_tag_base_and_classes(hub, tmp_path, capsys):
    for repo, names, metadata in (("lab/three", ["cat", "dog", "car"], {"fidelity": {
            "agreement": 0.5, "kl": 0.1, "temperature": 4.0, "views": 8, "in_sample": False}}),
                                  ("lab/five", ["a", "b", "c", "d", "e"], {})):
        p = LabelProjector.from_base(BASE, class_names=names, templates="simple", head_rank=4, metadata=metadata)
        p.save_pretrained(tmp_path / repo)
        hub.add_repo(repo, tmp_path / repo)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README.md").write_text("---\ntags: [vision]\n---\nnot a projector\n")
    hub.add_repo("lab/other", tmp_path / "other")

    def listed(*flags):
        assert main(["list", "--json", *flags]) == 0
        return {r["id"]: r for r in json.loads(capsys.readouterr().out)}

    assert sorted(listed()) == ["lab/five", "lab/three"]  # the hello-labels tag, nothing else
    three = listed("--classes", "3")
    assert list(three) == ["lab/three"] and three["lab/three"]["agreement"] == 0.5
    assert three["lab/three"]["base"] == f"open_clip:{BASE}" and three["lab/three"]["adapter_bytes"] == \
        (tmp_path / "lab/three" / "adapter.safetensors").stat().st_size
    assert sorted(listed("--base", BASE)) == ["lab/five", "lab/three"] and listed("--base", "RN50") == {}
    assert list(listed("--search", "five")) == ["lab/five"]
    assert main(["list", "--classes", "3"]) == 0
    assert "lab/three" in capsys.readouterr().out
    hub.stop()
    assert main(["list"]) == 2 and "unreachable" in capsys.readouterr().err


def test_save_pretrained_docstring_names_every_storage_format():
    from hello_labels.model.config import ADAPTER_DTYPES

    assert all(f"``{d}``" in LabelProjector.save_pretrained.__doc__ for d in ADAPTER_DTYPES)
