"""Memory of one training step, per device: model states, activations and their peak in time.

Model states (bytes per parameter; the accounting of the ZeRO paper, Rajbhandari et al. 2020):
- fp32 training: weights 4, gradients 4, optimizer states 4 each.
- mixed precision (16-bit weights): weights 2, fp32 master weights 4 and fp32 optimizer states
  4 each; gradients 4 under bf16 (fp32 accumulation and reduction, as Megatron-LM, FSDP and the
  Llama 3 run keep them: Adam 2 + 4 + 12 = 18 bytes per parameter) and 2 under fp16 (the ZeRO
  paper's Adam 2 + 2 + 12 = 16; `memwall.optimizers.state_bytes`). Without master weights
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

from dataclasses import dataclass, field
from typing import Any

from memwall.errors import MemwallError
from memwall.memory.activations import (
    MASK_BYTES,
    LayerOps,
    Saved,
    backward_transients,
    layer_ops,
    part_bytes,
    saved_tensors,
)
from memwall.memory.checkpointing import Checkpointing, parse_checkpointing
from memwall.memory.optimizers import OptimizerDef, get_optimizer
from memwall.memory.states import (
    BF16,
    MAX_DEVICES,  # noqa: F401 - re-exported (memwall.parallel)
    ZERO_STAGES,  # noqa: F401 - re-exported (memwall.parallel)
    DeviceStates,
    check_parallel,
    device_states,
    param_groups,
    state_bytes,
)
from memwall.precision import typed_precision
from memwall.search import largest
from memwall.spec import MAX_BATCH, ModelSpec, Precision

# moments after the last backward, when no activations are live
STEP_EVENTS = ("optimizer step", "Hessian-vector product")


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
    optimizer_state: float  # the optimizer's own tensors (moments), master weights not included
    master_weights: float  # fp32 copy of the weights in mixed precision
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
    gradient_note: str = ""  # the gradients' precision where it is not the weights'

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
        steady = (
            self.weights
            + self.optimizer_state
            + self.master_weights
            + self.zero_buffers
            + self.overhead
        )
        return max(e.nbytes for e in self.events if e.name not in STEP_EVENTS) - steady

    @property
    def model_states(self) -> float:
        """Weights + gradients + optimizer state + master weights (the four are disjoint)."""
        return self.weights + self.gradients + self.optimizer_state + self.master_weights

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
            ("gradients", self.gradients, self.gradient_note),
            ("optimizer state", self.optimizer_state, self.optimizer),
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
    precision: Precision = BF16,
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
    if spec.is_encoder_decoder:
        raise MemwallError(
            f"training memory of encoder-decoder models ({spec.name}) is not modelled; "
            "use --mode infer, or memwall analyze for the counts"
        )
    check_parallel(zero, devices)  # `impl` is checked by `saved_tensors`
    prec = typed_precision(precision)
    opt = get_optimizer(optimizer)
    ck = parse_checkpointing(checkpointing, spec.n_layers)
    sb = state_bytes(prec, master_weights)
    o = ops or layer_ops(spec, batch, seq_len, prec, fused_attention)
    saved = saved_tensors(spec, batch, seq_len, prec, impl, fused_attention, dropout, o, mask_bytes)
    tr = backward_transients(spec, o, saved, impl, fused_attention)
    pg = param_groups(spec)
    st = device_states(pg, sb, opt, zero, devices, offload, foreach)
    kept = _kept_activations(saved, o, ck, spec.n_layers)
    ag = 1.0 + opt.backward_graph  # create_graph=True keeps the backward graph as well
    events, recompute_max = _timeline(st, kept, tr, opt, ag, overhead)
    peak_ev = max(events, key=lambda e: e.nbytes)
    fwd, recompute = _step_flops(o, ck, spec.n_layers, fused_attention)
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
        weights=st.weights,
        gradients=st.gradients,
        optimizer_state=st.optimizer,
        master_weights=st.master,
        gradient_note=(
            "fp32 (mixed bf16 accumulates and reduces in fp32)" if sb.grad > sb.weight else ""
        ),
        activations=kept.forward * ag,
        activations_no_ckpt=kept.none * ag,
        recompute_peak=recompute_max,
        temporaries=peak_ev.temporaries,
        zero_buffers=st.zero_buffers,
        overhead=overhead,
        overhead_source=overhead_source,
        host=st.host,
        peak_event=peak_ev.name,
        forward_flops=fwd,
        recompute_flops=recompute,
        events=tuple(events),
        saved=tuple(saved),
    )


@dataclass(frozen=True)
class _Kept:
    """Activation bytes kept for backward, after checkpointing (ag: backward-graph factor aside)."""

    embed: float
    before: list[float]  # before[i]: kept bytes of layers 0..i-1 through the forward
    layer_full: float  # one layer, nothing recomputed
    layer_keep: float  # one layer as kept (selective: without its attention core)
    sel_extra: float  # the attention core selective checkpointing recomputes
    ck_input: float  # what a checkpointed segment keeps: its input
    segs: list[tuple[int, int]]
    seg_of: list[int]  # segment of each layer, -1 when not checkpointed
    forward: float  # at the end of the forward
    none: float  # the same without checkpointing


def _kept_activations(saved: list[Saved], o: LayerOps, ck: Checkpointing, n: int) -> _Kept:
    embed_a = part_bytes(saved, "embed")
    tail = part_bytes(saved, "final") + part_bytes(saved, "head")
    layer_full = part_bytes(saved, "layer")
    layer_keep = (
        part_bytes(saved, "layer", attn_core=False) if ck.kind == "selective" else layer_full
    )
    ck_input = o.out["o_proj"]  # a checkpointed segment keeps only its input (T x d_model)
    segs = ck.segments(n)
    seg_of = [-1] * n
    for k, (s0, s1) in enumerate(segs):
        for i in range(s0, s1 + 1):
            seg_of[i] = k
    before = [0.0] * (n + 1)
    for i in range(n):
        if seg_of[i] < 0:
            stored = layer_keep
        else:
            stored = ck_input if segs[seg_of[i]][0] == i else 0.0
        before[i + 1] = before[i] + stored
    return _Kept(
        embed=embed_a,
        before=before,
        layer_full=layer_full,
        layer_keep=layer_keep,
        sel_extra=layer_full - layer_keep,
        ck_input=ck_input,
        segs=segs,
        seg_of=seg_of,
        forward=embed_a + before[n] + tail,
        none=embed_a + n * layer_full + tail,
    )


def _timeline(
    st: DeviceStates,
    kept: _Kept,
    tr: dict[str, float],
    opt: OptimizerDef,
    ag: float,
    overhead: float,
) -> tuple[list[Event], float]:
    """Bytes live at each moment of the step, and the largest recomputed segment."""
    n = len(kept.seg_of)
    base = st.weights + st.optimizer + st.master + st.zero_buffers
    states_end = st.weights + st.gradients + st.optimizer + st.master
    events: list[Event] = []

    def ev(name: str, states: float, saved_b: float, temp: float) -> None:
        events.append(Event(name, states, saved_b, temp, overhead))

    if kept.segs:  # a checkpointed layer's forward runs without keeping, one op's tensors at a time
        ev("forward (checkpointed layer)", base, kept.embed + kept.before[n], tr["forward_layer"])
    ev("forward end", base, kept.forward, tr["forward_head"])
    ev("loss backward", base + st.grad_head, kept.forward * ag, tr["head"])
    recompute_max = kept.sel_extra
    g_done = st.grad_head
    for i in reversed(range(n)):
        k = kept.seg_of[i]
        if k >= 0:
            s0, s1 = kept.segs[k]
            below = kept.before[s0]
            live = (i - s0 + 1) * kept.layer_full  # the segment, recomputed from its kept input
            recompute_max = max(recompute_max, (s1 - s0 + 1) * kept.layer_full - kept.ck_input)
        else:
            below = kept.before[i]
            live = kept.layer_keep + kept.sel_extra
        g_done += st.grad_layer
        ev(f"layer {i} backward", base + g_done, (kept.embed + below + live) * ag, tr["layer"])
    ev("embedding backward", base + st.gradients, kept.embed * ag, st.grad_tied_dense)
    ev("optimizer step", states_end, 0.0, st.step_workspace)
    if opt.hvp_workspace:
        hvp_saved = kept.none * opt.backward_graph
        ev("Hessian-vector product", states_end, hvp_saved, st.hvp_workspace)
    return events, recompute_max


def _step_flops(
    o: LayerOps, ck: Checkpointing, n: int, fused_attention: bool
) -> tuple[float, float]:
    """Forward FLOPs of the step and the FLOPs its recomputation adds."""
    per_layer, fwd = o.layer_flops, o.total_flops
    if ck.kind == "selective":
        core = ("attention",) if fused_attention else ("attn_score", "softmax", "attn_value")
        if "attention" in o.flops:  # MLA counts its attention as one kernel either way
            core = ("attention",)
        return fwd, n * sum(o.flops[c] for c in core)
    return fwd, ck.recomputed_layers(n) * per_layer


def max_train_batch(spec: ModelSpec, seq_len: int, capacity: float, **kw: Any) -> int:
    """Largest micro-batch whose timeline peak fits in `capacity` bytes (0: not even 1)."""
    return largest(lambda b: training_memory(spec, b, seq_len, **kw).peak <= capacity, MAX_BATCH)
