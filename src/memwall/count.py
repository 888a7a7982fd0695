"""Closed-form operation table: FLOPs and bytes of every operation of a Transformer.

One registry of per-operation formulas (`_OPS`), each a pure function of broadcastable numpy
arrays, so the same code evaluates one workload (`op_table`) or a grid of a million (`sweep`).

Conventions (see DESIGN.md; every result names the one it used):
- `full`: what the model executes (embeddings, LM head, biases, norms, KV-cache writes), at the
  user's precision, counted per kernel: matmuls, attention (one fused kernel unless
  `fused_attention=False`), and each chain of pointwise work between them as one fused kernel
  that reads its inputs and writes only what later kernels use (the residual add and the norm
  after it are one kernel). Eager PyTorch runs such chains op by op and moves more bytes; the
  trace engine reports both.
- `paper`: the paper's Figure 3 accounting: 8-bit everything, each op reads its inputs once and
  writes its output once, only Q/K/V/O, the two attention matmuls, the two FFN matmuls and the
  "other" ops (softmax, layernorm, activation, residual add); no embeddings, no LM head.

Shared counting rules:
- one multiply-accumulate = 2 FLOPs; pointwise ops cost `POINTWISE_FLOPS[op]` per element.
- causal attention is counted as the full Lq x Lkv square, as dense kernels compute it (masked
  entries included); decode attends to the whole KV cache plus the new token.
- generate = sum of decode steps; every per-step cost is affine in the number of keys (or, with a
  sliding window, evaluated exactly), so the sum is steps x cost at the mean key count.
- MoE: each token runs its top-k experts; the weights read are the experts touched, expected
  under uniform routing: E * (1 - (1 - k/E)^T) for T tokens in the step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memwall.errors import MemwallError
from memwall.spec import (
    PAPER_PRECISION,
    ModelSpec,
    Precision,
    Workload,
    check_workload_fits,
    parse_precision,
)

CONVENTIONS = ("full", "paper")

# FLOPs per element of pointwise work; shared with the trace engine so both count alike.
POINTWISE_FLOPS: dict[str, int] = {
    "add": 1,
    "mul": 1,
    "softmax": 5,  # max, subtract, exp, sum, divide
    "layernorm": 7,  # mean, subtract, square, mean, normalise, scale, shift
    "rmsnorm": 4,  # square, mean, normalise, scale
    "gelu": 8,
    "gelu_tanh": 8,
    "relu": 1,
    "silu": 4,
    "tanh": 1,
    "rope": 3,  # x*cos + rotate(x)*sin
    "copy": 0,
}

TOKEN_ID_BYTES = 8  # int64 token ids read by the embedding lookup
COLUMNS = [
    "name",
    "kind",
    "layer",
    "count",
    "flops",
    "matmul_flops",
    "bytes_weight",
    "bytes_act",
    "bytes_kv",
    "bytes_read",
    "bytes_written",
    "bytes",
    "intensity",
    "dtype",
    "steps",
]


@dataclass(frozen=True)
class Dims:
    """Workload sizes as broadcastable arrays (per step)."""

    B: Any  # sequences
    Lq: Any  # new tokens per sequence in a step
    Lkv: Any  # keys each query attends to (mean over steps for generate)
    steps: Any  # how many steps the costs are summed over
    cached: bool  # K and V come from the KV cache (decode / generate)
    writes_cache: bool  # the step appends K and V to a cache (decoders, full convention)
    lm_tokens: Any  # positions the LM head runs on

    @property
    def T(self) -> Any:
        return self.B * self.Lq


@dataclass(frozen=True)
class Bytes:
    """Bytes per element of weights, activations and KV cache (arrays allowed, for sweeps)."""

    w: Any
    a: Any
    kv: Any


@dataclass(frozen=True)
class Cost:
    flops: Any
    w: Any = 0  # weight bytes read
    a: Any = 0  # activation bytes read
    kv: Any = 0  # KV-cache bytes read
    out: Any = 0  # bytes written
    mm: Any = 0  # matmul part of flops (what torch's FlopCounterMode counts)


OpFn = Callable[[ModelSpec, Dims, Bytes], Cost]


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    per_layer: bool
    fn: OpFn
    dtype_role: str = "compute"  # compute | act


# ---------------------------------------------------------------- formulas


def _linear(n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int], bias: str | None):
    """A dense layer on every new token: reads its weight matrix once per step."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        i, o = n_in(s), n_out(s)
        has_bias = bool(getattr(s, bias)) if bias else False
        mm = 2 * d.T * i * o
        return Cost(
            flops=mm + (d.T * o if has_bias else 0),
            w=(i * o + (o if has_bias else 0)) * p.w,
            a=d.T * i * p.a,
            out=d.T * o * p.a,
            mm=mm,
        )

    return fn


def _pointwise(width: Callable[[ModelSpec], int], op: str, n_inputs: int = 1, weights: int = 0):
    """Elementwise work over T x width elements; `weights` per-channel parameter vectors."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        n = d.T * width(s)
        return Cost(
            flops=POINTWISE_FLOPS[op] * n,
            w=weights * width(s) * p.w,
            a=n_inputs * n * p.a,
            out=n * p.a,
        )

    return fn


def _kv_read(s: ModelSpec, d: Dims, p: Bytes) -> tuple[Any, Any]:
    """(activation bytes, cache bytes) of reading K and V for every sequence."""
    n = d.B * d.Lkv * s.kv_dim
    return (0, n * p.kv) if d.cached else (n * p.a, 0)


def _scores(s: ModelSpec, d: Dims) -> Any:
    return d.B * s.n_heads * d.Lq * d.Lkv


def _attn_fused(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 4 * _scores(s, d) * s.head_dim
    a_kv, kv = _kv_read(s, d, p)
    return Cost(
        flops=mm + POINTWISE_FLOPS["softmax"] * _scores(s, d),
        a=d.T * s.q_dim * p.a + 2 * a_kv,
        kv=2 * kv,
        out=d.T * s.q_dim * p.a,
        mm=mm,
    )


def _attn_score(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 2 * _scores(s, d) * s.head_dim
    a_k, kv_k = _kv_read(s, d, p)
    return Cost(
        flops=mm + _scores(s, d),  # + the 1/sqrt(d) scaling
        a=d.T * s.q_dim * p.a + a_k,
        kv=kv_k,
        out=_scores(s, d) * p.a,
        mm=mm,
    )


def _softmax(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = _scores(s, d)
    return Cost(flops=POINTWISE_FLOPS["softmax"] * n, a=n * p.a, out=n * p.a)


def _attn_value(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 2 * _scores(s, d) * s.head_dim
    a_v, kv_v = _kv_read(s, d, p)
    return Cost(
        flops=mm,
        a=_scores(s, d) * p.a + a_v,
        kv=kv_v,
        out=d.T * s.q_dim * p.a,
        mm=mm,
    )


def _kv_cache_write(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = 2 * d.T * s.kv_dim
    return Cost(flops=0, a=n * p.a, out=n * p.kv)


def _rope(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * (s.q_dim + s.kv_dim)
    return Cost(
        flops=POINTWISE_FLOPS["rope"] * n,
        a=n * p.a + 2 * d.T * s.head_dim * p.a,  # q, k and the cos / sin tables
        out=n * p.a,
    )


def _embed(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    tables = 1 + (s.position == "learned") + (s.type_vocab_size > 0)
    n = d.T * s.d_model
    return Cost(
        flops=0,
        w=tables * n * p.w,  # one row per token from each table, not the whole table
        a=d.T * TOKEN_ID_BYTES,
        out=tables * n * p.a,
    )


def _lm_head(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 2 * d.lm_tokens * s.d_model * s.vocab_size
    return Cost(
        flops=mm,
        w=s.vocab_size * s.d_model * p.w,  # the whole matrix, tied or not
        a=d.lm_tokens * s.d_model * p.a,
        out=d.lm_tokens * s.vocab_size * p.a,
        mm=mm,
    )


def _pooler(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    one = Dims(d.B, 1, 1, d.steps, False, False, d.B)
    c = _linear(lambda s: s.d_model, lambda s: s.d_model, "o_bias")(s, one, p)
    n = d.B * s.d_model
    return Cost(c.flops + n, c.w, c.a + n * p.a, out=c.out + n * p.a, mm=c.mm)  # + tanh


def _experts_touched(s: ModelSpec, d: Dims) -> Any:
    e, k = s.n_experts, s.experts_per_token
    return e * (1.0 - (1.0 - k / e) ** d.T)


def _router(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    c = _linear(lambda s: s.d_model, lambda s: s.n_experts, None)(s, d, p)
    n = d.T * s.n_experts  # softmax + top-k over the router logits
    flops = c.flops + POINTWISE_FLOPS["softmax"] * n
    return Cost(flops, c.w, c.a + n * p.a, out=c.out + n * p.a, mm=c.mm)


def _expert_linear(n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int]):
    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        i, o, k = n_in(s), n_out(s), s.experts_per_token
        mm = 2 * d.T * k * i * o
        return Cost(
            flops=mm,
            w=_experts_touched(s, d) * i * o * p.w,
            a=d.T * k * i * p.a,
            out=d.T * k * o * p.a,
            mm=mm,
        )

    return fn


def _expert_act_mul(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * s.experts_per_token * s.d_ff
    return Cost(flops=(POINTWISE_FLOPS["silu"] + 1) * n, a=2 * n * p.a, out=n * p.a)


def _expert_combine(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * s.experts_per_token * s.d_model
    return Cost(flops=2 * n, a=n * p.a, out=d.T * s.d_model * p.a)


def _act_mul(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * s.d_ff
    return Cost(flops=(POINTWISE_FLOPS[s.activation] + 1) * n, a=2 * n * p.a, out=n * p.a)


def _paper_linear(n_in, n_out):
    """The paper counts weight matrices only (no biases)."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        i, o = n_in(s), n_out(s)
        mm = 2 * d.T * i * o
        return Cost(flops=mm, w=i * o * p.w, a=d.T * i * p.a, out=d.T * o * p.a, mm=mm)

    return fn


def _D(s: ModelSpec) -> int:
    return s.d_model


def _F(s: ModelSpec) -> int:
    return s.d_ff


def _Q(s: ModelSpec) -> int:
    return s.q_dim


def _KV(s: ModelSpec) -> int:
    return s.kv_dim


def _QKV(s: ModelSpec) -> int:
    return s.q_dim + 2 * s.kv_dim


# ---------------------------------------------------------------- the op lists


def _add_norm(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Residual add fused with the norm that follows it (one kernel, as a fusing compiler runs it).

    Pre-norm models keep the sum (the residual stream) and the normalised copy: 2 writes.
    Post-norm models (BERT) keep only the normalised sum.
    """
    n = d.T * s.d_model
    vectors = 2 if s.norm == "layernorm" else 1
    return Cost(
        flops=(1 + POINTWISE_FLOPS[s.norm]) * n,
        w=vectors * s.d_model * p.w,
        a=2 * n * p.a,
        out=(2 if s.pre_norm else 1) * n * p.a,
    )


def _embed_norm(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Sum of the embedding rows fused with the first norm (BERT's, or layer 0's attn norm)."""
    tables = 1 + (s.position == "learned") + (s.type_vocab_size > 0)
    n = d.T * s.d_model
    vectors = 2 if s.norm == "layernorm" else 1
    keeps_sum = s.pre_norm and tables > 1  # the residual stream is the sum; one table is its own
    return Cost(
        flops=(tables - 1 + POINTWISE_FLOPS[s.norm]) * n,
        w=vectors * s.d_model * p.w,
        a=tables * n * p.a,
        out=(1 + keeps_sum) * n * p.a,
    )


def _rope_cached(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Rotary embedding whose rotated K goes straight into the KV cache (see kv_cache_write)."""
    c = _rope(s, d, p)
    return Cost(c.flops, c.w, c.a, out=d.T * s.q_dim * p.a)


def _kv_cache_write_after_rope(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Appends K (already read by the rope kernel) and V to the cache."""
    return Cost(flops=0, a=d.T * s.kv_dim * p.a, out=2 * d.T * s.kv_dim * p.kv)


def _layer_ops_full(s: ModelSpec, fused: bool, writes_cache: bool) -> list[OpDef]:
    """One Transformer block as the kernels it runs: matmuls, attention, fused pointwise chains.

    A pointwise chain between two matmuls is one kernel: the residual add and the next norm are
    counted together (`attn_add_norm`, `mlp_add_norm`); the norm before the first block is
    part of `embed_norm`, and each block's closing `mlp_add_norm` holds the next block's (or
    the final) norm.
    """
    ops: list[OpDef] = []
    if s.fused_qkv:
        ops.append(OpDef("qkv_proj", "matmul", True, _linear(_D, _QKV, "qkv_bias")))
    else:
        ops += [
            OpDef("q_proj", "matmul", True, _linear(_D, _Q, "qkv_bias")),
            OpDef("k_proj", "matmul", True, _linear(_D, _KV, "qkv_bias")),
            OpDef("v_proj", "matmul", True, _linear(_D, _KV, "qkv_bias")),
        ]
    if s.family == "opt":  # OPT scales the queries in a kernel of their own after q_proj
        ops.append(OpDef("q_scale", "elementwise", True, _pointwise(_Q, "mul"), "act"))
    if s.position == "rotary":
        ops.append(
            OpDef("rope", "elementwise", True, _rope_cached if writes_cache else _rope, "act")
        )
    if writes_cache:
        fn = _kv_cache_write_after_rope if s.position == "rotary" else _kv_cache_write
        ops.append(OpDef("kv_cache_write", "elementwise", True, fn, "act"))
    if fused:
        ops.append(OpDef("attention", "attention", True, _attn_fused))
    else:
        ops += [
            OpDef("attn_score", "matmul", True, _attn_score),
            OpDef("softmax", "softmax", True, _softmax, "act"),
            OpDef("attn_value", "matmul", True, _attn_value),
        ]
    ops.append(OpDef("o_proj", "matmul", True, _linear(_Q, _D, "o_bias")))
    ops.append(OpDef("attn_add_norm", "norm", True, _add_norm, "act"))
    if s.is_moe:
        ops += [
            OpDef("router", "moe", True, _router),
            OpDef("expert_gate", "moe", True, _expert_linear(_D, _F)),
            OpDef("expert_up", "moe", True, _expert_linear(_D, _F)),
            OpDef("expert_act_mul", "elementwise", True, _expert_act_mul, "act"),
            OpDef("expert_down", "moe", True, _expert_linear(_F, _D)),
            OpDef("expert_combine", "elementwise", True, _expert_combine, "act"),
        ]
    elif s.gated_mlp:
        ops += [
            OpDef("gate_proj", "matmul", True, _linear(_D, _F, "mlp_bias")),
            OpDef("up_proj", "matmul", True, _linear(_D, _F, "mlp_bias")),
            OpDef("act_mul", "elementwise", True, _act_mul, "act"),
            OpDef("down_proj", "matmul", True, _linear(_F, _D, "mlp_bias")),
        ]
    else:
        ops += [
            OpDef("fc1", "matmul", True, _linear(_D, _F, "mlp_bias")),
            OpDef("act", "elementwise", True, _pointwise(_F, s.activation), "act"),
            OpDef("fc2", "matmul", True, _linear(_F, _D, "mlp_bias")),
        ]
    ops.append(OpDef("mlp_add_norm", "norm", True, _add_norm, "act"))
    return ops


def _ops_full(s: ModelSpec, fused: bool, writes_cache: bool) -> list[OpDef]:
    ops = [
        OpDef("embed", "embedding", False, _embed, "act"),
        OpDef("embed_norm", "norm", False, _embed_norm, "act"),
    ]
    ops += _layer_ops_full(s, fused, writes_cache)
    if s.has_lm_head:
        ops.append(OpDef("lm_head", "matmul", False, _lm_head))
    if s.pooler:
        ops.append(OpDef("pooler", "matmul", False, _pooler))
    return ops


def _ops_paper(s: ModelSpec) -> list[OpDef]:
    norm = _pointwise(_D, "layernorm", 1, 2)
    act = "gelu" if s.activation.startswith("gelu") else s.activation
    return [
        OpDef("q_proj", "matmul", True, _paper_linear(_D, _Q)),
        OpDef("k_proj", "matmul", True, _paper_linear(_D, _KV)),
        OpDef("v_proj", "matmul", True, _paper_linear(_D, _KV)),
        OpDef("attn_score", "matmul", True, _attn_score),
        OpDef("softmax", "softmax", True, _softmax, "act"),
        OpDef("attn_value", "matmul", True, _attn_value),
        OpDef("o_proj", "matmul", True, _paper_linear(_Q, _D)),
        OpDef("attn_residual", "elementwise", True, _pointwise(_D, "add", 2), "act"),
        OpDef("attn_norm", "norm", True, norm, "act"),
        OpDef("fc1", "matmul", True, _paper_linear(_D, _F)),
        OpDef("act", "elementwise", True, _pointwise(_F, act), "act"),
        OpDef("fc2", "matmul", True, _paper_linear(_F, _D)),
        OpDef("mlp_residual", "elementwise", True, _pointwise(_D, "add", 2), "act"),
        OpDef("mlp_norm", "norm", True, norm, "act"),
    ]


def op_defs(
    s: ModelSpec,
    convention: str = "full",
    fused_attention: bool | None = None,
    phase: str = "prefill",
) -> list[OpDef]:
    """The operations counted for a model under a convention (the table's rows, in order)."""
    if convention not in CONVENTIONS:
        raise MemwallError(f"unknown convention {convention!r}; accepted: {', '.join(CONVENTIONS)}")
    if convention == "paper":
        if s.gated_mlp or s.is_moe:
            raise MemwallError(
                f"the paper convention covers BERT/GPT-style models with a plain MLP; "
                f"{s.name} has a gated MLP: use --convention full"
            )
        return _ops_paper(s)
    fused = True if fused_attention is None else fused_attention
    return _ops_full(s, fused, writes_cache=s.is_decoder and phase != "encode")


# ---------------------------------------------------------------- workload -> dims


def _mean_keys(prompt: Any, steps: Any, window: int | None) -> Any:
    """Mean keys attended over decode steps at contexts prompt .. prompt+steps-1 (exact)."""
    prompt = np.asarray(prompt, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.float64)
    if window is None:
        return prompt + (steps + 1) / 2

    def cum(n):  # sum_{k=1..n} min(k, window)
        w = float(window)
        return np.where(n <= w, n * (n + 1) / 2, w * (w + 1) / 2 + (n - w) * w)

    return (cum(prompt + steps) - cum(prompt)) / np.maximum(steps, 1)


def dims_for(
    s: ModelSpec, phase: str, batch: Any, seq_len: Any, gen_len: Any, convention: str = "full"
) -> Dims:
    """Per-step sizes of a workload (arrays broadcast for sweeps)."""
    B = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seq_len, dtype=np.float64)
    G = np.asarray(gen_len, dtype=np.float64)
    writes_cache = convention == "full" and s.is_decoder and phase != "encode"
    if phase in ("encode", "prefill"):
        return Dims(B, L, L, np.ones_like(L), False, writes_cache, B * L)
    if phase == "decode":
        keys = L + 1 if s.sliding_window is None else np.minimum(L + 1, s.sliding_window)
        return Dims(B, np.ones_like(L), keys, np.ones_like(L), True, writes_cache, B)
    if phase == "generate":
        keys = _mean_keys(L, G, s.sliding_window)
        return Dims(B, np.ones_like(L), keys, G, True, writes_cache, B)
    raise MemwallError(f"unknown phase {phase!r}")


def bytes_for(prec: Precision | Sequence[Precision]) -> Bytes:
    if isinstance(prec, Precision):
        return Bytes(prec.weight_bytes, prec.act_bytes, prec.kv_bytes)
    return Bytes(
        np.array([p.weight_bytes for p in prec]),
        np.array([p.act_bytes for p in prec]),
        np.array([p.kv_bytes for p in prec]),
    )


def _resolve_precision(convention: str, prec: Precision | str | None) -> Precision:
    if convention == "paper":
        return PAPER_PRECISION
    if prec is None:
        return parse_precision("fp32")
    return parse_precision(prec) if isinstance(prec, str) else prec


# ---------------------------------------------------------------- public API


def op_table(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision | str | None = None,
    convention: str = "full",
    fused_attention: bool | None = None,
) -> pd.DataFrame:
    """One row per operation; values are totals over the layers a row stands for and the steps."""
    check_workload_fits(spec, workload)
    prec = _resolve_precision(convention, precision)
    defs = op_defs(spec, convention, fused_attention, workload.phase)
    d = dims_for(
        spec, workload.phase, workload.batch, workload.seq_len, workload.gen_len, convention
    )
    p = bytes_for(prec)
    steps = float(d.steps)
    rows = []
    for op in defs:
        c = op.fn(spec, d, p)
        n = (spec.n_layers if op.per_layer else 1) * steps
        w, a, kv, out = (float(x) * n for x in (c.w, c.a, c.kv, c.out))
        read = w + a + kv
        flops = float(c.flops) * n
        rows.append(
            {
                "name": op.name,
                "kind": op.kind,
                "layer": "all" if op.per_layer else "-",
                "count": spec.n_layers if op.per_layer else 1,
                "flops": flops,
                "matmul_flops": float(c.mm) * n,
                "bytes_weight": w,
                "bytes_act": a,
                "bytes_kv": kv,
                "bytes_read": read,
                "bytes_written": out,
                "bytes": read + out,
                "intensity": flops / (read + out) if read + out else 0.0,
                "dtype": prec.compute_dtype if op.dtype_role == "compute" else _act_dtype(prec),
                "steps": int(steps),
            }
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs.update(
        model=spec.name,
        convention=convention,
        precision=prec.label,
        fused_attention=bool(fused_attention is None or fused_attention) and convention == "full",
    )
    return df


def _act_dtype(prec: Precision) -> str:
    if prec.act_bits >= 32:
        return "fp32"
    if prec.act_bits == 16:
        return prec.float_kind
    return "int8"


def totals(df: pd.DataFrame) -> dict[str, float]:
    """Sum of an op table; intensity = total FLOPs / total bytes."""
    t = {
        k: float(df[k].sum())
        for k in (
            "flops",
            "matmul_flops",
            "bytes",
            "bytes_weight",
            "bytes_act",
            "bytes_kv",
            "bytes_read",
            "bytes_written",
        )
    }
    t["intensity"] = t["flops"] / t["bytes"] if t["bytes"] else 0.0
    return t


def sweep(
    spec: ModelSpec,
    phase: str,
    batch: Sequence[int] | int = 1,
    seq_len: Sequence[int] | int = 128,
    gen_len: Sequence[int] | int = 0,
    precisions: Sequence[Precision | str] | Precision | str | None = None,
    convention: str = "full",
    fused_attention: bool | None = None,
) -> pd.DataFrame:
    """Totals over the grid batch x seq_len x gen_len x precision, evaluated at once with numpy."""
    Workload(phase, 1, max(1, int(np.min(seq_len))), max(1, int(np.min(gen_len))))  # validate
    check_workload_fits(spec, Workload(phase, 1, 1, 1))
    if precisions is None or isinstance(precisions, Precision | str):
        precisions = [precisions]  # type: ignore[list-item]
    precs = [_resolve_precision(convention, p) for p in precisions]  # type: ignore[union-attr]
    b, sl, g, pi = np.meshgrid(
        np.atleast_1d(batch),
        np.atleast_1d(seq_len),
        np.atleast_1d(gen_len),
        np.arange(len(precs)),
        indexing="ij",
    )
    b, sl, g, pi = (x.ravel() for x in (b, sl, g, pi))
    for what, arr, lo in (("batch", b, 1), ("seq-len", sl, 0), ("gen-len", g, 0)):
        if np.any(arr < lo):
            raise MemwallError(f"{what} values must be >= {lo}")
    d = dims_for(spec, phase, b, sl, g, convention)
    bw = bytes_for(precs)
    p = Bytes(bw.w[pi], bw.a[pi], bw.kv[pi])
    flops = np.zeros(b.shape)
    nbytes = np.zeros(b.shape)
    for op in op_defs(spec, convention, fused_attention, phase):
        c = op.fn(spec, d, p)
        n = spec.n_layers if op.per_layer else 1
        flops += n * c.flops
        nbytes += n * (c.w + c.a + c.kv + c.out)
    flops *= d.steps
    nbytes *= d.steps
    return pd.DataFrame(
        {
            "batch": b,
            "seq_len": sl,
            "gen_len": g,
            "precision": [precs[i].label for i in pi],
            "flops": flops,
            "bytes": nbytes,
            "intensity": flops / nbytes,
        }
    )


def point_totals(
    spec: ModelSpec,
    phase: str,
    batch: int,
    seq_len: int,
    gen_len: int,
    precision: Precision,
    convention: str = "full",
) -> tuple[float, float]:
    """(flops, bytes) of one workload point with plain Python numbers: the per-point baseline."""
    d = dims_for(spec, phase, batch, seq_len, gen_len, convention)
    p = bytes_for(precision)
    flops = nbytes = 0.0
    for op in op_defs(spec, convention, None, phase):
        c = op.fn(spec, d, p)
        n = spec.n_layers if op.per_layer else 1
        flops += n * float(c.flops)
        nbytes += n * float(c.w + c.a + c.kv + c.out)
    return flops * float(d.steps), nbytes * float(d.steps)
