"""``push_to_hub`` and ``from_pretrained`` through the real ``huggingface_hub`` client against the local Hub
stand-in (``tests/hub_server.py``): repo creation, preupload, LFS upload, commit, then download by branch and by
commit sha. No mock on that path."""
import json

import pytest
import torch
from hub_server import hub  # noqa: F401  (fixture)
from huggingface_hub import HfApi

from hello_labels import LabelProjector
from hello_labels.model.card import REPO_PLACEHOLDER, card_for_repo

REPO = "lab/pushed"
BASE = "hello-labels:tiny-clip-vit"  # a base others can rebuild: a local-dir: base is refused (test_publish.py)


@pytest.mark.slow
def test_push_to_hub_then_load_by_branch_and_commit(hub, class_names, tmp_path):
    p = LabelProjector.from_base(BASE, class_names=class_names, templates="simple",
                                 head_rank=4, metadata={"dataset": "toy"})
    x = torch.randn(2, 3, 32, 32)
    expected = {}

    def version(bias):
        with torch.no_grad():
            p.head.bias.fill_(bias)
            for lora in p.adapter.encoder_lora.values():
                lora.lora_B.normal_(std=0.02)
            return p(x).clone()

    expected["v1"] = version(1.0)
    v1 = p.push_to_hub(REPO)
    p.save_pretrained(tmp_path / "v1")
    pushed = hub.files(REPO, v1.oid)
    assert sorted(pushed) == [".gitattributes", "README.md", "adapter.safetensors", "config.json"]
    for name in ("adapter.safetensors", "config.json"):  # what save_pretrained writes, byte for byte
        assert pushed[name] == (tmp_path / "v1" / name).read_bytes(), name
    # the card too, with its usage snippets naming the repo it now lives in
    card = pushed["README.md"].decode()
    saved_card = (tmp_path / "v1" / "README.md").read_text()
    assert card == card_for_repo(saved_card, REPO) != saved_card
    assert f'LabelProjector.from_pretrained("{REPO}")' in card and REPO_PLACEHOLDER not in card
    # the adapter went up through the LFS batch API and a PUT to the storage origin, the rest inline
    paths = [path for _, path in hub.requests]
    assert paths.index("/api/repos/create") < paths.index(f"/api/models/{REPO}/preupload/main") \
        < paths.index(f"/{REPO}.git/info/lfs/objects/batch") < paths.index(f"/api/models/{REPO}/commit/main")
    assert sum(path.startswith("/cdn/upload/") for path in paths) == 1

    expected["v2"] = version(2.0)
    v2 = p.push_to_hub(REPO, dtype="float16", commit_message="v2")  # the repo exists: a second commit on main
    assert json.loads(hub.files(REPO, v2.oid)["config.json"])["adapter_dtype"] == "float16"
    assert p.config.adapter_dtype == "float32"  # that push only
    HfApi().create_branch(REPO, branch="v1-fixes", revision=v1.oid)
    expected["v3"] = version(3.0)
    v3 = p.push_to_hub(REPO, branch="v1-fixes")
    assert len({v1.oid, v2.oid, v3.oid}) == 3

    with torch.no_grad():
        assert torch.equal(LabelProjector.from_pretrained(REPO, revision=v1.oid)(x), expected["v1"])
        assert torch.equal(LabelProjector.from_pretrained(REPO, revision="v1-fixes")(x), expected["v3"])
        latest = LabelProjector.from_pretrained(REPO)(x)  # main: v2, saved in float16
        assert not torch.equal(latest, expected["v2"]) and torch.allclose(latest, expected["v2"], atol=0.05)
        assert torch.equal(LabelProjector.from_pretrained(REPO, revision=v2.oid)(x), latest)


def test_save_pretrained_with_push_to_hub_pushes_what_it_saved(hub, class_names, tmp_path):
    p = LabelProjector.from_base(BASE, class_names=class_names, templates="simple",
                                 head_rank=4)
    commit = p.save_pretrained(tmp_path / "local", dtype="bfloat16", push_to_hub=True, repo_id="lab/both")
    assert HfApi().model_info("lab/both").sha == commit.oid
    pushed = hub.files("lab/both", commit.oid)
    for name in ("adapter.safetensors", "config.json", "README.md"):  # the folder's card names the repo too
        assert pushed[name] == (tmp_path / "local" / name).read_bytes(), name
    assert json.loads(pushed["config.json"])["adapter_dtype"] == "bfloat16"
    assert 'from_pretrained("lab/both")' in pushed["README.md"].decode()
