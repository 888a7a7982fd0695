"""Mixture-of-experts on the meta device: routing with no values, as the closed form assumes it.

A real router picks experts from the values, which the meta device does not have (and eager
MoE code asks which experts were hit, a data-dependent `nonzero`). On meta, memwall replaces
each experts module's forward with one that routes by count: the T x k (token, expert) pairs of
a step are dealt round-robin over round(E (1 - (1 - k/E)^T)) experts, the closed form's expected
number touched under uniform routing (exactly k for one token, all E for many), so each token
runs k experts (the closed form's FLOPs exactly) and the expert weights read match the closed
form's to within half an expert. Each expert then runs what the eager code runs for its tokens:
gather, gate/up projection, activation, down projection, routing weight, scatter-add.
The router itself runs unchanged.

Three layouts of 3-D expert tensors are known:
- Mixtral-style (Mixtral, Qwen3-MoE, Qwen2-MoE, DeepSeek): `gate_up_proj` (E, 2I, H) and
  `down_proj` (E, H, I), no biases, `act_fn(gate) * up`;
- GPT-OSS: `gate_up_proj` (E, H, 2I) and `down_proj` (E, I, H), each with a bias, gate and up
  interleaved, the clamped SwiGLU of its `_apply_gate`;
- Llama 4: `gate_up_proj` (E, H, 2I) and `down_proj` (E, I, H), no biases, called by the MoE
  block with every token scaled by its score for every expert (transformers runs all E experts
  on all tokens; the scores of the experts not picked are 0). Its MoE block's forward is
  replaced: the router runs unchanged, each token's top-k (score, expert) pairs are dealt as
  above, the token scaled by its score before its expert (as Llama 4 does), and the shared
  expert's output added.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ROUTING_NOTE = (
    "MoE traced on meta with balanced routing: the T x k token-expert pairs are dealt "
    "round-robin over round(E(1 - (1 - k/E)^T)) experts, the number uniform routing touches "
    "on average (as the closed form assumes)"
)


def _experts_3d(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    w, d = getattr(m, "gate_up_proj", None), getattr(m, "down_proj", None)
    if not (isinstance(w, torch.Tensor) and isinstance(d, torch.Tensor)):
        return None
    if w.dim() != 3 or d.dim() != 3 or not isinstance(getattr(m, "num_experts", None), int):
        return None
    return w, d


def _is_experts(m: nn.Module) -> bool:
    """Mixtral-style experts: gate_up_proj (E, 2I, H) and down_proj (E, H, I) as 3-D tensors."""
    wd = _experts_3d(m)
    if wd is None:
        return False
    w, d = wd
    return (
        w.shape[1] == 2 * d.shape[2]
        and w.shape[2] == d.shape[1]
        and callable(getattr(m, "act_fn", None))
    )


def _is_gpt_oss_experts(m: nn.Module) -> bool:
    """GPT-OSS experts: gate_up_proj (E, H, 2I), down_proj (E, I, H), biases, `_apply_gate`."""
    wd = _experts_3d(m)
    if wd is None:
        return False
    w, d = wd
    bu, bd = getattr(m, "gate_up_proj_bias", None), getattr(m, "down_proj_bias", None)
    return (
        w.shape[2] == 2 * d.shape[1]
        and w.shape[1] == d.shape[2]
        and isinstance(bu, torch.Tensor)
        and isinstance(bd, torch.Tensor)
        and callable(getattr(m, "_apply_gate", None))
    )


def _is_llama4_moe(m: nn.Module) -> bool:
    """Llama 4's MoE block: a Linear router, a shared expert and experts with gate_up_proj
    (E, H, 2I) and down_proj (E, I, H), no biases, called on pre-scaled tokens."""
    experts = getattr(m, "experts", None)
    wd = _experts_3d(experts) if isinstance(experts, nn.Module) else None
    if wd is None or getattr(experts, "gate_up_proj_bias", None) is not None:
        return False
    w, d = wd
    return (
        w.shape[2] == 2 * d.shape[1]
        and w.shape[1] == d.shape[2]
        and isinstance(getattr(m, "router", None), nn.Linear)
        and isinstance(getattr(m, "shared_expert", None), nn.Module)
        and isinstance(getattr(m, "top_k", None), int)
    )


def touched_experts(experts: int, k: int, tokens: int) -> int:
    """Experts a step of `tokens` tokens touches on average under uniform top-k routing."""
    expected = experts * (1 - (1 - k / experts) ** tokens)
    return max(min(k, experts), min(experts, round(expected)))


def _mixtral_expert(self, x: torch.Tensor, e: int) -> torch.Tensor:
    gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)
    return F.linear(self.act_fn(gate) * up, self.down_proj[e])


def _gpt_oss_expert(self, x: torch.Tensor, e: int) -> torch.Tensor:
    gate_up = x @ self.gate_up_proj[e] + self.gate_up_proj_bias[e]
    return self._apply_gate(gate_up) @ self.down_proj[e] + self.down_proj_bias[e]


def _routed(expert: Callable[[nn.Module, torch.Tensor, int], torch.Tensor]):
    """The eager experts loop with every expert's token count fixed by round-robin routing."""

    def forward(self, hidden_states, top_k_index, top_k_weights):
        tokens, k = top_k_index.shape
        pairs = tokens * k
        touched = touched_experts(self.num_experts, k, tokens)
        dev = hidden_states.device
        out = torch.zeros_like(hidden_states)
        for e in range(touched):
            n = pairs // touched + (1 if e < pairs % touched else 0)
            token_idx = torch.zeros(n, dtype=torch.long, device=dev)
            pos = torch.zeros(n, dtype=torch.long, device=dev)
            h = expert(self, hidden_states[token_idx], e)
            h = h * top_k_weights[token_idx, pos, None]
            out.index_add_(0, token_idx, h.to(out.dtype))
        return out

    return forward


def _llama4_expert(self, x: torch.Tensor, e: int) -> torch.Tensor:
    gate, up = (x @ self.gate_up_proj[e]).chunk(2, dim=-1)
    return (up * self.act_fn(gate)) @ self.down_proj[e]


def _llama4_moe_forward(self, hidden_states):
    """Llama 4's MoE block with count routing: router, top-k pairs dealt round-robin over the
    experts touched, each token scaled by its score before its expert, shared expert added."""
    hidden_states = hidden_states.reshape(-1, self.hidden_dim)
    router_scores, router_logits = self.router(hidden_states)
    top_w, top_i = torch.topk(router_scores, self.top_k, dim=1)
    experts = self.experts
    tokens, k = top_i.shape
    pairs = tokens * k
    touched = touched_experts(experts.num_experts, k, tokens)
    routed = torch.zeros_like(hidden_states)
    for e in range(touched):
        n = pairs // touched + (1 if e < pairs % touched else 0)
        token_idx = torch.zeros(n, dtype=torch.long, device=hidden_states.device)
        pos = torch.zeros(n, dtype=torch.long, device=hidden_states.device)
        x = hidden_states[token_idx] * top_w[token_idx, pos, None]
        routed.index_add_(0, token_idx, _llama4_expert(experts, x, e).to(routed.dtype))
    out = self.shared_expert(hidden_states)
    out.add_(routed)
    return out, router_logits


_LAYOUTS = (
    (_is_experts, _routed(_mixtral_expert)),
    (_is_gpt_oss_experts, _routed(_gpt_oss_expert)),
    (_is_llama4_moe, _llama4_moe_forward),
)


def balance_routing(model: nn.Module) -> int:
    """Give every experts module of `model` the balanced forward; how many were patched."""
    n = 0
    for m in model.modules():
        for matches, forward in _LAYOUTS:
            if matches(m):
                m.forward = types.MethodType(forward, m)
                n += 1
                break
    return n
