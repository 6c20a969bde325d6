"""The adapter is a module of the projector: every torch mechanism sees the same tensors, merged or not."""
import copy

import pytest
import torch

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.model.lora import LoRA


def _projector(tiny_vit_dir, class_names, **kw):
    p = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=class_names, templates="simple",
                                 head_rank=4, **kw)
    with torch.no_grad():
        for t in p.adapter_state_dict().values():
            t.add_(torch.randn_like(t) * 0.05)
    return p


def _adapter_ids(p):
    return {id(t) for t in p.adapter_state_dict().values()}


@pytest.mark.parametrize("merged", [False, True])
def test_module_mechanisms_see_every_adapter_tensor(tiny_vit_dir, class_names, merged):
    p = _projector(tiny_vit_dir, class_names)
    if merged:
        p.merge()
    params = {id(t) for t in p.parameters()}
    assert _adapter_ids(p) <= params  # in the module tree, so .to()/DDP/optimisers see them
    state = p.state_dict()
    for name, t in p.adapter_state_dict().items():
        assert any(v.data_ptr() == t.data_ptr() for v in state.values()), name

    p.requires_grad_(False)
    assert not any(t.requires_grad for t in p.adapter_state_dict().values())
    p.requires_grad_(True)
    assert all(t.requires_grad for t in p.adapter_state_dict().values())

    p.half()
    assert {t.dtype for t in p.adapter_state_dict().values()} == {torch.float16}
    p.to(torch.float64)
    assert {t.dtype for t in p.adapter_state_dict().values()} == {torch.float64}


def test_merged_then_cast_unmerges_to_the_same_outputs(tiny_vit_dir, class_names):
    p = _projector(tiny_vit_dir, class_names)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        reference = p.to(torch.float64)(x)
        p.merge().to(torch.float32).to(torch.float64)
        p.unmerge()
        assert torch.allclose(p(x), reference, atol=1e-4)


def test_merge_in_train_mode_folds_the_delta_without_dropout(tiny_vit_dir, class_names):
    targets = [{"pattern": "*attn.in_proj_weight", "rank": 4, "dropout": 0.5}]
    p = _projector(tiny_vit_dir, class_names, lora_targets=targets)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = p.eval()(x)
        p.train().merge()
        assert torch.allclose(p.eval()(x), reference, atol=1e-5)
        p.train().unmerge()
        assert torch.allclose(p.eval()(x), reference, atol=1e-5)


def test_lora_rank_clamp_with_explicit_alpha_is_an_error():
    assert LoRA(torch.Size([5, 32]), rank=64).scale == 1.0  # clamped to 5, alpha follows: scale 1
    assert LoRA(torch.Size([5, 32]), rank=4, alpha=8).scale == 2.0
    with pytest.raises(HelloLabelsError, match="exceeds its largest possible rank 5"):
        LoRA(torch.Size([5, 32]), rank=64, alpha=128)


def test_save_dtype_changes_that_save_only(tiny_vit_dir, class_names, tmp_path):
    import json

    from safetensors.torch import load_file

    p = _projector(tiny_vit_dir, class_names)
    p.save_pretrained(tmp_path / "half", dtype="float16")
    assert p.config.adapter_dtype == "float32"
    p.save_pretrained(tmp_path / "full")
    assert json.loads((tmp_path / "half" / "config.json").read_text())["adapter_dtype"] == "float16"
    assert json.loads((tmp_path / "full" / "config.json").read_text())["adapter_dtype"] == "float32"
    assert {t.dtype for t in load_file(tmp_path / "full" / "adapter.safetensors").values()} == {torch.float32}
    assert {t.dtype for t in load_file(tmp_path / "half" / "adapter.safetensors").values()} == {torch.float16}
    assert "float16" in (tmp_path / "half" / "README.md").read_text()


def test_deep_copy_keeps_its_own_adapter(tiny_vit_dir, class_names):
    p = _projector(tiny_vit_dir, class_names)
    clone = copy.deepcopy(p)
    assert not (_adapter_ids(clone) & {id(t) for t in p.parameters()})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        clone.merge()
        assert torch.allclose(clone(x), p(x), atol=1e-5)
        assert clone.adapter._hosts["encoder"] is clone.base.encoder
