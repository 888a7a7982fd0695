"""What a simulated server is made of besides its scheduler: the share of the model one device
holds under tensor parallelism, the collectives each step pays, and the vLLM defaults that
depend on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memwall.errors import MemwallError

GIB = 2**30


def vllm_batch_defaults(device: Any) -> tuple[int, int, str]:
    """(max_num_batched_tokens, max_num_seqs, source) of `vllm serve` on `device`: vLLM's
    EngineArgs.get_batch_defaults (vllm/engine/arg_utils.py) gives 8192 tokens and 1024
    sequences to GPUs of at least 70 GiB that are not A100s (H100, H200, MI300X ...), and
    2048 and 256 to the rest (the OPENAI_API_SERVER usage context)."""
    cap = device.mem_capacity or 0
    big = device.kind == "gpu" and cap >= 70 * GIB and "a100" not in device.name.lower()
    src = "vLLM EngineArgs.get_batch_defaults, vllm serve on a GPU of " + (
        "at least 70 GiB, not an A100" if big else "under 70 GiB, an A100 or not a GPU"
    )
    return (8192, 1024, src) if big else (2048, 256, src)


def tp_shard(spec: Any, tp: int) -> Any:
    """The model one tensor-parallel rank holds (the whole model for tp 1)."""
    if isinstance(tp, bool) or not isinstance(tp, int) or not 1 <= tp <= 1024:
        raise MemwallError(f"--tp must be an integer between 1 and 1024, got {tp!r}")
    if tp == 1:
        return spec
    from memwall.parallel.layout import Layout, validate_layout
    from memwall.parallel.shard import shard_spec

    lay = Layout(tp=tp)
    validate_layout(spec, lay, tp, 1, 1, "infer")
    return shard_spec(spec, lay)


def tp_comm(spec: Any, device: str, tp: int, precision: Any) -> tuple[Callable | None, str]:
    """Seconds of a step's tensor-parallel all-reduces as a function of its tokens (two per
    layer of tokens x d_model activations, Megatron's layout), and what prices them."""
    if tp == 1:
        return None, "none (tp 1)"
    from memwall.parallel.collectives import price
    from memwall.parallel.links import links_for

    links = links_for(device)
    spans = tp > links.node_size
    calls = 2 * spec.n_layers
    act = precision.hidden_bytes * spec.d_model  # 16-bit GEMM outputs, even for FP8/INT8

    def comm(tokens: float) -> float:
        c = price("all_reduce", "tp", tp, tokens * act, calls, "serve", links, spans)
        return c.time

    where = "across nodes" if spans else "inside a node"
    return comm, f"{calls} all-reduces per step over {tp} devices {where} ({links.source})"
