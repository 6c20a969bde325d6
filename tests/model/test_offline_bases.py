"""A base whose weights open_clip or timm fetch from the Hub, with the Hub out of reach: one line saying so and how
to pre-download them (before: ~25 s of the client's retries a file, then a generic error), and the local cache
still serves. No network: the endpoint is a closed local port or ``HF_HUB_OFFLINE``."""
import json
import socket
import subprocess
import sys

import pytest
import torch
from hub_server import hub, set_offline, use_cache, use_endpoint  # noqa: F401  (hub is a fixture)

from hello_labels.cli import main
from hello_labels.errors import HubUnreachableError
from hello_labels.model.bases import build_base, parse_base


def _closed_port() -> str:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """A closed endpoint and an empty cache; returns the list of connections tried to that endpoint."""
    endpoint = _closed_port()
    use_endpoint(monkeypatch, endpoint)
    use_cache(monkeypatch, tmp_path / "hf")
    port, tried, connect = int(endpoint.rsplit(":", 1)[1]), [], socket.create_connection

    def counting(address, *args, **kwargs):  # huggingface_hub's HTTP client and our probe both connect through it
        if address[1] == port:
            tried.append(address)
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return tried


@pytest.mark.parametrize("offline", [False, True], ids=["endpoint-closed", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("base, pretrained, repo", [("RN50", "openai", "timm/resnet50_clip.openai"),
                                                     ("timm:resnet18", None, "timm/resnet18.a1_in1k")])
def test_pretrained_weights_out_of_reach_are_one_line(no_hub, monkeypatch, offline, base, pretrained, repo):
    """Before: the client tried the closed endpoint again and again (about 25 s a file), then a generic error."""
    set_offline(monkeypatch, offline)
    with pytest.raises(HubUnreachableError) as err:
        build_base(parse_base(base, pretrained))
    message = str(err.value)
    why = "HF_HUB_OFFLINE is set" if offline else "does not answer"
    assert "its weights are not in the local cache and the Hugging Face Hub is unreachable (" in message
    assert why in message
    assert f"hf download {repo}" in message and "\n" not in message
    assert len(no_hub) == (0 if offline else 1)  # one probe, then the cache only: no client retries
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE is offline  # the switch is back as it was


@pytest.mark.slow
def test_info_on_a_projector_with_such_a_base_says_so(no_hub, tmp_path, capsys):
    from safetensors.torch import save_file

    config = {"base": {"kind": "open_clip", "name": "RN50", "pretrained": "openai"}, "class_names": ["cat"],
              "head_init": "text", "templates": ["a photo of a {}."], "head_rank": 4, "head_alpha": None, "lora": [],
              "input_mean": [0.5] * 3, "input_std": [0.5] * 3, "input_channels": 3, "image_size": None,
              "interpolation": "bilinear", "normalize_features": True, "seed": 0, "format_version": 1}
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps(config))
    from hello_labels.model.directory import CLASSES_KEY, class_order_digest

    save_file({"head.bias": torch.zeros(1)}, str(tmp_path / "p" / "adapter.safetensors"),
              metadata={CLASSES_KEY: class_order_digest(["cat"])})  # as a save binds it to its class order
    assert main(["info", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Hugging Face Hub is unreachable" in err and "hf download" in err
    # as a user runs it (pytest catches log records itself): open_clip's own error line is not printed before ours
    run = subprocess.run([sys.executable, "-m", "hello_labels", "info", str(tmp_path / "p")], capture_output=True,
                         text=True, timeout=300)  # the endpoint and cache are in the environment (use_endpoint)
    assert run.returncode == 2 and run.stderr.startswith("error: cannot build open_clip base 'RN50'"), run.stderr
    assert run.stderr.count("\n") == 1, run.stderr


def test_weights_in_the_cache_still_load_with_the_hub_gone(hub, tiny_vit_dir):
    """``hf-hub:ORG/NAME``: fetched once while the Hub answers, then built from the cache alone."""
    hub.add_repo("lab/tiny-clip", tiny_vit_dir)
    online = build_base(parse_base("hf-hub:lab/tiny-clip"))
    hub.stop()
    n = len(hub.requests)
    offline = build_base(parse_base("hf-hub:lab/tiny-clip"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(online(x), offline(x))
    assert len(hub.requests) == n


def test_a_hub_base_whose_weights_do_not_come_is_an_error_not_a_random_model(hub, tmp_path):
    """Before: open_clip logged a warning and built ``hf-hub:`` bases with random weights when the repo's config
    came but its weights did not (not published, or not cached with the Hub gone): every label silently wrong."""
    from conftest import TINY_VIT, write_open_clip_dir

    from hello_labels.errors import HelloLabelsError

    hub.add_repo("lab/config-only", write_open_clip_dir(tmp_path / "config-only", TINY_VIT, weights=False))
    with pytest.raises(HelloLabelsError) as err:
        build_base(parse_base("hf-hub:lab/config-only"))
    assert "hf-hub:lab/config-only" in str(err.value) and "\n" not in str(err.value)
