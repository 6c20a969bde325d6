import pytest
import torch
from torch import nn

from hello_labels import HelloLabelsError, LabelProjector
from hello_labels.model.lora import LoRATarget, add_lora, find_targets, lora_state_dict, merge_lora, unmerge_lora


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 4)
        self.proj = nn.Parameter(torch.randn(4, 6))  # a bare parameter, like open_clip's visual.proj

    def forward(self, x):
        h = self.conv(x).flatten(2).transpose(1, 2)           # [B, HW, 8]
        h = self.attn(h, h, h, need_weights=False)[0].mean(1)  # [B, 8]
        return self.fc(h) @ self.proj                          # [B, 6]


ALL = [{"pattern": "conv.weight", "rank": 2}, {"pattern": "attn.in_proj_weight", "rank": 3},
       {"pattern": "fc.weight", "rank": 4, "alpha": 8}, {"pattern": "proj", "rank": 2}]


def randomize(loras):
    with torch.no_grad():
        for lora in loras.values():
            lora.lora_B.normal_(std=0.5)


def test_zero_init_lora_is_the_base_and_every_target_kind_gets_gradients():
    torch.manual_seed(0)
    model, x = Toy(), torch.randn(2, 3, 5, 5)
    reference = model(x).detach()
    loras = add_lora(model, ALL)
    assert set(loras) == {"conv.weight", "attn.in_proj_weight", "fc.weight", "proj"}
    assert torch.equal(model(x), reference)  # B = 0 -> delta exactly 0
    assert {n: lora.rank for n, lora in loras.items()} == {"conv.weight": 2, "attn.in_proj_weight": 3,
                                                     "fc.weight": 4, "proj": 2}
    assert loras["fc.weight"].scale == 2.0
    model(x).pow(2).sum().backward()
    for name, lora in loras.items():
        assert lora.lora_B.grad is not None and lora.lora_B.grad.abs().sum() > 0, name


def test_merge_equals_unmerged_and_unmerge_restores():
    torch.manual_seed(0)
    model, x = Toy(), torch.randn(2, 3, 5, 5)
    base_weight = model.conv.weight.detach().clone()
    loras = add_lora(model, ALL)
    randomize(loras)
    with torch.no_grad():
        adapted = model(x)
        merge_lora(model, loras)
        assert not hasattr(model, "parametrizations")  # plain weights again: zero overhead
        assert torch.allclose(model(x), adapted, atol=1e-5)
        unmerge_lora(model, loras)
        assert torch.allclose(model(x), adapted, atol=1e-5)
        assert torch.allclose(model.conv.parametrizations.weight.original, base_weight, atol=1e-6)
    assert set(lora_state_dict(loras)) == {f"{n}.lora_{m}" for n in loras for m in "AB"}


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model, x = nn.Linear(16, 4), torch.randn(3, 16)
    loras = add_lora(model, [{"pattern": "weight", "rank": 4, "dropout": 0.5}])
    randomize(loras)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_layer_filter_and_errors():
    model = Toy()
    chosen = find_targets(model, [LoRATarget("*", layers=["Linear"])])
    # MultiheadAttention.out_proj is a Linear subclass; the bare proj and conv are not Linear-owned
    assert set(chosen) == {"attn.out_proj.weight", "fc.weight"}
    with pytest.raises(HelloLabelsError, match="match no weight"):
        add_lora(model, ["nothing.here"])
    with pytest.raises(HelloLabelsError, match="unknown keys"):
        LoRATarget.parse({"pattern": "*", "rnak": 3})


def test_projector_lora_on_open_clip_vit_targets_mha_and_bare_proj(tiny_vit_dir, class_names):
    targets = [{"pattern": "conv1.weight", "rank": 2}, {"pattern": "*attn.in_proj_weight", "rank": 4},
               {"pattern": "*mlp.c_fc.weight", "rank": 2}, {"pattern": "proj", "rank": 2}]
    p = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=class_names, templates="simple",
                                 lora_targets=targets, head_rank=2)
    x = torch.randn(2, 3, 32, 32)
    p.train()
    p(x).logsumexp(-1).sum().backward()
    grads = {n: t.grad for n, t in p.adapter_state_dict().items() if n.endswith("lora_B")}
    kinds = {"conv1.weight", "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.mlp.c_fc.weight",
             "proj"}
    for kind in kinds:
        g = grads[f"encoder.{kind}.lora_B"]
        assert g is not None and g.abs().sum() > 0, kind
    # only adapter tensors train
    trainable = {id(t) for t in p.trainable_parameters()}
    assert {id(t) for t in p.parameters() if t.requires_grad} == trainable
    assert len(trainable) == len(p.adapter_state_dict())
