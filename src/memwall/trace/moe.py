"""Mixture-of-experts on the meta device: routing with no values, as the closed form assumes it.

A real router picks experts from the values, which the meta device does not have (and eager
MoE code asks which experts were hit, a data-dependent `nonzero`). On meta, memwall replaces
each experts module's forward with one that routes by count: the T x k (token, expert) pairs of
a step are dealt round-robin over round(E (1 - (1 - k/E)^T)) experts, the closed form's expected
number touched under uniform routing (exactly k for one token, all E for many), so each token
runs k experts (the closed form's FLOPs exactly) and the expert weights read match the closed
form's to within half an expert. Each
expert then runs what the eager code runs for its tokens: gather, gate/up projection,
activation, down projection, routing weight, scatter-add. The router itself runs unchanged.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

ROUTING_NOTE = (
    "MoE traced on meta with balanced routing: the T x k token-expert pairs are dealt "
    "round-robin over round(E(1 - (1 - k/E)^T)) experts, the number uniform routing touches "
    "on average (as the closed form assumes)"
)


def _is_experts(m: nn.Module) -> bool:
    """Mixtral-style experts: gate_up_proj (E, 2I, H) and down_proj (E, H, I) as 3-D tensors."""
    w, d = getattr(m, "gate_up_proj", None), getattr(m, "down_proj", None)
    return (
        isinstance(w, torch.Tensor)
        and isinstance(d, torch.Tensor)
        and w.dim() == d.dim() == 3
        and w.shape[1] == 2 * d.shape[2]
        and w.shape[2] == d.shape[1]
        and isinstance(getattr(m, "num_experts", None), int)
        and callable(getattr(m, "act_fn", None))
    )


def touched_experts(experts: int, k: int, tokens: int) -> int:
    """Experts a step of `tokens` tokens touches on average under uniform top-k routing."""
    expected = experts * (1 - (1 - k / experts) ** tokens)
    return max(min(k, experts), min(experts, round(expected)))


def _balanced_forward(self, hidden_states, top_k_index, top_k_weights):
    """The eager experts loop with every expert's token count fixed by round-robin routing."""
    tokens, k = top_k_index.shape
    experts = self.num_experts
    pairs = tokens * k
    touched = touched_experts(experts, k, tokens)
    dev = hidden_states.device
    out = torch.zeros_like(hidden_states)
    for e in range(touched):
        n = pairs // touched + (1 if e < pairs % touched else 0)
        token_idx = torch.zeros(n, dtype=torch.long, device=dev)
        pos = torch.zeros(n, dtype=torch.long, device=dev)
        gate, up = F.linear(hidden_states[token_idx], self.gate_up_proj[e]).chunk(2, dim=-1)
        h = F.linear(self.act_fn(gate) * up, self.down_proj[e])
        h = h * top_k_weights[token_idx, pos, None]
        out.index_add_(0, token_idx, h.to(out.dtype))
    return out


def balance_routing(model: nn.Module) -> int:
    """Give every experts module of `model` the balanced forward; how many were patched."""
    n = 0
    for m in model.modules():
        if _is_experts(m):
            m.forward = types.MethodType(_balanced_forward, m)
            n += 1
    return n
