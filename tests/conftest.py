"""Shared fixtures: tiny open_clip models written to disk and loaded through open_clip's own ``local-dir:``
schema (no download anywhere), and an isolated cache."""
import json
import os

import pytest
import torch

# Nothing in the suite may reach a network; tests that exercise the Hub use a local server.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_RN = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                                           "head_width": 16}, "text_cfg": TEXT_CFG}
TINY_VIT = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                                            "patch_size": 8}, "text_cfg": TEXT_CFG}


def write_open_clip_dir(path, model_cfg, seed=0, weights=True):
    """Write ``open_clip_config.json`` (+ seeded random weights) so ``local-dir:<path>`` builds the model."""
    import open_clip
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    if weights:
        torch.manual_seed(seed)
        model = open_clip.create_model(f"local-dir:{path}")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(path / "open_clip_model.safetensors"))
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HELLO_LABELS_CACHE", str(tmp_path_factory.getbasetemp() / "hl-cache"))


@pytest.fixture(scope="session")
def tiny_rn_dir(tmp_path_factory):
    return write_open_clip_dir(tmp_path_factory.mktemp("tiny-rn"), TINY_RN)


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory):
    return write_open_clip_dir(tmp_path_factory.mktemp("tiny-vit"), TINY_VIT)


@pytest.fixture(scope="session")
def class_names():
    return ["cat", "dog", "car", "ship", "tree"]
