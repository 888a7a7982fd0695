"""A parallel layout over N devices and the checks that make it a real one.

Ranks are placed Megatron-style (its default order tp-cp-ep-dp-pp): tensor-parallel ranks
innermost (consecutive devices, so a tensor-parallel group stays inside a node when t <= node
size), then context-parallel, then data-parallel (expert parallelism splits the data- and
context-parallel ranks, as Megatron-Core requires: ep divides dp x cp), then pipeline stages
outermost. Devices = tp x cp x pp x dp.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.memory.checkpointing import parse_checkpointing
from memwall.memory.training import MAX_DEVICES, ZERO_STAGES
from memwall.spec import ModelSpec

CHECKPOINTING = ("none", "selective", "full")


@dataclass(frozen=True)
class Layout:
    """Degrees of parallelism: tp x cp x pp x dp devices; ep splits the experts over dp x cp;
    cp splits each sequence (context parallelism, ring attention)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    sequence_parallel: bool = False
    zero: int = 0
    interleave: int = 1  # virtual pipeline stages per device (interleaved 1F1B)
    checkpointing: str = "none"
    cp: int = 1  # context parallelism: ranks each sequence is split over (last: positional use)

    @property
    def devices(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def label(self) -> str:
        parts = [f"tp{self.tp}", f"pp{self.pp}", f"dp{self.dp}"]
        if self.cp > 1:
            parts.insert(1, f"cp{self.cp}")
        if self.ep > 1:
            parts.append(f"ep{self.ep}")
        if self.interleave > 1:
            parts.append(f"v{self.interleave}")
        if self.sequence_parallel:
            parts.append("sp")
        if self.zero:
            parts.append(f"zero{self.zero}")
        if self.checkpointing != "none":
            parts.append(f"ckpt-{self.checkpointing}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "pp": self.pp,
            "dp": self.dp,
            "ep": self.ep,
            "cp": self.cp,
            "sequence_parallel": self.sequence_parallel,
            "zero": self.zero,
            "interleave": self.interleave,
            "checkpointing": self.checkpointing,
            "label": self.label,
        }


def _positive(what: str, v: Any, hi: int = MAX_DEVICES) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise MemwallError(f"{what} must be an integer between 1 and {hi:,}, got {v!r}")
    return v


def complete_layout(
    devices: int,
    tp: int | None = None,
    pp: int | None = None,
    dp: int | None = None,
    **kw: Any,
) -> Layout:
    """Fill the one missing degree (dp by default) so that tp x cp x pp x dp = devices; a degree
    left out (None) is 1, one given as 0 or less is refused."""
    _positive("devices", devices)
    t = _positive("tp", 1 if tp is None else tp)
    p = _positive("pp", 1 if pp is None else pp)
    c = _positive("cp", kw.get("cp", 1))
    if dp is None:
        if devices % (t * p * c):
            what = "tp x cp x pp" if c > 1 else "tp x pp"
            raise MemwallError(
                f"{what} = {t * p * c} does not divide --devices {devices}; "
                "choose degrees whose product divides the device count"
            )
        dp = devices // (t * p * c)
    return Layout(tp=t, pp=p, dp=_positive("dp", dp), **kw)


def validate_layout(
    spec: ModelSpec,
    layout: Layout,
    devices: int,
    batch: int,
    micro_batch: int,
    mode: str = "train",
    seq_len: int | None = None,
) -> None:
    """Raise MemwallError (one line) for a layout that cannot run `spec` on `devices`."""
    lay = layout
    for what, v in (("tp", lay.tp), ("pp", lay.pp), ("dp", lay.dp), ("ep", lay.ep)):
        _positive(what, v)
    _positive("cp", lay.cp)
    _positive("interleave", lay.interleave, 1024)
    _positive("devices", devices)
    if lay.devices != devices:
        cp = f" x cp {lay.cp}" if lay.cp > 1 else ""
        raise MemwallError(
            f"layout tp {lay.tp}{cp} x pp {lay.pp} x dp {lay.dp} = {lay.devices} devices, "
            f"but --devices is {devices}; the product must equal the device count"
        )
    if spec.n_heads % lay.tp or spec.n_kv_heads % lay.tp:
        raise MemwallError(
            f"tensor-parallel degree {lay.tp} must divide the attention heads ({spec.n_heads}) "
            f"and key/value heads ({spec.n_kv_heads}) of {spec.name}"
        )
    if spec.d_ff % lay.tp:
        raise MemwallError(f"tensor-parallel degree {lay.tp} must divide the FFN width {spec.d_ff}")
    if lay.pp * lay.interleave > spec.n_layers:
        raise MemwallError(
            f"pipeline stages x interleave ({lay.pp} x {lay.interleave}) exceed the "
            f"{spec.n_layers} layers of {spec.name}"
        )
    if lay.interleave > 1 and lay.pp == 1:
        raise MemwallError("--interleave needs pipeline parallelism (--pp 2 or more)")
    # Experts per rank may be fewer than the experts each token uses (DeepSeek-V3: 256 experts,
    # top-8, EP 64 -> 4 per rank): the all-to-all routes each token to the ranks holding them.
    if lay.ep > 1 and (not spec.is_moe or spec.n_experts % lay.ep or (lay.dp * lay.cp) % lay.ep):
        what = "data-parallel x context-parallel degree" if lay.cp > 1 else "data-parallel degree"
        raise MemwallError(
            f"expert-parallel degree {lay.ep} needs a mixture-of-experts model whose experts "
            f"({spec.n_experts}) and {what} ({lay.dp * lay.cp}) it divides"
        )
    if lay.sequence_parallel and lay.tp == 1:
        raise MemwallError("--sequence-parallel needs tensor parallelism (--tp 2 or more)")
    if lay.zero not in ZERO_STAGES:
        raise MemwallError(f"ZeRO stage must be 0, 1, 2 or 3, got {lay.zero!r}")
    if lay.zero == 2 and lay.pp > 1:
        raise MemwallError(
            "ZeRO stage 2 shards gradients, which pipeline parallelism accumulates over "
            "micro-batches (DeepSpeed refuses the pair); use --zero 0, 1 or 3 (FSDP) with --pp"
        )
    if lay.checkpointing not in CHECKPOINTING:
        parse_checkpointing(lay.checkpointing, spec.n_layers)  # its own one-line error
        raise MemwallError(f"checkpointing must be one of {', '.join(CHECKPOINTING)}")
    _positive("batch", batch, 10_000_000)
    _positive("micro-batch", micro_batch, 10_000_000)
    if batch % (micro_batch * lay.dp):
        raise MemwallError(
            f"global batch {batch} is not divisible by micro-batch x dp "
            f"({micro_batch} x {lay.dp} = {micro_batch * lay.dp})"
        )
    if mode == "infer" and (lay.zero or lay.checkpointing != "none"):
        raise MemwallError("--zero and --checkpointing apply to --mode train only")
    if mode == "infer" and lay.cp > 1:
        raise MemwallError("--cp (context parallelism) is modelled for --mode train only")
    if seq_len is not None and lay.cp > 1 and seq_len % (2 * lay.cp):
        raise MemwallError(
            f"--seq-len {seq_len} must be divisible by 2 x cp = {2 * lay.cp}: context "
            "parallelism splits each sequence into 2 x cp chunks (Megatron's load balancing)"
        )


def with_(layout: Layout, **kw: Any) -> Layout:
    return replace(layout, **kw)
