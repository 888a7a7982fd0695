"""Per-device memory of a priced step: the training footprint under a layout (activations of
the micro-batches a pipeline keeps in flight) and the runtime's own share (CUDA context).

The footprint is `memwall.memory`'s with impl `fused` (`plan._training_memory`): the tensors
fused kernels keep (Transformer Engine's fused norms and gated MLP, flash attention), as the
frameworks these layouts describe (Megatron-Core, NeMo, torchtitan, llm-foundry) run them, not
Hugging Face eager's fp32 norm inputs and separate SiLU and product."""

from __future__ import annotations

from typing import Any

from memwall.hardware import Device
from memwall.memory.states import framework_overhead
from memwall.memory.training import STEP_EVENTS
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
    sequence parallelism), temporaries and ZeRO buffers, and the peak.

    The peak is the largest moment of the one-micro-batch timeline (`fp.events`) with the
    other micro-batches' activations beside it. With more than one micro-batch per step the
    device's gradients are all live through every micro-batch after the first (gradient
    accumulation adds into them; Megatron-Core keeps them in one persistent buffer), so the
    timeline's gradients-so-far become the whole gradients. The optimizer step runs after
    the last backward, with no activations left."""
    ratio = sequence_parallel_ratio(lay)
    kept = fp.activations * ratio
    flight = in_flight(lay, m)
    others = kept * (flight - 1)
    base = fp.weights + fp.optimizer_state + fp.master_weights + fp.zero_buffers
    peak, temps = fp.model_states, 0.0
    for e in fp.events:
        if e.name in STEP_EVENTS:
            b = e.nbytes
        else:
            states = max(e.states, base + fp.gradients) if m > 1 else e.states
            b = states + e.saved * ratio + others + e.temporaries + e.overhead
        if b > peak:
            peak, temps = b, e.temporaries
    return {
        "weights": fp.weights,
        "gradients": fp.gradients,
        "optimizer_state": fp.optimizer_state,
        "master_weights": fp.master_weights,
        "activations": kept * flight,
        "micro_batches_in_flight": flight,
        "temporaries": temps,
        "zero_buffers": fp.zero_buffers,
        "peak": peak,
    }
