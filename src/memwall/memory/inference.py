"""Memory of serving a model: weights, KV cache, peak activations; what fits on a device.

- Weights at the chosen precision. Integer weights carry one 16-bit scale per group
  (`Precision.weight_bytes`); only the layers' matmul weights are quantised: norms and biases
  stay 16-bit, as weight-only quantisers (GPTQ, AWQ, bitsandbytes) leave them, and so do the
  embedding tables and LM head unless `Precision.quantize_head` (`Precision.note` says which).
  The paper's precision (8-bit everything, no scales) quantises all.
- KV cache: K and V of every layer for every cached token, `n_kv_heads * head_dim` wide
  (grouped-query attention shares them), at the KV precision; a sliding window caps the tokens.
- Activations: no_grad inference keeps nothing across kernels, so the peak is the largest
  kernel's inputs and outputs plus the residual stream beside them, from count's op table (with
  unfused attention the score and probability matrices are that kernel).
- Framework overhead (CUDA context, library workspaces) is its own line, an assumption with its
  source, never mixed into the model's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memwall.count import fused_default
from memwall.count import matmul_params as count_matmul_params
from memwall.count import weight_bytes as weight_bytes
from memwall.errors import MemwallError
from memwall.memory.activations import inference_activation_peak
from memwall.search import largest
from memwall.spec import (
    MAX_BATCH,
    MAX_LENGTH,
    ModelSpec,
    Precision,
    Workload,
    check_workload_fits,
)


def matmul_params(spec: ModelSpec) -> int:
    """Parameters in weight matrices: the layers' and pooler's, plus an untied LM head."""
    head = spec.vocab_size * spec.d_model if spec.has_lm_head and not spec.tied_embeddings else 0
    return count_matmul_params(spec) + head


def kv_cache_bytes(
    spec: ModelSpec, batch: int, context: int, precision: Precision, enc_len: int = 0
) -> float:
    """K and V of every layer for `context` tokens of `batch` sequences (decoders only); an
    encoder-decoder model (T5) also caches every decoder layer's cross-attention K and V of
    its `enc_len` encoder tokens."""
    if not spec.is_decoder:
        return 0.0
    tokens = spec.kv_tokens(context) + spec.n_decoder_layers * enc_len
    return float(batch * tokens * spec.kv_width) * precision.kv_bytes


def _encdec_cache(spec: ModelSpec, wl: Workload) -> tuple[int, int, str]:
    """(self-attention context, encoder tokens, note) of a T5 workload's caches: none for
    encode; the first decoder token for prefill; seq_len decoder tokens (+ those generated)."""
    if wl.phase == "encode":
        return 0, 0, "none (the encoder keeps no cache)"
    ctx = 1 if wl.phase == "prefill" else wl.total_context
    note = f"self-attention {ctx:,} + cross-attention {wl.seq_len:,} tokens x batch {wl.batch}"
    return ctx, wl.seq_len, note


@dataclass(frozen=True)
class InferenceFootprint:
    model: str
    precision: str
    phase: str
    batch: int
    seq_len: int
    gen_len: int
    context: int
    fused_attention: bool
    weights: float
    weights_quantized: float
    kv_cache: float
    activations: float
    activation_op: str
    overhead: float
    overhead_source: str
    kv_note: str = ""  # tokens the cache holds (a sliding window keeps fewer than the context)

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead

    def rows(self) -> list[dict[str, Any]]:
        q = self.weights_quantized / 2**30
        wnote = f"{self.precision}" + (f"; {q:.3g} GiB of it quantised matrices" if q else "")
        kvnote = (
            (self.kv_note or f"{self.context} tokens x batch {self.batch}")
            if self.kv_cache
            else "none"
        )
        rows = [
            ("weights", self.weights, wnote),
            ("KV cache", self.kv_cache, kvnote),
            ("activations (peak)", self.activations, f"at {self.activation_op}"),
            ("framework overhead", self.overhead, self.overhead_source),
            ("total", self.total, ""),
        ]
        return [{"component": c, "bytes": float(b), "note": n} for c, b, n in rows]

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["total"] = self.total
        return d


def inference_memory(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision,
    fused_attention: bool | None = None,
    overhead: float = 0.0,
    overhead_source: str = "not counted",
) -> InferenceFootprint:
    """The footprint of serving `workload`; `fused_attention` None: count's default (the
    footprint's `fused_attention` says what was counted)."""
    check_workload_fits(spec, workload)
    ctx = workload.total_context
    if ctx > MAX_LENGTH:  # name what the user typed, not the derived context
        raise MemwallError(
            f"seq-len {workload.seq_len:,} + gen-len {workload.gen_len:,} = {ctx:,} tokens of "
            f"context; at most {MAX_LENGTH:,} are accepted"
        )
    w, wq = weight_bytes(spec, precision)
    kv_ctx, enc, kv_note = ctx, 0, spec.kv_note(ctx, workload.batch)
    if spec.is_encoder_decoder:
        kv_ctx, enc, kv_note = _encdec_cache(spec, workload)
    kv = kv_cache_bytes(spec, workload.batch, kv_ctx, precision, enc)
    if workload.phase == "generate":
        # the prompt's prefill (logits of the last position only, as generation computes them)
        # and the last decode step, which attends to the whole context: the larger of the two
        last = Workload("decode", workload.batch, max(ctx - 1, 0))
        act, op = inference_activation_peak(spec, last, precision, fused_attention)
        if workload.seq_len > 0:
            pre = Workload("prefill", workload.batch, workload.seq_len)
            a2, op2 = inference_activation_peak(spec, pre, precision, fused_attention, True)
            if a2 > act:
                act, op = a2, f"{op2} (prefill)"
    else:
        act, op = inference_activation_peak(spec, workload, precision, fused_attention)
    return InferenceFootprint(
        model=spec.name,
        precision=precision.label,
        phase=workload.phase,
        batch=workload.batch,
        seq_len=workload.seq_len,
        gen_len=workload.gen_len,
        context=ctx,
        fused_attention=fused_default(spec, "full", fused_attention),
        weights=w,
        weights_quantized=wq,
        kv_cache=kv,
        activations=act,
        activation_op=op,
        overhead=overhead,
        overhead_source=overhead_source,
        kv_note=kv_note,
    )


def max_batch(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision,
    capacity: float,
    fused_attention: bool | None = None,
    overhead: float = 0.0,
) -> int:
    """Largest batch of this workload whose footprint fits in `capacity` bytes (0: none fits)."""

    def fits(b: int) -> bool:
        fp = inference_memory(spec, workload.with_(batch=b), precision, fused_attention, overhead)
        return fp.total <= capacity

    return largest(fits, MAX_BATCH)


def max_context(
    spec: ModelSpec,
    batch: int,
    precision: Precision,
    capacity: float,
    fused_attention: bool | None = None,
    overhead: float = 0.0,
) -> int:
    """Longest context (tokens per sequence) that fits in `capacity` bytes at this batch: for a
    decoder, generation whose prompt and output reach that many tokens (the whole KV cache, and
    the larger of the prompt's prefill and the last decode step); for an encoder, one encode.
    Not capped by the model's position table (compare with `spec.max_positions`)."""

    def fits(n: int) -> bool:
        wl = (
            Workload("generate", batch, n - 1, 1)
            if spec.is_decoder
            else Workload("encode", batch, n)
        )
        fp = inference_memory(spec, wl, precision, fused_attention, overhead)
        return fp.total <= capacity

    return largest(fits, MAX_LENGTH)
