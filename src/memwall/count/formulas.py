"""The formula registry: one pure function per operation, on broadcastable numpy arrays.

Each formula maps (ModelSpec, Dims, Bytes) to a `Cost` (FLOPs and bytes of one layer and one
step); `REGISTRY` names every one of them, and `count.ops` picks the rows a model runs from it.
Weights are read at three widths (`Bytes`): the layers' matmul weights (`w`), the small vectors
(norm weights, biases: `wn`, 16-bit under integer formats) and the vocabulary matrices
(embedding rows and LM head: `wh`, 16-bit under integer formats unless `quantize_head`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memwall.spec import ModelSpec

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
    Lenc: Any = None  # encoder-decoder models (T5): encoder input tokens per sequence

    @property
    def T(self) -> Any:
        return self.B * self.Lq


@dataclass(frozen=True)
class Bytes:
    """Bytes per element of weights, activations and KV cache (arrays allowed, for sweeps)."""

    w: Any  # the layers' matmul weights
    a: Any
    kv: Any
    wn: Any = None  # norm weights and biases (None: as w)
    wh: Any = None  # embedding rows and LM head (None: as w)

    @property
    def small(self) -> Any:
        return self.w if self.wn is None else self.wn

    @property
    def head(self) -> Any:
        return self.w if self.wh is None else self.wh


@dataclass(frozen=True)
class Cost:
    flops: Any
    w: Any = 0  # weight bytes read
    a: Any = 0  # activation bytes read
    kv: Any = 0  # KV-cache bytes read
    out: Any = 0  # bytes written
    mm: Any = 0  # matmul part of flops (what torch's FlopCounterMode counts)


OpFn = Callable[[ModelSpec, Dims, Bytes], Cost]
ShapeFn = Callable[[ModelSpec, Dims], tuple[Any, Any, Any]]  # (m, k, n) of one matmul call


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    per_layer: bool
    fn: OpFn
    dtype_role: str = "compute"  # compute | act
    layers: Callable[[ModelSpec], int] | None = None  # rows that sum their own layers (T5)
    shape: ShapeFn | None = None  # Linear layers: (tokens, in, out features) of one call
    role: str = "layer"  # "head": a vocabulary matrix (embedding rows, LM head), read at `wh`

    @property
    def model_level(self) -> bool:
        """Runs once per model, not in each layer (embeddings, LM head, pooler)."""
        return not self.per_layer and self.layers is None


# ---------------------------------------------------------------- formulas


def _linear(n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int], bias: str | None):
    """A dense layer on every new token: reads its weight matrix once per step."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        i, o = n_in(s), n_out(s)
        has_bias = bool(getattr(s, bias)) if bias else False
        mm = 2 * d.T * i * o
        return Cost(
            flops=mm + (d.T * o if has_bias else 0),
            w=i * o * p.w + (o * p.small if has_bias else 0),
            a=d.T * i * p.a,
            out=d.T * o * p.a,
            mm=mm,
        )

    return fn


def mnk(n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int]) -> ShapeFn:
    return lambda s, d: (d.T, n_in(s), n_out(s))


def _pointwise(width: Callable[[ModelSpec], int], op: str, n_inputs: int = 1, weights: int = 0):
    """Elementwise work over T x width elements; `weights` per-channel parameter vectors."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        n = d.T * width(s)
        return Cost(
            flops=POINTWISE_FLOPS[op] * n,
            w=weights * width(s) * p.small,
            a=n_inputs * n * p.a,
            out=n * p.a,
        )

    return fn


def repeats_kv(s: ModelSpec) -> bool:
    """Eager attention (Gemma 2, GPT-OSS) copies K and V to every query head first."""
    return s.eager_attention and s.n_kv_heads < s.n_heads


def _kv_read(s: ModelSpec, d: Dims, p: Bytes, fused: bool = False) -> tuple[Any, Any]:
    """(activation bytes, cache bytes) of reading K (or V) for every sequence. A fused kernel
    reads them at their cached width (never per-head copies), from the cache when decoding."""
    if repeats_kv(s) and not fused:  # eager matmuls read the per-head copies `kv_repeat` wrote
        return d.B * d.Lkv * s.q_dim * p.a, 0
    n = d.B * d.Lkv * s.kv_cached_dim
    return (0, n * p.kv) if d.cached else (n * p.a, 0)


def _kv_repeat(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Eager attention's `repeat_kv`: K and V copied to every query head (GQA)."""
    n = d.B * d.Lkv * s.kv_cached_dim
    return Cost(
        flops=0,
        a=0 if d.cached else 2 * n * p.a,
        kv=2 * n * p.kv if d.cached else 0,
        out=2 * d.B * d.Lkv * s.q_dim * p.a,
    )


def _scores(s: ModelSpec, d: Dims) -> Any:
    return d.B * s.n_heads * d.Lq * d.Lkv


def _attn_fused(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 4 * _scores(s, d) * s.head_dim
    a_kv, kv = _kv_read(s, d, p, fused=True)
    cap = 3 if s.attn_softcap else 0  # Gemma 2's soft-capping, inside the kernel
    return Cost(
        flops=mm + (POINTWISE_FLOPS["softmax"] + cap) * _scores(s, d),
        a=d.T * s.q_dim * p.a + 2 * a_kv,
        kv=2 * kv,
        out=d.T * s.q_dim * p.a,
        mm=mm,
    )


def _attn_score(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 2 * _scores(s, d) * s.head_dim
    a_k, kv_k = _kv_read(s, d, p)
    cap = 3 if s.attn_softcap else 0  # Gemma 2: divide, tanh, multiply on every score
    return Cost(
        flops=mm + (1 + cap) * _scores(s, d),  # + the 1/sqrt(d) scaling
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
    n = 2 * d.T * s.kv_cached_dim
    return Cost(flops=0, a=n * p.a, out=n * p.kv)


def _rope(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Rotary embedding of q and k; with `qk_norm` (Qwen3) the per-head RMSNorm before it is
    part of the same pointwise chain, so of the same kernel (its two weight vectors read)."""
    n = d.T * (s.q_dim + s.kv_cached_dim)
    rot = s.rotary_fraction  # GPT-NeoX rotates a quarter of each head and copies the rest
    flops = POINTWISE_FLOPS["rope"] * rot * n
    flops += POINTWISE_FLOPS["rmsnorm"] * n if s.qk_norm else 0
    return Cost(
        flops=flops,
        w=(2 * s.head_dim * p.small) if s.qk_norm else 0,
        a=n * p.a + 2 * d.T * s.head_dim * rot * p.a,  # q, k and the cos / sin tables
        out=n * p.a,
    )


def _embed(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    tables = 1 + (s.position == "learned") + (s.type_vocab_size > 0)
    n = d.T * s.d_model
    return Cost(
        flops=0,
        w=tables * n * p.head,  # one row per token from each table, not the whole table
        a=d.T * TOKEN_ID_BYTES,
        out=tables * n * p.a,
    )


def _lm_head(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    mm = 2 * d.lm_tokens * s.d_model * s.vocab_size
    return Cost(
        flops=mm,
        w=s.vocab_size * s.d_model * p.head,  # the whole matrix, tied or not
        a=d.lm_tokens * s.d_model * p.a,
        out=d.lm_tokens * s.vocab_size * p.a,
        mm=mm,
    )


def _logit_softcap(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Gemma 2's final soft-capping, cap * tanh(logits / cap): one pointwise kernel."""
    n = d.lm_tokens * s.vocab_size
    return Cost(flops=3 * n, a=n * p.a, out=n * p.a)


def _pooler(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    one = Dims(d.B, 1, 1, d.steps, False, False, d.B)
    c = _linear(lambda s: s.d_model, lambda s: s.d_model, "o_bias")(s, one, p)
    n = d.B * s.d_model
    return Cost(c.flops + n, c.w, c.a + n * p.a, out=c.out + n * p.a, mm=c.mm)  # + tanh


MOE_ROUTING = (
    "expert weights read assume independent, uniform top-k routing: E(1 - (1 - k/E)^T) "
    "distinct experts expected among the T tokens of a step (k for one token, nearly all E "
    "for many); an upper bound for independently routed tokens (skewed routing touches fewer)"
)


def _experts_touched(s: ModelSpec, d: Dims) -> Any:
    e, k = s.n_experts, min(s.experts_per_token, s.n_experts)  # an EP shard may hold < k
    return e * (1.0 - (1.0 - k / e) ** d.T)


def _router(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    c = _linear(lambda s: s.d_model, lambda s: s.n_experts, None)(s, d, p)
    n = d.T * s.n_experts  # softmax + top-k over the router logits
    flops = c.flops + POINTWISE_FLOPS["softmax"] * n
    return Cost(flops, c.w, c.a + n * p.a, out=c.out + n * p.a, mm=c.mm)


def expert_mnk(n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int]) -> ShapeFn:
    """One expert's call: the tokens routed to it on average (n_experts calls per layer)."""
    return lambda s, d: (d.T * s.experts_per_token / s.n_experts, n_in(s), n_out(s))


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


def _D(s: ModelSpec) -> int:
    return s.d_model


def _F(s: ModelSpec) -> int:
    return s.d_ff


def _Q(s: ModelSpec) -> int:
    return s.q_dim


def _KV(s: ModelSpec) -> int:
    return s.kv_dim


def _F2(s: ModelSpec) -> int:
    return 2 * s.d_ff


def _QKV(s: ModelSpec) -> int:
    return s.q_dim + 2 * s.kv_dim


def _E(s: ModelSpec) -> int:
    return max(s.n_experts, 1)


_HEAD: ShapeFn = lambda s, d: (d.lm_tokens, s.d_model, s.vocab_size)  # noqa: E731
_POOL: ShapeFn = lambda s, d: (d.B, s.d_model, s.d_model)  # noqa: E731


def _add_norm(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Residual add fused with the norm that follows it (one kernel, as a fusing compiler runs it).

    Pre-norm models keep the sum (the residual stream) and the normalised copy: 2 writes.
    Post-norm models (BERT) keep only the normalised sum. Sandwich norms (Gemma) also normalise
    the branch's output before the add: two norms in the same kernel.
    """
    n = d.T * s.d_model
    norms = 2 if s.sandwich_norm else 1
    vectors = s.norm_params() // s.d_model  # weight (+ bias) vectors, none without affine
    return Cost(
        flops=(1 + norms * POINTWISE_FLOPS[s.norm]) * n,
        w=norms * vectors * s.d_model * p.small,
        a=2 * n * p.a,
        out=(2 if s.pre_norm else 1) * n * p.a,
    )


def _embed_norm(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Sum of the embedding rows fused with the first norm (BERT's, or layer 0's attn norm)."""
    tables = 1 + (s.position == "learned") + (s.type_vocab_size > 0)
    n = d.T * s.d_model
    vectors = s.norm_params() // s.d_model  # weight (+ bias) vectors, none without affine
    # the residual stream is the sum (or Gemma's scaled rows); one plain table is its own
    keeps_sum = s.pre_norm and (tables > 1 or s.embed_scale)
    return Cost(
        flops=(tables - 1 + s.embed_scale + POINTWISE_FLOPS[s.norm]) * n,
        w=vectors * s.d_model * p.small,
        a=tables * n * p.a,
        out=(1 + keeps_sum) * n * p.a,
    )


def _parallel_add_norm(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """A parallel block's end (GPT-NeoX): x + attention + MLP, then the next layer's two norms
    of the sum, one kernel: reads 3 tensors, writes the sum and both normalised copies (one
    with Falcon-7B's single norm)."""
    n = d.T * s.d_model
    vectors = s.norm_params() // s.d_model
    k = s.block_norms
    return Cost(
        flops=(2 + k * POINTWISE_FLOPS[s.norm]) * n,
        w=k * vectors * s.d_model * p.small,
        a=3 * n * p.a,
        out=(1 + k) * n * p.a,
    )


def _embed_norm_parallel(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The embedding rows and layer 0's two norms of them (a parallel block reads both)."""
    c = _embed_norm(s, d, p)
    n = d.T * s.d_model
    x = s.block_norms - 1  # the norms beyond the first
    out = c.out + x * n * p.a
    return Cost(c.flops + x * POINTWISE_FLOPS[s.norm] * n, (1 + x) * c.w, c.a, out=out)


def _rope_cached(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Rotary embedding whose rotated K goes straight into the KV cache (see kv_cache_write)."""
    c = _rope(s, d, p)
    return Cost(c.flops, c.w, c.a, out=d.T * s.q_dim * p.a)


def _kv_cache_write_after_rope(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Appends K (already read by the rope kernel) and V to the cache."""
    kv = s.kv_cached_dim
    return Cost(flops=0, a=d.T * kv * p.a, out=2 * d.T * kv * p.kv)


def _act(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The MLP activation of a plain (ungated) MLP."""
    return _pointwise(_F, s.activation)(s, d, p)


def _op(name: str, kind: str, fn: OpFn, per_layer: bool = True, role: str = "compute") -> OpDef:
    return OpDef(name, kind, per_layer, fn, role)


def linear_op(name: str, n_in: Callable, n_out: Callable, bias: str | None) -> OpDef:
    """A Linear layer's row: its formula and its (m, k, n)."""
    return OpDef(name, "matmul", True, _linear(n_in, n_out, bias), shape=mnk(n_in, n_out))


def _expert(name: str, n_in: Callable, n_out: Callable) -> OpDef:
    return OpDef(name, "moe", True, _expert_linear(n_in, n_out), shape=expert_mnk(n_in, n_out))


# Every operation counted, by key (the row name, or `name@variant` where one row has several
# formulas). `count.ops` lists which of them a model runs, in order.
REGISTRY: dict[str, OpDef] = {
    op.name if key is None else key: op
    for key, op in [
        (None, OpDef("embed", "embedding", False, _embed, "act", role="head")),
        (None, _op("embed_norm", "norm", _embed_norm, False, "act")),
        (None, linear_op("qkv_proj", _D, _QKV, "qkv_bias")),
        (None, linear_op("q_proj", _D, _Q, "qkv_bias")),
        (None, linear_op("k_proj", _D, _KV, "qkv_bias")),
        (None, linear_op("v_proj", _D, _KV, "qkv_bias")),
        (None, _op("q_scale", "elementwise", _pointwise(_Q, "mul"), role="act")),
        (None, _op("rope", "elementwise", _rope, role="act")),
        ("rope@cached", _op("rope", "elementwise", _rope_cached, role="act")),
        (None, _op("kv_cache_write", "elementwise", _kv_cache_write, role="act")),
        (
            "kv_cache_write@after_rope",
            _op("kv_cache_write", "elementwise", _kv_cache_write_after_rope, role="act"),
        ),
        (None, _op("kv_repeat", "elementwise", _kv_repeat, role="act")),
        (None, _op("attention", "attention", _attn_fused)),
        (None, _op("attn_score", "matmul", _attn_score)),
        (None, _op("softmax", "softmax", _softmax, role="act")),
        (None, _op("attn_value", "matmul", _attn_value)),
        (None, linear_op("o_proj", _Q, _D, "o_bias")),
        (None, _op("attn_add_norm", "norm", _add_norm, role="act")),
        (None, OpDef("router", "moe", True, _router, shape=mnk(_D, _E))),
        (None, _expert("expert_gate", _D, _F)),
        (None, _expert("expert_up", _D, _F)),
        (None, _op("expert_act_mul", "elementwise", _expert_act_mul, role="act")),
        (None, _expert("expert_down", _F, _D)),
        (None, _op("expert_combine", "elementwise", _expert_combine, role="act")),
        (None, linear_op("gate_proj", _D, _F, "mlp_bias")),
        (None, linear_op("up_proj", _D, _F, "mlp_bias")),
        (None, linear_op("gate_up_proj", _D, _F2, "mlp_bias")),
        (None, _op("act_mul", "elementwise", _act_mul, role="act")),
        (None, linear_op("down_proj", _F, _D, "mlp_bias")),
        (None, linear_op("fc1", _D, _F, "mlp_bias")),
        (None, _op("act", "elementwise", _act, role="act")),
        (None, linear_op("fc2", _F, _D, "mlp_bias")),
        (None, _op("mlp_add_norm", "norm", _add_norm, role="act")),
        ("mlp_add_norm@parallel", _op("mlp_add_norm", "norm", _parallel_add_norm, role="act")),
        (
            "embed_norm@parallel",
            _op("embed_norm", "norm", _embed_norm_parallel, False, "act"),
        ),
        (None, OpDef("lm_head", "matmul", False, _lm_head, shape=_HEAD, role="head")),
        (None, _op("logit_softcap", "elementwise", _logit_softcap, False, "act")),
        (None, OpDef("pooler", "matmul", False, _pooler, shape=_POOL)),
    ]
}
