"""The inference fast path: what a projector runs when it makes labels.

:class:`FastProjector` is an inference copy of a projector, built from its current weights without touching
them (so ``unmerge()`` and training are unaffected, whatever was called before): the LoRA deltas folded into a
deep copy of the encoder, every BatchNorm that follows a convolution folded into that convolution (torch.fx finds
the pairs, ``torch.nn.utils.fusion.fuse_conv_bn_weights`` computes the weights), TensorFlow "same" padding done
inside the convolution instead of on a padded copy of its input (:class:`SamePaddedConv`), CLIP ResNets' attention
pooling for the one token it returns (:class:`FirstTokenAttentionPool`), residual sums added into the convolution
output again after tracing made them out of place (:func:`add_in_place`), ``channels_last`` for
convolutional bases, CPU batches split so that no tensor a chunk makes outgrows :data:`CHUNK_BYTES`
(:class:`Chunker`), the head's scale and delta folded into one ``[C, D]`` matrix applied with one ``addmm``, the
call under ``inference_mode`` when no gradient is wanted, autocast to bfloat16 (float16 where bf16 is missing) on
CUDA, and ``torch.compile`` on request. Gradients still reach the input images when grad mode is on (refine).

Outputs equal the unfused float32 path up to float rounding: on the CPU at float32, logits within
:data:`TOLERANCE` relative to their largest magnitude (tested); under autocast on CUDA, to bfloat16 precision
(about 3 significant digits; not verified here). The copy costs the base's weights once more in memory. Under
``torch.nn.DataParallel`` each replica's device gets one copy, kept between calls (not verified on several GPUs).
"""
from __future__ import annotations

import copy
import logging
import operator
import sys
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..errors import HelloLabelsError
from .lora import isolate_parametrized_classes

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # float32 CPU: |fast - unfused| <= TOLERANCE * max |unfused logit| (rounding of the folds only)
_METADATA = ("ndim", "shape", "dtype", "device")  # reading these from a conv output does not use its values
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
# glibc's malloc serves a block larger than this (its largest mmap threshold on 64-bit) with fresh pages from the
# kernel, zeroed on first touch, on every call: RN50 at 224 px, batch 32, labels in 0.88x the time in chunks that
# stay below it (BENCHMARKS.md, fast path round 3)
CHUNK_BYTES = 32 * 2 ** 20


@dataclass
class FastOptions:
    """How a merged projector makes labels: ``enabled`` (the fast path; False: the unfused modules), ``compile``
    (``torch.compile``: True or a dict of its arguments), ``autocast`` (True: bf16, or fp16 where bf16 is missing,
    on CUDA only; ``"bfloat16"``/``"float16"``: that dtype on any device; False: off), ``channels_last`` (None:
    for convolutional bases, see :func:`is_convolutional`), ``chunk_bytes`` (on the CPU, not compiled: the batch
    runs in as few near-equal chunks as keep every tensor the base's modules output at most this large, measured
    once per input shape on one image; 0: whole batches; the default :data:`CHUNK_BYTES` keeps them on malloc's
    heap)."""

    enabled: bool = True
    compile: Union[bool, dict] = False
    autocast: Union[bool, str] = True
    channels_last: Optional[bool] = None
    chunk_bytes: int = CHUNK_BYTES


def merged_copy(encoder: nn.Module) -> nn.Module:
    """A deep copy of ``encoder`` in eval mode with every parametrization (LoRA delta) folded into its weight;
    ``encoder`` itself is left as it was."""
    clone = copy.deepcopy(encoder)
    isolate_parametrized_classes(clone)  # removing a parametrization must not touch the original's class
    clone.eval()  # no LoRA dropout in the folded delta
    for module in list(clone.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return clone.requires_grad_(False)


class _ConvLeaves(fx.Tracer):
    """Keeps convolutions (torch's and subclasses such as timm's same-padding conv) and the modules the fast path
    replaces whole in the graph."""

    def __init__(self):
        super().__init__()
        self.replaced = tuple(_replacements())

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, nn.Conv2d) or type(module) in self.replaced or super().is_leaf_module(module, name)


def _batch_norm(gm: fx.GraphModule, node: fx.Node):
    """``(input node, running mean, running var, eps, weight, bias)`` if ``node`` is an eval-mode 2-D batch norm:
    a ``BatchNorm2d`` module, or ``F.batch_norm`` on module buffers (timm's norm-act layers); else None."""
    if node.op == "call_module":
        bn = gm.get_submodule(node.target)
        if isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.running_mean is not None:
            return node.args[0], bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        return None
    if node.op != "call_function" or node.target is not F.batch_norm:
        return None
    args = dict(zip(_BN_ARGS, node.args), **node.kwargs)
    if args.get("training", False) is not False:
        return None
    tensors = []
    for key in ("running_mean", "running_var", "weight", "bias"):
        arg = args.get(key)
        if arg is not None and not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
            return None
        tensors.append(None if arg is None else gm.get_parameter(arg.target) if key in ("weight", "bias")
                       else gm.get_buffer(arg.target))
    if tensors[0] is None or tensors[1] is None:
        return None
    mean, var, weight, bias = tensors
    return args["input"], mean, var, args.get("eps", 1e-5), weight, bias


def _only_user(source: fx.Node, node: fx.Node) -> bool:
    """Whether ``node`` alone uses ``source``'s values (timm's norm layers also assert on ``x.ndim``)."""
    return all(user is node or (user.op == "call_function" and user.target is getattr and user.args[1] in _METADATA)
               for user in source.users)


def fold_batchnorm(encoder: nn.Module) -> Tuple[nn.Module, int]:
    """Fold each eval-mode BatchNorm2d that alone consumes a convolution's output into that convolution.

    Works on ``encoder`` in place (pass a copy) and returns the module to run (a ``torch.fx.GraphModule`` when
    something was folded) and the number folded. An encoder without BatchNorm, or one torch.fx cannot trace, is
    returned as it is."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules()):
        return encoder, 0
    try:
        graph = _ConvLeaves().trace(encoder)
    except Exception as err:  # data-dependent control flow etc.: run unfolded
        log.info("fast path: BatchNorm not folded (%s cannot be traced: %s)", type(encoder).__name__, err)
        return encoder, 0
    gm = fx.GraphModule(encoder, graph)
    folded = 0
    for node in list(gm.graph.nodes):
        found = _batch_norm(gm, node)
        if found is None:
            continue
        source, mean, var, eps, weight, bias = found
        if not (isinstance(source, fx.Node) and source.op == "call_module" and _only_user(source, node)):
            continue
        conv = gm.get_submodule(source.target)
        if not isinstance(conv, nn.Conv2d):
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, mean, var, eps, weight, bias)
        conv.requires_grad_(False)
        node.replace_all_uses_with(source)
        gm.graph.erase_node(node)
        folded += 1
    if not folded:
        return encoder, 0
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, folded


class SamePaddedConv(nn.Module):
    """timm's ``Conv2dSame`` (TensorFlow "same" padding, one more row/column after than before where the total is
    odd: stride 2 at even sizes) without writing out a padded copy of its input: where the padding is uneven the
    kernel has one more row/column, of zeros, in front, and the convolution pads both sides by the larger amount.
    The same sums (outputs equal to ``Conv2dSame``'s up to float rounding, tested), without the padded copies that
    took a sixth of EfficientNet-Lite0's time at 224 px on the CPU (BENCHMARKS.md, fast path round 2)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.stride, self.groups, self.kernel_size = conv.stride, conv.groups, conv.kernel_size
        self.weight = nn.Parameter(F.pad(conv.weight.detach(), (1, 0, 1, 0)), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        totals = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(x.shape[-2:], self.kernel_size, self.stride)]
        weight = self.weight[..., 1 - totals[0] % 2:, 1 - totals[1] % 2:]  # the zero row/column where uneven
        return F.conv2d(x, weight, self.bias, self.stride, [t - t // 2 for t in totals], 1, self.groups)


class FirstTokenAttentionPool(nn.Module):
    """open_clip's ``AttentionPool2d`` (the CLIP ResNets' pooling) computing only what it returns: the attention
    output of the first (mean) token. Its query is folded through the key projection (the key bias adds one
    constant to every score, which softmax ignores) and the value projection is applied after the weighted sum
    (the weights sum to one), so no token other than the first is projected. The same function, rounded
    differently (tested within :data:`TOLERANCE`); at 224 px RN50's pooling projected 50 tokens four times."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        heads, dim = pool.num_heads, pool.q_proj.weight.shape[0]
        scale = (dim // heads) ** -0.5
        frozen = {"positional_embedding": pool.positional_embedding,
                  "q_weight": pool.q_proj.weight * scale, "q_bias": pool.q_proj.bias * scale,
                  "k_weight": pool.k_proj.weight.reshape(heads, dim // heads, dim),
                  "v_weight": pool.v_proj.weight.reshape(heads, dim // heads, dim), "v_bias": pool.v_proj.bias,
                  "c_weight": pool.c_proj.weight, "c_bias": pool.c_proj.bias}
        for name, tensor in frozen.items():
            setattr(self, name, nn.Parameter(tensor.detach().clone(), requires_grad=False))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        tokens = x.reshape(n, c, -1).transpose(1, 2)  # [N, HW, C]
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + self.positional_embedding.to(x.dtype)
        query = F.linear(tokens[:, 0], self.q_weight, self.q_bias).reshape(n, self.heads, -1)  # [N, H, C/H]
        keys = torch.einsum("nhd,hdc->nhc", query, self.k_weight)  # the query seen from the tokens: [N, H, C]
        weights = torch.einsum("nhc,nlc->nhl", keys, tokens).softmax(-1)
        pooled = torch.einsum("nhl,nlc->nhc", weights, tokens)
        values = torch.einsum("nhc,hdc->nhd", pooled, self.v_weight).reshape(n, c) + self.v_bias
        return F.linear(values, self.c_weight, self.c_bias)


# module path, class name -> its fast-path replacement (exact class match)
_REPLACED = {("timm.layers", "Conv2dSame"): "SamePaddedConv",
             ("open_clip.modified_resnet", "AttentionPool2d"): "FirstTokenAttentionPool"}


def _replacements() -> dict:
    """``{module class: its fast-path replacement}`` for the libraries already imported (an encoder can hold
    their classes only then: nothing is imported here)."""
    return {getattr(sys.modules[path], name): globals()[fast] for (path, name), fast in _REPLACED.items()
            if path in sys.modules and hasattr(sys.modules[path], name)}


def replace_slow_modules(encoder: nn.Module) -> dict:
    """Replace (in place) each module of ``encoder`` that has a faster equivalent (:func:`_replacements`; timm's
    ``Conv2dSame`` only without dilation); ``{class name: number replaced}``."""
    table, counts = _replacements(), {}
    for name, module in list(encoder.named_modules()):
        make = table.get(type(module))
        if make is None or getattr(module, "dilation", (1, 1)) != (1, 1):
            continue
        parent, _, child = name.rpartition(".")
        setattr(encoder.get_submodule(parent), child, make(module))
        counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


def add_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, written into ``a`` where that gives the same tensor (``a``'s shape and dtype), else a new one."""
    if torch.result_type(a, b) == a.dtype and torch.broadcast_shapes(a.shape, b.shape) == a.shape:
        return a.add_(b)
    return a + b


def add_in_place(encoder: nn.Module) -> int:
    """In a traced ``encoder`` (a ``torch.fx.GraphModule``), make each ``x + y`` whose ``x`` (or ``y``) is a
    convolution's output used by nothing else add into that output (:func:`add_into`), as ``out += identity`` did
    in the module's own code before tracing turned it into ``out + identity`` (a new activation-sized tensor per
    residual block); the number changed. No one else reads the output, and a convolution's backward does not need
    it, so gradients are unaffected."""
    if not isinstance(encoder, fx.GraphModule):
        return 0
    convolutions = (nn.Conv2d, SamePaddedConv)

    def sole_conv_output(node, consumer) -> bool:  # through Identity modules (timm's norm-act layers keep them)
        while isinstance(node, fx.Node) and _only_user(node, consumer) and node.op == "call_module" and \
                isinstance(encoder.get_submodule(node.target), nn.Identity):
            node, consumer = node.args[0], node
        return (isinstance(node, fx.Node) and _only_user(node, consumer) and node.op == "call_module" and
                isinstance(encoder.get_submodule(node.target), convolutions))

    changed = 0
    for node in encoder.graph.nodes:
        if node.op != "call_function" or node.target not in (operator.add, operator.iadd, torch.add) or \
                len(node.args) != 2 or node.kwargs or not all(isinstance(a, fx.Node) for a in node.args):
            continue
        first, second = node.args
        if sole_conv_output(second, node) and not sole_conv_output(first, node):
            first, second = second, first  # float addition is commutative: the same bits either way round
        if sole_conv_output(first, node):
            node.target, node.args = add_into, (first, second)
            changed += 1
    if changed:
        encoder.recompile()
    return changed


def largest_output_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """The largest tensor output (bytes) of ``module`` or any of its submodules when it runs on ``x``, under
    ``no_grad`` (what splitting a batch bounds: convolution outputs, activations)."""
    largest = [0]

    def record(_module, _args, out):
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                largest[0] = max(largest[0], tensor.numel() * tensor.element_size())

    handles = [m.register_forward_hook(record) for m in module.modules()]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return largest[0]


def chunk_count(batch: int, image_bytes: int, limit: int) -> int:
    """The fewest near-equal chunks (``tensor_split``) of a ``batch`` in which ``image_bytes`` times a chunk's
    images stays at most ``limit`` (one image a chunk where one alone is larger; ``limit <= 0``: 1 chunk)."""
    if limit <= 0 or batch <= 1:
        return 1
    per_chunk = max(1, limit // max(image_bytes, 1))
    return -(-batch // per_chunk)


class Chunker:
    """Runs a module on CPU batches in :func:`chunk_count` chunks for ``limit`` bytes (0: whole batches), the
    module's largest output per image measured once per input shape, dtype and ``key`` (:func:`largest_output_bytes`).
    Batches on other devices run whole."""

    def __init__(self, limit: int):
        self.limit, self.image_bytes = limit, {}

    def count(self, module: nn.Module, batch: int, x: torch.Tensor, key=None) -> int:
        """How many chunks a batch of ``batch`` images shaped like ``x`` runs in (1: whole)."""
        if x.device.type != "cpu" or self.limit <= 0 or batch <= 1:
            return 1
        shape = (tuple(x.shape[1:]), x.dtype, key)
        if shape not in self.image_bytes:
            self.image_bytes[shape] = largest_output_bytes(module, x[:1])
        return chunk_count(batch, self.image_bytes[shape], self.limit)

    def __call__(self, run, module: nn.Module, x: torch.Tensor, key=None) -> torch.Tensor:
        """``run(x)`` (``module`` itself, or a compiled or wrapped copy), chunk by chunk where :meth:`count` says."""
        n = self.count(module, x.shape[0], x, key)
        return run(x) if n == 1 else torch.cat([run(part) for part in x.tensor_split(n)])


def is_convolutional(encoder: nn.Module) -> bool:
    """More than one convolution (a ViT has one, its patch embedding): the base runs faster in ``channels_last``."""
    return sum(isinstance(m, nn.Conv2d) for m in encoder.modules()) > 1


AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(option: Union[bool, str], device: torch.device) -> Optional[torch.dtype]:
    """The dtype :class:`FastOptions` ``autocast`` asks for on ``device`` (None: no autocast)."""
    if isinstance(option, str):
        if option not in AUTOCAST_DTYPES:
            raise HelloLabelsError(f"unknown autocast dtype '{option}'; expected one of {list(AUTOCAST_DTYPES)}")
        return AUTOCAST_DTYPES[option]
    if not option or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def label_dtype(options: FastOptions, device) -> str:
    """The precision labels are computed at on ``device``: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (what a
    run records, so that a resumed run on other hardware does not mix precisions)."""
    dtype = autocast_dtype(options.autocast, torch.device(device)) or torch.float32
    return str(dtype).replace("torch.", "")


class _Body(nn.Module):
    """Base-normalised images ``[B, 3, H, W]`` -> logits ``[B, C]``: the part ``torch.compile`` compiles."""

    def __init__(self, encoder: nn.Module, weight: torch.Tensor, bias: torch.Tensor, normalize: bool,
                 channels_last: bool):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("weight_t", weight.t().contiguous())  # [D, C]: logits = addmm(bias, features, W^T)
        self.register_buffer("bias", bias)
        self.normalize = normalize
        self.channels_last = channels_last

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.encoder(x)
        feats = out[0] if isinstance(out, (tuple, list)) else out
        return F.normalize(feats, dim=-1) if self.normalize else feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        weight_t, bias = self.weight_t, self.bias
        if feats.dtype != weight_t.dtype:  # autocast: addmm wants one dtype
            weight_t, bias = weight_t.to(feats.dtype), bias.to(feats.dtype)
        return torch.addmm(bias, feats, weight_t)


class FastProjector(nn.Module):
    """Images (normalised as the student sees them) -> logits ``[B, C]``, as ``projector(images)`` computes them,
    fast. :meth:`LabelProjector.fast_path` builds and caches one; it holds its own copy of the base, so later
    changes to the projector are not seen (the projector rebuilds its cached one when its weights change).
    ``options``: :class:`FastOptions` (``enabled`` is not looked at here)."""

    def __init__(self, projector, options: Optional[FastOptions] = None):
        super().__init__()
        options = options or FastOptions()
        autocast_dtype(options.autocast, torch.device("cpu"))  # an unknown dtype fails now, not at the first call
        chunk_bytes = options.chunk_bytes
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 0:
            raise HelloLabelsError(f"fast_options.chunk_bytes must be a whole number of bytes >= 0 (0: whole "
                                   f"batches), got {options.chunk_bytes!r}")
        self.config = projector.config
        self.inputs = projector.inputs  # shared: same range check, same sampling counter
        self.feature_dim = projector.base.feature_dim
        encoder = merged_copy(projector.base.encoder)
        encoder, self.folded = fold_batchnorm(encoder)
        self.channels_last = is_convolutional(encoder) if options.channels_last is None else options.channels_last
        self.replaced = replace_slow_modules(encoder)
        self.added_in_place = add_in_place(encoder)
        if self.channels_last:
            encoder = encoder.to(memory_format=torch.channels_last)
        head = projector.head
        with torch.no_grad():
            weight = head.weight.detach() * head.logit_scale.detach().exp()  # W + delta, when not merged
        self.body = _Body(encoder, weight.clone(), head.bias.detach().clone(), projector.config.normalize_features,
                          self.channels_last)
        self.autocast = options.autocast
        self.compiled = bool(options.compile)
        self.chunker = Chunker(0 if options.compile else chunk_bytes)  # a compiled body runs whole: one graph
        self.__dict__["_run"] = self.body
        if options.compile:
            kwargs = options.compile if isinstance(options.compile, dict) else {}
            self.__dict__["_run"] = torch.compile(self.body, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.body.bias.device

    @property
    def num_classes(self) -> int:
        return self.body.bias.shape[0]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Base features ``[B, D]`` as ``projector.features`` gives them, from the folded encoder at the input's
        dtype (no autocast, not compiled; refine's patch term)."""
        x = self.inputs(images)
        return x.new_zeros(0, self.feature_dim) if x.shape[0] == 0 else self.body.features(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, input_channels, H, W]`` -> float32 logits ``[B, C]`` (a normal tensor, usable in autograd
        later, even when computed under ``inference_mode``)."""
        if not torch.is_grad_enabled():
            with torch.inference_mode():
                out = self._logits(images)
            return out.clone()  # an inference tensor could not be saved for a later backward (a KL target)
        return self._logits(images)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        x = self.inputs(images)
        if x.shape[0] == 0:
            return x.new_zeros(0, self.num_classes)
        dtype = autocast_dtype(self.autocast, x.device)
        if dtype is None:
            return self.chunker(self._run, self.body, x).float()
        with torch.autocast(x.device.type, dtype=dtype):
            return self.chunker(self._run, self.body, x, key=dtype).float()

    def chunks(self, batch: int, x: torch.Tensor, dtype=None) -> int:
        """How many chunks a batch of ``batch`` images shaped like ``x`` (base input) runs in under autocast to
        ``dtype`` (None: none); 1: whole."""
        return self.chunker.count(self.body, batch, x, key=dtype)
