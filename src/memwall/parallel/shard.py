"""What one device holds and computes under a layout, from the existing counting and memory code.

The device's share of the model is itself a ModelSpec (a "shard"): its pipeline stage's layers,
its tensor-parallel slice of the heads, key/value heads, FFN width and vocabulary, its expert-
parallel slice of the experts; the model width is whole. Counting (`memwall.count.op_table`),
roofline prediction and memory (`memwall.memory`) then run on the shard unchanged, so no formula
is written twice. The stage analysed is the heaviest: its share of the layers plus the
embedding and the LM head (exact for pp = 1; for pp > 1 the first and last stages hold one each,
so this over-counts the slowest stage by the embedding, which is small).

Activation memory with sequence parallelism follows Korthikanti et al. 2022 (arXiv 2205.05198),
eq. 2-4: per layer s b h (10 + 24/t + 5 a s / (h t)) without it, s b h (34/t + 5 a s / (h t))
with it; their ratio scales the shard's kept activations. memwall's memory model keeps no
attention scores (fused attention), so the 5 a s / h term is dropped from both; full
recomputation keeps only each layer's input, split t ways.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.parallel.layout import Layout
from memwall.predict import predict_roofline
from memwall.predict.efficiency import predict_efficiency
from memwall.spec import ModelSpec, Precision, Workload


def shard_spec(spec: ModelSpec, layout: Layout) -> ModelSpec:
    """The slice of `spec` one device holds (heaviest pipeline stage)."""
    experts = spec.n_experts // layout.ep
    if spec.is_moe and experts < spec.experts_per_token:
        raise MemwallError(
            f"expert-parallel degree {layout.ep} leaves {experts} experts per device, fewer than "
            f"the {spec.experts_per_token} each token uses; choose --ep of at most "
            f"{spec.n_experts // spec.experts_per_token}"
        )
    return replace(
        spec,
        name=f"{spec.name} [{layout.label}]",
        n_layers=math.ceil(spec.n_layers / layout.pp),
        n_heads=spec.n_heads // layout.tp,
        n_kv_heads=spec.n_kv_heads // layout.tp,
        d_ff=spec.d_ff // layout.tp,
        vocab_size=math.ceil(spec.vocab_size / layout.tp),
        n_experts=experts,
        dense_d_ff=spec.dense_d_ff // layout.tp if spec.dense_d_ff else spec.dense_d_ff,
        dense_layers=min(spec.dense_layers, math.ceil(spec.n_layers / layout.pp)),
    )


def phase_of(spec: ModelSpec, phase: str) -> str:
    """Training and prefill of an encoder are `encode` in count's vocabulary."""
    return "encode" if not spec.is_decoder and phase == "prefill" else phase


@functools.lru_cache(maxsize=512)
def forward(
    spec: ModelSpec,
    phase: str,
    batch: int,
    seq_len: int,
    precision: Precision,
    device: Device,
    efficiency: bool = False,
) -> dict[str, float]:
    """Predicted time of one forward (or decode step) of `spec` on `device` (cached): the
    dense-peak roofline, or with `efficiency` the published kernel efficiencies of
    `memwall.predict.efficiency` (kernel time, no launch gaps). Keys: time, flops,
    frac_compute_bound."""
    ops = op_table(spec, Workload(phase_of(spec, phase), batch, seq_len), precision, "full")
    if not efficiency:
        t = predict_roofline(ops, device, overhead=False).totals
        return {k: t[k] for k in ("time", "flops", "frac_compute_bound")}
    e = predict_efficiency(ops, device, precision, launch="kernel")
    total = e.totals["time"]
    compute = float(e.ops.loc[e.ops["bound"] == "compute", "time"].sum())
    return {"time": total, "flops": e.totals["flops"], "frac_compute_bound": compute / total}


def sequence_parallel_ratio(layout: Layout) -> float:
    """Kept activations with sequence parallelism over those without (Korthikanti et al.),
    with fused (flash) attention as `memwall.memory` assumes: no score matrix is kept, so the
    5 a s / h term is absent and the ratio is (34/t) / (10 + 24/t)."""
    if not layout.sequence_parallel or layout.tp == 1:
        return 1.0
    t = layout.tp
    if layout.checkpointing == "full":
        return 1.0 / t  # only each layer's input is kept, and it is split t ways
    return (34 / t) / (10 + 24 / t)


def in_flight(layout: Layout, micro_batches: int) -> float:
    """Micro-batches whose activations the first stage holds at once under 1F1B."""
    p, v = layout.pp, layout.interleave
    n = float(min(p, micro_batches))
    return n * (1 + (p - 1) / (p * v)) if v > 1 else n
