"""Per-aten-op counting rules: FLOPs, how the op reads and writes memory, and its fusion class.

FLOPs of the matmul family and of attention come from `torch.utils.flop_counter` (the same
formulas `FlopCounterMode` uses), plus the CPU flash-attention variant torch's registry lacks.
Everything else costs `memwall.count.POINTWISE_FLOPS`-style constants per element, so the trace
and the closed form count alike. An op with no rule here is reported, never counted as zero
silently.
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter as _fc

from memwall.count import POINTWISE_FLOPS
from memwall.trace import layers

aten = torch.ops.aten


def _cpu_flash_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Same formula as torch's `sdpa_flop` (QK^T and PV, GQA aware; causal counted as full)."""
    return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict:
    extra = {}
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None and cpu_flash not in _fc.flop_registry:
        extra[cpu_flash] = _cpu_flash_flop
    return extra


# What memwall adds to torch's registry; pass as `FlopCounterMode(custom_mapping=...)` to make
# torch's own counter count the same attention FLOPs on CPU.
EXTRA_FLOP_FORMULAS: dict = _extra_formulas()
# The callable registry, exactly as FlopCounterMode builds it (shape-wrapped).
MATMUL_REGISTRY: dict = {
    **_fc.flop_registry,
    **{k: _fc.shape_wrapper(v) for k, v in EXTRA_FLOP_FORMULAS.items()},
}


def flop_counter_mode() -> _fc.FlopCounterMode:
    """torch's FlopCounterMode with memwall's extra formulas, silent: the cross-check."""
    return _fc.FlopCounterMode(display=False, custom_mapping=dict(EXTRA_FLOP_FORMULAS))


def _names(*packets: str) -> set[str]:
    return set(packets)


ATTENTION = _names(
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_flash_attention_forward",
    "_efficient_attention_forward",
)
MATMUL_BIAS = _names("addmm", "baddbmm")  # the bias / beta*C add is pointwise work on top

# FLOPs per output element of pointwise-class ops (arithmetic, activations, norms, softmax).
_P = POINTWISE_FLOPS
PER_OUTPUT: dict[str, float] = {
    **dict.fromkeys(
        [
            "add",
            "sub",
            "rsub",
            "mul",
            "div",
            "pow",
            "neg",
            "tanh",
            "rsqrt",
            "sqrt",
            "exp",
            "log",
            "log1p",  # Llama 4's attention temperature
            "reciprocal",
            "abs",
            "sin",
            "cos",
            "erf",
            "sign",
            "floor",
            "floor_divide",  # Llama 4's chunked-attention mask (position // chunk)
            "ceil",
            "round",
            "clamp",
            "clamp_min",
            "clamp_max",
            "maximum",
            "minimum",
            "where",
            "masked_fill",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "logical_and",
            "logical_or",
            "logical_not",
            "bitwise_and",
            "bitwise_or",
            "bitwise_not",
            "remainder",
            "fmod",
        ],
        1,
    ),
    "polar": 4,  # abs * (cos(angle) + i sin(angle)): the complex rotary table (DeepSeek-V2)
    "addcmul": 2,
    "addcdiv": 2,
    "lerp": 2,
    "relu": _P["relu"],
    "gelu": _P["gelu"],
    "silu": _P["silu"],
    "sigmoid": _P["silu"] - 1,  # 1 / (1 + exp(-x)): silu without its final multiply
    "softmax": _P["softmax"],
    "_softmax": _P["softmax"],
    "_safe_softmax": _P["softmax"],
    "_log_softmax": _P["softmax"],
    "native_layer_norm": _P["layernorm"],
    **layers.ACTIVATIONS,
}
# Reductions along a dimension: one FLOP per input element.
REDUCTIONS = _names(
    "sum",
    "mean",
    "amax",
    "amin",
    "max",
    "min",
    "prod",
    "argmax",
    "argmin",
    "any",
    "all",
    "cumsum",
    "topk",
    "sort",
    "argsort",
    "aminmax",
    "nonzero",  # selection: ~1 compare per input element
)
# Data movement with no arithmetic: casts, copies, concatenation, cache writes, creation.
ZERO_FLOP_MOVES = _names(
    "_to_copy",
    "clone",
    "copy",
    "copy_",
    "cat",
    "stack",
    "index_copy",
    "index_copy_",
    "index_put",
    "index_put_",
    "slice_scatter",
    "select_scatter",
    "fill",
    "fill_",
    "zero_",
    "masked_fill_",
    "repeat",
    "lift_fresh_copy",
    "tril",  # keep or zero each element by its position: masks
    "triu",
    "expand_copy",
    "_unsafe_index_put",
    "alias_copy",
    *layers.MOVES,
)
CREATION = _names(
    "arange",
    "zeros",
    "ones",
    "full",
    "empty",
    "empty_strided",
    "scalar_tensor",
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
    "new_empty_strided",
)
# Gathers: a kernel of their own (not fused), reading only the rows they pick.
GATHERS = _names(
    "embedding", "index_select", "index", "_unsafe_index", "gather", *layers.EMBEDDING_BAGS
)
# Ops that only read a scalar back to Python; no arithmetic.
SCALAR_READS = _names("_local_scalar_dense", "is_nonzero", "equal")
# Metadata queries that never touch data (torch's FlopCounterMode skips them too).
METADATA = {
    aten.sym_is_contiguous.default,
    aten.as_strided_.default,  # restrides a tensor in place: metadata only
    aten.is_contiguous.default,
    aten.is_contiguous.memory_format,
    aten.is_strides_like_format.default,
    aten.is_non_overlapping_and_dense.default,
    aten.size.default,
    aten.sym_size.default,
    aten.stride.default,
    aten.sym_stride.default,
    aten.storage_offset.default,
    aten.sym_storage_offset.default,
    aten.numel.default,
    aten.sym_numel.default,
    aten.dim.default,
    torch.ops.prim.layout.default,
    torch.ops.prim.device.default,
}
# In-place ops that overwrite (part of) their destination without reading it.
OVERWRITES = _names(
    "copy_",
    "fill_",
    "zero_",
    "index_copy_",
    "index_put_",
    "index_fill_",
    "scatter_",
    "_unsafe_index_put",
)
# Writes of a few elements into a destination: bytes are the elements written.
SCATTERS = _names(
    "index_copy_",
    "index_copy",
    "index_put_",
    "index_put",
    "_unsafe_index_put",
    "index_fill_",
    "scatter_",
    "scatter",
    "scatter_add_",
    "scatter_add",
    "index_add_",
    "index_add",
    "slice_scatter",
    "select_scatter",
)


def _base(packet: str) -> str:
    """`add_` -> `add`: the in-place variant costs what the functional one does."""
    return packet[:-1] if packet.endswith("_") and not packet.startswith("_") else packet


def op_class(packet: str) -> str:
    """matmul | conv | attention | gather | pool | pointwise | scalar | other (other: no rule;
    every class but pointwise is a kernel of its own)."""
    if packet in ATTENTION:
        return "attention"
    if packet in {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "matmul", "dot", "mv", "addmv"}:
        return "matmul"
    if packet in layers.CONVOLUTIONS:
        return "conv"
    if packet in layers.SPATIAL:
        return "pool"
    if packet in GATHERS:
        return "gather"
    if packet in SCALAR_READS:
        return "scalar"
    b = _base(packet)
    if (
        b in PER_OUTPUT
        or packet in PER_OUTPUT
        or b in REDUCTIONS
        or packet in ZERO_FLOP_MOVES
        or b in ZERO_FLOP_MOVES
        or packet in CREATION
        or packet in SCATTERS
        or packet in layers.NORMS
    ):
        return "pointwise"
    return "other"


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _first_tensor(xs) -> torch.Tensor | None:
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x
        if isinstance(x, list | tuple):
            t = _first_tensor(x)
            if t is not None:
                return t
    return None


def count_flops(func, packet: str, args, kwargs, out) -> tuple[float, float, bool]:
    """(flops, matmul_flops, covered) of one aten op call.

    `matmul_flops` is what torch's FlopCounterMode counts for the call (its registry plus
    `EXTRA_FLOP_FORMULAS`); `flops` adds the pointwise part (bias adds of addmm/baddbmm, the
    softmax inside fused attention: 5 FLOPs per score, masked entries of causal attention
    included, as dense kernels compute the whole square).
    """
    overload = func._overloadpacket
    if overload in MATMUL_REGISTRY:
        mm = float(MATMUL_REGISTRY[overload](*args, **kwargs, out_val=out))
        extra = 0.0
        if packet in MATMUL_BIAS:
            extra = float(_numel(out))
        elif packet in layers.CONVOLUTIONS:
            extra = layers.conv_bias_flops(args, out)
        elif packet in ATTENTION:
            q, k = args[0], args[1]
            scores = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
            extra = float(POINTWISE_FLOPS["softmax"] * scores)
        return mm + extra, mm, True
    rule = layers.SPATIAL.get(packet) or layers.NORMS.get(packet)
    rule = rule or layers.EMBEDDING_BAGS.get(packet)
    if rule is not None:
        return rule(args, kwargs, out), 0.0, True
    cls = op_class(packet)
    if cls in ("gather", "scalar"):
        return 0.0, 0.0, True
    if cls != "pointwise":
        return 0.0, 0.0, False
    b = _base(packet)
    if b in REDUCTIONS:
        return float(_numel(_first_tensor(args))), 0.0, True
    if b in ("index_add", "scatter_add"):
        return float(_numel(args[3])), 0.0, True  # one add per element added
    per = PER_OUTPUT.get(packet, PER_OUTPUT.get(b))
    if per is None:  # moves, creation, scatters
        return 0.0, 0.0, True
    first_out = out if isinstance(out, torch.Tensor) else _first_tensor(out)
    return float(per * _numel(first_out)), 0.0, True


def gathered_elements(packet: str, args, kwargs, outs) -> int:
    """Elements of the table a gather reads: the rows it picks, not the table."""
    if packet in layers.EMBEDDING_BAGS:
        return layers.embedding_bag_rows(args, kwargs) * int(args[0].shape[-1])
    return outs[0].numel() if outs else 0


def scatter_elements(packet: str, args, kwargs) -> tuple[int, list[int], int]:
    """(elements written, indices of the args it reads, elements of the destination it reads).

    Only the elements written count, not the whole destination (a KV-cache append writes one
    token, not the cache); the destination is read only where the op accumulates into it.
    """
    dest = args[0]
    if packet in ("index_copy_", "index_copy"):
        return _numel(args[3]), [2, 3], 0
    if packet in ("index_put_", "index_put", "_unsafe_index_put"):
        indices = [i for i in args[1] if i is not None]
        shape = torch.broadcast_shapes(*[i.shape for i in indices]) if indices else ()
        n = 1
        for s in shape:
            n *= s
        for s in dest.shape[len(args[1]) :]:
            n *= s
        accumulate = bool(args[3]) if len(args) > 3 else bool(kwargs.get("accumulate", False))
        return n, [1, 2], n if accumulate else 0
    if packet == "index_fill_":
        n = _numel(args[2]) * (dest.numel() // max(dest.shape[args[1]], 1))
        return n, [2], 0
    if packet in ("scatter_", "scatter", "scatter_add_", "scatter_add"):
        n = _numel(args[2])
        reads = [2] + ([3] if len(args) > 3 and isinstance(args[3], torch.Tensor) else [])
        return n, reads, n if packet.startswith("scatter_add") else 0
    if packet in ("index_add_", "index_add"):
        n = _numel(args[3])
        return n, [2, 3], n
    if packet in ("slice_scatter", "select_scatter"):
        return _numel(args[1]), [1], 0
    raise KeyError(packet)
