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


# ----------------------------------------------------------------------------- a toy synthetic set and teacher
TOY_CLASSES = ["red stripes", "green dots", "blue stripes", "yellow dots", "grey stripes"]


def make_toy_folder(root, per_class=8, size=40, seed=0):
    """An ImageFolder of class-dependent colour + stripe/dot patterns (PNG), like a tiny synthetic set."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [128, 128, 128]])
    for c, name in enumerate(TOY_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            img = colours[c] * 0.6 + rng.uniform(0, 100, size=(size, size, 3))
            if c % 2 == 0:
                img[::5] *= 0.4
            else:
                img[::5, ::5] *= 0.3
            Image.fromarray(img.clip(0, 255).astype("uint8")).save(root / name / f"img_{k:02d}.png")
    return root


def train_toy_teacher(folder, steps=60, size=32, seed=0):
    """A timm ``test_resnet`` trained for a few steps on augmented views of the toy folder."""
    import timm

    from hello_labels.labels.views import AugmentedImages, open_images, stream_plans

    torch.manual_seed(seed)
    images = AugmentedImages(open_images(folder), size, scale=(0.25, 1.0))
    teacher = timm.create_model("test_resnet", num_classes=len(TOY_CLASSES))
    opt = torch.optim.Adam(teacher.parameters(), 3e-3)
    for plan in stream_plans(len(images), 16, seed, 0, steps):
        views = [images[k] for k in plan.keys]
        x, y = torch.stack([v[0] for v in views]), torch.tensor([v[1] for v in views])
        loss = torch.nn.functional.cross_entropy(teacher(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return teacher.eval()


@pytest.fixture(scope="session")
def tiny_projector(tiny_vit_dir):
    """``build(folder, min_scale=0.25) -> (projector, images)``: a fresh tiny-ViT projector (text head, head rank 4)
    and the folder's augmented 32-px views."""
    from hello_labels.train.jobs import augmented, make_projector

    def build(folder, min_scale=0.25, size=32):
        images = augmented(folder, size, min_scale=min_scale)
        return make_projector(images, f"local-dir:{tiny_vit_dir}", templates="simple", head_rank=4), images

    return build


@pytest.fixture(scope="session")
def distilled_projector(tiny_projector, toy_folder, toy_teacher, tmp_path_factory):
    """A tiny-ViT projector folder distilled briefly (60 steps) from the toy teacher; tests only read it."""
    from hello_labels.train.distill import DistillConfig
    from hello_labels.train.jobs import distill_from_teachers

    projector, images = tiny_projector(toy_folder)
    out = tmp_path_factory.mktemp("distilled") / "projector"
    distill_from_teachers(toy_folder, [toy_teacher[1]], out, projector,
                          DistillConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5), images=images,
                          progress=False)
    return out


@pytest.fixture(scope="session")
def toy_folder(tmp_path_factory):
    return make_toy_folder(tmp_path_factory.mktemp("toy") / "train")


@pytest.fixture(scope="session")
def toy_teacher(toy_folder, tmp_path_factory):
    """``(module, spec)``: the trained teacher and a ``timm:test_resnet@checkpoint`` spec string for it."""
    from safetensors.torch import save_file

    teacher = train_toy_teacher(toy_folder)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    return teacher, f"timm:test_resnet@{path}"
