"""Formulas of DeepSeek's layers: multi-head latent attention (MLA) and the MoE with shared
experts whose first layers are dense. Added to `formulas.REGISTRY` on import.

Each new token is projected to a latent (`kv_lora_rank` wide, normalised) and one rotated key
shared by the heads (`qk_rope_head_dim`); those two are what the KV cache stores and what a
step reads back, once, in both forms MLA runs in:
- expanded (transformers' code; what engines run for prefill): every step up-projects the
  latents of all the keys it attends to (`kv_b_proj`: FLOPs and activation bytes per cached
  token), assembles per-head keys, and runs attention with query/key heads of nope + rope width
  and value heads of `v_head_dim`;
- absorbed (vLLM, SGLang, FlashMLA decode): `kv_b_proj`'s key half (W_UK) is applied to each
  head's query (`q_absorb`) and its value half (W_UV) to each head's output (`v_up_proj`), so
  attention runs over the cached latents directly: per key 2 x heads x (2 x kv_lora_rank +
  qk_rope_head_dim) FLOPs instead of the up-projection's 2 x kv_lora_rank x heads x (nope + v)
  plus attention over full heads (DeepSeek-V3 decode at 8192: 0.21 TFLOP against 16.9).
`count.ops.mla_form` picks the default: absorbed for decode and generate, expanded otherwise.
The trace engine runs transformers, so it counts the expanded form.

Layers with an index below `dense_layers` run a dense gated MLP of `dense_d_ff`; the others a
router, the routed experts (top-k) and `n_shared_experts` experts every token runs, summed.
Rows stand for all layers: MoE rows are scaled by the share of MoE layers, dense rows by the
share of dense layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from memwall.count.formulas import (
    POINTWISE_FLOPS,
    REGISTRY,
    Bytes,
    Cost,
    Dims,
    OpDef,
    OpFn,
    _expert_act_mul,
    _expert_combine,
    _expert_linear,
    _linear,
    _pointwise,
    _router,
    expert_mnk,
    mnk,
)
from memwall.spec import ModelSpec


def _nope(s: ModelSpec) -> int:
    return s.head_dim - s.rope_head_dim


def _latent(s: ModelSpec) -> int:
    return s.kv_lora_rank + s.rope_head_dim


def _keys(d: Dims) -> Any:
    return d.B * d.Lkv


def _mla_rope(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The latent's RMSNorm, rope on the query's and the shared key's rotated parts, the query
    assembled (nope + rope parts) and the latent + rotated key appended to the cache: one
    pointwise kernel."""
    r, T = s.rope_head_dim, d.T
    flops = POINTWISE_FLOPS["rmsnorm"] * T * s.kv_lora_rank
    flops += POINTWISE_FLOPS["rope"] * T * (s.n_heads + 1) * r
    stored = p.kv if d.writes_cache else p.a
    return Cost(
        flops=flops,
        w=s.kv_lora_rank * p.small,
        a=T * (s.q_dim + _latent(s) + 2 * r) * p.a,  # query, latent + key, cos / sin
        out=T * s.q_dim * p.a + T * _latent(s) * stored,
    )


def _kv_b_proj(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The latents of every key attended, up-projected to per-head unrotated keys and values."""
    n, width = _keys(d), s.n_heads * (_nope(s) + s.v_head_dim)
    mm = 2 * n * s.kv_lora_rank * width
    read = n * s.kv_lora_rank
    return Cost(
        flops=mm,
        w=s.kv_lora_rank * width * p.w,
        a=0 if d.cached else read * p.a,
        kv=read * p.kv if d.cached else 0,
        out=n * width * p.a,
        mm=mm,
    )


def _k_assemble(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Per-head keys: the unrotated part beside the shared rotated key (a copy)."""
    n, r = _keys(d), s.rope_head_dim
    return Cost(
        flops=0,
        a=n * s.n_heads * _nope(s) * p.a + (0 if d.cached else n * r * p.a),
        kv=n * r * p.kv if d.cached else 0,
        out=n * s.n_heads * s.head_dim * p.a,
    )


def _mla_attention(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    scores = d.B * s.n_heads * d.Lq * d.Lkv
    mm = 2 * scores * (s.head_dim + s.v_head_dim)
    n = _keys(d) * s.n_heads
    return Cost(
        flops=mm + POINTWISE_FLOPS["softmax"] * scores,
        a=(d.T * s.q_dim + n * (s.head_dim + s.v_head_dim)) * p.a,
        out=d.T * s.o_dim * p.a,
        mm=mm,
    )


def _q_absorb(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Absorbed form: each head's unrotated query times its W_UK slice, a latent-wide query."""
    per_head = _nope(s) * s.kv_lora_rank
    mm = 2 * d.T * s.n_heads * per_head
    return Cost(
        flops=mm,
        w=s.n_heads * per_head * p.w,
        a=d.T * s.n_heads * _nope(s) * p.a,
        out=d.T * s.n_heads * s.kv_lora_rank * p.a,
        mm=mm,
    )


def _latent_attention(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Absorbed form: every head attends over the cached latents (keys: latent + rotated key,
    values: the latent), one fused kernel that reads each cached token once."""
    scores = d.B * s.n_heads * d.Lq * d.Lkv
    mm = 2 * scores * (_latent(s) + s.kv_lora_rank)
    n = _keys(d) * _latent(s)
    return Cost(
        flops=mm + POINTWISE_FLOPS["softmax"] * scores,
        a=d.T * s.n_heads * _latent(s) * p.a + (0 if d.cached else n * p.a),
        kv=n * p.kv if d.cached else 0,
        out=d.T * s.n_heads * s.kv_lora_rank * p.a,
        mm=mm,
    )


def _v_up_proj(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Absorbed form: each head's latent-wide output times its W_UV slice (v_head_dim wide)."""
    per_head = s.kv_lora_rank * s.v_head_dim
    mm = 2 * d.T * s.n_heads * per_head
    return Cost(
        flops=mm,
        w=s.n_heads * per_head * p.w,
        a=d.T * s.n_heads * s.kv_lora_rank * p.a,
        out=d.T * s.o_dim * p.a,
        mm=mm,
    )


def _scaled(fn: OpFn, share: Callable[[ModelSpec], float]) -> OpFn:
    """`fn` on the share of the layers that run it (rows stand for all layers)."""

    def g(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        c, k = fn(s, d, p), share(s)
        return Cost(k * c.flops, k * c.w, k * c.a, k * c.kv, k * c.out, k * c.mm)

    return g


def _moe_share(s: ModelSpec) -> float:
    return s.moe_layers / s.n_layers


def _dense_share(s: ModelSpec) -> float:
    return 1.0 - _moe_share(s)


def _shared_width(s: ModelSpec) -> int:
    return s.d_ff * s.n_shared_experts


def _shared_act_mul(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * _shared_width(s)
    return Cost(flops=(POINTWISE_FLOPS[s.activation] + 1) * n, a=2 * n * p.a, out=n * p.a)


def _dense_act_mul(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * s.dense_d_ff
    return Cost(flops=(POINTWISE_FLOPS[s.activation] + 1) * n, a=2 * n * p.a, out=n * p.a)


def _D(s: ModelSpec) -> int:
    return s.d_model


def _Q(s: ModelSpec) -> int:
    return s.q_dim


def _op(name: str, kind: str, fn: OpFn, role: str = "compute") -> OpDef:
    return OpDef(name, kind, True, fn, role)


def _moe(name: str, kind: str, fn: OpFn, role: str = "compute") -> OpDef:
    return _op(name, kind, _scaled(fn, _moe_share), role)


def _dense(name: str, kind: str, fn: OpFn, role: str = "compute") -> OpDef:
    return _op(name, kind, _scaled(fn, _dense_share), role)


MLA_OPS: dict[str, OpDef] = {
    "q_a_proj": _op("q_a_proj", "matmul", _linear(_D, lambda s: s.q_lora_rank, "qkv_bias")),
    "q_a_norm": _op(
        "q_a_norm", "norm", _pointwise(lambda s: s.q_lora_rank, "rmsnorm", 1, 1), "act"
    ),
    "q_b_proj": _op(
        "q_b_proj", "matmul", _linear(lambda s: s.q_lora_rank, lambda s: s.q_dim, None)
    ),
    "q_proj@mla": _op("q_proj", "matmul", _linear(_D, _Q, None)),
    "kv_a_proj": _op("kv_a_proj", "matmul", _linear(_D, _latent, "qkv_bias")),
    "rope@mla": _op("rope", "elementwise", _mla_rope, "act"),
    "kv_b_proj": _op("kv_b_proj", "matmul", _kv_b_proj),
    "k_assemble": _op("k_assemble", "elementwise", _k_assemble, "act"),
    "attention@mla": _op("attention", "attention", _mla_attention),
    "q_absorb": _op("q_absorb", "matmul", _q_absorb),
    "attention@mla_absorbed": _op("attention", "attention", _latent_attention),
    "v_up_proj": _op("v_up_proj", "matmul", _v_up_proj),
    "o_proj@mla": _op("o_proj", "matmul", _linear(lambda s: s.o_dim, _D, "o_bias")),
    "gate_proj@dense": _dense("gate_proj", "matmul", _linear(_D, lambda s: s.dense_d_ff, None)),
    "up_proj@dense": _dense("up_proj", "matmul", _linear(_D, lambda s: s.dense_d_ff, None)),
    "act_mul@dense": _dense("act_mul", "elementwise", _dense_act_mul, "act"),
    "down_proj@dense": _dense("down_proj", "matmul", _linear(lambda s: s.dense_d_ff, _D, None)),
    "router@shared": _moe("router", "moe", _router),
    "expert_gate@shared": _moe("expert_gate", "moe", _expert_linear(_D, lambda s: s.d_ff)),
    "expert_up@shared": _moe("expert_up", "moe", _expert_linear(_D, lambda s: s.d_ff)),
    "expert_act_mul@shared": _moe("expert_act_mul", "elementwise", _expert_act_mul, "act"),
    "expert_down@shared": _moe("expert_down", "moe", _expert_linear(lambda s: s.d_ff, _D)),
    "expert_combine@shared": _moe("expert_combine", "elementwise", _expert_combine, "act"),
    "shared_gate": _moe("shared_gate", "matmul", _linear(_D, _shared_width, None)),
    "shared_up": _moe("shared_up", "matmul", _linear(_D, _shared_width, None)),
    "shared_act_mul": _moe("shared_act_mul", "elementwise", _shared_act_mul, "act"),
    "shared_down": _moe("shared_down", "matmul", _linear(_shared_width, _D, None)),
    "shared_add": _moe("shared_add", "elementwise", _pointwise(_D, "add", 2), "act"),
}
_F = (lambda s: s.d_ff, lambda s: s.dense_d_ff, _shared_width)
_SHAPES = {  # (m, k, n) of the Linear layers' calls
    "q_a_proj": mnk(_D, lambda s: s.q_lora_rank),
    "q_b_proj": mnk(lambda s: s.q_lora_rank, _Q),
    "q_proj@mla": mnk(_D, _Q),
    "kv_a_proj": mnk(_D, _latent),
    "kv_b_proj": lambda s, d: (_keys(d), s.kv_lora_rank, s.n_heads * (_nope(s) + s.v_head_dim)),
    "o_proj@mla": mnk(lambda s: s.o_dim, _D),
    "gate_proj@dense": mnk(_D, _F[1]),
    "up_proj@dense": mnk(_D, _F[1]),
    "down_proj@dense": mnk(_F[1], _D),
    "router@shared": mnk(_D, lambda s: max(s.n_experts, 1)),
    "expert_gate@shared": expert_mnk(_D, _F[0]),
    "expert_up@shared": expert_mnk(_D, _F[0]),
    "expert_down@shared": expert_mnk(_F[0], _D),
    "shared_gate": mnk(_D, _F[2]),
    "shared_up": mnk(_D, _F[2]),
    "shared_down": mnk(_F[2], _D),
}
MLA_OPS = {k: replace(op, shape=_SHAPES.get(k)) for k, op in MLA_OPS.items()}
REGISTRY.update(MLA_OPS)


MLA_FORMS = ("absorbed", "expanded")


def mla_layer_names(s: ModelSpec, form: str = "expanded") -> list[str]:
    """One DeepSeek block (before its closing residual add + norm), in `form` (MLA_FORMS)."""
    names = ["q_a_proj", "q_a_norm", "q_b_proj"] if s.q_lora_rank else ["q_proj@mla"]
    names += ["kv_a_proj", "rope@mla"]
    if form == "absorbed":
        names += ["q_absorb", "attention@mla_absorbed", "v_up_proj"]
    else:
        names += ["kv_b_proj", "k_assemble", "attention@mla"]
    names.append("o_proj@mla")
    names.append("attn_add_norm")
    return names


def deepseek_mlp_names(s: ModelSpec) -> list[str]:
    """Dense rows (first layers) and MoE rows with shared experts (the rest)."""
    names = []
    if s.dense_layers:
        names += ["gate_proj@dense", "up_proj@dense", "act_mul@dense", "down_proj@dense"]
    if s.moe_layers:
        moe = "router expert_gate expert_up expert_act_mul expert_down expert_combine"
        names += [f"{n}@shared" for n in moe.split()]
        if s.n_shared_experts:
            names += ["shared_gate", "shared_up", "shared_act_mul", "shared_down", "shared_add"]
    return names


def mla_note(form: str | None) -> str | None:
    """What a table's note says of the MLA form counted (None: not an MLA model)."""
    if form == "absorbed":
        return (
            "multi-head latent attention counted absorbed, as serving engines run decode "
            "(W_UK folded into the query, W_UV into the output, attention over the cached "
            "latents); transformers' code up-projects every cached latent each step instead "
            "(the expanded form)"
        )
    if form == "expanded":
        return (
            "multi-head latent attention counted expanded (the latents up-projected to "
            "per-head keys and values, as transformers runs it and engines run prefill)"
        )
    return None
