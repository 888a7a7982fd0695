"""Formulas of encoder-decoder models (T5): an encoder stack, a decoder stack with
cross-attention, one relative position bias per stack. Added to `formulas.REGISTRY` on import.

Workload semantics (seq_len L is the encoder input, the source sentence):
- encode: the encoder alone over L tokens per sequence.
- prefill: the encoder over L tokens and the decoder's first step (one start token per
  sequence), as `generate` runs them: the step projects every encoder token's cross-attention
  K and V once and writes them to the cross-attention cache, and writes its own self-attention
  K and V; the LM head runs on the one decoder token.
- decode: one decoder token per sequence whose self-attention cache holds L decoder tokens
  (it attends to L + 1) and whose cross-attention cache holds the L encoder tokens' K and V:
  the bytes stored and read per decoder step are both caches (`bytes_kv`).
- generate: gen_len decode steps at self-attention contexts L .. L + gen_len - 1, cross-attending
  the L encoder tokens (the encoder pass and the first step are prefill's, not included).

Rows carry their stack's layer count (`OpDef.layers`): `encoder.*` rows stand for `n_layers`
encoder blocks, `decoder.*` rows for `n_decoder_layers`. Attention runs as transformers' SDPA
path runs it: the position bias is the float mask each attention reads (and, in the encoder,
a contiguous copy of the permuted bias per layer); the bias itself is computed once per stack
(bucket arithmetic over every query/key pair, then a gather from the bias table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memwall.count.formulas import REGISTRY, Bytes, Cost, Dims, OpDef, OpFn
from memwall.spec import ModelSpec

# pointwise ops per (query, key) pair of transformers' `_relative_position_bucket` (positions,
# difference, sign / abs, small test, log-spaced bucket, clamp, select, offset)
BUCKET_FLOPS = 14
BUCKET_BYTES = 8  # int64 bucket ids


def _enc(d: Dims) -> Dims:
    """The encoder's sizes: every sequence's L input tokens, attending to each other."""
    L = d.Lenc
    return Dims(d.B, L, L, d.steps, False, False, 0, L)


def _dec_self(d: Dims) -> Dims:
    """One decoder token per sequence, attending its self-attention cache (prefill: itself)."""
    keys = d.Lkv if d.cached else 1
    return Dims(d.B, 1, keys, d.steps, True, True, d.B, d.Lenc)


def _dec_cross(d: Dims) -> Dims:
    """The decoder token attending the L encoder tokens' K and V in the cross cache."""
    return Dims(d.B, 1, d.Lenc, d.steps, True, True, d.B, d.Lenc)


def _scale(c: Cost, k: Any) -> Cost:
    return Cost(k * c.flops, k * c.w, k * c.a, k * c.kv, k * c.out, k * c.mm)


def _plus(c: Cost, a: Any = 0, out: Any = 0) -> Cost:
    return Cost(c.flops, c.w, c.a + a, c.kv, c.out + out, c.mm)


def _mask(s: ModelSpec, d: Dims, p: Bytes) -> Any:
    """Bytes of one (1, heads, Lq, Lkv) float bias: broadcast over the batch, read once."""
    return s.n_heads * d.Lq * d.Lkv * p.a


def _position_bias(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Bucket ids of every (query, key) pair (one pointwise kernel), then the bias rows
    gathered from the (buckets x heads) table: computed once per stack, shared by its layers."""
    pairs = d.Lq * d.Lkv
    return Cost(
        flops=BUCKET_FLOPS * pairs,
        w=s.relative_buckets * s.n_heads * p.small,
        a=pairs * BUCKET_BYTES,
        out=pairs * BUCKET_BYTES + s.n_heads * pairs * p.a,
    )


def _bias_copy(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The permuted bias made contiguous as SDPA's mask, in every encoder layer."""
    n = _mask(s, d, p)
    return Cost(flops=0, a=n, out=n)


def _attention(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Fused attention reading the bias as its float mask."""
    return _plus(REGISTRY["attention"].fn(s, d, p), a=_mask(s, d, p))


def _cross_bias(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The cross-attention's bias: zeros, made once in the decoder's first layer."""
    return Cost(flops=0, out=_mask(s, d, p))


def _last_norm(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """A stack's closing add + final norm keeps no residual sum: one write fewer."""
    return Cost(flops=0, out=-d.T * s.d_model * p.a)


def _cross_cache_write(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    return REGISTRY["kv_cache_write"].fn(s, d, p)


def _lm_head(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    return REGISTRY["lm_head"].fn(s, _dec_self(d), p)


def _enc_layers(s: ModelSpec) -> int:
    return s.n_layers


def _dec_layers(s: ModelSpec) -> int:
    return s.n_decoder_layers


def _on(
    fn: OpFn,
    dims: Callable[[Dims], Dims],
    layers: Callable[[ModelSpec], int] | None,
    extra: OpFn | None = None,
) -> OpFn:
    """`fn` at a stack's sizes, summed over its layers (`layers` None: once), plus `extra`."""

    def g(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        dd = dims(d)
        c = _scale(fn(s, dd, p), layers(s) if layers else 1)
        if extra is not None:
            e = extra(s, dd, p)
            c = Cost(c.flops + e.flops, c.w + e.w, c.a + e.a, c.kv + e.kv, c.out + e.out, c.mm)
        return c

    return g


_STACKS = {"encoder": (_enc, _enc_layers), "decoder": (_dec_self, _dec_layers)}


def _row(stack: str, name: str, base: str | OpFn, per_layer: bool = True, **kw: Any) -> OpDef:
    """A registry row of one stack: `base` (a registry key or a formula) at its sizes."""
    dims, layers = _STACKS[stack]
    dims = kw.pop("dims", dims)
    fn = REGISTRY[base].fn if isinstance(base, str) else base
    kind = kw.pop("kind", REGISTRY[base].kind if isinstance(base, str) else "elementwise")
    role = kw.pop("role", REGISTRY[base].dtype_role if isinstance(base, str) else "act")
    n = layers if per_layer else None
    base_shape = REGISTRY[base].shape if isinstance(base, str) else None
    return OpDef(
        f"{stack}.{name}",
        kind,
        False,
        _on(fn, dims, n, kw.pop("extra", None)),
        role,
        layers if per_layer else None,
        None if base_shape is None else (lambda s, d: base_shape(s, dims(d))),
        REGISTRY[base].role if isinstance(base, str) else "layer",
    )


def _rows() -> dict[str, OpDef]:
    rows = [
        _row("encoder", "embed", "embed", False),
        _row("encoder", "embed_norm", "embed_norm", False),
        _row("encoder", "position_bias", _position_bias, False, kind="embedding"),
        _row("encoder", "bias_copy", _bias_copy),
        *(_row("encoder", n, n) for n in ("q_proj", "k_proj", "v_proj")),
        _row("encoder", "attention", _attention, kind="attention", role="compute"),
        _row("encoder", "o_proj", "o_proj"),
        _row("encoder", "attn_add_norm", "attn_add_norm"),
        *(_row("encoder", n, n) for n in MLP_NAMES),
        _row("encoder", "mlp_add_norm", "mlp_add_norm", extra=_last_norm),
        _row("decoder", "embed", "embed", False),
        _row("decoder", "embed_norm", "embed_norm", False),
        _row("decoder", "position_bias", _position_bias, False, kind="embedding"),
        *(_row("decoder", f"self.{n}", n) for n in ("q_proj", "k_proj", "v_proj")),
        _row("decoder", "self.kv_cache_write", "kv_cache_write"),
        _row("decoder", "self.attention", _attention, kind="attention", role="compute"),
        _row("decoder", "self.o_proj", "o_proj"),
        _row("decoder", "self.add_norm", "attn_add_norm"),
        _row("decoder", "cross.q_proj", "q_proj"),
        _row("decoder", "cross.k_proj", "k_proj", dims=_enc),
        _row("decoder", "cross.v_proj", "v_proj", dims=_enc),
        _row("decoder", "cross.kv_cache_write", _cross_cache_write, dims=_enc),
        _row("decoder", "cross.position_bias", _cross_bias, False, dims=_dec_cross),
        _row(
            "decoder",
            "cross.attention",
            _attention,
            dims=_dec_cross,
            kind="attention",
            role="compute",
        ),
        _row("decoder", "cross.o_proj", "o_proj"),
        _row("decoder", "cross.add_norm", "attn_add_norm"),
        *(_row("decoder", n, n) for n in MLP_NAMES),
        _row("decoder", "mlp_add_norm", "mlp_add_norm", extra=_last_norm),
    ]
    out = {f"t5:{op.name}": op for op in rows}
    head = REGISTRY["lm_head"].shape
    assert head is not None
    out["t5:lm_head"] = OpDef(
        "lm_head", "matmul", False, _lm_head, shape=lambda s, d: head(s, _dec_self(d)), role="head"
    )
    return out


MLP_NAMES = ("fc1", "act", "fc2", "gate_proj", "up_proj", "act_mul", "down_proj")
ENCDEC_OPS = _rows()
REGISTRY.update(ENCDEC_OPS)


def encdec_names(s: ModelSpec, phase: str) -> list[str]:
    """Registry keys of an encoder-decoder model's rows for a phase (see the module doc)."""
    mlp = ["gate_proj", "up_proj", "act_mul", "down_proj"] if s.gated_mlp else ["fc1", "act", "fc2"]
    enc = "embed embed_norm position_bias bias_copy q_proj k_proj v_proj attention o_proj"
    enc_rows = [*enc.split(), "attn_add_norm", *mlp, "mlp_add_norm"]
    names = [f"t5:encoder.{n}" for n in enc_rows] if phase in ("encode", "prefill") else []
    if phase == "encode":
        return names
    dec = "embed embed_norm position_bias self.q_proj self.k_proj self.v_proj "
    dec += "self.kv_cache_write self.attention self.o_proj self.add_norm cross.q_proj"
    cross_proj = "cross.k_proj cross.v_proj cross.kv_cache_write" if phase == "prefill" else ""
    tail = "cross.position_bias cross.attention cross.o_proj cross.add_norm"
    dec_rows = [*dec.split(), *cross_proj.split(), *tail.split(), *mlp, "mlp_add_norm"]
    return [*names, *(f"t5:decoder.{n}" for n in dec_rows), "t5:lm_head"]
