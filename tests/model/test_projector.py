import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.model.bases import build_base
from hello_labels.model.inputs import IMAGENET_MEAN, IMAGENET_STD


def tiny(rn_dir, class_names, **kw):
    kw.setdefault("templates", "simple")
    kw.setdefault("head_rank", 4)
    return LabelProjector.from_base(f"local-dir:{rn_dir}", class_names=class_names, **kw)


def perturb(p, std=0.05, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in p.adapter_state_dict().items():
            if t.requires_grad:
                t.add_(torch.randn(t.shape, generator=gen) * std)


def test_text_head_matches_open_clip_zero_shot_and_text_tower_is_dropped(tiny_rn_dir, class_names):
    import open_clip

    p = tiny(tiny_rn_dir, class_names)
    clip = open_clip.create_model(f"local-dir:{tiny_rn_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{tiny_rn_dir}")
    templates = [t("{}") for t in open_clip.SIMPLE_IMAGENET_TEMPLATES]
    expected = open_clip.build_zero_shot_classifier(clip, tok, class_names, templates).T
    assert torch.allclose(p.head.weight, expected, atol=1e-5)
    assert p.base.clip_model is None
    names = [n for n, _ in p.named_parameters()]
    assert not any("token_embedding" in n or n.startswith("base.encoder.transformer") for n in names)

    # zero-shot logits at init: CLIP's own computation on base-normalised input
    x = torch.randn(3, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    base_x = (x * std + mean - torch.tensor(p.base.mean).view(1, 3, 1, 1)) / torch.tensor(p.base.std).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = F.normalize(clip.encode_image(base_x), dim=-1)
        assert torch.allclose(p(x), clip.logit_scale.exp() * feats @ expected.T, atol=1e-4)


def test_text_head_is_cached_so_second_build_skips_the_text_tower(tiny_rn_dir, class_names, monkeypatch):
    import open_clip

    names = class_names + ["bird"]  # a fresh cache key
    first = tiny(tiny_rn_dir, names)

    def boom(*a, **k):
        raise AssertionError("text tower used despite cache")

    monkeypatch.setattr(open_clip, "build_zero_shot_classifier", boom)
    second = tiny(tiny_rn_dir, names)
    assert torch.equal(first.head.weight, second.head.weight)


def test_zero_adapter_equals_bare_base_features(tiny_rn_dir, class_names):
    p = tiny(tiny_rn_dir, class_names)
    base = build_base(p.config.base, seed=p.config.seed)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(p.base(p.inputs(x)), base(p.inputs(x)))


def test_input_adapter_renormalises_resizes_and_is_differentiable(tiny_rn_dir, class_names):
    p = tiny(tiny_rn_dir, class_names, input_mean=[0.5], input_std=[0.25], input_channels=1)
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    out = p.inputs(x)
    assert out.shape == (2, 3, 32, 32)
    pixels = x.detach() * 0.25 + 0.5
    base_mean = torch.tensor(p.base.mean).view(1, 3, 1, 1)
    base_std = torch.tensor(p.base.std).view(1, 3, 1, 1)
    expected = F.interpolate((pixels.expand(-1, 3, -1, -1) - base_mean) / base_std, size=(32, 32),
                             mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(out, expected, atol=1e-5)
    p(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_images_get_clear_errors(tiny_rn_dir, class_names):
    p = tiny(tiny_rn_dir, class_names)
    with pytest.raises(HelloLabelsError, match=r"shape \[B, 3, H, W\], got \[2, 1, 32, 32\]"):
        p(torch.randn(2, 1, 32, 32))
    with pytest.raises(HelloLabelsError, match="float tensor.*torch.uint8"):
        p(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(HelloLabelsError, match="shape"):
        p(torch.randn(3, 32, 32))


def test_save_load_round_trip_identical_logits_and_only_adapter_tensors(tiny_rn_dir, class_names, tmp_path):
    p = tiny(tiny_rn_dir, class_names, metadata={"teacher": "timm:resnet18", "dataset": "toy"})
    perturb(p)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = p(x)
    p.save_pretrained(tmp_path / "proj")
    files = sorted(f.name for f in (tmp_path / "proj").iterdir())
    assert files == ["README.md", "adapter.safetensors", "config.json"]
    q = LabelProjector.from_pretrained(tmp_path / "proj")
    with torch.no_grad():
        assert torch.equal(q(x), before)

    adapter = tmp_path / "proj" / "adapter.safetensors"
    with safe_open(str(adapter), "pt") as f:
        keys = set(f.keys())
    assert keys == set(p.adapter_state_dict())
    assert all(k.endswith((".lora_A", ".lora_B")) or k in ("head.bias", "head.logit_scale") for k in keys)
    data_bytes = p.num_adapter_bytes()
    header = adapter.stat().st_size - data_bytes
    assert 0 < header < 16 * 1024
    base_bytes = sum(t.numel() * 4 for t in p.base.parameters())
    assert adapter.stat().st_size < base_bytes / 3

    card = (tmp_path / "proj" / "README.md").read_text()
    assert "library_name: hello-labels" in card and "teacher: timm:resnet18" in card
    # one definition of the adapter's bytes: the file's, in the card, repr and adapter_file_bytes alike
    size = adapter.stat().st_size
    assert f"adapter_bytes: {size}" in card and f"adapter.safetensors {size:,} bytes" in card
    assert p.adapter_file_bytes() == adapter.stat().st_size and f"{adapter.stat().st_size:,} bytes" in repr(q)
    config = json.loads((tmp_path / "proj" / "config.json").read_text())
    assert config["class_names"] == class_names and config["base"]["kind"] == "open_clip"


def test_fp16_storage_halves_bytes_and_stays_close(tiny_rn_dir, class_names, tmp_path):
    p = tiny(tiny_rn_dir, class_names)
    perturb(p)
    x = torch.randn(4, 3, 32, 32)
    p.save_pretrained(tmp_path / "fp16", dtype="float16")
    q = LabelProjector.from_pretrained(tmp_path / "fp16")
    assert (tmp_path / "fp16" / "adapter.safetensors").stat().st_size < p.num_adapter_bytes("float32") * 0.6
    with torch.no_grad():
        assert torch.allclose(q(x), p(x), atol=0.05, rtol=0.01)


def test_merge_matches_and_survives_save(tiny_rn_dir, class_names, tmp_path):
    p = tiny(tiny_rn_dir, class_names)
    perturb(p)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        unmerged = p(x)
        p.merge()
        assert p.merged and torch.allclose(p(x), unmerged, atol=1e-4)
        p.save_pretrained(tmp_path / "m")
        p.unmerge()
        assert torch.allclose(p(x), unmerged, atol=1e-4)
        assert torch.allclose(LabelProjector.from_pretrained(tmp_path / "m")(x), unmerged, atol=1e-4)


@pytest.mark.slow
def test_deep_copies_merge_independently(tiny_rn_dir, class_names):
    import copy

    p = tiny(tiny_rn_dir, class_names)
    perturb(p)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = p(x)
        ema = copy.deepcopy(p)
        ema.merge()
        assert torch.allclose(ema(x), before, atol=1e-4)
        assert not p.merged and torch.equal(p(x), before)  # the original keeps its parametrizations
        p.merge()
        ema.unmerge()
        assert torch.allclose(p(x), ema(x), atol=1e-4)
    assert {id(t) for t in ema.trainable_parameters()}.isdisjoint({id(t) for t in p.trainable_parameters()})


def test_prototype_head_is_stored_and_restored(tiny_rn_dir, class_names, tmp_path):
    images = torch.randn(10, 3, 32, 32)
    labels = torch.arange(10) % 5
    p = tiny(tiny_rn_dir, class_names, head_init="prototype", prototype_images=images, prototype_labels=labels)
    assert torch.allclose(p.head.weight.norm(dim=-1), torch.ones(5), atol=1e-5)
    perturb(p)
    p.save_pretrained(tmp_path / "proto")
    q = LabelProjector.from_pretrained(tmp_path / "proto")
    assert torch.equal(q.head.weight, p.head.weight)
    with torch.no_grad():
        assert torch.equal(q(images), p(images))
    with pytest.raises(HelloLabelsError, match="none for classes \\[4\\]"):
        tiny(tiny_rn_dir, class_names, head_init="prototype", prototype_images=images[:4], prototype_labels=labels[:4])


def test_timm_base_reads_its_own_normalisation(class_names, tmp_path):
    import timm

    p = LabelProjector.from_base("timm:test_resnet", False, class_names=class_names, head_init="random", image_size=32)
    cfg = timm.data.resolve_model_data_config(timm.create_model("test_resnet", num_classes=0))
    assert p.base.mean == tuple(cfg["mean"]) and p.base.std == tuple(cfg["std"])
    assert p.config.lora[0]["layers"] == ["Conv2d"]
    perturb(p)
    x = torch.randn(2, 3, 24, 24)
    p.save_pretrained(tmp_path / "t")
    with torch.no_grad():
        assert torch.equal(LabelProjector.from_pretrained(tmp_path / "t")(x), p(x))


class Encoder(nn.Module):
    def __init__(self, width=6):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


def make_encoder(width=6):
    torch.manual_seed(123)
    return Encoder(width)


def test_custom_module_base_with_factory_round_trips(class_names, tmp_path):
    kw = dict(base_mean=[0.5] * 3, base_std=[0.5] * 3, base_image_size=16, class_names=class_names,
              head_init="zero", lora_targets=[{"pattern": "conv.weight", "rank": 2}])
    p = LabelProjector.from_base(make_encoder(), base_factory="test_projector:make_encoder", **kw)
    perturb(p)
    p.save_pretrained(tmp_path / "c")
    q = LabelProjector.from_pretrained(tmp_path / "c", trust_remote_code=True)  # rebuilt through the factory
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(q(x), p(x))
    # without a factory the module must be handed back at load time
    r = LabelProjector.from_base(make_encoder(), **kw)
    r.save_pretrained(tmp_path / "d")
    with pytest.raises(HelloLabelsError, match="base_module"):
        LabelProjector.from_pretrained(tmp_path / "d")
    assert LabelProjector.from_pretrained(tmp_path / "d", base_module=make_encoder()).num_classes == 5


def test_random_head_is_rebuilt_from_its_seed(tiny_rn_dir, class_names):
    a = tiny(tiny_rn_dir, class_names, head_init="random", seed=3)
    b = tiny(tiny_rn_dir, class_names, head_init="random", seed=3)
    c = tiny(tiny_rn_dir, class_names, head_init="random", seed=4)
    assert torch.equal(a.head.weight, b.head.weight) and not torch.equal(a.head.weight, c.head.weight)


# ----------------------------------------------------------------------------------------- bad input
def test_missing_truncated_and_mismatched_adapters(tiny_rn_dir, tiny_vit_dir, class_names, tmp_path):
    p = tiny(tiny_rn_dir, class_names)
    p.save_pretrained(tmp_path / "ok")
    adapter = tmp_path / "ok" / "adapter.safetensors"
    blob = adapter.read_bytes()

    adapter.unlink()
    with pytest.raises(HelloLabelsError, match="adapter.safetensors missing: .*ok.adapter.safetensors"):
        LabelProjector.from_pretrained(tmp_path / "ok")

    adapter.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(HelloLabelsError, match="truncated or corrupt"):
        LabelProjector.from_pretrained(tmp_path / "ok")
    adapter.write_bytes(blob)

    # class-count mismatch: the config lists more names than the adapter was trained for (the adapter file records
    # the class names it was fitted for: refused by that first; tensors from elsewhere by their count)
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    config["class_names"] = class_names + ["extra"]
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match="fitted for other class names or another class order than "
                                               "config.json's 6 class_names"):
        LabelProjector.from_pretrained(tmp_path / "ok")
    with pytest.raises(HelloLabelsError, match="trained for 5 classes but this projector has 6"):
        tiny(tiny_rn_dir, class_names + ["extra"]).load_adapter_state_dict(p.adapter_state_dict())

    # shapes that do not match the base: same names, other LoRA rank
    config["class_names"] = class_names
    config["lora"] = [dict(t, rank=t["rank"] + 1) for t in config["lora"]]
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match="has shape .* but the base expects"):
        LabelProjector.from_pretrained(tmp_path / "ok")

    # an adapter for another base entirely (unpinned, as 0.x wrote it: the pin would stop it first)
    config["base"]["name"] = f"local-dir:{tiny_vit_dir}"
    config["lora"] = []
    del config["base_pin"], config["format_version"]
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HelloLabelsError, match="does not match base"):
        LabelProjector.from_pretrained(tmp_path / "ok")


def test_unknown_bases_and_missing_config(tmp_path, class_names):
    with pytest.raises(HelloLabelsError, match="unknown base 'RN5O'"):
        LabelProjector.from_base("RN5O", class_names=class_names)
    with pytest.raises(HelloLabelsError, match="unknown timm model 'nope_net'"):
        LabelProjector.from_base("timm:nope_net", class_names=class_names, head_init="zero")
    with pytest.raises(HelloLabelsError, match="unknown open_clip model 'NotAModel'"):
        LabelProjector.from_base("open_clip:NotAModel", class_names=class_names)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HelloLabelsError, match="has no config.json"):
        LabelProjector.from_pretrained(tmp_path / "empty")
    with pytest.raises(HelloLabelsError, match="no text tower"):
        LabelProjector.from_base("timm:test_resnet", class_names=class_names)


@pytest.mark.slow
def test_merged_prototype_projector_saves_and_loads_its_own_head(tiny_rn_dir, class_names, tmp_path):
    """A prototype head's weight is stored in the adapter: saved from a merged projector it must be the prototypes,
    not prototypes + head delta (the delta would be applied twice on load), and loading into a merged projector
    must reach the live weight."""
    images, labels = torch.randn(10, 3, 32, 32), torch.arange(10) % 5
    p = tiny(tiny_rn_dir, class_names, head_init="prototype", prototype_images=images, prototype_labels=labels)
    perturb(p)
    with torch.no_grad():
        expected = p(images)
        prototypes = p.adapter_state_dict()["head.weight"].clone()
        p.merge()
        assert torch.equal(p.adapter_state_dict()["head.weight"], prototypes)
        for dtype in ("float32", "int8"):
            p.save_pretrained(tmp_path / dtype, dtype=dtype)
            q = LabelProjector.from_pretrained(tmp_path / dtype)
            assert torch.allclose(q(images), expected, atol=0.02 if dtype == "int8" else 1e-4), dtype
        fresh = tiny(tiny_rn_dir, class_names, head_init="prototype", prototype_images=images * 0 + 1,
                     prototype_labels=labels).merge()
        fresh.load_adapter_state_dict(LabelProjector.from_pretrained(tmp_path / "float32").adapter_state_dict())
        assert torch.allclose(fresh(images), expected, atol=1e-4)
