"""A compact GPT-2 (pre-norm, learned positions, tied embeddings, GELU-tanh, biases) in plain torch.

Why our own module and not transformers': every matrix is an `nn.Linear` whose slot can be swapped
for a quantised or sparse layer, heads and FFN neurons can be removed per layer, and decode with a
KV cache is a few lines we control. The architecture is GPT-2's exactly, so memwall's closed-form
count of a `gpt2` ModelSpec describes it operation for operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from memwall.spec import ModelSpec


@dataclass(frozen=True)
class GPTShape:
    """What the module needs to be built (a subset of a gpt2 ModelSpec)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_ff: int
    vocab_size: int
    max_positions: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> GPTShape:
        return cls(
            spec.n_layers,
            spec.d_model,
            spec.n_heads,
            spec.d_ff,
            spec.vocab_size,
            spec.max_positions,
        )


class Attention(nn.Module):
    """Causal self-attention; `n_heads` may shrink below d_model / head_dim after pruning."""

    def __init__(self, d: int, n_heads: int, head_dim: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.qkv = nn.Linear(d, 3 * n_heads * head_dim)
        self.out = nn.Linear(n_heads * head_dim, d)

    def forward(self, x: torch.Tensor, cache: list | None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        causal = True
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
                causal = T > 1
            cache[:] = [k, v]
        if causal and k.shape[2] != T:  # prefill on top of a cache: offset causal mask
            mask = torch.ones(T, k.shape[2], dtype=torch.bool).tril(k.shape[2] - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class Block(nn.Module):
    def __init__(self, s: GPTShape) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(s.d_model), nn.LayerNorm(s.d_model)
        self.attn = Attention(s.d_model, s.n_heads, s.head_dim)
        self.fc = nn.Linear(s.d_model, s.d_ff)
        self.proj = nn.Linear(s.d_ff, s.d_model)

    def forward(self, x: torch.Tensor, cache: list | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """Token ids (B, T) -> logits (B, T, vocab); `caches` (one list per layer) enables decode."""

    def __init__(self, s: GPTShape) -> None:
        super().__init__()
        self.shape = s
        self.wte = nn.Embedding(s.vocab_size, s.d_model)
        self.wpe = nn.Embedding(s.max_positions, s.d_model)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.n_layers))
        self.ln_f = nn.LayerNorm(s.d_model)
        self.apply(self._init)
        for b in self.blocks:  # GPT-2's scaled init of the residual projections
            std = 0.02 / math.sqrt(2 * s.n_layers)
            nn.init.normal_(b.attn.out.weight, std=std)
            nn.init.normal_(b.proj.weight, std=std)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(
        self, ids: torch.Tensor, caches: list[list] | None = None, start: int = 0
    ) -> torch.Tensor:
        pos = torch.arange(start, start + ids.shape[1])
        x = self.wte(ids) + self.wpe(pos)
        for i, b in enumerate(self.blocks):
            x = b(x, None if caches is None else caches[i])
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight)  # tied LM head


def new_caches(model: GPT) -> list[list]:
    return [[] for _ in model.blocks]
