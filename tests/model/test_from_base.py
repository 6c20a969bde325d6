"""``from_base``: settings are ProjectorConfig fields, given one by one or as another projector's config."""
import dataclasses

import pytest
import torch

from hello_labels import LabelProjector
from hello_labels.model.config import SETTINGS, ProjectorConfig

CHOSEN = {"head_init": "random", "head_rank": 2, "head_alpha": 2.0, "input_mean": [0.5] * 3, "input_std": [0.25] * 3,
          "image_size": 40, "interpolation": "bicubic", "normalize_features": False, "seed": 5, "metadata": {"a": 1}}


def test_settings_are_exactly_the_config_fields_a_caller_chooses():
    recorded = {"base", "class_names", "lora", "adapter_dtype", "library_version", "format_version", "base_pin",
                "adapter_sha256"}
    assert set(SETTINGS) == {f.name for f in dataclasses.fields(ProjectorConfig)} - recorded


def test_another_projectors_config_builds_the_same_projector(tiny_rn_dir, tiny_vit_dir):
    first = LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=["a", "b", "c"], lora_rank=2,
                                     **CHOSEN)
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    again = LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=["a", "b", "c"], config=first.config)
    assert again.config_dict() == first.config_dict()
    assert torch.equal(again(x), first(x))
    assert first.config.image_size == [40, 40] and first.config.lora[0]["rank"] == 2

    # on another base: the settings carry over, the base and its pin do not; a keyword wins over the config
    vit_target = {"pattern": "transformer.resblocks.*.attn.out_proj.weight", "rank": 1}
    other = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=["a", "b"], config=first.config,
                                     seed=6, lora_targets=[vit_target])
    assert {k: getattr(other.config, k) for k in CHOSEN} == dict(CHOSEN, image_size=[40, 40], seed=6)
    assert other.config.base != first.config.base and other.config.base_pin != first.config.base_pin
    assert [t["pattern"] for t in other.config.lora] == [vit_target["pattern"]]
    other.config.metadata["b"] = 2  # copied, not shared
    assert first.config.metadata == {"a": 1}


def test_an_unknown_setting_is_a_type_error_naming_it(tiny_rn_dir):
    with pytest.raises(TypeError, match=r"\['head_rnak'\]"):
        LabelProjector.from_base(f"local-dir:{tiny_rn_dir}", class_names=["a"], head_init="zero", head_rnak=3)
