"""Search layouts: every split of N devices that runs the model, ranked by predicted step time.

Candidates: tensor-parallel degrees that divide the heads and KV heads and stay inside one node,
pipeline degrees that divide the rest (and the layers allow), data parallelism for the
remainder; for training also ZeRO 0/1/3, checkpointing none/selective/full, sequence
parallelism whenever tp > 1, interleaving 1 or 2; expert parallelism for MoE models; for
training at 8,192 tokens or more, context parallelism of 2, 4 or 8 inside a node (tp x cp at
most the node size; Megatron's long-context setting), else none. Layouts
whose peak memory exceeds the device's capacity are dropped (and counted), the rest ranked.
The explanation compares the winner with the runner-up term by term and names the largest
difference, and with the fastest layout that did not fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.parallel.layout import Layout
from memwall.parallel.links import Links
from memwall.parallel.plan import Options, Plan, plan
from memwall.spec import ModelSpec

LABELS = {
    "forward": "forward compute",
    "backward": "backward compute",
    "recompute": "recomputation",
    "tp_comm": "tensor-parallel communication",
    "ep_comm": "expert all-to-all",
    "pp_comm": "pipeline hand-offs",
    "cp_attention": "ring-attention block steps",
    "cp_comm": "exposed ring-attention K/V transfers",
    "bubble": "pipeline bubble",
    "dp_comm": "exposed gradient synchronisation",
    "optimizer": "optimizer step",
    "decode_compute": "decode compute",
    "prefill_compute": "prefill compute",
}


@dataclass(frozen=True)
class SearchResult:
    ranked: tuple[Plan, ...]  # fitting layouts, fastest first
    rejected_memory: int
    rejected_invalid: int
    best_unfit: Plan | None
    explanation: str

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {
            "explanation": self.explanation,
            "candidates_fit": len(self.ranked),
            "rejected_memory": self.rejected_memory,
            "rejected_invalid": self.rejected_invalid,
            "ranked": [_summary(p) for p in self.ranked[:top]],
        }


def _summary(p: Plan) -> dict[str, Any]:
    return {
        "layout": p.layout.to_dict(),
        "micro_batch": p.options.micro_batch,
        "step_time": p.step_time,
        "mfu": p.mfu,
        "peak_memory": p.per_device["peak"],
        "communication_time": p.communication,
        "breakdown": p.breakdown,
    }


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


LONG_CONTEXT = 8192  # tokens from which a training search tries context parallelism


def candidates(
    spec: ModelSpec, devices: int, links: Links, mode: str, seq_len: int = 0
) -> list[Layout]:
    """Layouts worth pricing (validity is checked again when each is priced)."""
    out = []
    tps = [t for t in _divisors(devices) if t <= links.node_size]
    tps = [t for t in tps if spec.n_heads % t == 0 and spec.n_kv_heads % t == 0]
    long = mode == "train" and seq_len >= LONG_CONTEXT
    for t in tps:
        cps = [c for c in (1, 2, 4, 8) if c == 1 or (long and t * c <= links.node_size)]
        for c in [c for c in cps if (devices // t) % c == 0 and seq_len % (2 * c) == 0] or [1]:
            for p in _divisors(devices // (t * c)):
                if p > spec.n_layers:
                    continue
                d = devices // (t * c * p)
                eps = [e for e in _divisors(d * c) if spec.is_moe and spec.n_experts % e == 0]
                for e in eps or [1]:
                    out += _variants(Layout(tp=t, pp=p, dp=d, ep=e, cp=c), spec, mode)
    return out


def _variants(base: Layout, spec: ModelSpec, mode: str) -> list[Layout]:
    if mode == "infer":
        return [base]
    zeros = (0, 1, 3) if base.dp > 1 else (0,)
    vs = (1, 2) if base.pp > 1 and base.pp * 2 <= spec.n_layers else (1,)
    out = []
    for z, ck, v in itertools.product(zeros, ("none", "selective", "full"), vs):
        out.append(replace(base, zero=z, checkpointing=ck, interleave=v,
                           sequence_parallel=base.tp > 1))  # fmt: skip
    return out


def search(
    spec: ModelSpec,
    device: Device,
    links: Links,
    devices: int,
    options: Options,
    micro_batches: tuple[int, ...] = (1, 2, 4),
) -> SearchResult:
    """Price every candidate layout (and micro-batch size) and rank those that fit."""
    fit: list[Plan] = []
    unfit: list[Plan] = []
    invalid = 0
    mbs = sorted({options.micro_batch, *micro_batches})
    for lay in candidates(spec, devices, links, options.mode, options.seq_len):
        for mb in mbs:
            if options.mode == "infer":
                mb = options.batch // lay.dp if options.batch % lay.dp == 0 else 0
            try:
                p = plan(spec, device, links, lay, replace(options, micro_batch=max(mb, 1)))
            except MemwallError:
                invalid += 1
                continue
            (fit if p.fits else unfit).append(p)
            if options.mode == "infer":
                break
    if not fit:
        raise MemwallError(
            f"no layout of {spec.name} on {devices} x {device.name} fits in memory "
            f"({len(unfit)} priced, {invalid} invalid); add devices or lower the batch"
        )
    fit.sort(key=lambda p: p.step_time)
    best_unfit = min(unfit, key=lambda p: p.step_time) if unfit else None
    return SearchResult(
        tuple(fit), len(unfit), invalid, best_unfit, explain(fit, best_unfit, device)
    )


def explain(ranked: list[Plan], best_unfit: Plan | None, device: Device) -> str:
    """Why the winner wins: its largest advantage over the runner-up, and what did not fit."""
    best = ranked[0]
    lines = [
        f"{best.layout.label} (micro-batch {best.options.micro_batch}) is fastest: "
        f"{best.step_time:.4g} s per step, MFU {best.mfu:.1%}, peak "
        f"{best.per_device['peak'] / 2**30:.1f} GiB per device."
    ]
    if len(ranked) > 1:
        other = next((p for p in ranked[1:] if p.layout != best.layout), ranked[1])
        diffs = {k: other.breakdown.get(k, 0) - v for k, v in best.breakdown.items()}
        key = max(diffs, key=lambda k: diffs[k])
        lines.append(
            f"Runner-up {other.layout.label} (micro-batch {other.options.micro_batch}) takes "
            f"{other.step_time / best.step_time - 1:.1%} longer, mostly "
            f"{LABELS.get(key, key)} ({other.breakdown.get(key, 0):.3g} s vs "
            f"{best.breakdown[key]:.3g} s)."
        )
    if best_unfit is not None and best_unfit.step_time < best.step_time:
        cap = (device.mem_capacity or 0) / 2**30
        lines.append(
            f"{best_unfit.layout.label} would be faster ({best_unfit.step_time:.4g} s) but needs "
            f"{best_unfit.per_device['peak'] / 2**30:.1f} GiB of the {cap:.0f} GiB per device."
        )
    return " ".join(lines)
