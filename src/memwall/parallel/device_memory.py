"""Per-device memory of a priced step: the training footprint under a layout (activations of
the micro-batches a pipeline keeps in flight) and the runtime's own share (CUDA context).

The footprint is `memwall.memory`'s with impl `fused` (`plan._training_memory`): the tensors
fused kernels keep (Transformer Engine's fused norms and gated MLP, flash attention), as the
frameworks these layouts describe (Megatron-Core, NeMo, torchtitan, llm-foundry) run them, not
Hugging Face eager's fp32 norm inputs and separate SiLU and product."""

from __future__ import annotations

from typing import Any

from memwall.hardware import Device
from memwall.memory.states import framework_overhead, param_groups
from memwall.memory.training import STEP_EVENTS
from memwall.parallel.layout import Layout
from memwall.parallel.shard import in_flight, sequence_parallel_ratio
from memwall.spec import ModelSpec


def with_overhead(per_device: dict[str, float], device: Device) -> dict[str, float]:
    """`per_device` with the runtime's own memory (CUDA context and library handles,
    `data/memory_assumptions.json`) as its own line and in the peak, as `memwall memory`
    counts it: a layout that fits must leave room for the process that runs it."""
    over, _short, _source = framework_overhead(device.kind)
    out = {k: v for k, v in per_device.items() if k != "peak"}
    return {**out, "framework_overhead": over, "peak": per_device["peak"] + over}


def train_memory(fp: Any, lay: Layout, m: int, shard: ModelSpec) -> dict[str, float]:
    """Per device: the model states, the activations of the micro-batches in flight (cut by
    sequence parallelism), temporaries and ZeRO buffers, and the peak.

    The peak is the largest moment of the one-micro-batch timeline (`fp.events`) with the
    other micro-batches' activations beside it. With more than one micro-batch per step the
    device's gradients are all live through every micro-batch after the first (gradient
    accumulation adds into them; Megatron-Core keeps them in one persistent buffer), so the
    timeline's gradients-so-far become the whole gradients. The optimizer step runs after
    the last backward, with no activations left.

    `fp` is the footprint of `shard`, which holds a stage's layers with the embedding and the
    head. Under a pipeline no stage holds both: the first holds the embedding and the most
    micro-batches in flight (`in_flight`), the last the final norm, the head and the loss's
    activations with fewer in flight (`in_flight(last=True)`); each
    is priced and the larger is the device's peak. A tied head is a copy of the embedding on
    the last stage, as Megatron-LM keeps it."""
    ratio = sequence_parallel_ratio(lay)
    flight = in_flight(lay, m)
    states = fp.weights + fp.gradients + fp.optimizer_state + fp.master_weights
    kept = fp.activations * ratio
    if lay.pp == 1:
        peak, temps = _stage_peak(fp, m, ratio, flight, 0.0, 0.0, head=True)
        keep, acts = 1.0, kept * flight
    else:
        pg = param_groups(shard)
        head_saved = sum(x.nbytes for x in fp.saved if x.part in ("final", "head"))
        last_flight = in_flight(lay, m, last=True)
        body = (fp.activations - head_saved) * ratio
        first_less = pg.head / pg.total  # the first stage has no final norm and head
        last_less = (pg.embed - pg.tied) / pg.total  # the last has no embedding (a tied copy)
        stages = [  # ((peak, temporaries), share of the states held, in flight, activations)
            (_stage_peak(fp, m, ratio, flight, states * first_less, head_saved, False),
             1 - first_less, flight, body * flight),
            (_stage_peak(fp, m, ratio, last_flight, states * last_less, head_saved, True),
             1 - last_less, last_flight, body * last_flight + head_saved * ratio),
        ]  # fmt: skip
        (peak, temps), keep, flight, acts = max(stages, key=lambda x: x[0][0])
    return {
        "weights": fp.weights * keep,
        "gradients": fp.gradients * keep,
        "optimizer_state": fp.optimizer_state * keep,
        "master_weights": fp.master_weights * keep,
        "activations": acts,
        "micro_batches_in_flight": flight,
        "temporaries": temps,
        "zero_buffers": fp.zero_buffers,
        "peak": peak,
    }


def _stage_peak(
    fp: Any, m: int, ratio: float, flight: float, less: float, head_saved: float, head: bool
) -> tuple[float, float]:
    """(peak bytes, temporaries at it) of one pipeline stage: the timeline of `fp` without
    `less` bytes of model states and, where the stage has no head (`head` False), without the
    head's activations and the loss's moments; `head_saved` bytes of head activations are not
    kept for the other micro-batches in flight (their loss ran at once)."""
    base = fp.weights + fp.optimizer_state + fp.master_weights + fp.zero_buffers - less
    kept = (fp.activations - head_saved) * ratio
    others = kept * (flight - 1)
    peak, temps = fp.model_states - less, 0.0
    for e in fp.events:
        if e.name in STEP_EVENTS:
            b, t = e.nbytes - less, e.temporaries
        elif not head and e.name == "loss backward":
            continue
        else:
            saved, t = e.saved, e.temporaries
            if not head and e.name == "forward end":
                saved, t = saved - head_saved, 0.0  # the logits are the last stage's
            st = max(e.states - less, base + fp.gradients) if m > 1 else e.states - less
            b = st + saved * ratio + others + t + e.overhead
        if b > peak:
            peak, temps = b, t
    return peak, temps
