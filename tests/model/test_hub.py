"""Projectors through the real huggingface_hub client against a local Hub-protocol server."""
import pytest
import torch
from hub_server import hub, set_offline  # noqa: F401  (fixture)

from hello_labels import HelloLabelsError, LabelProjector


def saved(tiny_rn_dir, class_names, path, bias):
    p = LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=class_names, templates="simple",
                                 head_rank=4, metadata={"dataset": "toy"})
    with torch.no_grad():
        p.head.bias.fill_(bias)
        for lora in p.adapter.encoder_lora.values():
            lora.lora_B.normal_(std=0.02)
    p.save_pretrained(path)
    return p


@pytest.mark.slow
def test_download_revision_cache_and_offline(hub, tiny_rn_dir, class_names, tmp_path, monkeypatch):
    x = torch.randn(2, 3, 32, 32)
    v1 = saved(tiny_rn_dir, class_names, tmp_path / "v1", bias=1.0)
    sha1 = hub.add_repo("lab/tiny-projector", tmp_path / "v1")
    v2 = saved(tiny_rn_dir, class_names, tmp_path / "v2", bias=2.0)
    hub.add_repo("lab/tiny-projector", tmp_path / "v2")  # main moves on

    with torch.no_grad():
        latest = LabelProjector.from_pretrained("lab/tiny-projector")
        assert torch.equal(latest(x), v2(x))
        pinned = LabelProjector.from_pretrained("lab/tiny-projector", revision=sha1)
        assert torch.equal(pinned(x), v1(x))
    assert any("adapter.safetensors" in path for _, path in hub.requests)

    # second load with the server gone: served from the cache (a commit sha needs no request at all)
    hub.stop()
    n = len(hub.requests)
    with torch.no_grad():
        assert torch.equal(LabelProjector.from_pretrained("lab/tiny-projector", revision=sha1)(x), v1(x))
    set_offline(monkeypatch)
    with torch.no_grad():
        assert torch.equal(LabelProjector.from_pretrained("lab/tiny-projector")(x), v2(x))
    assert len(hub.requests) == n

    # offline and never downloaded: a one-line error that says how to pre-download
    with pytest.raises(HelloLabelsError) as err:
        LabelProjector.from_pretrained("lab/never-downloaded")
    message = str(err.value)
    assert "offline or unreachable" in message and "hf download lab/never-downloaded" in message
    assert "\n" not in message


def test_missing_repo_revision_and_file(hub, tiny_rn_dir, class_names, tmp_path):
    saved(tiny_rn_dir, class_names, tmp_path / "p", bias=0.0)
    hub.add_repo("lab/p", tmp_path / "p")
    (tmp_path / "p" / "adapter.safetensors").unlink()
    hub.add_repo("lab/no-adapter", tmp_path / "p")
    with pytest.raises(HelloLabelsError, match="Hub repo 'lab/missing' not found"):
        LabelProjector.from_pretrained("lab/missing")
    with pytest.raises(HelloLabelsError, match="revision 'v9' not found in Hub repo 'lab/p'"):
        LabelProjector.from_pretrained("lab/p", revision="v9")
    with pytest.raises(HelloLabelsError, match="lacks a projector file"):
        LabelProjector.from_pretrained("lab/no-adapter")



def test_hub_id_fails_fast_offline_unreachable_or_local_looking(hub, tiny_rn_dir, class_names, tmp_path, monkeypatch):
    from hello_labels.errors import BadInputError, HubUnreachableError

    saved(tiny_rn_dir, class_names, tmp_path / "p", bias=0.0)
    # a file of this machine is not a Hub id: refused as such, without a request
    for path in (tmp_path / "p" / "config.json", tmp_path / "p" / "missing" / "config.json"):
        with pytest.raises(BadInputError, match="projector folder"):
            LabelProjector.from_pretrained(path)
    assert not hub.requests
    hub.add_repo("lab/p", tmp_path / "p")
    LabelProjector.from_pretrained("lab/p")  # cached now
    n = len(hub.requests)
    set_offline(monkeypatch)
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE is set"):
        LabelProjector.from_pretrained("lab/never")
    set_offline(monkeypatch, False)
    hub.stop()  # no network: the endpoint refuses connections
    with pytest.raises(HubUnreachableError, match="does not answer") as err:
        LabelProjector.from_pretrained("lab/never")
    assert "\n" not in str(err.value)
    assert LabelProjector.from_pretrained("lab/p").num_classes == len(class_names)  # the cache still serves
    assert len(hub.requests) == n
