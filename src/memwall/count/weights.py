"""Stored weight bytes by part, under the same rules the operation table reads them with.

Integer weight formats quantize the Transformer layers' matmul weights (and BERT's pooler);
norm weights and biases stay 16-bit; embedding tables and the LM head stay 16-bit unless
`Precision.quantize_head`. The paper's precision (8-bit everything, no scales) quantizes all.
"""

from __future__ import annotations

from memwall.spec import ModelSpec, Precision


def matmul_params(spec: ModelSpec) -> int:
    """Parameters of the layers' weight matrices (and the pooler's): what a quantiser converts."""
    d = spec.d_model
    attn = spec.attn_params()  # minus what is not a matrix: biases, MLA's latent norms
    attn -= (spec.q_dim + 2 * spec.kv_dim) * spec.qkv_bias if not spec.is_mla else 0
    if spec.is_mla:
        kv = spec.kv_lora_rank + spec.rope_head_dim
        attn -= (spec.q_lora_rank + kv) * spec.qkv_bias + spec.q_lora_rank + spec.kv_lora_rank
    attn -= (d if spec.o_bias else 0) + (spec.n_heads if spec.attn_sinks else 0)
    mats = 3 if spec.gated_mlp else 2
    mlp = spec.mlp_params(spec.is_moe) - (spec.n_experts if spec.router_bias else 0)
    mlp -= ((spec.d_ff * (mats - 1) + d) * max(spec.n_experts, 1)) if spec.mlp_bias else 0
    dense = spec.n_layers - spec.moe_layers
    moe_mats = spec.moe_layers * mlp if spec.is_moe else 0
    dense_mats = dense * mats * d * (spec.dense_d_ff or spec.d_ff)
    dec = spec.n_decoder_layers * (2 * attn + mats * d * spec.d_ff)  # T5: + cross-attention
    return spec.n_layers * attn + moe_mats + dense_mats + (d * d if spec.pooler else 0) + dec


def vocab_params(spec: ModelSpec) -> int:
    """Embedding tables and the LM head (counted once when tied)."""
    n = spec.embedding_params()
    if spec.has_lm_head and not spec.tied_embeddings:
        n += spec.vocab_size * spec.d_model
    return n


def weight_bytes(spec: ModelSpec, precision: Precision) -> tuple[float, float]:
    """(all stored weight bytes, bytes of the quantized part)."""
    total = spec.n_params()
    if not precision.integer_weights:
        b = total * precision.weight_bytes
        return b, (b if precision.weight_bits < 16 else 0.0)
    mm, vocab = matmul_params(spec), vocab_params(spec)
    small = total - mm - vocab
    q = mm * precision.weight_bytes
    head = vocab * precision.head_weight_bytes
    quantized = q + (head if precision.quantize_head else 0.0)
    return q + head + small * precision.small_weight_bytes, quantized
