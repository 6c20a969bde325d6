"""The inference engine: what makes labels, built once, explicitly, by :meth:`LabelProjector.for_labels`.

:class:`FastProjector` runs a projector's current weights through the rewrites of :data:`PASSES`, applied in
this order to the encoder (a copy of it, or with ``copy=False`` the projector's own, consumed):

1. :func:`merge_deltas`: every parametrization (LoRA delta) folded into its weight, without dropout;
2. :func:`fold_batchnorm`: every BatchNorm that follows a convolution folded into it (torch.fx finds the pairs,
   ``torch.nn.utils.fusion.fuse_conv_bn_weights`` computes the weights);
3. :func:`replace_slow_modules`: TensorFlow "same" padding inside the convolution instead of on a padded copy of
   its input (:class:`SamePaddedConv`), CLIP ResNets' attention pooling for the one token it returns
   (:class:`FirstTokenAttentionPool`);
4. :func:`add_in_place`: residual sums added into the convolution output again after tracing made them out of
   place;
5. :func:`to_layout`: ``channels_last`` for convolutional bases.

Then the head's scale and delta become one ``[C, D]`` matrix applied with one ``addmm`` (:func:`head_matrix`), CPU
batches run in chunks so that no tensor a chunk makes outgrows :data:`CHUNK_BYTES` (:class:`Chunker`), the call
runs under ``inference_mode`` when no gradient is wanted, autocast to bfloat16 (float16 where bf16 is missing) on
CUDA, and ``torch.compile`` on request. Gradients still reach the input images when grad mode is on (refine).

Each rewrite applies only where the torch.fx graph shows that it changes nothing else: a BatchNorm folds into a
convolution with torch's forward and no hook, reached once in the graph, its output read by that norm alone; a module
is replaced only where the graph does nothing but call it; a sum goes in place only into a convolution output nothing
else reads; batches split only where no norm of the images uses batch statistics and one image alone gives what it
gives beside another (:func:`mixes_images`). Code torch.fx cannot trace gets none of these; tracing keeps ``+=``.

Outputs equal the unfused float32 path up to float rounding: on the CPU at float32, logits within
:data:`TOLERANCE` relative to their largest magnitude (tested); under autocast on CUDA, to bfloat16 precision
(about 3 significant digits; not verified here). Built with ``copy=True`` (the default) it costs the base's weights
once more in memory; ``copy=False`` rewrites the projector's own encoder and leaves that projector unable to run it.
"""
from __future__ import annotations

import copy as _copy
import logging
import operator
import sys
from collections import Counter
from dataclasses import dataclass, field
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
# the batch-norm functions a traced graph may call -> the names of their positional arguments
_NORM_FUNCTIONS = {
    F.batch_norm: ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    torch.batch_norm: ("input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps")}
# glibc's malloc serves a block larger than this (its largest mmap threshold on 64-bit) with fresh pages from the
# kernel, zeroed on first touch, on every call: RN50 at 224 px, batch 32, labels in 0.88x the time in chunks that
# stay below it (BENCHMARKS.md, fast path round 3)
CHUNK_BYTES = 32 * 2 ** 20


@dataclass
class FastOptions:
    """How :meth:`LabelProjector.for_labels` builds the engine: ``compile`` (``torch.compile``: True or a dict of
    its arguments), ``autocast`` (True: bf16, or fp16 where bf16 is missing, on CUDA only; ``"bfloat16"`` /
    ``"float16"``: that dtype on any device; False: off), ``channels_last`` (None: for convolutional bases, see
    :func:`is_convolutional`), ``chunk_bytes`` (on the CPU, not compiled: the batch
    runs in as few near-equal chunks as keep every tensor the base's modules output at most this large, measured
    once per input shape on one image; 0: whole batches; the default :data:`CHUNK_BYTES` keeps them on malloc's
    heap)."""

    compile: Union[bool, dict] = False
    autocast: Union[bool, str] = True
    channels_last: Optional[bool] = None
    chunk_bytes: int = CHUNK_BYTES


def merge_deltas(encoder: nn.Module) -> int:
    """Pass 1: fold every parametrization (LoRA delta) of ``encoder`` into its weight, in place, without dropout
    (the encoder goes to eval mode); the number of weights merged. Call it on a copy (:func:`encoder_copy`) to keep
    the original as it is."""
    encoder.eval()  # no LoRA dropout in the folded delta
    merged = 0
    for module in list(encoder.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                merged += 1
    encoder.requires_grad_(False)
    return merged


def encoder_copy(encoder: nn.Module) -> nn.Module:
    """A deep copy of ``encoder`` whose passes leave ``encoder`` untouched (its parametrized classes its own)."""
    clone = _copy.deepcopy(encoder)
    isolate_parametrized_classes(clone)  # removing a parametrization must not touch the original's class
    return clone


def merged_copy(encoder: nn.Module) -> nn.Module:
    """A deep copy of ``encoder`` in eval mode with every parametrization (LoRA delta) folded into its weight;
    ``encoder`` itself is left as it was."""
    clone = encoder_copy(encoder)
    merge_deltas(clone)
    return clone


# the augmented assignments a traced graph keeps in place: torch.fx writes ``operator.iadd`` back as ``a += b``
AUGMENTED = tuple(getattr(operator, f"i{name}") for name in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift", "rshift"))


class _AugmentedProxy(fx.Proxy):
    """Records ``a += b`` (and the other augmented assignments) as Python runs it on a tensor, in place, where a
    plain proxy records ``a = a + b``: code that still reads ``a``'s tensor under another name sees the sum, as
    in the module itself."""


for _function in AUGMENTED:
    setattr(_AugmentedProxy, f"__{_function.__name__}__", lambda self, other, _function=_function:
            self.tracer.create_proxy("call_function", _function, (self, other), {}))


class _ConvLeaves(fx.Tracer):
    """Keeps convolutions (torch's and subclasses such as timm's same-padding conv) and the modules the fast path
    replaces whole in the graph, and augmented assignments in place (:class:`_AugmentedProxy`)."""

    def __init__(self):
        super().__init__()
        self.replaced = tuple(_replacements())

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, nn.Conv2d) or type(module) in self.replaced or super().is_leaf_module(module, name)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _AugmentedProxy(node, self)


def trace(encoder: nn.Module) -> Optional[fx.GraphModule]:
    """``encoder`` as a ``torch.fx.GraphModule`` (:class:`_ConvLeaves`; itself if it is one), or None where
    torch.fx cannot trace it (data-dependent control flow etc.)."""
    if isinstance(encoder, fx.GraphModule):
        return encoder
    tracer = _ConvLeaves()
    try:
        return fx.GraphModule(encoder, tracer.trace(encoder))
    except Exception as err:
        log.info("fast path: %s cannot be traced (%s): no rewrite that needs its graph", type(encoder).__name__, err)
        return None
    finally:  # torch.fx's tracer sits in a reference cycle: it would keep the encoder and its tensors (the ones a
        tracer.__dict__.clear()  # pass replaces too) alive until the garbage collector runs


def _attr(gm: fx.GraphModule, target: str):
    """What the dotted ``target`` of a ``get_attr`` node names in ``gm``, and the module that holds it."""
    owner, _, name = target.rpartition(".")
    holder = gm.get_submodule(owner)
    return getattr(holder, name), holder


def reached(gm: fx.GraphModule) -> Tuple[Counter, Counter]:
    """``(uses, calls)`` by module ``id``: how often ``gm``'s graph reaches each module (called, itself or inside a
    called module, or an attribute of it read), and how often it calls the module itself."""
    uses, calls = Counter(), Counter()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            calls[id(module)] += 1
            uses.update(id(m) for _, m in module.named_modules(remove_duplicate=False))
        elif node.op == "get_attr":
            value, holder = _attr(gm, node.target)
            if isinstance(value, nn.Module):
                uses.update(id(m) for _, m in value.named_modules(remove_duplicate=False))
            else:
                uses[id(holder)] += 1
    return uses, calls


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _plain_conv(module: nn.Module) -> bool:
    """A convolution running torch's forward (or timm's same-padding one, or :class:`SamePaddedConv`'s), no hook:
    its output is a new tensor, linear in its weight and bias."""
    cls = type(module)
    if cls.forward is nn.Conv2d.forward:
        return cls._conv_forward is nn.Conv2d._conv_forward and not _hooked(module)
    same = [c.forward for c in _replacements() if issubclass(c, nn.Conv2d)] + [SamePaddedConv.forward]
    return cls.forward in same and not _hooked(module)


def _batch_statistics(module: nn.Module) -> bool:
    """A batch norm module that normalises with the batch's statistics (training mode, or no running statistics)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or module.running_mean is None or module.running_var is None)


def _norm_args(node: fx.Node) -> Optional[dict]:
    """The arguments by name of a call to a batch-norm function (:data:`_NORM_FUNCTIONS`), else None."""
    names = _NORM_FUNCTIONS.get(node.target) if node.op == "call_function" else None
    return None if names is None else dict(zip(names, node.args), **node.kwargs)


def _batch_norm(gm: fx.GraphModule, node: fx.Node):
    """``(input node, running mean, running var, eps, weight, bias)`` if ``node`` is an eval-mode 2-D batch norm
    with running statistics: a ``BatchNorm2d`` module (torch's forward, no hook), or ``F.batch_norm`` on module
    tensors (timm's norm-act layers); else None."""
    if node.op == "call_module":
        bn = gm.get_submodule(node.target)
        if isinstance(bn, nn.BatchNorm2d) and type(bn).forward is nn.BatchNorm2d.forward and \
                not _batch_statistics(bn) and not _hooked(bn):
            return node.args[0], bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        return None
    args = _norm_args(node)
    if args is None or args.get("training", False) is not False:
        return None
    tensors = []
    for key in ("running_mean", "running_var", "weight", "bias"):
        arg = args.get(key)
        if arg is not None and not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
            return None
        tensors.append(None if arg is None else _attr(gm, arg.target)[0])
    if tensors[0] is None or tensors[1] is None:
        return None
    mean, var, weight, bias = tensors
    return args["input"], mean, var, args.get("eps", 1e-5), weight, bias


def _only_user(source: fx.Node, node: fx.Node) -> bool:
    """Whether ``node`` alone uses ``source``'s values (timm's norm layers also assert on ``x.ndim``)."""
    return all(user is node or (user.op == "call_function" and user.target is getattr and user.args[1] in _METADATA)
               for user in source.users)


def _conv_called(gm: fx.GraphModule, node) -> Optional[nn.Conv2d]:
    """The ``Conv2d`` that ``node`` calls, else None."""
    module = gm.get_submodule(node.target) if isinstance(node, fx.Node) and node.op == "call_module" else None
    return module if isinstance(module, nn.Conv2d) else None


def _foldable(conv: nn.Conv2d, uses: Counter, call: fx.Node, norm: fx.Node) -> bool:
    """Whether the batch norm ``norm`` of ``conv``'s output (node ``call``) can fold into ``conv`` and change
    nothing else: a plain convolution (:func:`_plain_conv`) that the graph reaches only in ``call``, whose output
    ``norm`` alone reads."""
    return _plain_conv(conv) and uses[id(conv)] == 1 and _only_user(call, norm)


def fold_batchnorm(encoder: nn.Module) -> Tuple[nn.Module, int]:
    """Fold each eval-mode BatchNorm2d that alone reads a convolution's output into that convolution, where the
    convolution is called once and nothing else reads it (:func:`_foldable`).

    Works on ``encoder`` in place (pass a copy) and returns the module to run (a ``torch.fx.GraphModule`` when
    something was folded) and the number folded. An encoder without BatchNorm, or one torch.fx cannot trace, is
    returned as it is."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules()):
        return encoder, 0
    gm = trace(encoder)
    if gm is None:
        return encoder, 0
    uses, _ = reached(gm)
    folded = refused = 0
    for node in list(gm.graph.nodes):
        found = _batch_norm(gm, node)
        if found is None:
            continue
        source, mean, var, eps, weight, bias = found
        conv = _conv_called(gm, source)
        if conv is None:
            continue
        if not _foldable(conv, uses, source, node):
            refused += 1
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, mean, var, eps, weight, bias)
        conv.requires_grad_(False)
        node.replace_all_uses_with(source)
        gm.graph.erase_node(node)
        folded += 1
    if refused:
        log.info("fast path: %d BatchNorm(s) after a convolution left unfolded (the convolution is called or read "
                 "elsewhere, has hooks or its own forward, or its output has other readers)", refused)
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


def _replaceable(module: nn.Module, uses: Counter, calls: Counter) -> bool:
    """Whether swapping ``module`` for its fast equivalent changes nothing: the graph only calls it (never reads
    its tensors or calls it inside another module), no hook, and no dilation (timm's ``Conv2dSame``)."""
    return uses[id(module)] == calls[id(module)] and not _hooked(module) and \
        getattr(module, "dilation", (1, 1)) == (1, 1)


def replace_slow_modules(encoder: nn.Module) -> dict:
    """Replace (in place) each module of ``encoder`` that has a faster equivalent (:func:`_replacements`) where
    its graph shows that safe (:func:`_replaceable`; none where torch.fx cannot trace ``encoder``);
    ``{class name: number replaced}``."""
    table, counts = _replacements(), {}
    found = [(name, module) for name, module in encoder.named_modules() if type(module) in table]
    gm = trace(encoder) if found else None
    if gm is None:
        return counts
    uses, calls = reached(gm)
    for name, module in found:
        if not _replaceable(module, uses, calls):
            log.info("fast path: %s (%s) kept (read other than by a call, hooked or dilated)", name,
                     type(module).__name__)
            continue
        parent, _, child = name.rpartition(".")
        setattr(encoder.get_submodule(parent), child, table[type(module)](module))
        counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


def add_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, written into ``a`` where that gives the same tensor (``a``'s shape and dtype), else a new one."""
    if torch.result_type(a, b) == a.dtype and torch.broadcast_shapes(a.shape, b.shape) == a.shape:
        return a.add_(b)
    return a + b


def _sole_conv_output(gm: fx.GraphModule, node, reader: fx.Node) -> bool:
    """Whether ``node`` is the output of a plain convolution (:func:`_plain_conv`), through ``nn.Identity`` modules
    (timm's norm-act layers keep them), that ``reader`` alone reads: writing into it changes nothing else (and a
    convolution's backward does not need its output)."""
    def called(n, kind) -> bool:
        return isinstance(n, fx.Node) and n.op == "call_module" and kind(gm.get_submodule(n.target))

    def identity(module) -> bool:
        return type(module).forward is nn.Identity.forward and not _hooked(module)

    while called(node, identity) and _only_user(node, reader):
        node, reader = node.args[0], node
    return called(node, _plain_conv) and _only_user(node, reader)


def add_in_place(encoder: nn.Module) -> int:
    """In a traced ``encoder`` (a ``torch.fx.GraphModule``), make each ``x + y`` whose ``x`` (or ``y``) is a
    convolution output nothing else reads (:func:`_sole_conv_output`) add into that output (:func:`add_into`), as
    ``out += identity`` does, instead of making a new activation-sized tensor per residual block. Returns the
    number of sums that add into a convolution output: those changed, and the module's own ``out += identity``
    (kept in place by the trace)."""
    if not isinstance(encoder, fx.GraphModule):
        return 0
    changed = in_place = 0
    for node in encoder.graph.nodes:
        if node.op != "call_function" or len(node.args) != 2 or node.kwargs or \
                not all(isinstance(a, fx.Node) for a in node.args):
            continue
        first, second = node.args
        if node.target is operator.iadd:
            in_place += _sole_conv_output(encoder, first, node)
            continue
        if node.target not in (operator.add, torch.add):
            continue
        if _sole_conv_output(encoder, second, node) and not _sole_conv_output(encoder, first, node):
            first, second = second, first  # float addition is commutative: the same bits either way round
        if _sole_conv_output(encoder, first, node):
            node.target, node.args = add_into, (first, second)
            changed += 1
    if changed:
        encoder.recompile()
    return changed + in_place


def batch_statistics(encoder: nn.Module) -> Optional[str]:
    """Why ``encoder``'s output for one image may depend on the other images of its batch, as its graph shows: a
    batch norm of the images that normalises with the batch's statistics (a BatchNorm without running statistics
    or in training mode, ``F.batch_norm(training=True)``), or no graph (code torch.fx cannot trace). None where
    the graph shows neither; what it cannot name (a mean over the batch) is :func:`mixes_images`'s to find."""
    gm = trace(encoder)
    if gm is None:
        return "torch.fx cannot trace it"
    images = set()  # the nodes whose values depend on the images
    for node in gm.graph.nodes:
        if node.op != "placeholder" and not any(n in images for n in node.all_input_nodes):
            continue
        images.add(node)
        if node.op == "call_module":
            for name, module in gm.get_submodule(node.target).named_modules(prefix=node.target):
                if _batch_statistics(module):
                    return f"{name} ({type(module).__name__}) normalises with the batch's statistics"
        args = _norm_args(node)
        if args is not None and (args.get("training", False) is not False or args.get("running_mean") is None or
                                 args.get("running_var") is None):
            return f"{node.name} ({node.target.__name__}) normalises with the batch's statistics"
    return None


def mixes_images(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module``'s output for the first image of ``x`` changes, beyond :data:`TOLERANCE` of its largest
    magnitude, when a second (random) image shares its batch: what running a batch in chunks would change. Runs
    in float32 without autocast and without gradients."""
    one = x[:1]
    other = torch.randn(one.shape, generator=torch.Generator().manual_seed(0)).to(one)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        alone, beside = module(one), module(torch.cat([one, other]))[:1]
    return not bool((beside - alone).abs().max() <= TOLERANCE * alone.abs().max())


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
    Batches on other devices run whole, and so do those of a module that :func:`mixes_images` (probed with the
    measurement)."""

    def __init__(self, limit: int):
        self.limit, self.image_bytes = limit, {}

    def count(self, module: nn.Module, batch: int, x: torch.Tensor, key=None) -> int:
        """How many chunks a batch of ``batch`` images shaped like ``x`` runs in (1: whole)."""
        if x.device.type != "cpu" or self.limit <= 0 or batch <= 1:
            return 1
        shape = (tuple(x.shape[1:]), x.dtype, key)
        if shape not in self.image_bytes:  # None: the module mixes images, its batches run whole
            mixes = mixes_images(module, x)
            if mixes:
                log.info("fast path: batches of %s run whole (an image's output depends on its batch)",
                         type(module).__name__)
            self.image_bytes[shape] = None if mixes else largest_output_bytes(module, x[:1])
        image_bytes = self.image_bytes[shape]
        return 1 if image_bytes is None else chunk_count(batch, image_bytes, self.limit)

    def __call__(self, run, module: nn.Module, x: torch.Tensor, key=None) -> torch.Tensor:
        """``run(x)`` (``module`` itself, or a compiled or wrapped copy), chunk by chunk where :meth:`count` says."""
        n = self.count(module, x.shape[0], x, key)
        return run(x) if n == 1 else torch.cat([run(part) for part in x.tensor_split(n)])


def is_convolutional(encoder: nn.Module) -> bool:
    """More than one convolution (a ViT has one, its patch embedding): the base runs faster in ``channels_last``."""
    return sum(isinstance(m, (nn.Conv2d, SamePaddedConv)) for m in encoder.modules()) > 1


def to_layout(encoder: nn.Module, channels_last: Optional[bool] = None) -> Tuple[nn.Module, bool]:
    """Pass 5: ``encoder`` in ``channels_last`` (None: where :func:`is_convolutional`), and whether it is."""
    channels_last = is_convolutional(encoder) if channels_last is None else channels_last
    return (encoder.to(memory_format=torch.channels_last) if channels_last else encoder), channels_last


@dataclass
class Rewrites:
    """What :func:`rewrite` did to an encoder: the module to run and each pass's count or choice."""

    encoder: nn.Module
    merged: int = 0
    folded: int = 0
    replaced: dict = field(default_factory=dict)
    added_in_place: int = 0
    channels_last: bool = False


def _merge_pass(done: Rewrites, options: "FastOptions") -> None:
    done.merged = merge_deltas(done.encoder)


def _fold_pass(done: Rewrites, options: "FastOptions") -> None:
    done.encoder, done.folded = fold_batchnorm(done.encoder)


def _replace_pass(done: Rewrites, options: "FastOptions") -> None:
    done.replaced = replace_slow_modules(done.encoder)


def _add_pass(done: Rewrites, options: "FastOptions") -> None:
    done.added_in_place = add_in_place(done.encoder)


def _layout_pass(done: Rewrites, options: "FastOptions") -> None:
    done.encoder, done.channels_last = to_layout(done.encoder, options.channels_last)


# the encoder rewrites, in the order they run (see the module docstring); each also runs alone
PASSES = (("merge", _merge_pass), ("fold batchnorm", _fold_pass), ("replace modules", _replace_pass),
          ("add in place", _add_pass), ("layout", _layout_pass))


def rewrite(encoder: nn.Module, options: Optional["FastOptions"] = None) -> Rewrites:
    """Run :data:`PASSES` on ``encoder`` in place (pass a copy to keep it) with ``options``'s ``channels_last``."""
    done, options = Rewrites(encoder), options or FastOptions()
    for _, apply in PASSES:
        apply(done, options)
    return done


def head_matrix(head: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """The head as one matrix: ``(W [C, D], bias [C])`` with its delta (when not merged) and scale folded in,
    copies (logits ``= features @ W.T + bias``)."""
    with torch.no_grad():
        weight = head.weight.detach() * head.logit_scale.detach().exp()  # W + delta, when not merged
    return weight.clone(), head.bias.detach().clone()


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
    fast. :meth:`LabelProjector.for_labels` builds one. ``copy=True``: from a copy of the projector's current
    weights (the projector is untouched, and later changes to it are not seen); ``copy=False``: the projector's own
    encoder goes through :data:`PASSES` (one copy of the base's weights in memory), and that projector can no longer
    run it. ``options``: :class:`FastOptions`."""

    def __init__(self, projector, options: Optional[FastOptions] = None, copy: bool = True):
        super().__init__()
        options = options or FastOptions()
        autocast_dtype(options.autocast, torch.device("cpu"))  # an unknown dtype fails now, not at the first call
        chunk_bytes = options.chunk_bytes
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 0:
            raise HelloLabelsError(f"chunk_bytes must be a whole number of bytes >= 0 (0: whole batches), got "
                                   f"{options.chunk_bytes!r}")
        self.config = projector.config
        self.inputs = _copy.deepcopy(projector.inputs) if copy else projector.inputs
        self.feature_dim = projector.base.feature_dim
        done = rewrite(encoder_copy(projector.base.encoder) if copy else projector.base.encoder, options)
        self.merged, self.folded, self.replaced = done.merged, done.folded, done.replaced
        self.added_in_place, self.channels_last = done.added_in_place, done.channels_last
        self.whole_batches = batch_statistics(done.encoder)  # why batches never run in chunks (None: no reason)
        if self.whole_batches:
            log.info("fast path: batches run whole (%s)", self.whole_batches)
        weight, bias = head_matrix(projector.head)
        self.body = _Body(done.encoder, weight, bias, projector.config.normalize_features, self.channels_last)
        self.autocast = options.autocast
        self.compiled = bool(options.compile)
        # a compiled body runs whole (one graph), and so does a base whose images share batch statistics
        self.chunker = Chunker(0 if options.compile or self.whole_batches else chunk_bytes)
        if options.compile:
            kwargs = options.compile if isinstance(options.compile, dict) else {}
            self.__dict__["_compiled"] = torch.compile(self.body, **kwargs)

    def label_dtype(self, device=None) -> str:
        """The precision labels are computed at on ``device`` (default: this engine's): see :func:`label_dtype`."""
        return label_dtype(FastOptions(autocast=self.autocast), device or self.device)

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
        # a DataParallel replica runs its own body (the compiled one holds the original's)
        run = self.body if getattr(self, "_is_replica", False) else self.__dict__.get("_compiled", self.body)
        dtype = autocast_dtype(self.autocast, x.device)
        if dtype is None:
            return self.chunker(run, self.body, x).float()
        with torch.autocast(x.device.type, dtype=dtype):
            return self.chunker(run, self.body, x, key=dtype).float()

    def chunks(self, batch: int, x: torch.Tensor, dtype=None) -> int:
        """How many chunks a batch of ``batch`` images shaped like ``x`` (base input) runs in under autocast to
        ``dtype`` (None: none); 1: whole."""
        return self.chunker.count(self.body, batch, x, key=dtype)
