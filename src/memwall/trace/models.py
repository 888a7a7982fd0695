"""Build a Hugging Face model from a config dict (random weights, nothing downloaded) and run
one traced step of a workload on it.

Configs are data: keys starting with `_` and keys that would load code or quantisers are
dropped, and remote code is never trusted. Decoders keep a `StaticCache`, allocated before the
trace starts: decode at context c fills a cache of c + 1 slots with an untraced prefill of c
tokens (on meta, where there is nothing to fill, its fill level is set to c), then traces one
token (it attends to exactly c + 1 keys and appends its K and V with `index_copy_`); prefill
traces L tokens writing a cache of L slots; encoders (BERT) run without a cache.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any

import torch

from memwall.errors import MemwallError
from memwall.families import family_for_config
from memwall.precision import typed_precision
from memwall.spec import ModelSpec, Precision, Workload
from memwall.trace.mode import Tracer, TraceResult
from memwall.trace.moe import balance_routing
from memwall.trace.versions import FALCON_CACHES_KV_HEADS, transformers_at_least

META_ABOVE_BYTES = 2e9  # an MoE model with more weight bytes than this traces on meta
META_ABOVE_FLOPS = 1e12  # ... as does one with more work
_UNSAFE_KEYS = {"auto_map", "quantization_config", "attn_implementation", "torch_dtype", "dtype"}
_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(precision: Precision | torch.dtype | None) -> torch.dtype:
    """fp32 (default), bf16 or fp16: the dtypes a real module can run in. Text is parsed once,
    at the edge (`memwall.spec.parse_precision`)."""
    if precision is None:
        return torch.float32
    if isinstance(precision, torch.dtype):
        if precision in _TORCH_DTYPES.values():
            return precision
        raise MemwallError(f"trace precision must be fp32, bf16 or fp16, got {precision}")
    p = typed_precision(precision)
    bits = {p.weight_bits, p.act_bits, p.kv_bits}
    if bits == {32}:
        return torch.float32
    if bits == {16}:
        return torch.float16 if p.float_kind == "fp16" else torch.bfloat16
    raise MemwallError(
        f"the trace engine runs real dtypes: fp32, bf16 or fp16 (got {p.label}); "
        "use --engine closed for integer precisions"
    )


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _TORCH_DTYPES.items()}[dtype]


def resolve_device(
    spec: ModelSpec, dtype: torch.dtype, device: str, workload: Workload | None = None
) -> str:
    """`auto` is meta (shapes only: counting never needs the values, and nothing is computed or
    allocated), except for a small mixture-of-experts model (under ~2 GB of weights and ~1e12
    FLOPs of work), which runs on cpu with its real, value-dependent routing; a big one runs on
    meta with balanced routing (`memwall.trace.moe`)."""
    if device not in ("auto", "meta", "cpu"):
        raise MemwallError(f"unknown trace device {device!r}; accepted: auto, meta, cpu")
    if device != "auto":
        return device
    if not spec.is_moe:
        return "meta"
    weight_bytes = spec.n_params() * torch.finfo(dtype).bits / 8
    if weight_bytes > META_ABOVE_BYTES:
        return "meta"
    if workload is not None:
        from memwall.count import op_table

        if op_table(spec, workload)["flops"].sum() > META_ABOVE_FLOPS:
            return "meta"
    return "cpu"


def hf_config(cfg: dict):
    """A transformers config object from a raw config dict (read as data)."""
    from transformers import AutoConfig

    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise MemwallError("config must be a JSON object with a 'model_type'")
    clean = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _UNSAFE_KEYS}
    mtype = clean.pop("model_type")
    try:
        return AutoConfig.for_model(mtype, **clean)
    except (ValueError, TypeError, KeyError) as e:
        raise MemwallError(f"transformers cannot build a {mtype!r} config: {e}") from None


def build_model(cfg: dict, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Random-weight model in eval mode, built by the Auto class `memwall.families` names for
    the config's family (BertModel for BERT, a CausalLM for decoders)."""
    import transformers

    conf = hf_config(cfg)
    fam = family_for_config(cfg)  # which Auto class runs it, where its expert count lives
    auto = getattr(transformers, fam.hf_model)
    attn = "eager" if fam.fixed.get("eager_attention") else "sdpa"  # Gemma 2: no SDPA path
    kwargs: dict[str, Any] = dict(attn_implementation=attn, dtype=dtype, trust_remote_code=False)
    if not fam.fixed.get("is_decoder", True):  # an encoder (BERT): as a bare model + pooler
        kwargs["add_pooling_layer"] = bool(cfg.get("add_pooling_layer", True))
    moe = any(int(cfg.get(k) or 1) > 1 for k in fam.keys("n_experts"))
    if moe:
        kwargs["experts_implementation"] = "eager"  # routes by value: reads only experts hit
    with torch.device(device), _skip_init(device):
        model = auto.from_config(conf, **kwargs)
    if moe and device == "meta" and not balance_routing(model):
        raise MemwallError(
            f"cannot trace {conf.model_type!r} mixture-of-experts on the meta device (its experts "
            "layout is not the one memwall routes without values): trace a small config on cpu "
            "or use --engine closed"
        )
    if device != "meta":
        fill_weights(model)
        if hasattr(model, "tie_weights"):
            model.tie_weights()
    model.eval()
    return model


def _skip_init(device: str):
    """Skip transformers' weight init on real devices (drawing every weight costs seconds);
    `fill_weights` gives cheap random values instead. On meta there is nothing to draw."""
    if device == "meta":
        return contextlib.nullcontext()
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: plain (slower) initialisation
        return contextlib.nullcontext()
    return no_init_weights()


@torch.no_grad()
def fill_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights, fast: a block of N(0, 0.02) values tiled over each matrix; norm scales 1,
    biases 0 (as transformers initialises them). Counting never depends on the values."""
    g = torch.Generator().manual_seed(seed)
    block = torch.randn(1 << 20, generator=g) * 0.02
    for name, p in model.named_parameters():
        if p.ndim < 2:
            p.fill_(1.0 if name.endswith("weight") else 0.0)
            continue
        flat = p.view(-1)
        n, m = flat.numel(), block.numel()
        full = n // m
        if full:
            flat[: full * m].view(full, m).copy_(block.to(p.dtype).expand(full, m))
        if n - full * m:
            flat[full * m :].copy_(block[: n - full * m])


@dataclass
class Step:
    """One traced call and how many workload steps it stands for."""

    result: TraceResult
    weight: float  # multiplier of this trace in the workload total
    context: int  # tokens in the KV cache before the step (0 for encode / prefill)


def _ids(batch: int, length: int, vocab: int, device: str) -> torch.Tensor:
    if device == "meta":
        return torch.zeros(batch, length, dtype=torch.long, device="meta")
    g = torch.Generator().manual_seed(1234 + length)
    return torch.randint(0, vocab, (batch, length), generator=g, dtype=torch.long)


def _pixels(spec: ModelSpec, batch: int, tokens: int, dtype, device: str) -> torch.Tensor:
    """ViT: `batch` square images of the config's size (`tokens` = its patches + 1)."""
    if tokens != spec.max_positions:
        raise MemwallError(
            f"{spec.name} is traced at its config's image size, {spec.image_size} pixels: "
            f"{spec.max_positions} tokens (patches + class token), got {tokens}"
        )
    shape = (batch, spec.num_channels, spec.image_size, spec.image_size)
    if device == "meta":
        return torch.zeros(shape, dtype=dtype, device="meta")
    return torch.randn(shape, generator=torch.Generator().manual_seed(1234)).to(dtype)


def cached_kv_heads(spec: ModelSpec) -> int:
    """K/V heads per token in the cache transformers fills. Falcon's new architecture (Falcon-40B:
    8 K/V heads, 128 query heads) cached its K/V repeated to every query head before transformers
    5.25, and caches the K/V heads as projected since; the cache must match or `index_copy_` fails.
    """
    if spec.kv_broadcast and not transformers_at_least(FALCON_CACHES_KV_HEADS):
        return spec.n_heads
    return spec.n_kv_heads


def _cache(model, spec: ModelSpec, batch: int, slots: int, dtype: torch.dtype, device: str):
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=slots)
    if spec.is_mla:  # DeepSeek caches one latent and one shared rotated key per token
        for layer in cache.layers:
            layer.lazy_initialization(
                torch.empty(batch, 1, 0, spec.kv_lora_rank, dtype=dtype, device=device),
                torch.empty(batch, 1, 0, spec.rope_head_dim, dtype=dtype, device=device),
            )
    else:
        heads = cached_kv_heads(spec)
        cache.early_initialization(batch, heads, spec.head_dim, dtype, torch.device(device))
    if device == "meta":
        # Keep the fill level a real number: transformers reads it back (`.item()`).
        for layer in cache.layers:
            layer.cumulative_length = torch.zeros((), dtype=torch.long)
    kv = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return cache, kv


def cache_argument(module: Any) -> str:
    """The name transformers' forward takes the KV cache under: `cache` (5.x; the older
    `past_key_values` warns it is going away) or `past_key_values` (4.x)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _trace_call(model, kv, cross_check: bool, **inputs) -> TraceResult:
    tracer = Tracer(model, kv=kv, cross_check=cross_check)
    tracer.mark_inputs(inputs)
    with tracer:
        out = model(**inputs)
    tracer.mark_outputs(out)
    return tracer.result()


def trace_decode_step(
    model, spec: ModelSpec, batch: int, context: int, dtype, device, cross_check=False
) -> TraceResult:
    """One token appended to a KV cache holding `context` tokens (attends context + 1 keys)."""
    cache, kv = _cache(model, spec, batch, context + 1, dtype, device)
    if device == "meta":
        # Shapes only: the cache's contents do not exist, so set its fill level directly
        # instead of running a prefill (which would read the fill level as a number).
        for layer in cache.layers:
            layer.cumulative_length.fill_(context)
    elif context:
        ids = _ids(batch, context, spec.vocab_size, device)
        model(input_ids=ids, **{cache_argument(model): cache}, use_cache=True)
    ids = _ids(batch, 1, spec.vocab_size, device)
    return _trace_call(
        model, kv, cross_check, input_ids=ids, **{cache_argument(model): cache}, use_cache=True
    )


def trace_workload(
    model,
    spec: ModelSpec,
    workload: Workload,
    dtype: torch.dtype,
    device: str,
    cross_check: bool = False,
) -> list[Step]:
    """Trace what `workload` runs; generate traces its first and last decode steps."""
    B, L = workload.batch, workload.seq_len
    with torch.no_grad():
        if workload.phase == "encode" and spec.patch_size:  # ViT: images, not token ids
            px = _pixels(spec, B, L, dtype, device)
            return [Step(_trace_call(model, [], cross_check, pixel_values=px), 1.0, 0)]
        if workload.phase == "encode":
            ids = _ids(B, L, spec.vocab_size, device)
            return [Step(_trace_call(model, [], cross_check, input_ids=ids), 1.0, 0)]
        if workload.phase == "prefill":
            cache, kv = _cache(model, spec, B, L, dtype, device)
            ids = _ids(B, L, spec.vocab_size, device)
            kw = {cache_argument(model): cache}
            res = _trace_call(model, kv, cross_check, input_ids=ids, **kw, use_cache=True)
            return [Step(res, 1.0, 0)]
        if workload.phase == "decode":
            return [Step(trace_decode_step(model, spec, B, L, dtype, device, cross_check), 1.0, L)]
        # generate: G steps at contexts L .. L+G-1; each step's cost is affine in its context,
        # so the sum is G/2 x (first + last), exactly.
        G = workload.gen_len
        first = trace_decode_step(model, spec, B, L, dtype, device, cross_check)
        if G == 1:
            return [Step(first, 1.0, L)]
        last = trace_decode_step(model, spec, B, L + G - 1, dtype, device, cross_check)
        return [Step(first, G / 2, L), Step(last, G / 2, L + G - 1)]


def max_context(spec: ModelSpec, workload: Workload) -> int:
    """Tokens the model must hold; learned position tables cap it."""
    need = workload.total_context
    if spec.position == "learned" and need > spec.max_positions:
        raise MemwallError(
            f"{spec.name} has {spec.max_positions} learned positions; this workload needs "
            f"{need} (seq-len + generated tokens)"
        )
    return need


def weight_gib(spec: ModelSpec, dtype: torch.dtype) -> float:
    return spec.n_params() * torch.finfo(dtype).bits / 8 / 2**30


__all__ = [
    "Step",
    "build_model",
    "cache_argument",
    "cached_kv_heads",
    "hf_config",
    "max_context",
    "resolve_device",
    "resolve_dtype",
    "trace_workload",
    "weight_gib",
]
