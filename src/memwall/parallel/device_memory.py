"""Per-device memory of a priced step: the training footprint under a layout (activations of
the micro-batches a pipeline keeps in flight) and the runtime's own share (CUDA context)."""

from __future__ import annotations

from typing import Any

from memwall.hardware import Device
from memwall.memory.states import framework_overhead
from memwall.parallel.layout import Layout
from memwall.parallel.shard import in_flight, sequence_parallel_ratio


def with_overhead(per_device: dict[str, float], device: Device) -> dict[str, float]:
    """`per_device` with the runtime's own memory (CUDA context and library handles,
    `data/memory_assumptions.json`) as its own line and in the peak, as `memwall memory`
    counts it: a layout that fits must leave room for the process that runs it."""
    over, _short, _source = framework_overhead(device.kind)
    out = {k: v for k, v in per_device.items() if k != "peak"}
    return {**out, "framework_overhead": over, "peak": per_device["peak"] + over}


def train_memory(fp: Any, lay: Layout, m: int) -> dict[str, float]:
    """Per device: the model states, the activations of the micro-batches in flight (cut by
    sequence parallelism), temporaries and ZeRO buffers, and the peak."""
    kept = fp.activations * sequence_parallel_ratio(lay)
    flight = in_flight(lay, m)
    acts = kept * flight
    peak = max(fp.model_states, fp.peak - fp.activations + acts)
    return {
        "weights": fp.weights,
        "gradients": fp.gradients,
        "optimizer_state": fp.optimizer_state,
        "activations": acts,
        "micro_batches_in_flight": flight,
        "temporaries": fp.temporaries,
        "zero_buffers": fp.zero_buffers,
        "peak": peak,
    }
