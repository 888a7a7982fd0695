"""Real quantised linear layers on this CPU, with the kernels torch ships for it.

Chosen by measured speed on this machine (see benchmarks/bench_compression.py):
- int8 weight-only: `aten._weight_int8pack_mm` (int8 weights, one bf16 scale per output
  channel, bf16 activations). With fp32 activations the same op was ~4x slower than an fp32
  matmul here, with bf16 ~1.7x faster, so weight-only models run in bf16.
- int4 weight-only: `aten._weight_int4pack_mm_for_cpu` (two 4-bit weights per byte, one bf16
  scale and one bf16 zero point per group of 32/64/128/256 input channels, bf16 activations).
- int8 dynamic: `torch.ao` dynamic quantisation (fbgemm): int8 weights with one scale per
  tensor, activations quantised per call; the rest of the model stays fp32.
Only the Transformer blocks' matrices are quantised; embeddings, the tied LM head, norms and
biases stay 16-bit (weight-only) or fp32 (dynamic), the convention memwall's count uses.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from memwall.compress.gpt import GPT
from memwall.compress.methods import INT4_GROUPS
from memwall.errors import MemwallError


class Int8WeightOnlyLinear(nn.Module):
    """y = x W^T + b with W stored int8 and one bf16 scale per output channel (symmetric)."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        w = lin.weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-8)
        self.register_buffer(
            "qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        )
        self.register_buffer("scales", scale.to(torch.bfloat16))
        self.register_buffer("bias", lin.bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.qweight, self.scales)
        return (y + self.bias).reshape(*shape[:-1], -1)


class Int4WeightOnlyLinear(nn.Module):
    """W in 4 bits, asymmetric per group of `group` input channels: w ~ (q - 8) * scale + zero."""

    def __init__(self, lin: nn.Linear, group: int) -> None:
        super().__init__()
        w = lin.weight.detach().float()
        n, k = w.shape
        check_group(group, k)
        g = w.reshape(n, k // group, group)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-8)
        q = torch.round((g - lo) / scale).clamp(0, 15).to(torch.int32).reshape(n, k)
        zero = lo + 8 * scale
        sz = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], -1)  # (n, k/g, 2)
        self.group = group
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scales_zeros", sz.transpose(0, 1).contiguous().to(torch.bfloat16))
        self.register_buffer("bias", lin.bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, shape[-1]), self.packed, self.group, self.scales_zeros
        )
        return (y + self.bias).reshape(*shape[:-1], -1)


def check_group(group: int, width: int) -> None:
    if group not in INT4_GROUPS:
        raise MemwallError(
            f"int4 group size {group} has no CPU kernel here; accepted: "
            f"{', '.join(map(str, INT4_GROUPS))}"
        )
    if width % group:
        raise MemwallError(f"int4 group size {group} does not divide the layer width {width}")


def _swap_linears(model: GPT, make) -> GPT:
    for b in model.blocks:
        for parent, name in ((b.attn, "qkv"), (b.attn, "out"), (b, "fc"), (b, "proj")):
            setattr(parent, name, make(getattr(parent, name)))
    return model


def int8_weight_only(model: GPT) -> GPT:
    """A bf16 copy whose block matrices are int8 weight-only."""
    return _swap_linears(copy.deepcopy(model).to(torch.bfloat16), Int8WeightOnlyLinear)


def int4_weight_only(model: GPT, group: int = 128) -> GPT:
    """A bf16 copy whose block matrices are int4 weight-only with `group`-wide groups."""
    for b in model.blocks:  # fail before copying anything
        for lin in (b.attn.qkv, b.attn.out, b.fc, b.proj):
            check_group(group, lin.in_features)
    return _swap_linears(
        copy.deepcopy(model).to(torch.bfloat16), lambda m: Int4WeightOnlyLinear(m, group)
    )


def int8_dynamic(model: GPT) -> GPT:
    """An fp32 copy whose block matrices are torch.ao dynamic int8 Linears."""
    from torch.ao.quantization import quantize_dynamic

    m = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        m.blocks = quantize_dynamic(m.blocks, {nn.Linear}, dtype=torch.qint8)
    return m


def bf16(model: GPT) -> GPT:
    return copy.deepcopy(model).to(torch.bfloat16)
