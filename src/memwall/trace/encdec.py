"""Trace an encoder-decoder model (T5) for a workload, with the semantics of `count.encdec`.

encode: the encoder alone over seq_len tokens. prefill: the encoder over seq_len tokens and the
decoder's first step (one start token) in one call, as `generate` runs them: the step writes its
self-attention K/V and projects every encoder token's cross-attention K/V into the cache.
decode: one decoder token whose self-attention cache holds seq_len tokens and whose
cross-attention cache holds the seq_len encoder tokens (both caches `StaticCache`s allocated
before the trace; on meta their fill levels are set, on cpu an untraced call fills them).
generate: the first and last decode steps, summed by the trapezoid rule (each step is affine in
its self-attention context).
"""

from __future__ import annotations

import torch

from memwall.errors import MemwallError
from memwall.spec import ModelSpec, Workload
from memwall.trace.mode import Tracer, TraceResult
from memwall.trace.models import Step, cache_argument

__all__ = ["trace_encdec"]


def _ids(batch: int, length: int, vocab: int, device: str) -> torch.Tensor:
    if device == "meta":
        return torch.zeros(batch, length, dtype=torch.long, device="meta")
    g = torch.Generator().manual_seed(4321 + length)
    return torch.randint(0, vocab, (batch, length), generator=g, dtype=torch.long)


def _static(model, spec: ModelSpec, batch: int, slots: int, dtype, device: str):
    """A StaticCache of the decoder's layers (its config counts num_decoder_layers)."""
    from transformers import StaticCache

    cache = StaticCache(config=model.decoder.config, max_cache_len=slots)
    cache.early_initialization(batch, spec.n_heads, spec.head_dim, dtype, torch.device(device))
    if device == "meta":  # the fill level must stay a real number (transformers reads it back)
        for layer in cache.layers:
            layer.cumulative_length = torch.zeros((), dtype=torch.long)
    return cache


def _caches(model, spec: ModelSpec, batch: int, self_slots: int, enc_len: int, dtype, device):
    from transformers import EncoderDecoderCache

    cache = EncoderDecoderCache(
        _static(model, spec, batch, self_slots, dtype, device),
        _static(model, spec, batch, enc_len, dtype, device),
    )
    kv = [
        t
        for c in (cache.self_attention_cache, cache.cross_attention_cache)
        for layer in c.layers
        for t in (layer.keys, layer.values)
    ]
    return cache, kv


def _traced(model, kv, cross_check: bool, call, inputs: dict) -> TraceResult:
    tracer = Tracer(model, kv=kv, cross_check=cross_check)
    tracer.mark_inputs(inputs)
    with tracer:
        out = call(**inputs)
    tracer.mark_outputs(out)
    return tracer.result()


def _decode_step(model, spec, batch, context, enc_len, dtype, device, cross_check):
    """One decoder token: self cache holding `context` tokens, cross cache of `enc_len`."""
    from transformers.modeling_outputs import BaseModelOutput

    cache, kv = _caches(model, spec, batch, context + 1, enc_len, dtype, device)
    enc_ids = _ids(batch, enc_len, spec.vocab_size, device)
    arg = cache_argument(model)
    if device == "meta":
        hidden = torch.zeros(batch, enc_len, spec.d_model, dtype=dtype, device="meta")
        for layer in cache.self_attention_cache.layers:
            layer.cumulative_length.fill_(context)
        for layer in cache.cross_attention_cache.layers:
            layer.cumulative_length.fill_(enc_len)
        for i in range(len(cache.cross_attention_cache.layers)):
            cache.is_updated[i] = True
    else:
        hidden = model.encoder(input_ids=enc_ids).last_hidden_state
        enc = BaseModelOutput(last_hidden_state=hidden)
        start = _ids(batch, context, spec.vocab_size, device)  # context >= 1 (checked)
        # untraced: fills both caches (the cross one with every encoder token's K and V)
        model(encoder_outputs=enc, decoder_input_ids=start, **{arg: cache}, use_cache=True)
    inputs = dict(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
        decoder_input_ids=_ids(batch, 1, spec.vocab_size, device),
        use_cache=True,
        **{arg: cache},
    )
    return _traced(model, kv, cross_check, model, inputs)


def trace_encdec(
    model,
    spec: ModelSpec,
    workload: Workload,
    dtype: torch.dtype,
    device: str,
    cross_check: bool = False,
) -> list[Step]:
    """Trace what `workload` runs on an encoder-decoder model (see the module docstring)."""
    B, L = workload.batch, workload.seq_len
    if L < 1:
        raise MemwallError(
            f"{spec.name} is an encoder-decoder model: seq-len (the encoder input) must be >= 1"
        )
    with torch.no_grad():
        if workload.phase == "encode":
            inputs = dict(input_ids=_ids(B, L, spec.vocab_size, device))
            return [Step(_traced(model, [], cross_check, model.encoder, inputs), 1.0, 0)]
        if workload.phase == "prefill":
            cache, kv = _caches(model, spec, B, 1, L, dtype, device)
            inputs = dict(
                input_ids=_ids(B, L, spec.vocab_size, device),
                decoder_input_ids=_ids(B, 1, spec.vocab_size, device),
                use_cache=True,
                **{cache_argument(model): cache},
            )
            return [Step(_traced(model, kv, cross_check, model, inputs), 1.0, 0)]
        rest = (L, dtype, device, cross_check)  # every step cross-attends the L input tokens
        if workload.phase == "decode":
            return [Step(_decode_step(model, spec, B, L, *rest), 1.0, L)]
        G = workload.gen_len
        first = _decode_step(model, spec, B, L, *rest)
        if G == 1:
            return [Step(first, 1.0, L)]
        last = _decode_step(model, spec, B, L + G - 1, *rest)
        return [Step(first, G / 2, L), Step(last, G / 2, L + G - 1)]
