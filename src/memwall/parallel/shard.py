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
from memwall.count.weights import matmul_params
from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.parallel.layout import Layout
from memwall.predict import predict_roofline
from memwall.predict.efficiency import MATMUL_KINDS, predict_efficiency
from memwall.predict.prompt_attention import attention_work, window_count_share
from memwall.spec import ModelSpec, Precision, Workload


def shard_spec(spec: ModelSpec, layout: Layout) -> ModelSpec:
    """The slice of `spec` one device holds (heaviest pipeline stage). Under expert
    parallelism a device holds n_experts / ep experts, possibly fewer than the top-k each token
    uses (DeepSeek-V3 at EP 64: 4 of 256, top-8): the all-to-all sends each token to the ranks
    holding its experts, so a device still runs k expert calls per token of its own on average
    (the shard keeps top-k; `count` reads its every local expert as touched). A stage's
    sliding-window and NoPE layers are its share of the model's (the heaviest stage: window
    layers rounded down, Llama 4's global NoPE layers up); with dense first layers (DeepSeek),
    the first stage or one of MoE layers alone, whichever holds more weights."""
    if spec.is_moe and spec.n_experts % layout.ep:
        raise MemwallError(
            f"expert-parallel degree {layout.ep} must divide the {spec.n_experts} experts of "
            f"{spec.name}"
        )
    experts = spec.n_experts // layout.ep
    layers = math.ceil(spec.n_layers / layout.pp)
    first = replace(
        spec,
        # named by the slicing alone (not dp, ZeRO, ...): layouts with one shard share its pricing
        name=f"{spec.name} [tp{layout.tp} pp{layout.pp} ep{layout.ep}]",
        n_layers=layers,
        n_heads=spec.n_heads // layout.tp,
        n_kv_heads=spec.n_kv_heads // layout.tp,
        d_ff=spec.d_ff // layout.tp,
        vocab_size=math.ceil(spec.vocab_size / layout.tp),
        n_experts=experts,
        dense_d_ff=spec.dense_d_ff // layout.tp if spec.dense_d_ff else spec.dense_d_ff,
        dense_layers=min(spec.dense_layers, layers),
        window_layers=_stage_window_layers(spec, layers),
        nope_layers=min(layers, math.ceil(spec.nope_layers * layers / spec.n_layers)),
    )
    if not first.dense_layers or spec.moe_layers < layers:
        return first
    # DeepSeek's dense first layers sit on the first stage; a later stage holds MoE layers
    # alone, which weigh more per device unless expert parallelism is wide
    later = replace(first, dense_layers=0)
    return later if matmul_params(later) > matmul_params(first) else first


def _stage_window_layers(spec: ModelSpec, layers: int) -> int | None:
    """Sliding-window layers in a stage of `layers` (None: all windowed, as in the model). The
    stage gets its proportional share, rounded down: the heaviest stage holds the fewest."""
    if spec.window_layers is None:
        return None
    return min(layers, spec.window_layers * layers // spec.n_layers)


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
    launch: str = "kernel",
    attention: str | None = None,
    kv_dequant: str = "none",
    moe_kernel: str = "native",
) -> dict[str, float]:
    """Predicted time of one forward (or decode step) of `spec` on `device` (cached), and of
    its backward: the dense-peak roofline (backward = 2 x forward), or with `efficiency` the
    published kernel efficiencies of `memwall.predict.efficiency` under `launch` ('eager':
    PyTorch training, 'graph': serving engines, 'kernel': kernel time alone). The backward
    there is priced per op: two matmuls per forward matmul (input and weight gradients),
    element-wise ops twice their forward, and fused attention at 2.5x the forward's FLOPs at
    its own (lower) backward efficiency. A decoder's prompt is causal: its attention kernels
    skip the masked half. `attention`: the attention kernel family (`memwall.predict.efficiency
    .attention_terms`, at the shard's head dim; None: the class's terms). `kv_dequant`: how
    decode attention converts an 8-bit KV cache (`memwall.predict.efficiency.KV_DEQUANT`);
    `moe_kernel`: the expert GEMMs' kernels (`memwall.predict.efficiency.MOE_KERNELS`).
    Keys: time, backward, flops, frac_compute_bound, attention, matmul (the forward's matrix
    multiplications, which tensor-parallel communication can overlap)."""
    # fused for every model, as frameworks and engines run it (count's eager default is what
    # transformers runs: Gemma 2's soft-capping, GPT-OSS's sinks)
    ops = op_table(spec, Workload(phase_of(spec, phase), batch, seq_len), precision, "full", True)
    if not efficiency:
        r = predict_roofline(ops, device, overhead=False)
        t = r.totals
        out = {k: t[k] for k in ("time", "flops", "frac_compute_bound")}
        mm = float(r.ops.loc[r.ops["kind"].isin(MATMUL_KINDS), "time"].sum())
        return {**out, "backward": 2 * out["time"], "attention": 0.0, "matmul": mm}
    e = predict_efficiency(
        ops, device, precision, launch=launch, causal=attention_work(spec, phase, seq_len),
        spread=False, attention=attention, head_dim=spec.head_dim, kv_dequant=kv_dequant,
        moe_kernel=moe_kernel,
    )  # fmt: skip
    df = e.ops
    total = e.totals["time"]
    compute = float(df.loc[df["bound"] == "compute", "time"].sum())
    attn = (df["kind"] == "attention").to_numpy()
    terms = e.terms
    slower = terms["attn_frac"].value / terms["attn_bwd_frac"].value
    t_attn = df["time"].to_numpy()[attn]
    bwd_attn = (2.5 * slower * df["t_compute"].to_numpy()[attn]).clip(min=2 * t_attn)
    backward = 2 * float(df["time"].to_numpy()[~attn].sum()) + float(bwd_attn.sum())
    return {
        "time": total,
        "backward": backward,
        "flops": e.totals["flops"],
        "frac_compute_bound": compute / total,
        "attention": float(t_attn.sum()),
        "matmul": float(df.loc[df["kind"].isin(MATMUL_KINDS), "time"].sum()),
    }


@functools.lru_cache(maxsize=512)
def mfu_flops(spec: ModelSpec, phase: str, batch: int, seq_len: int, precision: Precision) -> float:
    """FLOPs of one forward of `spec` as MFU counts them: the op table's, with sliding-window
    layers' attention at their window (`predict.prompt_attention.window_count_share`)."""
    wl = Workload(phase_of(spec, phase), batch, seq_len)
    ops = op_table(spec, wl, precision, "full", True)
    attn = float(ops.loc[ops["kind"] == "attention", "flops"].sum())
    return float(ops["flops"].sum()) - attn * (1 - window_count_share(spec, phase, seq_len))


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


def in_flight(layout: Layout, micro_batches: int, last: bool = False) -> float:
    """Micro-batches whose activations the first stage (`last`: the last stage) holds at once
    under 1F1B. Megatron's interleaved warm-up: the first rank runs (p-1) 2 + (v-1) p chunk
    forwards before its first backward, the last (v-1) p: in whole-stage micro-batches
    p + (p-1)/v and ((v-1) p + 1)/v."""
    p, v = layout.pp, layout.interleave
    if last:
        return float(min(micro_batches, ((v - 1) * p + 1) / v))
    n = float(min(p, micro_batches))
    return n * (1 + (p - 1) / (p * v)) if v > 1 else n
