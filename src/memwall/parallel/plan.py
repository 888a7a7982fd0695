"""A training iteration or an inference step of a model under a layout, priced step by step.

Training (one iteration of `batch` sequences; m = batch / (micro_batch x dp) micro-batches):
- per micro-batch on the heaviest stage: forward (roofline of the shard's op table), backward =
  2 x forward (two matmuls per forward matmul), recomputation (the forward FLOPs that
  checkpointing reruns, from `memwall.memory`, at the forward's rate);
- tensor parallelism: 2 all-reduces of the activations per layer in forward and 2 in backward
  (Megatron-LM), one more pair per layer when full recomputation reruns the forward; with
  sequence parallelism each becomes an all-gather plus a reduce-scatter (same bytes);
- expert parallelism: 2 all-to-alls (dispatch, combine) per MoE layer in forward and backward;
- pipeline: one send/recv per micro-batch per virtual stage in each direction (activations split
  over the tensor-parallel ranks, Megatron's scatter/gather), and the 1F1B schedule time
  (m + (p-1)/v) x per-micro-batch time, whose bubble is (p-1)/v / (m + (p-1)/v);
- data parallelism over dp x cp ranks (`memwall.parallel.comm`): gradient all-reduce hidden
  behind the last micro-batch's backward (ZeRO 1-2: the reduce-scatter there, the all-gather of
  the weights behind the next step's first forward); a group spanning nodes runs one ring per
  NIC, k of its ranks in a node giving k NICs' bandwidth (`collectives.node_rings`); ZeRO 3
  (FSDP) gathers the weights in each micro-batch's forward and backward and reduce-scatters
  in each backward, hidden behind that micro-batch's compute (under a pipeline: one gather and
  one reduce-scatter a step); without `overlap` all of it adds; with
  efficiencies the compute beside a hidden collective runs at `overlap_rate` of its speed, so
  (1 - overlap_rate) of the collective's time adds even when it is hidden;
- context parallelism (cp ranks split each sequence): ring attention's extra block steps and
  its K/V transfers past each block's attention (`memwall.parallel.comm.cp_costs`);
- optimizer step: memory-bound, reads and writes the device's weights, gradients and states;
- attention at the published figures of the kernel family `Options.attention` names
  (`memwall.predict.efficiency.attention_terms`; auto: what the frameworks run on the device);
- with efficiencies, the op table's kernels (forward, backward, recomputation, ring attention)
  run at the whole-step kernel rate of `data/efficiency.json` `training_step` on datacenter
  GPUs: a fit on marked rows of `data/published_training.csv` (`benchmarks/bench_parallel.py
  --fit`), the one fitted value of the training model.
Expert and pipeline communication is on the critical path; tensor-parallel communication is
too unless `Options.tp_overlap` hides each pass's collectives behind its GEMMs (Transformer
Engine's userbuffers, `groups.tp_overlapped`). Memory per device: `device_memory`.
MFU = model FLOPs (3 x forward, no recomputation) / (devices x dense peak x step time); HFU adds
the recomputed FLOPs.

Inference: prefill of the prompt and one decode step over a KV cache of `seq_len` tokens, each
per micro-batch through the pipeline with the same schedule, every kernel with the gap between
kernels a CUDA graph leaves (launch 'graph', as serving engines run; training prices eager
launches); tensor-parallel all-reduces (2 per layer), pipeline hand-offs and expert all-to-alls
are exposed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.memory import inference_memory, training_memory
from memwall.memory.activations import layer_ops
from memwall.parallel.collectives import Collective, node_rings, realistic_links
from memwall.parallel.comm import cp_costs, dp_collectives, memory_zero
from memwall.parallel.device_memory import train_memory, with_overhead
from memwall.parallel.extras import (
    accumulation_time,
    clipping_time,
    cross_entropy_time,
    optimizer_time,
)
from memwall.parallel.groups import (
    ep_collectives,
    per_node,
    placement,
    pp_collectives,
    tp_collectives,
    tp_overlapped,
)
from memwall.parallel.layout import Layout, validate_layout
from memwall.parallel.links import Links
from memwall.parallel.shard import forward, mfu_flops, shard_spec
from memwall.predict.efficiency import (
    ATTENTION_AUTO,
    attention_terms,
    check_attention,
    efficiency_terms,
    resolve_attention,
    training_kernel_rate,
)
from memwall.spec import ModelSpec, Precision, Workload

MODES = ("train", "infer")
REALISTIC = "memwall's realistic model (published kernel efficiencies, NCCL bus bandwidth)"
INFER_LAUNCH = "graph"  # serving engines replay CUDA graphs: each kernel pays launch_graph
ROOFLINE = "the plain roofline (dense peak, datasheet bandwidth, line-rate links): an upper bound"


@dataclass(frozen=True)
class Options:
    """The workload and the modelling switches."""

    mode: str = "train"
    batch: int = 8  # global batch, sequences
    micro_batch: int = 1
    seq_len: int = 2048  # train: sequence length; infer: prompt length = decode context
    precision: Precision | None = None
    optimizer: str = "adam"
    overlap: bool = True  # data-parallel gradient sync hidden behind backward
    # tensor-parallel all-gathers / reduce-scatters overlapped with the GEMMs beside them
    # (Transformer Engine's userbuffers: Megatron's --tp-comm-overlap, NeMo's tp_comm_overlap)
    tp_overlap: bool = False
    algorithm: str = "auto"
    efficiency: bool = True  # realistic (published efficiencies); False: the plain roofline
    # attention kernel family of data/efficiency.json (cudnn, fa3, fa2, triton, torch) or auto:
    # in training the one the frameworks pick on the device (cuDNN on Hopper, FlashAttention-2
    # on Ampere, the class default elsewhere); in inference auto keeps the class default
    attention: str = "auto"
    # inference: how kernels are launched ('graph': CUDA graphs, as serving engines run decode
    # steps; 'eager': one host launch per kernel, as TensorRT-LLM's GptSession runs the context
    # phase, which it never captures in a graph)
    infer_launch: str = INFER_LAUNCH
    # inference: how decode attention converts an 8-bit KV cache (predict.efficiency.KV_DEQUANT:
    # none, once per element read, or once per query head), and the kernels of the expert GEMMs
    # (predict.efficiency.MOE_KERNELS: the device's own, or Ampere's grouped GEMM on Hopper)
    kv_dequant: str = "none"
    moe_kernel: str = "native"
    # training, realistic model: the rate a whole step's kernels sustain against the same
    # kernels priced one by one (None: efficiency.json's fitted training_step kernel_rate)
    kernel_rate: float | None = None


@dataclass(frozen=True)
class Plan:
    """The priced step: times (s), memory per device (bytes), collectives, utilisation."""

    model: str
    mode: str
    device: str
    devices: int
    layout: Layout
    options: Options
    micro_batches: int
    step_time: float
    breakdown: dict[str, float]
    per_device: dict[str, float]
    capacity: float | None
    collectives: tuple[Collective, ...]
    model_flops: float  # per step, all devices
    hardware_flops: float
    peak_flops: float  # per device, dense, the precision's dtype
    tokens: float  # per step
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.per_device["peak"] <= self.capacity

    @property
    def mfu(self) -> float:
        return self.model_flops / (self.devices * self.peak_flops * self.step_time)

    @property
    def hfu(self) -> float:
        return self.hardware_flops / (self.devices * self.peak_flops * self.step_time)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_time

    @property
    def communication(self) -> float:
        """Exposed communication time in the step."""
        return sum(v for k, v in self.breakdown.items() if k.endswith("_comm"))

    def share(self, kind: str) -> float:
        """Fraction of the step spent in exposed collectives of `kind`."""
        t = sum(c.time for c in self.collectives if c.kind == kind and c.exposed)
        return t / self.step_time

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "model": self.model,
            "mode": self.mode,
            "device": self.device,
            "devices": self.devices,
            "layout": self.layout.to_dict(),
            "batch": o.batch,
            "micro_batch": o.micro_batch,
            "micro_batches": self.micro_batches,
            "seq_len": o.seq_len,
            "precision": o.precision.label if o.precision else None,
            "overlap": o.overlap,
            "tp_overlap": o.tp_overlap,
            "compute_model": compute_model(o, self.extra.get("kernel_rate")),
            "step_time": self.step_time,
            "tokens_per_s": self.tokens_per_s,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "communication_time": self.communication,
            "all_reduce_share": self.share("all_reduce"),
            "breakdown": self.breakdown,
            "per_device": self.per_device,
            "capacity": self.capacity,
            "fits": self.fits,
            "collectives": [c.to_dict() for c in self.collectives],
            "model_flops": self.model_flops,
            "peak_flops": self.peak_flops,
            **self.extra,
            "predicted": True,
        }


def compute_model(o: Options, kernel_rate: float | None = None) -> str:
    """Which model priced a plan, in words (training names the fitted whole-step rate)."""
    if not o.efficiency:
        return ROOFLINE
    if kernel_rate is None:
        return REALISTIC
    how = ("as given (--kernel-rate)" if o.kernel_rate is not None
           else "a whole-step rate fitted on published training runs")  # fmt: skip
    return f"{REALISTIC[:-1]}, kernels at {kernel_rate:.3f} of their one-by-one rate: {how})"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise MemwallError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
    return mode


def plan(spec: ModelSpec, device: Device, links: Links, layout: Layout, options: Options) -> Plan:
    """Price one step of `spec` on `layout.devices` copies of `device` joined by `links`."""
    o = options
    check_mode(o.mode)
    if o.precision is None:
        raise MemwallError("a precision is required")
    validate_layout(spec, layout, layout.devices, o.batch, o.micro_batch, o.mode, o.seq_len)
    if check_attention(o.attention) != o.attention:
        o = replace(o, attention=check_attention(o.attention))
    if o.efficiency:  # collectives at the bus bandwidth NCCL reaches, not the line rate
        links = realistic_links(links, device)
    if o.mode == "train":
        return _plan_train(spec, device, links, layout, o)
    return _plan_infer(spec, device, links, layout, o)


# the search prices hundreds of layouts that share a shard: its op table is built once per
# (shard, micro-batch, sequence, precision) and its memory once per strategy on top of it
_layer_ops = functools.lru_cache(maxsize=256)(layer_ops)


@functools.lru_cache(maxsize=1024)
def _training_memory(shard, batch, seq, prec, optimizer, checkpointing, zero, devices):
    ops = _layer_ops(shard, batch, seq, prec)
    return training_memory(
        shard, batch, seq, prec, optimizer, checkpointing, zero, devices, impl="fused", ops=ops
    )  # fmt: skip


def _per_micro_batch_comm(colls: list[Collective]) -> float:
    return sum(c.time for c in colls)


def _plan_train(spec, device, links, lay: Layout, o: Options) -> Plan:
    prec = o.precision
    shard = shard_spec(spec, lay)
    m = o.batch // (o.micro_batch * lay.dp)
    span = placement(lay, links.node_size)
    seq = o.seq_len // lay.cp  # each context-parallel rank's share of a sequence
    fwd = forward(
        shard, "prefill", o.micro_batch, seq, prec, device, o.efficiency, "eager", o.attention
    )
    k_rate = _kernel_rate(o, device)
    k = 1.0 if k_rate is None else k_rate
    t_f, t_b, t_mm = fwd["time"] / k, fwd["backward"] / k, fwd["matmul"] / k
    fp = _training_memory(
        shard, o.micro_batch, seq, prec, o.optimizer, lay.checkpointing, memory_zero(lay),
        lay.dp * lay.cp,
    )  # fmt: skip
    t_r = t_f * fp.recompute_flops / fp.forward_flops if fp.forward_flops else 0.0
    act = o.micro_batch * seq * spec.d_model * prec.act_bytes
    tokens = o.micro_batch * seq
    fwd_passes = 2 if lay.checkpointing == "full" else 1
    mb: list[Collective] = []  # per micro-batch, exposed
    mb += tp_collectives(spec, lay, act, 2, fwd_passes, "forward", links, span["tp"], o)
    mb += tp_collectives(spec, lay, act, 2, 1, "backward", links, span["tp"], o)
    mb += ep_collectives(spec, lay, tokens, prec, fwd_passes + 1, "fwd+bwd", links, span["ep"], o)
    p2p = pp_collectives(lay, act, 2, "fwd+bwd", links, span["pp"])
    t_cp, cpc, t_cp_comm, cp_info = cp_costs(
        spec, shard, lay, o, device, links, span["cp"], fwd_passes
    )
    t_cp /= k  # ring attention's extra blocks are kernels of the step too
    t_x = (
        _extras_per_micro_batch(shard, fp, o.micro_batch * seq, device, lay)
        if o.efficiency
        else 0.0
    )
    rate = efficiency_terms(device)["overlap_rate"].value if o.efficiency else 1.0
    if o.tp_overlap:
        mb, t_tp = tp_overlapped(mb, t_mm, fwd_passes, rate)
    else:
        t_tp = sum(c.time for c in mb if c.group == "tp")
    t_other = sum(c.time for c in mb if c.group != "tp")
    t_mb = t_f + t_b + t_r + t_x + t_tp + t_other + _per_micro_batch_comm(p2p)
    t_mb += t_cp + t_cp_comm  # context parallelism: ring attention's extra blocks and transfers
    bubble = (lay.pp - 1) / lay.interleave * t_mb
    dp_links = node_rings(links, per_node(lay.tp, lay.cp * lay.dp, links.node_size))
    dp, t_dp_exposed = _dp_collectives(
        shard, lay, fp, prec, dp_links, span["dp"], o, m, t_f, t_b, rate
    )
    t_opt = optimizer_time(fp, prec, o.optimizer, device)
    t_clip = (
        clipping_time(fp.n_params / max(1, lay.dp if lay.zero else 1), device)
        if o.efficiency
        else 0.0
    )
    step = m * t_mb + bubble + t_dp_exposed + t_opt + t_clip
    colls = tuple(_scaled(c, m) for c in mb + p2p + cpc) + tuple(dp)
    breakdown = {
        "forward": m * t_f,
        "backward": m * t_b,
        "loss_and_grad_accumulation": m * t_x,
        "grad_clipping": t_clip,
        "recompute": m * t_r,
        "tp_comm": m * t_tp,
        "ep_comm": m * sum(c.time for c in mb if c.group == "ep"),
        "pp_comm": m * _per_micro_batch_comm(p2p),
        "cp_attention": m * t_cp,
        "cp_comm": m * t_cp_comm,
        "bubble": bubble,
        "dp_comm": t_dp_exposed,
        "optimizer": t_opt,
    }
    full_fwd = mfu_flops(spec, "prefill", o.micro_batch, o.seq_len, prec)
    n_mb_all = o.batch / o.micro_batch
    model_flops = 3 * full_fwd * n_mb_all
    hw = model_flops + n_mb_all * full_fwd * (fp.recompute_flops / fp.forward_flops)
    return Plan(
        model=spec.name,
        mode="train",
        device=device.name,
        devices=lay.devices,
        layout=lay,
        options=o,
        micro_batches=m,
        step_time=step,
        breakdown=breakdown,
        per_device=with_overhead(train_memory(fp, lay, m, shard), device),
        capacity=device.mem_capacity,
        collectives=colls,
        model_flops=model_flops,
        hardware_flops=hw,
        peak_flops=device.peak(prec.compute_dtype),
        tokens=float(o.batch * o.seq_len),
        extra={
            "attention": _attention_info(shard, device, o, o.attention),
            "bubble_fraction": bubble_fraction(lay.pp, m, lay.interleave),
            "compute_bound_fraction": fwd["frac_compute_bound"],
            "kernel_rate": k_rate,
            **cp_info,
        },
    )


def _kernel_rate(o: Options, device: Device) -> float | None:
    """Training: the share of the one-by-one kernel rate a whole step sustains: the fitted
    training_step term of data/efficiency.json on the device classes its fit rows stand for
    (datacenter GPUs), `o.kernel_rate` where given; None (rate 1) for the plain roofline and
    other devices."""
    if not o.efficiency:
        return None
    if o.kernel_rate is None:
        term = training_kernel_rate(device)
        return None if term is None else term.value
    if not 0.0 < o.kernel_rate <= 1.5:
        raise MemwallError(f"kernel rate {o.kernel_rate} is outside (0, 1.5]")
    return o.kernel_rate


def _infer_attention(o: Options) -> str | None:
    """Inference: auto keeps the class's attention terms (serving engines' prefill kernels are
    not the training frameworks'); a named kernel family prices prefill and decode."""
    return None if o.attention == ATTENTION_AUTO else o.attention


def _attention_info(shard: ModelSpec, device: Device, o: Options, used: str | None) -> dict:
    """What priced attention: the kernel family asked for, the one used, its fractions."""
    if not o.efficiency:
        return {"requested": o.attention, "kernel": None, "note": "roofline: the dense peak"}
    terms, kernel = efficiency_terms(device), None
    note = "attention at the class default of the device (inference with auto)"
    if used is not None:
        terms, note = attention_terms(terms, device, used, shard.head_dim)
        kernel = resolve_attention(device, used)
    return {
        "requested": o.attention,
        "kernel": kernel,
        "head_dim": shard.head_dim,
        "attn_frac": terms["attn_frac"].value,
        "attn_bwd_frac": terms["attn_bwd_frac"].value,
        "note": note,
    }


def _extras_per_micro_batch(shard: ModelSpec, fp, tokens: int, dev: Device, lay: Layout) -> float:
    """Cross-entropy over the device's vocabulary slice for its `tokens` (a context-parallel
    rank holds seq / cp of each sequence) and fp32 gradient accumulation: fused into the
    weight-gradient GEMMs without ZeRO-2/3, over the device's gradient shard with it."""
    ce = cross_entropy_time(tokens, shard.vocab_size, dev) if shard.is_decoder else 0.0
    if lay.zero >= 2:
        return ce + accumulation_time(fp.n_params / (lay.dp * lay.cp), dev)
    return ce + accumulation_time(fp.n_params, dev, fused=True)


def _scaled(c: Collective, m: int) -> Collective:
    """A per-micro-batch collective as a per-step entry (m micro-batches)."""
    return Collective(
        c.kind, c.group, c.group_size, c.message, c.calls * m, c.phase, c.level, c.algorithm,
        c.time_each, c.exposed,
    )  # fmt: skip


def bubble_fraction(p: int, m: int, v: int = 1) -> float:
    """Idle fraction of a 1F1B pipeline: (p-1)/v over (m + (p-1)/v); (p-1)/(m+p-1) for v = 1."""
    idle = (p - 1) / v
    return idle / (m + idle)


def _dp_collectives(shard, lay, fp, prec, links, span, o, m, t_f, t_b=None, rate=1.0):
    """Gradient synchronisation (and ZeRO-3 weight gathers) with the time left exposed
    (`memwall.parallel.comm.dp_collectives`; t_b: the backward that hides them, 2 x t_f; rate:
    the compute's speed beside them, `overlap_rate` with efficiencies)."""
    t_b = 2 * t_f if t_b is None else t_b
    return dp_collectives(lay, fp.n_params, prec, links, span, o, m, t_f, t_b, rate)


def _plan_infer(spec, device, links, lay: Layout, o: Options) -> Plan:
    prec = o.precision
    shard = shard_spec(spec, lay)
    m = o.batch // (o.micro_batch * lay.dp)
    span = placement(lay, links.node_size)
    stages: dict[str, dict[str, Any]] = {}
    for phase, q_tokens in (("prefill", o.seq_len), ("decode", 1)):
        if phase == "decode" and not spec.is_decoder:
            continue
        t = forward(
            shard, phase, o.micro_batch, o.seq_len, prec, device, o.efficiency, o.infer_launch,
            _infer_attention(o), o.kv_dequant, o.moe_kernel,
        )  # fmt: skip
        act = o.micro_batch * q_tokens * spec.d_model * prec.hidden_bytes  # 16-bit GEMM outputs
        mb = tp_collectives(spec, lay, act, 2, 1, phase, links, span["tp"], o)
        mb += ep_collectives(
            spec, lay, o.micro_batch * q_tokens, prec, 1, phase, links, span["ep"], o
        )
        mb += pp_collectives(lay, act, 1, phase, links, span["pp"])
        t_mb = t["time"] + _per_micro_batch_comm(mb)
        total = (m + lay.pp - 1) * t_mb  # the micro-batches through the pipeline
        full = mfu_flops(spec, phase, o.micro_batch, o.seq_len, prec)
        stages[phase] = {
            "time": total,
            "compute": (m + lay.pp - 1) * t["time"],
            "comm": (m + lay.pp - 1) * _per_micro_batch_comm(mb),
            "flops": full * o.batch / o.micro_batch,
            "tokens": o.batch * q_tokens,
        }
        stages[phase]["collectives"] = [_scaled(c, m + lay.pp - 1) for c in mb]
    main = "decode" if "decode" in stages else "prefill"
    s = stages[main]
    colls = s["collectives"]
    wl = Workload("decode" if spec.is_decoder else "encode", o.batch // lay.dp, o.seq_len)
    fp = inference_memory(shard, wl, prec)
    per_device = {
        "weights": fp.weights,
        "kv_cache": fp.kv_cache,
        "activations": fp.activations,
        "peak": fp.total,
    }
    return Plan(
        model=spec.name,
        mode="infer",
        device=device.name,
        devices=lay.devices,
        layout=lay,
        options=o,
        micro_batches=m,
        step_time=s["time"],
        breakdown={
            f"{main}_compute": s["compute"],
            "tp_comm": sum(c.time for c in colls if c.group == "tp"),
            "ep_comm": sum(c.time for c in colls if c.group == "ep"),
            "pp_comm": sum(c.time for c in colls if c.group == "pp"),
        },
        per_device=with_overhead(per_device, device),
        capacity=device.mem_capacity,
        collectives=tuple(colls),
        model_flops=s["flops"],
        hardware_flops=s["flops"],
        peak_flops=device.peak(prec.compute_dtype),
        tokens=float(s["tokens"]),
        extra={
            "attention": _attention_info(shard, device, o, _infer_attention(o)),
            "phase": main,
            "prefill_time": stages["prefill"]["time"],
            "decode_step_time": stages["decode"]["time"] if "decode" in stages else None,
            "prefill_collectives": [c.to_dict() for c in stages["prefill"]["collectives"]],
        },
    )
