"""The KV cache of a paged-attention server: fixed-size blocks, how many fit, who holds them.

Capacity follows vLLM's sizing (`gpu_memory_utilization`, default 0.9 of the device's memory,
vllm/config/cache.py): what is left of that share after the weights, the peak activations of a
profile step of `max_batch_tokens` tokens (logits at one position per sequence) and the
framework overhead `memwall.memory` assumes for the device, divided into blocks of
`block_size` tokens (vLLM's CUDA default: 16) of every layer's K and V (`memwall.memory`'s
KV bytes per token). Each tensor-parallel rank holds its share of the heads, so the block
count is per rank and the same on every rank. Sliding-window layers are given full blocks
(vLLM's hybrid allocator frees the blocks that leave the window: not modelled, so a windowed
model's capacity is understated). With speculative decoding by a draft model, the draft's
weights come off the share too and each block also holds the draft's K and V of its tokens
(vLLM sizes one pool for both models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memwall.errors import MemwallError

BLOCK_SIZE = 16  # vLLM CacheConfig.block_size on CUDA
GPU_MEMORY_UTILIZATION = 0.9  # vLLM CacheConfig.gpu_memory_utilization
MAX_BLOCK_SIZE = 1024
MAX_BLOCKS = 1 << 31


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks that hold `tokens` tokens."""
    return -(-tokens // block_size)


@dataclass(frozen=True)
class KVCapacity:
    """The cache a run has: blocks, their size, and where the number comes from."""

    blocks: int
    block_size: int
    bytes_per_block: float
    source: str
    budget: dict[str, float]  # bytes: the device share, weights, activations, overhead, cache

    @property
    def tokens(self) -> int:
        return self.blocks * self.block_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "block_size": self.block_size,
            "tokens": self.tokens,
            "bytes_per_block": self.bytes_per_block,
            "bytes": self.bytes_per_block * self.blocks,
            "source": self.source,
            "memory_budget": dict(self.budget),
        }


def kv_capacity(
    shard: Any,
    device: Any,
    precision: Any,
    block_size: int,
    max_batch_tokens: int,
    max_seqs: int,
    utilization: float,
    blocks: int | None = None,
    draft: Any = None,
) -> KVCapacity:
    """The KV blocks of one rank: `blocks` if given, else vLLM's sizing (module docstring);
    `draft`: a speculative draft model's shard, whose weights and KV share the memory."""
    from memwall.memory import kv_cache_bytes, weight_bytes
    from memwall.memory.activations import inference_activation_peak
    from memwall.memory.states import framework_overhead
    from memwall.spec import Workload

    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise MemwallError(f"--block-size must be an integer, got {block_size!r}")
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise MemwallError(f"--block-size must be between 1 and {MAX_BLOCK_SIZE}, got {block_size}")
    per_block = kv_cache_bytes(shard, 1, 1, precision) * block_size
    if draft is not None:
        per_block += kv_cache_bytes(draft, 1, 1, precision) * block_size
    if blocks is not None:
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= MAX_BLOCKS:
            raise MemwallError(f"--kv-blocks must be an integer between 1 and {MAX_BLOCKS:,}")
        return KVCapacity(blocks, block_size, per_block, "given with --kv-blocks", {})
    if not 0 < utilization <= 1:
        raise MemwallError(
            f"--gpu-memory-utilization must be in (0, 1] (vLLM's default 0.9), got {utilization}"
        )
    share = device.mem_capacity * utilization
    w, _ = weight_bytes(shard, precision)
    if draft is not None:
        w += weight_bytes(draft, precision)[0]
    seq = max(1, min(max_batch_tokens, int(shard.max_positions)))
    batch = min(max(1, -(-max_batch_tokens // seq)), max_seqs)
    act, _op = inference_activation_peak(
        shard, Workload("prefill", batch, seq), precision, True, True
    )
    over, short, _src = framework_overhead(device.kind)
    left = share - w - act - over
    n = int(left // per_block) if left > 0 else 0
    budget = {
        "device_share": share, "weights": w, "activations": act, "framework_overhead": over,
        "kv_cache": max(left, 0.0),
    }  # fmt: skip
    if n < 1:
        raise MemwallError(
            f"no room for a KV cache on {device.name}: {utilization:g} x "
            f"{device.mem_capacity / 2**30:.1f} GiB holds {w / 2**30:.1f} GiB of weights per "
            f"device, {act / 2**30:.2f} GiB of activations and {over / 2**30:.2f} GiB of "
            "framework overhead; use --tp, a lower precision, or a device with more memory"
        )
    src = (
        f"{utilization:g} x {device.mem_capacity / 2**30:.1f} GiB - weights"
        + (" (target and draft)" if draft is not None else "")
        + " - activations of "
        f"a {max_batch_tokens}-token step - framework overhead ({short})"
    )
    return KVCapacity(n, block_size, per_block, src, budget)
