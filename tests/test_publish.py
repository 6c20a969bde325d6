"""Publishing a projector: identities instead of local paths, a card with the Hub's metadata, ``--push-to-hub`` and
``hello-labels push`` through the real ``huggingface_hub`` client against the local Hub stand-in."""
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from hub_server import hub  # noqa: F401  (fixture)
from huggingface_hub import ModelCard

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.cli import main
from hello_labels.identity import command_line
from hello_labels.model.publish import push_directory

BASE = "hello-labels:tiny-clip-vit"  # shipped, rebuilt by name: a base others can fetch
HAS_PLOT = importlib.util.find_spec("matplotlib") is not None


def machine_paths(*extra) -> list:
    """Absolute paths of this machine that must not reach a published file."""
    return [str(p) for p in (Path.home(), Path.cwd(), *extra)]


def assert_no_local_paths(files: dict, paths: list) -> None:
    for name, data in files.items():
        for path in paths:
            assert path.encode() not in data, (name, path)


def test_command_line_cuts_absolute_paths_to_their_names():
    argv = ["distill", "--data", "/home/me/syn data", "--teacher", "timm:resnet18@/ckpts/t.pth", "--out=/runs/x/",
            "--base", "local-dir:/models/rn", "--class-names", "imagenet", "--init", "org/name"]
    assert command_line(argv) == ("hello-labels distill --data 'syn data' --teacher timm:resnet18@t.pth --out=x "
                                  "--base local-dir:rn --class-names imagenet --init org/name")


def _saved(path, **metadata):
    p = LabelProjector.from_base(BASE, class_names=["cat", "dog", "car"], templates="simple", head_rank=4,
                                 metadata=metadata)
    p.save_pretrained(path)
    return p


def test_card_yaml_parses_with_hub_metadata(tmp_path):
    fidelity = {"agreement": 0.75, "kl": 0.125, "temperature": 4.0, "views": 64, "in_sample": False,
                "per_class": {"cat": 1.0, "dog": 0.5, "car": 0.75}}
    p = LabelProjector.from_base(BASE, class_names=["cat", "dog", "car"], templates="simple", head_rank=4,
                                 metadata={"license": "apache-2.0", "fidelity": fidelity,
                                           "command": "hello-labels distill --data syn"})
    p.config.base_pin["hub_id"] = "timm/vit_base_patch32_clip_224.openai/"  # as open_clip's pretrained cfg gives it
    p.save_pretrained(tmp_path / "p")
    card = ModelCard.load(tmp_path / "p" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "hello-labels" and "pipeline_tag" not in data  # no widget can run a projector
    assert {"hello-labels", "dataset-distillation"} <= set(data["tags"]) and data["license"] == "apache-2.0"
    assert data["base_model"] == "timm/vit_base_patch32_clip_224.openai"
    facts = data["hello_labels"]
    assert facts["fidelity"] == {k: v for k, v in fidelity.items() if k != "per_class"}
    assert facts["num_classes"] == 3 and facts["adapter_dtype"] == "float32"
    assert facts["adapter_bytes"] == (tmp_path / "p" / "adapter.safetensors").stat().st_size  # the file's bytes
    # model-index as the Hub reads it: agreement and KL at T, on what data
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["accuracy"].metric_value == 0.75 and results["kl_divergence"].metric_value == 0.125
    assert results["kl_divergence"].metric_config == "T=4"
    assert results["accuracy"].dataset_split == "64 held-out augmented views"
    # the input contract on the first screen: channels, mean/std, the size the base is fed
    first_screen = card.text[:1200]
    assert "3 channels [B, 3, H, W]: 0-1 pixels normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, " \
           "0.225)" in first_screen
    assert "resized to 32 x 32" in first_screen and "hello-labels:tiny-clip-vit" in first_screen
    assert "top-1 agreement 75.00%, KL at T=4 0.1250 (64 held-out views)" in card.text
    assert "hello-labels distill --data syn" in card.text
    assert "sre2l.ProjectorLabels(" in card.text and "rded.teacher(" in card.text
    assert ((tmp_path / "p" / "fidelity.png").is_file() and "](fidelity.png)" in card.text) == HAS_PLOT

    # unset license and no Hub id for the base: the keys are left out, not guessed
    _saved(tmp_path / "q")
    data = ModelCard.load(tmp_path / "q" / "README.md").data.to_dict()
    assert "license" not in data and "base_model" not in data
    assert not (tmp_path / "q" / "fidelity.png").exists()


def test_push_refuses_a_local_base_and_files_naming_this_machine(hub, tiny_rn_dir, tmp_path):
    local = LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=["cat", "dog"], templates="simple",
                                     head_rank=4)
    with pytest.raises(HelloLabelsError, match=r"the base is an open_clip folder \(local-dir:.*\) on this machine"):
        local.push_to_hub("lab/local")
    local.save_pretrained(tmp_path / "local")
    with pytest.raises(HelloLabelsError, match="the base is an open_clip folder"):
        push_directory(tmp_path / "local", "lab/local")

    _saved(tmp_path / "old", dataset=str(tmp_path / "synthetic"))  # as 0.1 distill wrote it
    with pytest.raises(HelloLabelsError, match=r"config.json holds a local path of this machine") as err:
        push_directory(tmp_path / "old", "lab/old")
    assert "\n" not in str(err.value)
    with pytest.raises(HelloLabelsError, match="not a valid Hub repo id"):
        push_directory(tmp_path / "old", "not a repo")
    assert not hub.requests  # refused before any request


@pytest.mark.slow
def test_distill_push_to_hub_round_trips_and_publishes_no_local_path(hub, toy_folder, toy_teacher, tmp_path,
                                                                     tmp_path_factory, capsys):
    _, spec = toy_teacher
    out = tmp_path / "run"
    argv = ["distill", "--data", str(toy_folder), "--teacher", spec, "--base", BASE, "--templates", "simple",
            "--head-rank", "4", "--input-size", "32", "--min-scale", "0.25", "--steps", "12", "--batch-size", "8",
            "--eval-views", "40", "--quiet", "--out", str(out),
            "--push-to-hub", "lab/toy", "--revision", "v1", "--license", "mit"]
    assert main(argv) == 0
    assert "pushed" in capsys.readouterr().out
    commit = hub.files("lab/toy", "v1")
    expected = ["README.md", "adapter.safetensors", "config.json"] + (["fidelity.png"] if HAS_PLOT else [])
    assert sorted(commit) == [".gitattributes", *expected]  # run files (train_state.pt, metrics.json) stay local
    for name in expected:
        assert commit[name] == (out / name).read_bytes(), name
    assert_no_local_paths(commit, machine_paths(tmp_path_factory.getbasetemp(), toy_folder, out))

    meta = json.loads(commit["config.json"])["metadata"]
    checkpoint = spec.partition("@")[2]
    assert meta["teacher"] == [{"spec": "timm:test_resnet@teacher.safetensors",
                                "weights_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()}]
    fingerprint = meta["dataset"].pop("fingerprint")
    assert meta["dataset"] == {"name": "train", "images": 40, "classes": 5} and len(fingerprint) == 16
    assert meta["command"] == command_line(argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert meta["fidelity"]["agreement"] == metrics["fidelity"]["agreement"] and meta["fidelity"]["views"] == 40

    card = ModelCard(commit["README.md"].decode())
    assert card.data.license == "mit" and card.data.library_name == "hello-labels"
    assert card.data.to_dict()["hello_labels"]["teacher"] == meta["teacher"]
    assert command_line(argv) in card.text

    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        pushed = LabelProjector.from_pretrained("lab/toy", revision="v1")
        assert torch.equal(pushed(x), LabelProjector.from_pretrained(out)(x))

    # an existing directory, pushed again by the verb: the same files in one more commit, on main
    assert main(["push", str(out), "lab/copy", "--commit-message", "copy"]) == 0
    copy = hub.files("lab/copy")
    assert {k: v for k, v in copy.items() if k != ".gitattributes"} == {k: commit[k] for k in expected}

    # info on the Hub id shows the card's facts
    capsys.readouterr()
    assert main(["info", "lab/toy", "--revision", "v1"]) == 0
    shown = capsys.readouterr().out
    assert "timm:test_resnet@teacher.safetensors" in shown and "train: 40 images, 5 classes" in shown
    assert f"top-1 agreement {meta['fidelity']['agreement']:.2%}" in shown
    assert "bytes float32" in shown and "license:" in shown


@pytest.mark.slow
def test_convert_records_the_labels_by_identity(toy_folder, toy_teacher, tmp_path, tmp_path_factory):
    from hello_labels.train.distill import DistillConfig
    from hello_labels.train.jobs import augmented, convert_labels, make_projector

    teacher, _ = toy_teacher
    images = augmented(toy_folder, 32, min_scale=0.25)
    projector = make_projector(images, BASE, templates="simple", head_rank=4)
    with torch.no_grad():
        labels = teacher(torch.stack([images[(i, None)][0] for i in range(len(images))]))
    torch.save(labels, tmp_path / "soft.pt")
    convert_labels(toy_folder, tmp_path / "soft.pt", tmp_path / "out", projector,
                   DistillConfig(steps=2, batch_size=8, eval_views=8), input_size=32, progress=False)
    meta = json.loads((tmp_path / "out" / "config.json").read_text())["metadata"]
    assert meta["teacher"]["name"] == "soft.pt" and meta["teacher"]["images"] == 40
    files = {n: (tmp_path / "out" / n).read_bytes() for n in ("config.json", "README.md")}
    assert_no_local_paths(files, machine_paths(tmp_path_factory.getbasetemp()))


def test_card_names_base_model_for_the_shipped_efficientnet_lite0(tmp_path):
    p = LabelProjector.from_base("hello-labels:efficientnet-lite0", class_names=["cat", "dog"], head_init="zero",
                                 head_rank=2)
    p.save_pretrained(tmp_path / "p")
    data = ModelCard.load(tmp_path / "p" / "README.md").data.to_dict()
    assert data["base_model"] == "timm/tf_efficientnet_lite0.in1k"
    assert "eval_results" not in data and "model-index" not in data  # nothing measured: no results claimed
