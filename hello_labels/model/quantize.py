"""Quantized adapter files: int8 and 4-bit LoRA/head-delta matrices with group-wise scales, as safetensors.

Each quantized tensor ``W`` is flattened and cut into groups of ``group_size`` values (the last one may be
shorter); a group stores one float16 scale ``max|w| / qmax`` and its values rounded to integers in
``[-qmax, qmax]`` (symmetric, so zero stays exactly zero: int8 ``qmax`` 127, 4-bit ``qmax`` 7). On disk, int8
codes keep ``W``'s shape; 4-bit codes are packed two per byte (low nibble first, offset by 8) into a flat uint8
tensor whose original shape is in the metadata. All scales sit in one float16 tensor ``quantization.scales``, in
the sorted order of the quantized names (a scale tensor per matrix would double the header of a 110-matrix
adapter). Only the low-rank matrices (``.lora_A``/``.lora_B``) are quantized; biases, the logit scale and stored
prototype weights are kept in float16. The format and group size sit in the safetensors metadata, so a file
describes itself.
"""
from __future__ import annotations

import json
import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..errors import BadInputError, CorruptFileError
from ..files import loads_json

# name -> (bits, values per scale group)
QUANTIZED = {"int8": (8, 128), "int4": (4, 64)}
SCALES = "quantization.scales"


def quantizable(name: str) -> bool:
    return name.endswith((".lora_A", ".lora_B"))


def _groups(values: torch.Tensor, group: int) -> torch.Tensor:
    flat = values.flatten()
    return F.pad(flat, (0, -flat.numel() % group)).view(-1, group)


def quantize_tensor(tensor: torch.Tensor, fmt: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``tensor`` -> ``(codes, scales [ceil(numel / group)] float16)``: int8 codes of ``tensor``'s shape, or a
    flat uint8 tensor with two 4-bit codes per byte."""
    bits, group = QUANTIZED[fmt]
    qmax = 2 ** (bits - 1) - 1
    numel = tensor.numel()
    groups = _groups(tensor.detach().float(), group)
    scales = (groups.abs().amax(1) / qmax).to(torch.float16)
    safe = scales.float().clamp_min(torch.finfo(torch.float16).tiny).unsqueeze(1)
    codes = (groups / safe).round().clamp(-qmax, qmax).to(torch.int8).flatten()[:numel]
    if bits == 8:
        return codes.view(tensor.shape), scales
    nibbles = F.pad(codes + 8, (0, numel % 2), value=8).to(torch.uint8)
    return nibbles[0::2] | (nibbles[1::2] << 4), scales


def dequantize_tensor(codes: torch.Tensor, scales: torch.Tensor, shape, fmt: str) -> torch.Tensor:
    """Inverse of :func:`quantize_tensor`: float32 tensor of ``shape``. Codes of another dtype, rank or count,
    and scales that are not a 1-D finite float16 tensor of the right length, are a :class:`CorruptFileError`."""
    bits, group = QUANTIZED[fmt]
    numel = math.prod(int(s) for s in shape)
    expected = (torch.int8, numel) if bits == 8 else (torch.uint8, -(-numel // 2))
    rank = len(shape) if bits == 8 else 1  # int8 codes keep the matrix's shape; 4-bit ones are packed flat
    if (codes.dtype, codes.numel(), codes.ndim) != (*expected, rank) or scales.numel() != -(-numel // group):
        raise CorruptFileError(f"quantized tensor of shape {list(shape)} has {codes.numel()} {codes.dtype} codes "
                               f"of rank {codes.ndim} and {scales.numel()} scales; expected {expected[1]} "
                               f"{expected[0]} codes of rank {rank} and {-(-numel // group)} scales")
    _check_scales(scales)
    if bits == 4:
        low, high = (codes & 0xF).to(torch.int8) - 8, (codes >> 4).to(torch.int8) - 8
        codes = torch.stack([low, high], 1).flatten()[:numel]
    values = _groups(codes.float(), group) * scales.float().unsqueeze(1)
    return values.flatten()[:numel].view(*shape)


def _check_scales(scales: torch.Tensor) -> None:
    if scales.ndim != 1 or scales.dtype != torch.float16:
        raise CorruptFileError(f"quantized adapter file: '{SCALES}' must be a 1-D float16 tensor, got "
                               f"{scales.ndim}-D {scales.dtype}")
    if not torch.isfinite(scales).all():
        raise CorruptFileError(f"quantized adapter file: '{SCALES}' holds NaN or infinite values")


def _shapes(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str], bits: int) -> Dict[str, list]:
    """Each quantized matrix's shape: int8 codes carry theirs, 4-bit files list them in the metadata."""
    if bits == 8:
        return {n: list(t.shape) for n, t in tensors.items() if quantizable(n)}
    try:
        shapes = loads_json(metadata["shapes"])
    except (KeyError, ValueError) as err:
        raise CorruptFileError("4-bit adapter file lacks the shapes of its tensors") from err
    if not (isinstance(shapes, dict) and all(
            isinstance(s, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in s)
            for s in shapes.values())):
        raise CorruptFileError(f"4-bit adapter file: its 'shapes' metadata must map names to lists of "
                               f"non-negative integers, got {metadata['shapes'][:80]!r}")
    return shapes


def quantize_adapter(tensors: Dict[str, torch.Tensor], fmt: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Adapter tensors -> (file tensors, safetensors metadata) in format ``fmt`` (``int8`` or ``int4``)."""
    if fmt not in QUANTIZED:
        raise BadInputError(f"unknown quantized format '{fmt}'; expected one of {list(QUANTIZED)}")
    out, shapes, scales = {}, {}, []
    for name in sorted(tensors):
        tensor = tensors[name]
        if quantizable(name):
            out[name], scale = quantize_tensor(tensor, fmt)
            scales.append(scale)
            shapes[name] = list(tensor.shape)
        else:
            out[name] = tensor.detach().to(torch.float16)
    if scales:
        out[SCALES] = torch.cat(scales)
    bits, group = QUANTIZED[fmt]
    meta = {"quantization": fmt, "group_size": str(group)}
    if bits == 4:  # packed codes lose the shape; int8 codes keep it
        meta["shapes"] = json.dumps(shapes, sort_keys=True, separators=(",", ":"))
    return out, meta


def dequantize_adapter(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> Dict[str, torch.Tensor]:
    """File tensors + metadata written by :func:`quantize_adapter` -> float32 adapter tensors."""
    fmt = (metadata or {}).get("quantization")
    if fmt is None:
        return tensors
    if fmt not in QUANTIZED or str(QUANTIZED[fmt][1]) != metadata.get("group_size"):
        raise CorruptFileError(f"adapter file uses quantization '{fmt}' (group size {metadata.get('group_size')}), "
                               f"which this version cannot read")
    bits, group = QUANTIZED[fmt]
    shapes = _shapes(tensors, metadata, bits)
    names = sorted(n for n in tensors if quantizable(n))
    counts = [-(-math.prod(shapes[n]) // group) if n in shapes else 0 for n in names]
    scales = tensors.get(SCALES)
    if names and (scales is None or scales.numel() != sum(counts) or any(n not in shapes for n in names)):
        raise CorruptFileError(f"quantized adapter file: its scales ({0 if scales is None else scales.numel()}) or "
                               f"shapes do not match its {len(names)} matrices")
    if names:
        _check_scales(scales)
    out = {n: t.float() for n, t in tensors.items() if n != SCALES and not quantizable(n)}
    for name, scale in zip(names, torch.split(scales, counts) if names else []):
        out[name] = dequantize_tensor(tensors[name], scale, shapes[name], fmt)
    return out


def quantized_bytes(tensors: Dict[str, torch.Tensor], fmt: str) -> int:
    """Tensor-data bytes of the adapter in ``fmt`` (codes + scales + float16 rest), computed from shapes."""
    bits, group = QUANTIZED[fmt]
    total = 0
    for name, tensor in tensors.items():
        if quantizable(name):
            total += -(-tensor.numel() * bits // 8) + 2 * -(-tensor.numel() // group)
        else:
            total += tensor.numel() * 2
    return total
