"""Energy of inference and training steps split over devices: the work each device does (its
shard's op table, the bytes its collectives send) priced by `memwall.energy` over the time the
realistic predictor gives, so energy and time come from one model of the step.

One device (tp = 1): the op table priced by `predict.efficiency` at the row's launch mode, as
`memwall analyze --device` does. Tensor parallelism: the step time of `plan` (kernel time and
exposed all-reduces), each device's work from its shard (`shard.shard_spec`) and the bytes its
all-reduces send. A server in steady state spends, per output token, 1 / batch of a decode
step over the mean context (prompt + half the output) and 1 / gen_len of one request's
prefill; `serving_energy` returns that mix.
"""

from __future__ import annotations

from typing import Any

from memwall.count import op_table
from memwall.energy import Energy, Work, combine, step_energy, work_from_ops
from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.parallel.layout import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, Plan, plan
from memwall.parallel.shard import shard_spec
from memwall.precision import Precision
from memwall.predict.efficiency import predict_efficiency
from memwall.spec import ModelSpec, Workload

PHASES = ("decode", "prefill")


def step(
    spec: ModelSpec,
    device: Device,
    prec: Precision,
    phase: str,
    batch: int,
    seq_len: int,
    tp: int = 1,
    launch: str = "graph",
) -> Energy:
    """Predicted energy of one decode step (`batch` sequences, `seq_len` cached tokens each)
    or one prefill (`batch` prompts of `seq_len` tokens) on `tp` devices."""
    if phase not in PHASES:
        raise MemwallError(f"unknown phase {phase!r}; accepted: {', '.join(PHASES)}")
    if tp == 1:
        ops = op_table(spec, Workload(phase, batch, seq_len), prec, "full", True)
        p = predict_efficiency(ops, device, prec, launch, causal=phase == "prefill", spread=False)
        return step_energy(work_from_ops(ops, device, prec), p.totals["time"], device, 1)
    lay = Layout(tp=tp)
    o = Options("infer", batch, batch, seq_len, prec, efficiency=True)
    pl = plan(spec, device, links_for(device.derived_from or device.name), lay, o)
    ops = op_table(shard_spec(spec, lay), Workload(phase, batch, seq_len), prec, "full", True)
    if phase == "decode":
        t = pl.extra["decode_step_time"]
        sent = sum(c.bytes_moved for c in pl.collectives)
    else:
        t = pl.extra["prefill_time"]
        sent = sum(c["bytes_per_rank"] for c in pl.extra["prefill_collectives"])
    return step_energy(work_from_ops(ops, device, prec, sent), t, device, tp)


def serving_energy(
    spec: ModelSpec,
    device: Device,
    prec: Precision,
    batch: int,
    prompt_len: int,
    gen_len: int,
    tp: int = 1,
    launch: str = "graph",
) -> Energy:
    """Energy per output token of a server holding `batch` sequences in steady state: 1 /
    batch of a decode step at the mean context, 1 / gen_len of a one-request prefill."""
    return combine(serving_steps(spec, device, prec, batch, prompt_len, gen_len, tp, launch))


def serving_steps(
    spec: ModelSpec,
    device: Device,
    prec: Precision,
    batch: int,
    prompt_len: int,
    gen_len: int,
    tp: int = 1,
    launch: str = "graph",
) -> list[tuple[Energy, float]]:
    """The steps `serving_energy` mixes, each with its share of one output token: a decode
    step at the mean context (1 / batch) and a one-request prefill (1 / gen_len)."""
    decode = step(spec, device, prec, "decode", batch, prompt_len + gen_len // 2, tp, launch)
    prefill = step(spec, device, prec, "prefill", 1, prompt_len, tp, launch)
    return [(decode, 1.0 / batch), (prefill, 1.0 / gen_len)]


def plan_energy(spec: ModelSpec, device: Device, p: Plan) -> dict[str, Any]:
    """Energy of a priced plan: inference, a decode step and a prefill of the plan's batch
    (per output token and per prompt token); training, one iteration (per trained token).
    Training bytes are the forward's op table x 3 (backward reads and writes about twice the
    forward's), an assumption the output states."""
    o, lay = p.options, p.layout
    shard = shard_spec(spec, lay)
    mb = o.micro_batch
    per_replica = max(1, o.batch // lay.dp)
    micro = max(1, per_replica // mb)
    sent = sum(c.bytes_moved for c in p.collectives)
    if p.mode == "train":
        ops = op_table(shard, Workload("prefill", mb, o.seq_len), o.precision, "full", True)
        dram = work_from_ops(ops, device, o.precision).dram_bytes * 3.0 * micro
        dtype = o.precision.gemm_dtype or o.precision.compute_dtype
        w = Work({dtype: p.hardware_flops / p.devices}, dram, sent)
        e = step_energy(w, p.step_time, device, p.devices)
        why = "training bytes = 3 x the forward's counted bytes per device"
        return {"train_step": e, "tokens": p.tokens, "assumption": why}
    out: dict[str, Any] = {"tokens": p.tokens}
    ops = op_table(shard, Workload("decode", mb, o.seq_len), o.precision, "full", True)
    w = work_from_ops(ops, device, o.precision, sent).scaled(micro)
    out["decode_step"] = step_energy(w, p.extra["decode_step_time"], device, p.devices)
    ops = op_table(shard, Workload("prefill", mb, o.seq_len), o.precision, "full", True)
    pre = sum(c["bytes_per_rank"] for c in p.extra["prefill_collectives"])
    w = work_from_ops(ops, device, o.precision, pre).scaled(micro)
    out["prefill"] = step_energy(w, p.extra["prefill_time"], device, p.devices)
    return out
