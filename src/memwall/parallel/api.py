"""The one call behind `memwall parallel`: resolve names, fill defaults, price or search."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.layout import Layout, complete_layout, validate_layout
from memwall.parallel.links import links_for, with_topology
from memwall.parallel.plan import Options, Plan, check_mode, plan
from memwall.parallel.range import limits, step_range
from memwall.parallel.search import SearchResult, search
from memwall.parallel.wall import compute_time, crossover
from memwall.precision import FP8_NAMES, training_precision
from memwall.predict.efficiency import check_attention
from memwall.spec import ModelSpec, load_model, parse_precision

ASSUMPTIONS = (
    "each operation at the larger of its compute and memory time: by default at the published "
    "kernel efficiencies of data/efficiency.json (GEMMs by shape, with tile and wave "
    "quantisation; fused attention; launch gaps: eager in training, CUDA graphs in inference), "
    "links at NCCL's bus bandwidth; with --roofline at the dense peak, datasheet bandwidth and "
    "line rate (an upper bound)",
    "backward: two matmuls per forward matmul, element-wise ops twice, fused attention 2.5x "
    "its forward FLOPs at its backward efficiency (roofline: 2 x forward)",
    "attention at the published figures of the kernel family --attention names (auto: in "
    "training the one the frameworks run on the device, cuDNN on Hopper and FlashAttention-2 "
    "on Ampere; the class default elsewhere and in inference), scaled for head dims under 128",
    "tensor, expert and pipeline communication not overlapped with compute",
    "tensor-parallel ranks innermost: a group inside one node uses the node's link",
    "links: per-direction bandwidth and per-step latency of data/interconnect.csv",
)


@dataclass(frozen=True)
class ParallelResult:
    plan: Plan
    search: SearchResult | None
    crossover_devices: int | None
    links: dict[str, Any]
    step_range: tuple[float, float] | None = None  # realistic: kernel terms at their ends

    def to_dict(self) -> dict[str, Any]:
        d = self.plan.to_dict()
        d["links"] = self.links
        d["communication_exceeds_compute_at"] = self.crossover_devices
        d["compute_time"] = compute_time(self.plan)
        d["assumptions"] = list(ASSUMPTIONS) + [
            "data-parallel sync hidden behind the last backward (ZeRO 3 / FSDP: its gathers "
            "and reduce-scatters behind each micro-batch's forward and backward)"
            if self.plan.options.overlap
            else "no overlap of data-parallel sync"
        ]
        prec = self.plan.options.precision
        if prec is not None and prec.gemm_dtype:
            d["assumptions"].append(
                f"precision {prec.label}: Transformer Engine mixed FP8, the layers' Linear GEMMs "
                f"at the {prec.gemm_dtype} dense peak, everything else (attention, norms, LM "
                f"head) in {prec.compute_dtype}; bf16 weights, fp32 master weights and optimizer "
                f"state; MFU against the {prec.compute_dtype} dense peak"
            )
        if self.plan.layout.cp > 1:
            d["assumptions"].append(
                "context parallelism: ring attention, each K/V block transfer overlapped with "
                "the attention of the block before it"
            )
        if self.search is not None:
            d["search"] = self.search.to_dict()
        if self.step_range is not None:
            lo, hi = self.step_range
            d["step_time_range"] = [lo, hi]
            d["mfu_range"] = [d["mfu"] * d["step_time"] / hi, d["mfu"] * d["step_time"] / lo]
        d["limits"] = limits(self.plan)
        return d


def parallel_analysis(
    model: str,
    mode: str = "train",
    device: str = "h100-sxm",
    devices: int = 8,
    tp: int | None = None,
    pp: int | None = None,
    dp: int | None = None,
    ep: int = 1,
    zero: int = 0,
    sequence_parallel: bool = False,
    interleave: int = 1,
    checkpointing: str = "none",
    batch: int | None = None,
    micro_batch: int | None = None,
    seq_len: int | None = None,
    precision: str = "bf16",
    do_search: bool = False,
    overlap: bool = True,
    algorithm: str = "auto",
    efficiency: bool = True,
    cp: int = 1,
    node_size: int | None = None,
    intra: str | None = None,
    attention: str = "auto",
    tp_overlap: bool = False,
    kernel_rate: float | None = None,
) -> ParallelResult:
    """Price one layout (or search all) of `model` on `devices` x `device`; `cp`: context
    parallelism; `node_size` / `intra`: another node (`links.with_topology`); `attention`:
    the attention kernel family (`Options.attention`); `tp_overlap`: tensor-parallel
    communication overlapped with the GEMMs (`Options.tp_overlap`); `kernel_rate`: the
    whole-step kernel rate in training (`Options.kernel_rate`; None: the fitted one)."""
    check_mode(mode)
    spec = load_model(model)
    if spec.is_encoder_decoder:  # sharding splits one stack of n_layers; T5 has two
        raise MemwallError(
            f"parallel layouts of encoder-decoder models ({spec.name}) are not modelled; "
            "memwall analyze and memwall memory --mode infer count one device"
        )
    dev = get_device(device)
    links = with_topology(links_for(device), node_size, intra)
    prec = _precision(precision, mode)
    for dtype in (prec.compute_dtype, prec.gemm_dtype):
        if dtype and not dev.has_peak(dtype):
            dev.peak(dtype)  # its one-line error naming the dtypes the device has
    seq_len = _check_seq_len(spec, mode, seq_len)
    lay = complete_layout(
        devices, tp, pp, dp, ep=ep, zero=zero, sequence_parallel=sequence_parallel,
        interleave=interleave, checkpointing=checkpointing, cp=cp,
    )  # fmt: skip
    gb = batch if batch is not None else (8 * devices if mode == "train" else 8)
    mb = micro_batch if micro_batch is not None else _default_micro(mode, gb, lay)
    opts = Options(mode, gb, mb, seq_len, prec, overlap=overlap, algorithm=algorithm,
                   efficiency=efficiency, attention=check_attention(attention),
                   tp_overlap=tp_overlap, kernel_rate=kernel_rate)  # fmt: skip
    found = None
    if do_search:
        found = search(spec, dev, links, devices, opts)
        best = found.ranked[0]
    else:
        validate_layout(spec, lay, devices, gb, mb, mode, seq_len)
        best = plan(spec, dev, links, lay, opts)
    cross = None
    if mode == "train":
        base = replace(best.layout, dp=1)
        cross = crossover(spec, dev, links, base, best.options)
    rng = step_range(spec, dev, best) if best.options.efficiency else None
    return ParallelResult(best, found, cross, links.to_dict(), rng)


def _precision(text: str, mode: str):
    """`fp8` is Transformer Engine's mixed FP8 training (`precision.FP8_TRAINING`)."""
    if mode == "infer" and isinstance(text, str) and text.strip().lower() in FP8_NAMES:
        raise MemwallError(
            "--precision fp8 is Transformer Engine mixed FP8 training (--mode train); for 8-bit "
            "inference use int8 or W/A/KV bits such as 8/8/8"
        )
    return training_precision(text) if mode == "train" else parse_precision(text)


def _default_micro(mode: str, batch: int, lay: Layout) -> int:
    if mode == "train" or batch % lay.dp:
        return 1
    return batch // lay.dp


def _check_seq_len(spec: ModelSpec, mode: str, seq_len: int | None) -> int:
    """Default min(2048, what the positions allow); learned position tables are a hard cap."""
    extra = 1 if mode == "infer" and spec.is_decoder else 0  # the decoded token's position
    cap = spec.max_positions - extra if spec.position == "learned" else None
    if seq_len is None:
        return min(2048, cap) if cap else 2048
    if seq_len < 1 or seq_len > 10_000_000:
        raise MemwallError(f"seq-len must be between 1 and 10,000,000, got {seq_len}")
    if cap is not None and seq_len > cap:
        raise MemwallError(
            f"{spec.name} has {spec.max_positions} learned positions: --seq-len must be at most "
            f"{cap} for --mode {mode}, got {seq_len}"
        )
    return seq_len
