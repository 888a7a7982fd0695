"""The paper's convention: weight matrices only (no biases), every GELU counted as GELU.
Added to `formulas.REGISTRY` on import."""

from __future__ import annotations

from collections.abc import Callable

from memwall.count.formulas import (
    REGISTRY,
    Bytes,
    Cost,
    Dims,
    OpDef,
    OpFn,
    _pointwise,
    mnk,
)
from memwall.spec import ModelSpec


def _paper_linear(n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int]) -> OpFn:
    """The paper counts weight matrices only (no biases)."""

    def fn(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        i, o = n_in(s), n_out(s)
        mm = 2 * d.T * i * o
        return Cost(flops=mm, w=i * o * p.w, a=d.T * i * p.a, out=d.T * o * p.a, mm=mm)

    return fn


def _paper_act(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """The paper counts every GELU variant as GELU."""
    act = "gelu" if s.activation.startswith("gelu") else s.activation
    return _pointwise(lambda s: s.d_ff, act)(s, d, p)


def _lin(name: str, n_in: Callable[[ModelSpec], int], n_out: Callable[[ModelSpec], int]) -> OpDef:
    return OpDef(name, "matmul", True, _paper_linear(n_in, n_out), shape=mnk(n_in, n_out))


def _act(name: str, kind: str, fn: OpFn) -> OpDef:
    return OpDef(name, kind, True, fn, "act")


def _D(s: ModelSpec) -> int:
    return s.d_model


_NORM = _pointwise(_D, "layernorm", 1, 2)
_ADD = _pointwise(_D, "add", 2)
PAPER_DEFS: dict[str, OpDef] = {
    "paper:q_proj": _lin("q_proj", _D, lambda s: s.q_dim),
    "paper:k_proj": _lin("k_proj", _D, lambda s: s.kv_dim),
    "paper:v_proj": _lin("v_proj", _D, lambda s: s.kv_dim),
    "paper:o_proj": _lin("o_proj", lambda s: s.q_dim, _D),
    "paper:attn_residual": _act("attn_residual", "elementwise", _ADD),
    "paper:attn_norm": _act("attn_norm", "norm", _NORM),
    "paper:fc1": _lin("fc1", _D, lambda s: s.d_ff),
    "paper:act": _act("act", "elementwise", _paper_act),
    "paper:fc2": _lin("fc2", lambda s: s.d_ff, _D),
    "paper:mlp_residual": _act("mlp_residual", "elementwise", _ADD),
    "paper:mlp_norm": _act("mlp_norm", "norm", _NORM),
}
REGISTRY.update(PAPER_DEFS)
