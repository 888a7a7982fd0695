"""Memory of one training step, per device: model states, activations and their peak in time.

Model states (bytes per parameter; the accounting of the ZeRO paper, Rajbhandari et al. 2020):
- fp32 training: weights 4, gradients 4, optimizer states 4 each.
- mixed precision (16-bit weights): weights 2, gradients 2, fp32 master weights 4 and fp32
  optimizer states 4 each (Adam: 2 + 2 + 12 = 16 bytes per parameter). Without master weights
  (`master_weights=False`) the states are kept in the weights' precision.
- ZeRO over N devices: stage 1 shards the optimizer states (master weights included), stage 2
  also the gradients, stage 3 also the weights; stage 3 gathers each layer's full weights before
  use (two layers resident with prefetch) and stages 2-3 keep one layer's gradients as a reduce
  bucket. `--batch` is the micro-batch of each device.
- Offload (ZeRO-Offload): master weights and optimizer states live in host memory and the step
  runs on the host; the device keeps 16-bit weights and gradients.

The peak is found on a timeline of the step rather than by adding everything up: forward end
(all saved activations), the loss backward (logit gradients), each layer's backward (activations
of the layers not yet processed + the recomputed segment + gradients produced so far), the
embedding backward, and the optimizer step (weights + gradients + states + its temporaries; on
the first step the states are created here). The sum of all parts is reported too, as the
conservative bound most calculators print.

Step FLOPs: forward FLOPs from `count` (convention full); backward = 2 x forward (the usual
estimate: two matmuls per forward matmul); recomputation adds the forward FLOPs of what it reruns.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from memwall.errors import MemwallError
from memwall.memory.activations import (
    FP32,
    LABELS,
    MASK_BYTES,
    LayerOps,
    Saved,
    _check_impl,
    backward_transients,
    layer_ops,
    part_bytes,
    saved_tensors,
)
from memwall.memory.checkpointing import Checkpointing, parse_checkpointing
from memwall.memory.fit import largest
from memwall.memory.optimizers import OptimizerDef, get_optimizer
from memwall.spec import MAX_BATCH, ModelSpec, Precision, parse_precision

MAX_DEVICES = 1_000_000
_STEP_EVENTS = ("optimizer step", "Hessian-vector product")
ZERO_STAGES = (0, 1, 2, 3)


@functools.lru_cache(maxsize=1)
def assumptions() -> dict[str, Any]:
    text = resources.files("memwall.data").joinpath("memory_assumptions.json").read_text("utf-8")
    return json.loads(text)


def framework_overhead(kind: str) -> tuple[float, str, str]:
    """(bytes, short note, full source) of the runtime overhead assumed for a device kind."""
    table = assumptions()["framework_overhead"]
    entry = table.get(kind, table["tpu" if kind == "accelerator" else "cpu"])
    return float(entry["bytes"]), entry["short"], entry["source"]


@dataclass(frozen=True)
class ParamGroups:
    """Parameters split by when their gradient appears in backward."""

    total: float
    embed: float
    layer: float  # one layer
    head: float  # final norm, untied LM head, pooler, classifier
    tied: float  # the embedding table shared with the LM head (its gradient comes first)
    largest: float  # the largest single tensor (a per-tensor optimizer step's temporaries)


def param_groups(spec: ModelSpec) -> ParamGroups:
    extra = 0 if spec.has_lm_head else spec.d_model * LABELS + LABELS  # classifier
    total = spec.n_params() + extra
    embed = spec.embedding_params() + (
        spec.d_model * (2 if spec.norm == "layernorm" else 1) if spec.embed_norm else 0
    )
    layer = spec.layer_params()
    head = total - embed - spec.n_layers * layer
    tied = spec.vocab_size * spec.d_model if (spec.has_lm_head and spec.tied_embeddings) else 0
    mats = [spec.vocab_size * spec.d_model, spec.d_model * spec.d_ff, spec.d_model * spec.q_dim]
    if spec.position == "learned":
        mats.append(spec.max_positions * spec.d_model)
    return ParamGroups(
        float(total), float(embed), float(layer), float(head), float(tied), float(max(mats))
    )


@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter of each model state."""

    weight: float
    grad: float
    master: float
    state: float  # per optimizer state tensor
    mixed: bool


def state_bytes(precision: Precision, master_weights: bool = True) -> StateBytes:
    if precision.weight_bits not in (16, 32):
        raise MemwallError(
            f"training needs 16- or 32-bit weights, got {precision.weight_bits}-bit "
            "(accepted precisions: fp32, bf16, fp16, or W/A/KV with W = 16 or 32)"
        )
    w = precision.weight_bits / 8
    mixed = precision.weight_bits < 32
    master = FP32 if (mixed and master_weights) else 0.0
    state = FP32 if (mixed and master_weights) or not mixed else w
    return StateBytes(w, w, master, state, mixed)


def model_states(
    n_params: float,
    optimizer: str | OptimizerDef = "adam",
    precision: Precision | str = "bf16",
    zero: int = 0,
    devices: int = 1,
    offload: bool = False,
    master_weights: bool = True,
) -> dict[str, float]:
    """Per-device bytes of weights, gradients and optimizer state (master weights included)."""
    check_parallel(zero, devices)
    prec = parse_precision(precision) if isinstance(precision, str) else precision
    opt = get_optimizer(optimizer)
    sb = state_bytes(prec, master_weights)
    n = float(devices)
    w = n_params * sb.weight / (n if zero >= 3 else 1)
    g = n_params * sb.grad / (n if zero >= 2 else 1)
    o_full = n_params * (sb.master + opt.n_states * sb.state)
    o = o_full / (n if zero >= 1 else 1)
    host = 0.0
    if offload:
        host, o = o, 0.0
    return {"weights": w, "gradients": g, "optimizer": o, "host": host}


def check_parallel(zero: int, devices: int) -> None:
    if isinstance(zero, bool) or not isinstance(zero, int) or zero not in ZERO_STAGES:
        raise MemwallError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero!r}")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise MemwallError(f"devices must be an integer of at least 1, got {devices!r}")
    if devices > MAX_DEVICES:
        raise MemwallError(f"devices must be at most {MAX_DEVICES:,}, got {devices:,}")


@dataclass(frozen=True)
class Event:
    """Bytes live on a device at one moment of the step."""

    name: str
    states: float  # weights, gradients produced so far, optimizer state, ZeRO buffers
    saved: float  # activations kept for backward (recomputed segment included)
    temporaries: float  # gradients of activations, logits, step workspace
    overhead: float = 0.0

    @property
    def nbytes(self) -> float:
        return self.states + self.saved + self.temporaries + self.overhead


@dataclass(frozen=True)
class TrainingFootprint:
    """Per-device training memory of one step, with its parts and where in time the peak is."""

    model: str
    precision: str
    optimizer: str
    checkpointing: str
    impl: str
    fused_attention: bool
    zero: int
    devices: int
    offload: bool
    batch: int
    seq_len: int
    n_params: float
    weights: float
    gradients: float
    optimizer_state: float  # master weights included
    master_weights: float
    activations: float  # kept for backward at the end of forward (after checkpointing)
    activations_no_ckpt: float  # the same without checkpointing
    recompute_peak: float  # extra activations of the segment recomputed in backward
    temporaries: float  # at the peak: gradients of activations, logits, step workspace
    zero_buffers: float
    overhead: float
    overhead_source: str
    host: float  # host memory per device (offload)
    peak_event: str
    forward_flops: float
    recompute_flops: float
    events: tuple[Event, ...] = field(repr=False, default=())
    saved: tuple[Saved, ...] = field(repr=False, default=())

    @property
    def peak(self) -> float:
        """The largest live total over the step's timeline, overhead included."""
        return max(e.nbytes for e in self.events)

    @property
    def activation_peak(self) -> float:
        """Activations and temporaries at the peak (what remains after the model states)."""
        e = max(self.events, key=lambda e: e.nbytes)
        return e.saved + e.temporaries

    @property
    def fb_peak(self) -> float:
        """Largest bytes above weights, optimizer state and buffers during forward and backward
        (activations, temporaries and the gradients produced so far): what a step adds."""
        steady = self.weights + self.optimizer_state + self.zero_buffers + self.overhead
        return max(e.nbytes for e in self.events if e.name not in _STEP_EVENTS) - steady

    @property
    def model_states(self) -> float:
        return self.weights + self.gradients + self.optimizer_state

    @property
    def sum_of_parts(self) -> float:
        """The conservative bound: every part at its largest, all at once."""
        return (
            self.model_states
            + self.activations
            + self.recompute_peak
            + self.temporaries
            + self.zero_buffers
            + self.overhead
        )

    @property
    def step_flops(self) -> float:
        return 3 * self.forward_flops + self.recompute_flops

    @property
    def recompute_overhead(self) -> float:
        """Extra compute of rematerialisation as a fraction of the step without it."""
        return self.recompute_flops / (3 * self.forward_flops) if self.forward_flops else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """The breakdown table (bytes per device)."""
        r = [
            ("weights", self.weights, "parameters in training precision"),
            ("gradients", self.gradients, ""),
            ("optimizer state", self.optimizer_state - self.master_weights, self.optimizer),
            ("master weights", self.master_weights, "fp32 copy (mixed precision)"),
            ("activations (kept)", self.activations, f"checkpointing {self.checkpointing}"),
            ("recomputed segment", self.recompute_peak, "live while its backward runs"),
            ("temporaries", self.temporaries, f"at the peak ({self.peak_event})"),
            ("ZeRO buffers", self.zero_buffers, "gathered layers, reduce bucket"),
            ("framework overhead", self.overhead, self.overhead_source),
        ]
        rows = [{"component": c, "bytes": float(b), "note": n} for c, b, n in r]
        rows.append({"component": "peak (timeline)", "bytes": self.peak, "note": self.peak_event})
        rows.append({"component": "sum of parts", "bytes": self.sum_of_parts, "note": "bound"})
        if self.offload:
            rows.append({"component": "host (offloaded)", "bytes": self.host, "note": "CPU RAM"})
        return rows

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("events", "saved")}
        first_layer = next((e.name for e in self.events if e.name.startswith("layer")), "")
        d.update(
            peak=self.peak,
            activation_peak=self.activation_peak,
            fb_peak=self.fb_peak,
            model_states=self.model_states,
            sum_of_parts=self.sum_of_parts,
            step_flops=self.step_flops,
            recompute_overhead=self.recompute_overhead,
            timeline=[
                {"event": e.name, "bytes": e.nbytes}
                for e in self.events
                if not e.name.startswith("layer")
                or e.name in (self.peak_event, first_layer, "layer 0 backward")
            ],
        )
        return d


def training_memory(
    spec: ModelSpec,
    batch: int = 1,
    seq_len: int = 512,
    precision: Precision | str = "bf16",
    optimizer: str | OptimizerDef = "adam",
    checkpointing: str | Checkpointing = "none",
    zero: int = 0,
    devices: int = 1,
    offload: bool = False,
    master_weights: bool = True,
    impl: str = "eager",
    fused_attention: bool = True,
    dropout: float = 0.0,
    mask_bytes: float = MASK_BYTES,
    foreach: bool = True,
    overhead: float = 0.0,
    overhead_source: str = "not counted",
    ops: LayerOps | None = None,
) -> TrainingFootprint:
    """Per-device memory of one training step of `spec` on micro-batch `batch` x `seq_len`.

    `foreach`: the optimizer step updates all tensors at once (PyTorch's default on GPUs), so its
    temporaries are parameter-sized; False is the per-tensor loop (PyTorch's default on CPU).
    `mask_bytes`: bytes per dropout-mask element (1 on CUDA; the activation dtype's on CPU).
    `ops` lets a caller that evaluates many strategies reuse one op table.
    """
    _check_impl(impl)
    check_parallel(zero, devices)
    prec = parse_precision(precision) if isinstance(precision, str) else precision
    opt = get_optimizer(optimizer)
    ck = parse_checkpointing(checkpointing, spec.n_layers)
    sb = state_bytes(prec, master_weights)
    o = ops or layer_ops(spec, batch, seq_len, prec, fused_attention)
    saved = saved_tensors(spec, batch, seq_len, prec, impl, fused_attention, dropout, o, mask_bytes)
    tr = backward_transients(spec, o, saved, impl, fused_attention)
    pg = param_groups(spec)
    n = spec.n_layers
    N = float(devices)
    shard_w = N if zero >= 3 else 1.0
    shard_g = N if zero >= 2 else 1.0
    shard_o = N if zero >= 1 else 1.0

    # ---- model states per device
    W = pg.total * sb.weight / shard_w
    G = pg.total * sb.grad / shard_g
    master = pg.total * sb.master / shard_o
    opt_state = pg.total * (sb.master + opt.n_states * sb.state) / shard_o
    host = 0.0
    if offload:
        host, opt_state, master = opt_state, 0.0, 0.0
    if foreach:
        ws_params = opt.step_workspace * pg.total / shard_o
    else:
        ws_params = opt.step_workspace_per_tensor * min(pg.largest, pg.total / shard_o)
    opt_ws = 0.0 if offload else ws_params * sb.state
    hvp_ws = opt.hvp_workspace * pg.total * sb.state / shard_o
    gather = assumptions()["zero"]["gather_layers"] * pg.layer * sb.weight if zero >= 3 else 0.0
    bucket = pg.layer * sb.grad if zero >= 2 else 0.0
    zbuf = gather + bucket

    # ---- activations
    embed_a = part_bytes(saved, "embed")
    final_a = part_bytes(saved, "final")
    head_a = part_bytes(saved, "head")
    layer_full = part_bytes(saved, "layer")
    layer_keep = (
        part_bytes(saved, "layer", attn_core=False) if ck.kind == "selective" else layer_full
    )
    sel_extra = layer_full - layer_keep  # the attention core, recomputed in the layer's backward
    ck_input = o.out["o_proj"]  # a checkpointed segment keeps only its input (T x d_model)
    segs = ck.segments(n)
    seg_of = [-1] * n
    for si, (s0, s1) in enumerate(segs):
        for i in range(s0, s1 + 1):
            seg_of[i] = si
    stored = [0.0] * n  # what layer i keeps through the forward
    for i in range(n):
        if seg_of[i] < 0:
            stored[i] = layer_keep
        elif segs[seg_of[i]][0] == i:
            stored[i] = ck_input
    kept_before = [0.0] * (n + 1)  # kept bytes of layers 0..i-1
    for i in range(n):
        kept_before[i + 1] = kept_before[i] + stored[i]
    A_fwd = embed_a + kept_before[n] + final_a + head_a
    A_none = embed_a + n * layer_full + final_a + head_a
    ag = 1.0 + opt.backward_graph  # create_graph=True keeps the backward graph as well

    # ---- timeline (per device)
    base = W + opt_state + zbuf
    events: list[Event] = []

    def ev(name: str, states: float, saved_b: float, temp: float) -> None:
        events.append(Event(name, states, saved_b, temp, overhead))

    if segs:  # a checkpointed layer's forward runs without keeping, one op's tensors at a time
        ev("forward (checkpointed layer)", base, embed_a + kept_before[n], tr["forward_layer"])
    ev("forward end", base, A_fwd, tr["forward_head"])
    g_head = (pg.head + pg.tied) * sb.grad / shard_g
    ev("loss backward", base + g_head, A_fwd * ag, tr["head"])
    recompute_max = sel_extra
    g_done = g_head
    for i in reversed(range(n)):
        si = seg_of[i]
        if si >= 0:
            s0, s1 = segs[si]
            below = kept_before[s0]
            live = (i - s0 + 1) * layer_full  # the segment, recomputed from its kept input
            recompute_max = max(recompute_max, (s1 - s0 + 1) * layer_full - ck_input)
        else:
            below = kept_before[i]
            live = layer_keep + sel_extra
        g_done += pg.layer * sb.grad / shard_g
        ev(f"layer {i} backward", base + g_done, (embed_a + below + live) * ag, tr["layer"])
    g_all = pg.total * sb.grad / shard_g
    tied_tmp = pg.tied * sb.grad  # the dense embedding gradient before it is accumulated
    ev("embedding backward", base + g_all, embed_a * ag, tied_tmp)
    ev("optimizer step", W + g_all + opt_state, 0.0, opt_ws)
    if opt.hvp_workspace:
        ev("Hessian-vector product", W + g_all + opt_state, A_none * opt.backward_graph, hvp_ws)
    peak_ev = max(events, key=lambda e: e.nbytes)

    # ---- FLOPs
    layer_rows = o.table["layer"] == "all"
    per_layer = float((o.table.loc[layer_rows, "flops"] / o.table.loc[layer_rows, "count"]).sum())
    fwd = float(o.table["flops"].sum())
    if ck.kind == "selective":
        core = ("attention",) if fused_attention else ("attn_score", "softmax", "attn_value")
        recompute = n * sum(o.flops[c] for c in core)
    else:
        recompute = ck.recomputed_layers(n) * per_layer
    return TrainingFootprint(
        model=spec.name,
        precision=("mixed " if sb.mixed and master_weights else "") + prec.label,
        optimizer=opt.name,
        checkpointing=ck.label,
        impl=impl,
        fused_attention=fused_attention,
        zero=zero,
        devices=devices,
        offload=offload,
        batch=batch,
        seq_len=seq_len,
        n_params=pg.total,
        weights=W,
        gradients=G,
        optimizer_state=opt_state,
        master_weights=master,
        activations=A_fwd * ag,
        activations_no_ckpt=A_none * ag,
        recompute_peak=recompute_max,
        temporaries=peak_ev.temporaries,
        zero_buffers=zbuf,
        overhead=overhead,
        overhead_source=overhead_source,
        host=host,
        peak_event=peak_ev.name,
        forward_flops=fwd,
        recompute_flops=recompute,
        events=tuple(events),
        saved=tuple(saved),
    )


def max_train_batch(spec: ModelSpec, seq_len: int, capacity: float, **kw: Any) -> int:
    """Largest micro-batch whose timeline peak fits in `capacity` bytes (0: not even 1)."""
    return largest(lambda b: training_memory(spec, b, seq_len, **kw).peak <= capacity, MAX_BATCH)
