"""Default LoRA targets are found by structure: the attention projections of transformers (timm ViT, DeiT, Swin,
EVA02; open_clip ViT), the convolutions of CNNs (timm ConvNeXt, ResNet; open_clip RN with its attention pooling)."""
import fnmatch

import open_clip
import pytest
import timm
from conftest import TINY_RN, TINY_VIT
from torch import nn

from hello_labels import LabelProjector
from hello_labels.cli import main
from hello_labels.model.adapter import default_lora_targets
from hello_labels.model.lora import LoRATarget, find_targets

SMALL = dict(pretrained=False, num_classes=0)
TRANSFORMERS = {
    "vit": lambda: timm.create_model("vit_tiny_patch16_224", depth=1, img_size=32, **SMALL),
    "deit": lambda: timm.create_model("deit_tiny_patch16_224", depth=1, img_size=32, **SMALL),
    "swin": lambda: timm.create_model("swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1), embed_dim=24,
                                      num_heads=(1, 1, 1, 1), img_size=32, window_size=2, **SMALL),
    "eva02": lambda: timm.create_model("eva02_tiny_patch14_224", depth=1, img_size=28, **SMALL),
    "open_clip_vit": lambda: open_clip.CLIP(**TINY_VIT).visual,
}
CNNS = {
    "convnext": lambda: timm.create_model("test_convnext", **SMALL),
    "resnet": lambda: timm.create_model("test_resnet", **SMALL),
    "open_clip_rn": lambda: open_clip.CLIP(**TINY_RN).visual,
}
# The attention projections, named as each family names them (written out here, not derived by the library).
PROJECTIONS = ("*.attn.qkv.weight", "*.attn.proj.weight", "*.attn.in_proj_weight", "*.attn.out_proj.weight")


def chosen(model):
    return set(find_targets(model, [LoRATarget.parse(t) for t in default_lora_targets(model)]))


@pytest.mark.parametrize("family", sorted(TRANSFORMERS))
def test_transformers_get_their_attention_projections(family):
    model = TRANSFORMERS[family]()
    expected = {n for n, p in model.named_parameters() if any(fnmatch.fnmatchcase(n, g) for g in PROJECTIONS)}
    assert expected and chosen(model) == expected


@pytest.mark.parametrize("family", sorted(CNNS))
def test_cnns_get_their_convolutions(family):
    model = CNNS[family]()
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) > 2 and chosen(model) == convs


def test_open_clip_vit_defaults_match_the_previous_preset_and_saved_targets_are_kept(tiny_vit_dir, class_names,
                                                                                    tmp_path, capsys):
    visual = open_clip.CLIP(**TINY_VIT).visual
    old = [LoRATarget.parse({"pattern": "*attn*", "layers": ["Linear", "MultiheadAttention", "Attention"]})]
    assert chosen(visual) == set(find_targets(visual, old))
    # a projector saved with other targets (say, an earlier default) is rebuilt with exactly those
    conv = [{"pattern": "*", "layers": ["Conv2d"], "rank": 2}]
    saved = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=class_names, templates="simple",
                                     head_rank=4, lora_targets=conv)
    saved.save_pretrained(tmp_path / "p")
    loaded = LabelProjector.from_pretrained(tmp_path / "p")
    assert loaded.config.lora == saved.config.lora and [r["pattern"] for r in loaded.adapter.summary()] == [
        "*", "head.weight"]
    # info lists each target with the weights it matched and their LoRA parameters
    fresh = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=class_names, templates="simple",
                                     head_rank=4)
    fresh.save_pretrained(tmp_path / "q")
    assert main(["info", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    rows = fresh.adapter.summary()
    assert [r["pattern"] for r in rows] == ["transformer.resblocks.*.attn.in_proj_weight",
                                            "transformer.resblocks.*.attn.out_proj.weight", "head.weight"]
    assert rows[0]["weights"] == TINY_VIT["vision_cfg"]["layers"]
    assert sum(r["parameters"] for r in rows) == sum(t.numel() for n, t in fresh.adapter_state_dict().items()
                                                     if n.endswith(("lora_A", "lora_B")))
    for r in rows:
        assert r["pattern"] in out and f"{r['parameters']:,}" in out
