"""Models that are neither presets nor in torchvision, built from sizes in a data file: the
encoder-decoder Transformer of Vaswani et al. 2017 (the paper's "Transformer Big (WMT)").

Built from `torch.nn.Transformer` (post-norm, ReLU feed-forward, as in the 2017 paper) with a
shared source/target embedding tied to the output projection (the paper's section 3.4),
sinusoidal positions, and the cross-entropy loss, so that tracing a training step keeps what the
loss keeps (the log-probabilities over the vocabulary).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from memwall.errors import MemwallError
from memwall.trace.sources import ModuleRun

_TRANSFORMER_KEYS = ("d_model", "d_ff", "heads", "layers", "vocab", "dropout")


class Seq2SeqTransformer(nn.Module):
    """Embedding (x sqrt(d)) + positions -> nn.Transformer -> tied projection -> loss."""

    def __init__(
        self, d_model: int, d_ff: int, heads: int, layers: int, vocab: int, dropout: float
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab, d_model)
        self.transformer = nn.Transformer(
            d_model,
            heads,
            layers,
            layers,
            d_ff,
            dropout,
            batch_first=True,
        )
        self.drop = nn.Dropout(dropout)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        L, d = ids.shape[1], self.d_model
        pos = torch.arange(L, device=ids.device, dtype=torch.float32)[:, None]
        freq = torch.exp(
            torch.arange(0, d, 2, device=ids.device, dtype=torch.float32) * (-math.log(1e4) / d)
        )
        pe = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)
        return self.drop(self.embed(ids) * math.sqrt(d) + pe.to(self.embed.weight.dtype))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(
            tgt.shape[1], device=tgt.device, dtype=self.embed.weight.dtype
        )
        h = self.transformer(self._embed(src), self._embed(tgt), tgt_mask=mask, tgt_is_causal=True)
        logits = h @ self.embed.weight.t()
        return F.cross_entropy(logits.flatten(0, 1), tgt.flatten())


def transformer_run(
    config: dict[str, Any],
    batch: int,
    seq_len: int,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
    name: str = "transformer",
) -> ModuleRun:
    """The model `config` describes (keys d_model, d_ff, heads, layers, vocab, dropout) and a
    batch of source and target sequences of `seq_len` tokens each."""
    missing = [k for k in _TRANSFORMER_KEYS if k not in config]
    if missing:
        raise MemwallError(f"transformer config lacks {', '.join(missing)}")
    with torch.device(device):
        model = Seq2SeqTransformer(*(config[k] for k in _TRANSFORMER_KEYS)).to(dtype)
        src = torch.zeros(batch, seq_len, dtype=torch.long)
        tgt = torch.zeros(batch, seq_len, dtype=torch.long)
    return ModuleRun(name, model, (src, tgt), {}, f"source and target tokens {batch}x{seq_len}")
