"""Formulas of Llama 4's attention inputs: rotary layers and NoPE layers in one model ("iRoPE").
Added to `formulas.REGISTRY` on import.

On its rotary layers Llama 4 rotates q and k (as complex numbers) and, with `use_qk_norm`,
normalises every query and key head with a weightless RMSNorm: one pointwise kernel, as the
rotary kernel of other models (`rope`). Its NoPE layers (every 4th) rotate nothing; with
`attn_temperature_tuning` they scale the queries by a factor that grows with the position (one
pointwise kernel over the queries, `attn_temp`), and their K goes to the cache as projected, so
their cache write reads K and V where a rotary layer's reads only V (its K was read by the
rotary kernel). Rows stand for all layers: each is scaled by the share of layers that run it.
The rotary layers' chunked attention is counted as a window (`ModelSpec.sliding_window`).
"""

from __future__ import annotations

from memwall.count.formulas import POINTWISE_FLOPS, REGISTRY, Bytes, Cost, Dims, OpDef, OpFn
from memwall.spec import ModelSpec


def _share(n: int, s: ModelSpec) -> float:
    return n / s.n_layers


def _rotary(cached: bool) -> OpFn:
    """q and k rotated (and RMS-normalised, no weights); `cached`: the rotated K goes straight
    to the cache (written by the cache-write row)."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        k = _share(s.rope_layers, s)
        n = d.T * (s.q_dim + s.kv_cached_dim)
        flops = POINTWISE_FLOPS["rope"] * n
        flops += POINTWISE_FLOPS["rmsnorm"] * n if s.rope_qk_norm else 0
        out = d.T * s.q_dim if cached else n
        table = d.Lq * s.head_dim  # complex rotation table: head_dim / 2 pairs per position
        return Cost(flops=k * flops, a=k * (n + table) * p.a, out=k * out * p.a)

    return fn


def _attn_temp(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """NoPE layers: queries x (1 + attn_scale x log1p(floor((pos + 1) / floor_scale)))."""
    k = _share(s.nope_layers, s)
    n = d.T * s.q_dim
    per_position = 7 * d.Lq  # arange + offset, +1, /, floor, log1p, x, +1: once per position
    return Cost(flops=k * (n + per_position), a=k * n * p.a, out=k * n * p.a)


def _cache_write(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """K and V appended to the cache; rotary layers read only V (K came from the rope kernel)."""
    kv = d.T * s.kv_cached_dim
    reads = _share(s.rope_layers, s) * kv + _share(s.n_layers - s.rope_layers, s) * 2 * kv
    return Cost(flops=0, a=reads * p.a, out=2 * kv * p.kv)


IROPE_OPS: dict[str, OpDef] = {
    "rope@irope": OpDef("rope", "elementwise", True, _rotary(False), "act"),
    "rope@irope_cached": OpDef("rope", "elementwise", True, _rotary(True), "act"),
    "attn_temp": OpDef("attn_temp", "elementwise", True, _attn_temp, "act"),
    "kv_cache_write@irope": OpDef("kv_cache_write", "elementwise", True, _cache_write, "act"),
}
REGISTRY.update(IROPE_OPS)


def is_irope(s: ModelSpec) -> bool:
    """Llama 4's attention inputs: NoPE layers among the rotary ones, or q/k norms after rope."""
    return s.position == "rotary" and (s.nope_layers > 0 or s.rope_qk_norm)


def irope_names(s: ModelSpec, writes_cache: bool) -> list[str]:
    """The rows between the q/k/v projections and attention of a Llama 4 layer."""
    names = []
    if s.rope_layers:
        names.append("rope@irope_cached" if writes_cache else "rope@irope")
    if s.nope_layers and s.attn_temperature:
        names.append("attn_temp")
    if writes_cache:
        names.append("kv_cache_write@irope")
    return names
