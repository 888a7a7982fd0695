"""Data-parallel synchronisation (ZeRO / FSDP) and context parallelism (ring attention) of a
training step, priced for `memwall.parallel.plan`.

Data parallelism (the gradient sync runs over dp x cp ranks: context-parallel ranks hold the
same weights and see different tokens, so Megatron reduces over both):
- ZeRO 0: one all-reduce of the gradients, hidden behind the last micro-batch's backward.
  ZeRO 1-2 (Megatron-Core's distributed optimizer): a reduce-scatter of the gradients behind the
  last micro-batch's backward (--overlap-grad-reduce) and an all-gather of the updated weights
  behind the next step's first forward (--overlap-param-gather: each bucket's gather is waited
  on by the forward of the layers it holds); with `overlap` the time past each is exposed.
- ZeRO 3 (FSDP, PyTorch's default `reshard_after_forward=True`): no step-level collective. Each
  micro-batch all-gathers the weights layer by layer in its forward (hidden behind that
  forward) and again in its backward, where each layer's gradient reduce-scatter runs too (both
  hidden behind that backward). Under gradient accumulation FSDP2 reduce-scatters in every
  micro-batch's backward unless told not to (`set_requires_gradient_sync(False)`): PyTorch PR
  126166 ("FSDP2 offers (1) [reduce-scatter per micro-batch, sharded gradients] without any
  intervention"), which keeps the gradients sharded as `memwall.memory` counts them.
- ZeRO 3 with pipeline parallelism: `torch.distributed.pipelining` (stage.py,
  `backward_maybe_with_nosync`) turns off resharding and gradient sync on all but the last
  backward of a step, so a stage gathers its weights once (behind the first micro-batch's
  forward) and reduce-scatters once (behind the last one's backward), holding unsharded weights
  and gradients in between: the memory of ZeRO 1 (`memory_zero`).
- Hiding is not free: while a collective runs, the compute beside it runs at `rate` of its
  speed alone (`overlap_rate` in data/efficiency.json: NCCL's kernels hold SMs and memory
  bandwidth; 1 for the plain roofline). A collective of M seconds behind compute of C seconds
  then leaves max(M - C, M (1 - rate)) exposed (`overlapped`): the compute runs M x rate of its
  work during the collective and the rest alone.

Context parallelism over cp ranks (Megatron-Core / Transformer Engine ring attention; each
sequence split into 2 x cp chunks, rank i holding chunks i and 2cp-1-i so causal work is
balanced): linear layers, norms and activations run on seq / cp tokens; each attention layer
runs cp block steps, receiving the next K/V block from its ring neighbour while it computes on
the current one (cp - 1 send/recv of one K/V block per layer in forward; in backward cp - 1
steps that pass K/V and their gradients, twice the bytes). Modelled: each step's transfer
overlaps that step's block attention, the excess exposed; the op table of the shard at seq / cp
prices one block step, so the extra attention compute is (cp - 1) block steps in forward (and
in a recomputed forward) and 2 (cp - 1) in backward.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from memwall.count import op_table
from memwall.hardware import Device
from memwall.memory.training import state_bytes
from memwall.parallel.collectives import Collective, price
from memwall.parallel.layout import Layout
from memwall.parallel.links import Links
from memwall.parallel.shard import phase_of
from memwall.predict import predict_roofline
from memwall.predict.efficiency import predict_efficiency
from memwall.spec import ModelSpec, Precision, Workload

ATTENTION_ROWS = ("attention", "attn_score", "softmax", "attn_value")


def memory_zero(lay: Layout) -> int:
    """The ZeRO stage whose memory a layout has: ZeRO 3 under a pipeline holds a stage's weights
    and gradients unsharded through the step (module docstring), which is ZeRO 1's memory."""
    return 1 if lay.zero == 3 and lay.pp > 1 else lay.zero


def with_exposed(c: Collective, exposed: bool) -> Collective:
    return Collective(
        c.kind, c.group, c.group_size, c.message, c.calls, c.phase, c.level, c.algorithm,
        c.time_each, exposed,
    )  # fmt: skip


def overlapped(comm: float, comp: float, rate: float, overlap: bool = True) -> float:
    """Seconds a collective of `comm` seconds adds to compute of `comp` seconds it runs beside,
    the compute running at `rate` of its speed meanwhile (module docstring); all of it without
    `overlap`."""
    if not overlap:
        return comm
    return max(0.0, comm - comp, comm * (1.0 - rate))


def dp_collectives(
    lay: Layout, n_params: float, prec: Precision, links: Links, span: bool, o: Any, m: int,
    t_f: float, t_b: float, rate: float = 1.0,
) -> tuple[list[Collective], float]:  # fmt: skip
    """The data-parallel collectives of one step and the time they leave exposed (`rate`: the
    compute's speed beside a collective, `overlapped`)."""
    n = lay.dp * lay.cp
    if n == 1:
        return [], 0.0
    sb = state_bytes(prec)
    grads, weights = n_params * sb.grad, n_params * sb.weight
    ovl = o.overlap
    if lay.zero == 3 and lay.pp == 1:  # FSDP: per micro-batch, layer by layer
        ag = price("all_gather", "dp", n, weights, 2 * m, "fwd+bwd", links, span)
        rs = price("reduce_scatter", "dp", n, grads, m, "backward", links, span)
        t_ag, t_rs = ag.time_each, rs.time_each
        fwd = overlapped(t_ag, t_f, rate, ovl)
        bwd = overlapped(t_ag + t_rs, t_b, rate, ovl)
        exposed = m * (fwd + bwd)
        out_f, out_b = t_ag > t_f or not ovl, t_ag + t_rs > t_b or not ovl
        return [with_exposed(ag, out_f or out_b), with_exposed(rs, out_b)], exposed
    if lay.zero == 0:
        sync = [price("all_reduce", "dp", n, grads, 1, "step", links, span, o.algorithm)]
        t_sync = sync[0].time
        exposed = overlapped(t_sync, t_b, rate, ovl)
        return [with_exposed(c, t_sync > t_b or not ovl) for c in sync], exposed
    rs = price("reduce_scatter", "dp", n, grads, 1, "step", links, span)
    if lay.zero == 3:  # under a pipeline: gather once before the first forward
        ag = price("all_gather", "dp", n, weights, 1, "forward", links, span)
        e_ag = overlapped(ag.time, t_f, rate, ovl)
        e_rs = overlapped(rs.time, t_b, rate, ovl)
        flags = (ag.time > t_f or not ovl, rs.time > t_b or not ovl)
        return [with_exposed(ag, flags[0]), with_exposed(rs, flags[1])], e_ag + e_rs
    ag = price("all_gather", "dp", n, weights, 1, "forward", links, span)
    e_rs = overlapped(rs.time, t_b, rate, ovl)  # behind the last micro-batch's backward
    e_ag = overlapped(ag.time, t_f, rate, ovl)  # behind the next step's first forward
    flags = (rs.time > t_b or not ovl, ag.time > t_f or not ovl)
    return [with_exposed(rs, flags[0]), with_exposed(ag, flags[1])], e_rs + e_ag


def attention_time(
    shard: ModelSpec, batch: int, seq_len: int, prec: Precision, device: Device,
    efficiency: bool = False,
) -> float:  # fmt: skip
    """Forward time of the attention kernels alone (all the shard's layers) at `seq_len`."""
    ops = op_table(shard, Workload(phase_of(shard, "prefill"), batch, seq_len), prec, "full", True)
    att = ops[ops["name"].isin(ATTENTION_ROWS)]
    if att.empty:
        return 0.0
    if efficiency:
        return float(predict_efficiency(att, device, prec, launch="kernel").totals["time"])
    return float(predict_roofline(att, device, overhead=False).totals["time"])


def kv_block_bytes(spec: ModelSpec, lay: Layout, batch: int, seq_len: int, act: float) -> float:
    """Bytes of one K/V block a context-parallel rank sends per attention layer: its seq / cp
    tokens' keys and values for its tensor-parallel share of the heads (MLA: expanded per-head
    keys of qk width and values of v_head_dim, as ring attention runs it)."""
    tokens = batch * seq_len / lay.cp
    if spec.is_mla:
        width = spec.n_heads * (spec.head_dim + spec.v_head_dim)
    else:
        width = 2 * spec.n_kv_heads * spec.head_dim
    return tokens * width / lay.tp * act


def cp_costs(
    spec: ModelSpec, shard: ModelSpec, lay: Layout, o: Any, device: Device, links: Links,
    span: bool, fwd_passes: int,
) -> tuple[float, list[Collective], float, dict[str, Any]]:  # fmt: skip
    """Per micro-batch: the extra attention compute of the ring (seconds), its send/recv
    collectives, the part of them not hidden behind the block attention, and what to report."""
    if lay.cp == 1:
        return 0.0, [], 0.0, {}
    prec, cp = o.precision, lay.cp
    block = attention_time(shard, o.micro_batch, o.seq_len // cp, prec, device, o.efficiency)
    extra = (fwd_passes + 2) * (cp - 1) * block
    layers = math.ceil(spec.n_layers / lay.pp)
    msg = kv_block_bytes(spec, lay, o.micro_batch, o.seq_len, prec.act_bytes)
    steps = (cp - 1) * layers
    per_layer_block = block / layers
    out, exposed = [], 0.0
    for phase, factor, passes in (("forward", 1, fwd_passes), ("backward", 2, 1)):
        c = price("send_recv", "cp", 2, factor * msg, steps * passes, phase, links, span)
        each = max(0.0, c.time_each - factor * per_layer_block)  # past the block's attention
        exposed += c.calls * each
        out.append(replace(c, exposed=each > 0))
    info = {
        "context_parallel": {
            "cp": cp,
            "attention": "ring (Megatron-Core / Transformer Engine), K/V passed per block step",
            "kv_block_bytes": msg,
            "block_attention_time": block,
            "extra_attention_time": extra,
            "ring_transfer_time": sum(c.time for c in out),
            "ring_transfer_exposed": exposed,
        }
    }
    return extra, out, exposed, info
