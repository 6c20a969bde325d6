"""int8 / 4-bit adapter files: error bounded by half a quantization step, zeros exact, sizes as computed."""
import pytest
import torch

from hello_labels import HelloLabelsError
from hello_labels.model.quantize import (
    QUANTIZED,
    SCALES,
    dequantize_adapter,
    dequantize_tensor,
    quantize_adapter,
    quantize_tensor,
    quantized_bytes,
)


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_round_trip_error_is_at_most_half_a_step_per_group(fmt):
    torch.manual_seed(0)
    w = torch.randn(37, 29) * torch.logspace(-3, 1, 29)  # columns of very different magnitude
    codes, scales = quantize_tensor(w, fmt)
    back = dequantize_tensor(codes, scales, w.shape, fmt)
    bits, group = QUANTIZED[fmt]
    flat_err = (back - w).abs().flatten()
    step = scales.float().repeat_interleave(group)[:w.numel()]
    assert torch.all(flat_err <= step / 2 + 1e-3 * step + 1e-8)
    assert codes.dtype == (torch.int8 if bits == 8 else torch.uint8)
    assert codes.numel() == (w.numel() if bits == 8 else -(-w.numel() // 2))
    assert scales.numel() == -(-w.numel() // group)


def test_int4_packing_matches_the_documented_layout():
    w = torch.tensor([-7.0, -1.0, 0.0, 1.0, 7.0, 3.0] + [0.0] * 58)  # one group, scale 1
    odd = torch.arange(-7.0, 6.0)  # 13 values: the last byte holds one code and a padding nibble
    assert torch.equal(dequantize_tensor(*quantize_tensor(odd, "int4"), odd.shape, "int4"), odd)
    codes, scales = quantize_tensor(w, "int4")
    assert float(scales[0]) == 1.0
    # low nibble first, each code offset by 8
    assert codes[:3].tolist() == [(1) | (7 << 4), (8) | (9 << 4), (15) | (11 << 4)]
    assert torch.equal(dequantize_tensor(codes, scales, w.shape, "int4"), w)


def test_zero_tensors_stay_exactly_zero():
    for fmt in QUANTIZED:
        codes, scales = quantize_tensor(torch.zeros(10, 8), fmt)
        assert torch.equal(dequantize_tensor(codes, scales, (10, 8), fmt), torch.zeros(10, 8))


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_adapter_file_round_trip_and_size(fmt, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tensors = {"encoder.conv.weight.lora_A": torch.randn(8, 27), "encoder.conv.weight.lora_B": torch.randn(16, 8),
               "head.weight.lora_B": torch.randn(5, 4), "head.bias": torch.randn(5),
               "head.logit_scale": torch.tensor(2.)}
    out, meta = quantize_adapter(tensors, fmt)
    save_file(out, str(tmp_path / "a.safetensors"), metadata=meta)
    with safe_open(str(tmp_path / "a.safetensors"), "pt") as f:
        loaded, loaded_meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    assert sum(t.numel() * t.element_size() for t in loaded.values()) == quantized_bytes(tensors, fmt)
    back = dequantize_adapter(loaded, loaded_meta)
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].shape == t.shape and back[name].dtype == torch.float32
        tol = 0.6 * float(t.abs().max()) / (127 if fmt == "int8" else 7) + 1e-3
        assert (back[name] - t).abs().max() <= tol, name


def test_unknown_or_broken_quantized_files_are_one_line_errors():
    out, meta = quantize_adapter({"x.lora_A": torch.randn(4, 4)}, "int8")
    with pytest.raises(HelloLabelsError, match="cannot read"):
        dequantize_adapter(out, dict(meta, quantization="int3"))
    with pytest.raises(HelloLabelsError, match="scales"):
        dequantize_adapter({"x.lora_A": out["x.lora_A"]}, meta)
    out4, meta4 = quantize_adapter({"x.lora_A": torch.randn(3, 5)}, "int4")
    with pytest.raises(HelloLabelsError, match="lacks the shapes"):
        dequantize_adapter(out4, {k: v for k, v in meta4.items() if k != "shapes"})
    with pytest.raises(HelloLabelsError, match="unknown quantized format"):
        quantize_adapter({}, "int2")


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_projector_saves_quantized_and_loads_transparently(tiny_vit_dir, class_names, tmp_path, fmt):
    import json

    from hello_labels import LabelProjector

    p = LabelProjector.from_base(f"local-dir:{tiny_vit_dir}", class_names=class_names, templates="simple",
                                 head_rank=4)
    with torch.no_grad():
        for t in p.adapter_state_dict().values():
            t.add_(torch.randn_like(t) * 0.05)
    p.save_pretrained(tmp_path / fmt, dtype=fmt)
    p.save_pretrained(tmp_path / "fp16", dtype="float16")
    assert json.loads((tmp_path / fmt / "config.json").read_text())["adapter_dtype"] == fmt
    card = (tmp_path / fmt / "README.md").read_text()
    size = (tmp_path / fmt / "adapter.safetensors").stat().st_size
    assert f"adapter_dtype: {fmt}\n" in card and f"adapter.safetensors {size:,} bytes ({fmt}) |" in card  # YAML, facts
    assert p.num_adapter_bytes(fmt) < size < p.num_adapter_bytes(fmt) + 8192  # data + header
    assert size < (tmp_path / "fp16" / "adapter.safetensors").stat().st_size
    loaded = LabelProjector.from_pretrained(tmp_path / fmt)
    assert loaded.adapter_file_bytes() == size  # what `info` shows for the loaded projector: the file's bytes
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference, out = p(x), loaded(x)
    tolerance = 0.05 if fmt == "int8" else 0.5
    assert (out - reference).abs().max() < tolerance * reference.abs().max()
    for name, t in loaded.adapter_state_dict().items():
        assert t.dtype == torch.float32, name


@pytest.mark.parametrize("fmt, damage, message", [
    ("int8", lambda t, m: t.update({SCALES: t[SCALES].view(-1, 1)}), "must be a 1-D float16 tensor, got 2-D"),
    ("int8", lambda t, m: t.update({SCALES: t[SCALES].float()}), "must be a 1-D float16 tensor, got 1-D torch.float32"),
    ("int4", lambda t, m: t[SCALES].__setitem__(0, float("nan")), "holds NaN or infinite values"),
    ("int8", lambda t, m: t[SCALES].__setitem__(1, float("inf")), "holds NaN or infinite values"),
    ("int8", lambda t, m: t.update({"a.lora_A": t["a.lora_A"].to(torch.int16)}), "torch.int16 codes"),
    ("int4", lambda t, m: t.update({"a.lora_A": t["a.lora_A"].view(2, -1)}), "codes of rank 2"),
    ("int4", lambda t, m: m.update(shapes='{"a.lora_A": "3x5", "b.lora_B": [4, 2]}'), "lists of non-negative int"),
    ("int4", lambda t, m: m.update(shapes='[[3, 5], [4, 2]]'), "lists of non-negative integers"),
    ("int4", lambda t, m: m.update(shapes='{"a.lora_A": [3.0, 5], "b.lora_B": [4, 2]}'), "lists of non-negative"),
    ("int4", lambda t, m: m.update(shapes='{"a.lora_A": [5, 5], "b.lora_B": [4, 2]}'), "expected 13 torch.uint8"),
])
def test_quantized_files_with_bad_scales_codes_or_shapes_are_refused(fmt, damage, message):
    """Before: a 2-D scale tensor loaded and changed the outputs (broadcast), NaN scales gave NaN labels, and bad
    4-bit shapes raised a raw TypeError/RuntimeError."""
    from hello_labels.errors import CorruptFileError

    torch.manual_seed(0)
    tensors, meta = quantize_adapter({"a.lora_A": torch.randn(3, 5), "b.lora_B": torch.randn(4, 2)}, fmt)
    damage(tensors, meta)
    with pytest.raises(CorruptFileError, match=message) as err:
        dequantize_adapter(tensors, meta)
    assert "\n" not in str(err.value)
