"""Formulas of mixture-of-experts blocks with a shared expert outside DeepSeek's MLA models
(Qwen2-MoE, Llama 4). Added to `formulas.REGISTRY` on import.

A MoE layer runs the router and the top-k routed experts (the rows `count.mla` registers for
DeepSeek: `router@shared`, `expert_*@shared`) and one shared SwiGLU expert on every token,
`ModelSpec.shared_width` wide (Qwen2-MoE: `shared_expert_intermediate_size`; Llama 4: as wide as
a routed expert). Qwen2-MoE scales the shared expert's output by sigmoid(Linear(d, 1)) before
adding it (`shared_expert_gate`: a matmul row of its own, then sigmoid, scale and add in one
pointwise kernel); Llama 4 adds it as it is. Layers that run a dense MLP instead (Qwen2-MoE's
`mlp_only_layers` / `decoder_sparse_step`, Llama 4's layers outside `moe_layers`) are counted by
the dense rows (`*@dense`). Rows stand for all layers: MoE rows are scaled by the share of MoE
layers, dense rows by the share of dense layers.
"""

from __future__ import annotations

from memwall.count import mla  # noqa: F401  (registers the routed-expert and dense rows used here)
from memwall.count.formulas import (
    POINTWISE_FLOPS,
    REGISTRY,
    Bytes,
    Cost,
    Dims,
    OpDef,
    OpFn,
    ShapeFn,
    _linear,
    mnk,
)
from memwall.spec import ModelSpec


def _moe_share(s: ModelSpec) -> float:
    return s.moe_layers / s.n_layers


def _on_moe_layers(
    name: str, kind: str, fn: OpFn, role: str = "compute", shape: ShapeFn | None = None
) -> OpDef:
    """`fn` on the MoE layers' share of the layers (rows stand for all layers)."""

    def g(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
        c, k = fn(s, d, p), _moe_share(s)
        return Cost(k * c.flops, k * c.w, k * c.a, k * c.kv, k * c.out, k * c.mm)

    return OpDef(name, kind, True, g, role, shape=shape)


def _D(s: ModelSpec) -> int:
    return s.d_model


def _W(s: ModelSpec) -> int:
    return s.shared_width


def _shared_act_mul(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * s.shared_width
    return Cost(flops=(POINTWISE_FLOPS[s.activation] + 1) * n, a=2 * n * p.a, out=n * p.a)


def _gated_add(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    """Qwen2-MoE: routed + sigmoid(gate logit) x shared, one kernel (reads the logit, both
    outputs; writes the sum)."""
    n = d.T * s.d_model
    sigmoid = POINTWISE_FLOPS["silu"] - 1  # 1 / (1 + exp(-x)), as the trace counts it
    return Cost(flops=2 * n + sigmoid * d.T, a=(2 * n + d.T) * p.a, out=n * p.a)


SHARED_MOE_OPS: dict[str, OpDef] = {
    "shared_gate@sized": _on_moe_layers(
        "shared_gate", "matmul", _linear(_D, _W, None), shape=mnk(_D, _W)
    ),
    "shared_up@sized": _on_moe_layers(
        "shared_up", "matmul", _linear(_D, _W, None), shape=mnk(_D, _W)
    ),
    "shared_act_mul@sized": _on_moe_layers("shared_act_mul", "elementwise", _shared_act_mul, "act"),
    "shared_down@sized": _on_moe_layers(
        "shared_down", "matmul", _linear(_W, _D, None), shape=mnk(_W, _D)
    ),
    "shared_expert_gate": _on_moe_layers(
        "shared_expert_gate", "matmul", _linear(_D, lambda s: 1, None), shape=mnk(_D, lambda s: 1)
    ),
    "shared_add@gated": _on_moe_layers("shared_add", "elementwise", _gated_add, "act"),
}
REGISTRY.update(SHARED_MOE_OPS)

_ROUTED = "router expert_gate expert_up expert_act_mul expert_down expert_combine".split()


def shared_moe_names(s: ModelSpec) -> list[str]:
    """The MLP rows of a MoE model with a shared expert or dense layers (not MLA): dense rows
    for the dense layers, then the router, the routed experts and the shared expert."""
    names = []
    if s.dense_layers:
        names += ["gate_proj@dense", "up_proj@dense", "act_mul@dense", "down_proj@dense"]
    if s.moe_layers:
        names += [f"{n}@shared" for n in _ROUTED]
        if s.shared_width:
            names += [f"shared_{n}@sized" for n in ("gate", "up", "act_mul", "down")]
            gated = ["shared_expert_gate", "shared_add@gated"]
            names += gated if s.shared_expert_gate else ["shared_add"]
    return names
