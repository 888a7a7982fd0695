"""The one call behind `memwall parallel`: resolve names, fill defaults, price or search."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.layout import Layout, complete_layout, validate_layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, Plan, check_mode, plan
from memwall.parallel.search import SearchResult, search
from memwall.parallel.wall import compute_time, crossover
from memwall.spec import ModelSpec, load_model, parse_precision

ASSUMPTIONS = (
    "each operation at the larger of its compute and memory time: dense peak and datasheet "
    "bandwidth (roofline), or with --efficiency the published kernel efficiencies",
    "backward = 2 x forward",
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

    def to_dict(self) -> dict[str, Any]:
        d = self.plan.to_dict()
        d["links"] = self.links
        d["communication_exceeds_compute_at"] = self.crossover_devices
        d["compute_time"] = compute_time(self.plan)
        d["assumptions"] = list(ASSUMPTIONS) + [
            "data-parallel sync hidden behind the last backward"
            if self.plan.options.overlap
            else "no overlap of data-parallel sync"
        ]
        if self.search is not None:
            d["search"] = self.search.to_dict()
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
    efficiency: bool = False,
) -> ParallelResult:
    """Price one layout (or search all) of `model` on `devices` x `device`."""
    check_mode(mode)
    spec = load_model(model)
    if spec.is_encoder_decoder:  # sharding splits one stack of n_layers; T5 has two
        raise MemwallError(
            f"parallel layouts of encoder-decoder models ({spec.name}) are not modelled; "
            "memwall analyze and memwall memory --mode infer count one device"
        )
    dev = get_device(device)
    links = links_for(device)
    prec = parse_precision(precision)
    if not dev.has_peak(prec.compute_dtype):
        dev.peak(prec.compute_dtype)  # its one-line error naming the dtypes the device has
    seq_len = _check_seq_len(spec, mode, seq_len)
    lay = complete_layout(
        devices, tp, pp, dp, ep=ep, zero=zero, sequence_parallel=sequence_parallel,
        interleave=interleave, checkpointing=checkpointing,
    )  # fmt: skip
    gb = batch if batch is not None else (8 * devices if mode == "train" else 8)
    mb = micro_batch if micro_batch is not None else _default_micro(mode, gb, lay)
    opts = Options(mode, gb, mb, seq_len, prec, overlap=overlap, algorithm=algorithm,
                   efficiency=efficiency)  # fmt: skip
    found = None
    if do_search:
        found = search(spec, dev, links, devices, opts)
        best = found.ranked[0]
    else:
        validate_layout(spec, lay, devices, gb, mb, mode)
        best = plan(spec, dev, links, lay, opts)
    cross = None
    if mode == "train":
        base = replace(best.layout, dp=1)
        cross = crossover(spec, dev, links, base, best.options)
    return ParallelResult(best, found, cross, links.to_dict())


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
