"""What a compressed model really is and does here: stored bytes, latency, perplexity.

- Bytes: every parameter and buffer once (shared storage counted once: the tied LM head), packed
  quantised weights with their scales and zero points, CSR values with their indices; torch.ao
  dynamic layers count their int8 weight, bias and per-tensor scale and zero point (fbgemm's
  packed copy is opaque; its size is the int8 weight plus per-column offsets).
- Latency: batch 1. decode = seconds per generated token after a prompt of `context` tokens
  (caches rebuilt for each repeat; fastest of 5 repeats: the machine may be shared);
  prefill = one forward of `context` tokens. Threads: torch's current setting, reported.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

import torch
from torch import nn

from memwall.compress.gpt import GPT, new_caches
from memwall.compress.prune import CSRLinear
from memwall.compress.quant import Int4WeightOnlyLinear, Int8WeightOnlyLinear

_COMPRESSED_BUFFERS = {"qweight", "scales", "packed", "scales_zeros"}


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _dynamic_bytes(m: nn.Module) -> tuple[int, int]:
    """(compressed, other) bytes of a torch.ao dynamic Linear."""
    w, b = m._packed_params._weight_bias()
    return w.numel() + 16, (_tensor_bytes(b) if b is not None else 0)  # + fp64 scale, int64 zp


def real_bytes(model: nn.Module) -> dict[str, int]:
    """{'total', 'compressed'}: bytes the model really stores (see module doc)."""
    compressed = other = 0
    seen: set[int] = set()
    for mod in model.modules():
        if type(mod).__name__ == "Linear" and hasattr(mod, "_packed_params"):
            c, o = _dynamic_bytes(mod)
            compressed, other = compressed + c, other + o
            continue
        if isinstance(mod, CSRLinear):
            compressed += mod.stored_bytes()
        quant = isinstance(mod, Int8WeightOnlyLinear | Int4WeightOnlyLinear)
        for name, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            if t.layout != torch.strided:
                continue
            key = t.untyped_storage().data_ptr()
            if key in seen:
                continue
            seen.add(key)
            if quant and name in _COMPRESSED_BUFFERS:
                compressed += _tensor_bytes(t)
            else:
                other += _tensor_bytes(t)
    return {"total": compressed + other, "compressed": compressed}


def _best_time(fn: Any, repeats: int, setup: Any = None) -> float:
    """Fastest of `repeats` runs after one warm-up: on a shared machine the least disturbed."""
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            state = setup() if setup is not None else None
            gc.collect(0)
            t0 = time.perf_counter()
            fn(state)
            t = time.perf_counter() - t0
            if i:  # the first run warms up
                times.append(t)
    return min(times)


def decode_seconds(model: GPT, context: int, tokens: int = 16, repeats: int = 5) -> float:
    """Seconds per generated token (batch 1) after a `context`-token prompt."""
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.shape.vocab_size, (1, max(1, context)), generator=g)
    with torch.no_grad():
        base = new_caches(model)
        model(prompt, base)

    def setup() -> list[list]:
        return [list(c) for c in base]

    def run(caches: list[list]) -> None:
        ids = prompt[:, -1:]
        for i in range(tokens):
            ids = model(ids, caches, start=context + i)[:, -1:].argmax(-1)

    return _best_time(run, repeats, setup) / tokens


def prefill_seconds(model: GPT, context: int, repeats: int = 5) -> float:
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.shape.vocab_size, (1, context), generator=g)
    return _best_time(lambda _: model(prompt), repeats)


def perplexity(loss: float) -> float:
    return math.exp(loss)
