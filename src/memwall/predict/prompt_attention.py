"""How much of a prompt's counted attention a flash-attention kernel computes.

The count holds the full L x L score square for every layer, as eager attention computes it (and
the MFU conventions count it). A fused causal kernel skips the masked half; under a sliding
window (Mistral, Gemma 2/3, GPT-OSS; Llama 4's chunks) it computes only the band of query tiles
that reach into the window: per query about the window plus one query tile of keys, the tile
the kernel works in (`FLASH_Q_TILE`). This is pure arithmetic on the spec: no device.
"""

from __future__ import annotations

from memwall.count.table import band_sum
from memwall.errors import MemwallError
from memwall.spec import ModelSpec

CAUSAL_WORK = 0.5  # share of the L x L score blocks a causal flash-attention kernel computes

# Query rows a flash-attention kernel computes at once, for 16-bit head dims above 96:
# Dao-AILab/flash-attention hopper/tile_size.h, tile_size_fwd_sm90 (kBlockM 128; 192 at head
# dims up to 96) and tile_size_fwd_sm8x (kBlockM 128 at every head dim). A query tile sliding
# over a window touches the window plus the tile's own span of keys.
FLASH_Q_TILE = 128


def attention_share(causal: bool | float) -> float:
    """The share of counted attention scores a kernel computes: 1 (not causal), CAUSAL_WORK
    (causal) or the share given (`prompt_attention_work`)."""
    if isinstance(causal, bool):
        return CAUSAL_WORK if causal else 1.0
    if not 0.0 < causal <= 1.0:
        raise MemwallError(f"attention work share must be in (0, 1], got {causal!r}")
    return float(causal)


def prompt_attention_work(spec: ModelSpec, seq_len: int) -> float:
    """Share of the counted L x L scores the causal kernels of a prompt of `seq_len` tokens
    compute, averaged over the layers: CAUSAL_WORK where every layer attends to all earlier
    tokens, less where sliding-window layers compute only their band (window + one query tile
    of keys per query)."""
    L = float(seq_len)
    w, n = spec.n_window_layers, spec.n_layers
    if not w or spec.sliding_window is None or L <= 0:
        return CAUSAL_WORK
    width = spec.sliding_window + FLASH_Q_TILE
    windowed = CAUSAL_WORK * float(band_sum(L, width) / band_sum(L, L))
    return ((n - w) * CAUSAL_WORK + w * windowed) / n


def attention_work(spec: ModelSpec, phase: str, seq_len: int) -> float:
    """The attention share to price `phase` with (`predict_efficiency(causal=...)`): a decoder's
    prompt (prefill; training steps run as one) at `prompt_attention_work`, anything else 1."""
    if spec.is_decoder and phase == "prefill":
        return prompt_attention_work(spec, seq_len)
    return 1.0


def window_count_share(spec: ModelSpec, phase: str, seq_len: int) -> float:
    """Share of a prompt's counted attention FLOPs the MFU convention keeps. The count holds L
    keys per query on every layer (eager attention computes the square, masked or not); the
    convention counts a full-attention layer's causal square whole, as usual, but a sliding-
    window layer's queries at the min(L, W) keys they can attend, so that a windowed model's
    MFU cannot pass 100% at long prompts. 1 for decode (its count already caps the keys)."""
    w, n = spec.n_window_layers, spec.n_layers
    if phase != "prefill" or not w or spec.sliding_window is None or seq_len <= 0:
        return 1.0
    return ((n - w) + w * min(seq_len, spec.sliding_window) / seq_len) / n
