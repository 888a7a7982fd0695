"""FLOP rules for the layers of convolutional and recommendation models: convolution bias,
batch / group / instance norm, pooling, interpolation, embedding bags, dropout.

Conventions (one multiply-accumulate = 2 FLOPs; arithmetic counted unfused, as the Transformer
ops are): a convolution's multiply-accumulates come from torch's `flop_counter` (groups,
dilation, transposed and depthwise convolutions included); its bias is one add per output.
A normalisation that computes statistics costs what a layer norm does per element (7: mean,
subtract, square, mean, normalise, scale, shift); one that uses stored statistics (batch norm
in eval mode) costs 4 (subtract, multiply by 1/std, scale, shift). Pooling costs one FLOP per
window element per output (a compare or an add); an adaptive window is ceil(in / out) per
dimension. Interpolation costs one multiply-accumulate per tap: linear 2 taps per interpolated
dimension (bilinear 4, trilinear 8), bicubic 4 per dimension (16); nearest copies (0 FLOPs).
An embedding bag adds (or compares) every row it gathers, and reads only those rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

NORM_STATS = 7  # statistics computed: same arithmetic as memwall's layer norm
NORM_APPLY = 4  # stored statistics: subtract, multiply, scale, shift
DROPOUT = 2  # compare a random draw, scale


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _out0(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, list | tuple) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _arg(args, kwargs, i: int, name: str, default=None):
    if i < len(args):
        return args[i]
    return kwargs.get(name, default)


def _window(kernel_size, ndim: int) -> int:
    ks = list(kernel_size) if isinstance(kernel_size, list | tuple) else [kernel_size]
    if len(ks) == 1:
        ks = ks * ndim
    return math.prod(int(k) for k in ks)


def _pool(ndim: int):
    def rule(args, kwargs, out) -> float:
        return float(_numel(_out0(out)) * _window(_arg(args, kwargs, 1, "kernel_size"), ndim))

    return rule


def _adaptive(args, kwargs, out) -> float:
    x, o = args[0], _out0(out)
    if o is None:
        return 0.0
    nd = o.dim() - (2 if o.dim() > 2 else 1)
    nd = max(nd, 1)
    win = 1
    for i, o_len in zip(x.shape[-nd:], o.shape[-nd:], strict=True):
        win *= math.ceil(int(i) / max(int(o_len), 1))
    return float(o.numel() * win)


def _batch_norm(args, kwargs, out) -> float:
    """native_batch_norm and friends: the `training` flag is the first bool after the tensors."""
    flag = next((a for a in args[3:] if isinstance(a, bool)), kwargs.get("training", True))
    return float((NORM_STATS if flag else NORM_APPLY) * _numel(args[0]))


def _stats_norm(args, kwargs, out) -> float:
    return float(NORM_STATS * _numel(args[0]))


def _apply_norm(args, kwargs, out) -> float:
    return float(NORM_APPLY * _numel(args[0]))


def _taps(per_dim: int, ndim: int):
    def rule(args, kwargs, out) -> float:
        return float(2 * per_dim**ndim * _numel(_out0(out)))

    return rule


def _zero(args, kwargs, out) -> float:
    return 0.0


def embedding_bag_rows(args, kwargs) -> int:
    """Rows an embedding bag gathers: one per index (padding rows included)."""
    return _numel(args[1])


def _embedding_bag(args, kwargs, out) -> float:
    rows = embedding_bag_rows(args, kwargs) * int(args[0].shape[-1])
    mode = int(_arg(args, kwargs, 4, "mode", 0))
    weights = _arg(args, kwargs, 6, "per_sample_weights")
    flops = rows * (2 if isinstance(weights, torch.Tensor) else 1)
    if mode == 1:  # mean: one divide per output element
        flops += _numel(_out0(out))
    return float(flops)


def _dropout(args, kwargs, out) -> float:
    return float(DROPOUT * _numel(args[0]))


# Per aten packet: FLOPs of one call from its (args, kwargs, out).
SPATIAL: dict[str, Callable] = {
    **{f"max_pool{d}d_with_indices": _pool(d) for d in (1, 2, 3)},
    **{f"max_pool{d}d": _pool(d) for d in (1, 2, 3)},
    **{f"avg_pool{d}d": _pool(d) for d in (1, 2, 3)},
    **{f"{p}adaptive_avg_pool{d}d": _adaptive for p in ("", "_") for d in (1, 2, 3)},
    **{f"adaptive_max_pool{d}d": _adaptive for d in (1, 2, 3)},
    **{f"upsample_nearest{d}d": _zero for d in (1, 2, 3)},
    **{f"_upsample_nearest_exact{d}d": _zero for d in (1, 2, 3)},
    "upsample_linear1d": _taps(2, 1),
    "upsample_bilinear2d": _taps(2, 2),
    "_upsample_bilinear2d_aa": _taps(2, 2),
    "upsample_trilinear3d": _taps(2, 3),
    "upsample_bicubic2d": _taps(4, 2),
    "_upsample_bicubic2d_aa": _taps(4, 2),
}
NORMS: dict[str, Callable] = {
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_functional": _batch_norm,
    "_native_batch_norm_legit_no_training": _apply_norm,
    "_batch_norm_with_update": _stats_norm,
    "_batch_norm_with_update_functional": _stats_norm,
    "_batch_norm_no_update": _apply_norm,
    "native_group_norm": _stats_norm,
    "cudnn_batch_norm": _batch_norm,
    "miopen_batch_norm": _batch_norm,
    "native_dropout": _dropout,
}
EMBEDDING_BAGS: dict[str, Callable] = {
    "_embedding_bag": _embedding_bag,
    "_embedding_bag_forward_only": _embedding_bag,
}
CONVOLUTIONS = {
    "convolution",
    "_convolution",
    "cudnn_convolution",
    "cudnn_convolution_transpose",
    "mkldnn_convolution",
    "_slow_conv2d_forward",
    "slow_conv_dilated2d",
    "slow_conv_transpose2d",
    "_convolution_mode",
}
# Activations not in the Transformer families: FLOPs per output element.
ACTIVATIONS: dict[str, float] = {
    "hardtanh": 2,  # two clamps (ReLU6 included)
    "hardsigmoid": 3,  # add, clamp, divide
    "hardswish": 4,  # hardsigmoid, multiply
    "leaky_relu": 2,  # compare, multiply
    "elu": 3,  # compare, exp, multiply-subtract
    "softplus": 3,  # exp, add, log
    "mish": 5,  # softplus, tanh, multiply
    "prelu": 2,
    "_prelu_kernel": 2,
    "log_sigmoid_forward": 4,
}
# Data movement without arithmetic in these models (padding, channel shuffles).
MOVES = {
    "constant_pad_nd",
    "reflection_pad1d",
    "reflection_pad2d",
    "reflection_pad3d",
    "replication_pad1d",
    "replication_pad2d",
    "replication_pad3d",
    "channel_shuffle",
    "native_channel_shuffle",
    "pixel_shuffle",
    "pixel_unshuffle",
    "roll",
    "flip",
}


def conv_bias_flops(args, out) -> float:
    """The bias add of a convolution: one FLOP per output element (torch counts the MACs)."""
    bias = args[2] if len(args) > 2 else None
    return float(_numel(_out0(out))) if isinstance(bias, torch.Tensor) else 0.0
