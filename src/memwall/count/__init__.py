"""Closed-form operation table: FLOPs and bytes of every operation of a Transformer.

One registry of per-operation formulas (`formulas.REGISTRY`; `ops` picks a model's rows), each
a pure function of broadcastable numpy arrays, so the same code evaluates one workload
(`op_table`) or a grid of a million (`sweep`).

Conventions (see DESIGN.md; every result names the one it used):
- `full`: what the model executes (embeddings, LM head, biases, norms, KV-cache writes), at the
  user's precision, counted per kernel: matmuls, attention (one fused kernel unless
  `fused_attention=False`), and each chain of pointwise work between them as one fused kernel
  that reads its inputs and writes only what later kernels use (the residual add and the norm
  after it are one kernel). Eager PyTorch runs such chains op by op and moves more bytes; the
  trace engine reports both.
- `paper`: the paper's Figure 3 accounting: 8-bit everything, each op reads its inputs once and
  writes its output once, only Q/K/V/O, the two attention matmuls, the two FFN matmuls and the
  "other" ops (softmax, layernorm, activation, residual add); no embeddings, no LM head.

Shared counting rules:
- one multiply-accumulate = 2 FLOPs; pointwise ops cost `POINTWISE_FLOPS[op]` per element.
- causal attention is counted as the full Lq x Lkv square, as dense kernels compute it (masked
  entries included); decode attends to the whole KV cache plus the new token.
- generate = sum of decode steps; every per-step cost is affine in the number of keys (or, with a
  sliding window, evaluated exactly), so the sum is steps x cost at the mean key count.
- integer weight formats quantize the layers' matmul weights; norms and biases stay 16-bit,
  and so do the embeddings and the LM head unless `Precision.quantize_head`.
- MoE: each token runs its top-k experts; the weights read are the experts touched, expected
  under independent uniform routing: E * (1 - (1 - k/E)^T) for T tokens in the step
  (`MOE_ROUTING` says so in every output).
- attention is one fused kernel unless transformers has no fused path (Gemma 2, GPT-OSS) or
  `fused_attention=False`; a fused kernel reads the KV cache at its cached width.
  `ops.fused_default` is the one place this default is decided.
- multi-head latent attention (DeepSeek) is counted absorbed for decode and generate (as
  serving engines run it), expanded for prefill and encode (`ops.mla_form`, `mla=`).
"""

from memwall.count.formulas import (
    MOE_ROUTING,
    POINTWISE_FLOPS,
    REGISTRY,
    TOKEN_ID_BYTES,
    Bytes,
    Cost,
    Dims,
    OpDef,
)
from memwall.count.mla import MLA_FORMS, mla_note
from memwall.count.ops import CONVENTIONS, fused_default, mla_form, op_defs, op_names
from memwall.count.table import (
    COLUMNS,
    bytes_for,
    dims_for,
    layer_groups,
    op_table,
    point_totals,
    sweep,
    totals,
)
from memwall.count.weights import matmul_params, vocab_params, weight_bytes

__all__ = [
    "COLUMNS",
    "CONVENTIONS",
    "MLA_FORMS",
    "MOE_ROUTING",
    "POINTWISE_FLOPS",
    "REGISTRY",
    "TOKEN_ID_BYTES",
    "Bytes",
    "Cost",
    "Dims",
    "OpDef",
    "bytes_for",
    "dims_for",
    "fused_default",
    "layer_groups",
    "mla_form",
    "mla_note",
    "op_defs",
    "op_names",
    "op_table",
    "point_totals",
    "sweep",
    "totals",
    "matmul_params",
    "vocab_params",
    "weight_bytes",
]
