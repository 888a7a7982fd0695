"""Energy of inference and training steps split over devices: the work each device does (its
shard's op table, the bytes its collectives send) priced by `memwall.energy` over the time the
realistic predictor gives, so energy and time come from one model of the step.

One device (tp = 1): the op table priced by `predict.efficiency` at the row's launch mode, as
`memwall analyze --device` does. Tensor parallelism: the step time of `plan` (kernel time and
exposed all-reduces), each device's work from its shard (`shard.shard_spec`) and the bytes its
all-reduces send. A server in steady state spends, per output token, 1 / batch of a decode
step over the mean context (prompt + half the output) and 1 / gen_len of one request's
prefill; `combine(serving_steps(...))` is that mix.

A chunked-prefill engine (vLLM V1, where chunked prefill is always on) runs no prefill step of
its own: each step's forward holds the running sequences' decode tokens and the prompt tokens
the scheduler adds beside them, up to its token budget (`mixed_step`). In steady state a step
of `batch` decodes admits batch / gen_len new requests on average, each prompt whole in one
step (`serving_steps` mixes the steps with and without one): the weights are read once for all
of a step's tokens, every linear layer multiplies decode and prompt tokens as one matrix, the
prompt's causal attention runs beside the decode attention, and logits are computed only where
a token is sampled (each decode, each prompt's last token).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from memwall.count import op_table
from memwall.count.ops import HEAD_OPS
from memwall.energy import Energy, Work, step_energy, work_from_ops
from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.parallel.collectives import price, realistic_links
from memwall.parallel.layout import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, Plan, plan
from memwall.parallel.shard import phase_of, shard_spec
from memwall.precision import Precision
from memwall.predict.efficiency import MATMUL_KINDS, predict_efficiency
from memwall.predict.efficiency_data import serving_m_spread
from memwall.predict.prompt_attention import CAUSAL_WORK, attention_work
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
        causal = attention_work(spec, phase, seq_len)
        p = predict_efficiency(ops, device, prec, launch, causal=causal, spread=False)
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


# The columns of an op table that a mixed step sums over its decode and prompt parts.
_SUMMED = ("flops", "matmul_flops", "bytes_act", "bytes_kv", "bytes_read", "bytes_written")


def mixed_ops(decode: pd.DataFrame, prompt: pd.DataFrame, prompts: int) -> pd.DataFrame:
    """The op table of one chunked-prefill step: `decode` (the running sequences' decode
    step) with `prompts` x `prompt` (one request's prefill) folded in. Matrix multiplies hold
    both parts' rows (m adds) and read their weights once (the larger of the two weight reads:
    a prompt may touch more experts than a few decodes); embedding gathers and element-wise
    work add; the prompt's attention is its own row, its FLOPs halved as a causal kernel skips
    the masked blocks (`predict.prompt_attention.CAUSAL_WORK`); the LM head multiplies only each
    prompt's last token (logits are computed where a token is sampled)."""
    if list(decode["name"]) != list(prompt["name"]):
        raise MemwallError("a mixed step needs decode and prompt tables of the same model")
    out = decode.copy().reset_index(drop=True)
    pre = prompt.reset_index(drop=True)
    extra = []
    for i, row in pre.iterrows():
        kind, name = row["kind"], row["name"]
        share = prompts
        if kind == "attention":
            a = row.copy()
            for c in _SUMMED:
                a[c] = row[c] * prompts
            a["flops"] *= CAUSAL_WORK
            a["matmul_flops"] *= CAUSAL_WORK
            a["name"] = f"{name}_prompt"
            extra.append(a)
            continue
        m = float(row["m"]) if pd.notna(row.get("m")) else None
        if name in HEAD_OPS and m:
            share = prompts / m  # the last token of each prompt
        for c in _SUMMED:
            out.loc[i, c] += row[c] * share
        if kind in MATMUL_KINDS:
            out.loc[i, "bytes_weight"] = max(out.loc[i, "bytes_weight"], row["bytes_weight"])
        else:
            out.loc[i, "bytes_weight"] += row["bytes_weight"] * share
        if m is not None and pd.notna(out.loc[i, "m"]):
            out.loc[i, "m"] += m * share
    if extra:
        out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True)
    out["bytes"] = out["bytes_weight"] + out["bytes_act"] + out["bytes_kv"] + out["bytes_written"]
    return out


def mixed_step(
    spec: ModelSpec,
    device: Device,
    prec: Precision,
    batch: int,
    seq_len: int,
    prompts: int,
    prompt_len: int,
    tp: int = 1,
    launch: str = "graph",
    sample_s: float = 0.0,
) -> Energy:
    """Predicted energy of one chunked-prefill step on `tp` devices: `batch` decodes over
    `seq_len` cached tokens each and `prompts` requests' prompts of `prompt_len` tokens in the
    same forward (`mixed_ops`); with tensor parallelism, the 2 all-reduces per layer carry
    every token of the step. `sample_s`: the engine's seconds per sampled sequence beyond the
    forward (`predict.efficiency_data.sample_s_per_sequence`), paid for each decode and each
    prompt's last token; its time is priced at static power (no counted FLOPs or bytes). A
    server's steps differ in M (requests end and start, prompts differ in length), so each
    GEMM's tile and wave quantisation is the average over the spread of M
    (`serving_m_spread`), not the saw-tooth of the one mean shape."""
    lay = Layout(tp=tp)
    shard = shard_spec(spec, lay) if tp > 1 else spec
    dec = op_table(shard, Workload("decode", batch, seq_len), prec, "full", True)
    pre = op_table(shard, Workload("prefill", 1, prompt_len), prec, "full", True)
    ops = mixed_ops(dec, pre, prompts) if prompts > 0 else dec
    t = predict_efficiency(
        ops, device, prec, launch, spread=False, m_spread=serving_m_spread()
    ).totals["time"]
    t += sample_s * (batch + prompts)
    sent = 0.0
    if tp > 1:
        links = realistic_links(links_for(device.derived_from or device.name), device)
        tokens = batch + prompts * prompt_len
        msg = tokens * spec.d_model * prec.hidden_bytes
        c = price("all_reduce", "tp", tp, msg, 2 * spec.n_layers, "decode", links,
                  tp > links.node_size)  # fmt: skip
        t += c.time
        sent = c.bytes_moved
    return step_energy(work_from_ops(ops, device, prec, sent), t, device, tp)


def admitted(batch: int, gen_len: int) -> list[tuple[int, float]]:
    """Prompts a chunked-prefill step of a server in steady state carries, with the share of
    steps that carry that many: batch / gen_len requests are admitted (and finish) per step on
    average, so with k = floor(batch / gen_len) and f its fraction a share 1 - f of steps holds
    k prompts and f holds k + 1 (shares of zero left out)."""
    per_step = batch / gen_len
    k = math.floor(per_step)
    frac = per_step - k
    return [(n, share) for n, share in ((k, 1.0 - frac), (k + 1, frac)) if share > 0]


def serving_steps(
    spec: ModelSpec,
    device: Device,
    prec: Precision,
    batch: int,
    prompt_len: int,
    gen_len: int,
    tp: int = 1,
    launch: str = "graph",
    chunked: bool = False,
    sample_s: float = 0.0,
) -> list[tuple[Energy, float]]:
    """The steps a server in steady state mixes (`energy.combine` of them is its energy per
    output token), each with its share of one output token: a decode step at the mean context
    (1 / batch) and a one-request prefill (1 / gen_len); `chunked` (a chunked-prefill engine
    such as vLLM V1): steps holding the decodes and the prompts the scheduler admits beside
    them (`mixed_step`), as many as `admitted` says, each prompt whole in one step (the
    ML.ENERGY runs' token budget, 8192, holds the decodes and every prompt at these batches),
    each step counted 1 / batch per output token. The expected step, not the step of the
    expected tokens: at small batch one step in many carries a whole prompt and is
    compute-bound, which an average of a few tokens per step would hide under the decode's
    weight reads. `sample_s`:
    the engine's seconds per sampled sequence beyond the forward (chunked steps, `mixed_step`)."""
    if chunked:
        ctx = prompt_len + gen_len // 2
        out = []
        for n, share in admitted(batch, gen_len):
            e = mixed_step(spec, device, prec, batch, ctx, n, prompt_len, tp, launch, sample_s)
            out.append((e, share / batch))
        return out
    decode = step(spec, device, prec, "decode", batch, prompt_len + gen_len // 2, tp, launch)
    prefill = step(spec, device, prec, "prefill", 1, prompt_len, tp, launch)
    return [(decode, 1.0 / batch), (prefill, 1.0 / gen_len)]


def plan_energy(spec: ModelSpec, device: Device, p: Plan) -> dict[str, Any]:
    """Energy of a priced plan: inference, a decode step and a prefill of the plan's batch
    (per output token and per prompt token; an encoder, its pass over the inputs alone);
    training, one iteration (per trained token).
    Training bytes are the forward's op table x 3 (backward reads and writes about twice the
    forward's), an assumption the output states."""
    o, lay = p.options, p.layout
    shard = shard_spec(spec, lay)
    mb = o.micro_batch
    per_replica = max(1, o.batch // lay.dp)
    micro = max(1, per_replica // mb)
    sent = sum(c.bytes_moved for c in p.collectives)
    first = phase_of(shard, "prefill")  # an encoder's pass over its inputs is `encode`
    if p.mode == "train":
        ops = op_table(shard, Workload(first, mb, o.seq_len), o.precision, "full", True)
        dram = work_from_ops(ops, device, o.precision).dram_bytes * 3.0 * micro
        dtype = o.precision.gemm_dtype or o.precision.compute_dtype
        w = Work({dtype: p.hardware_flops / p.devices}, dram, sent)
        e = step_energy(w, p.step_time, device, p.devices)
        why = "training bytes = 3 x the forward's counted bytes per device"
        return {"train_step": e, "tokens": p.tokens, "assumption": why}
    out: dict[str, Any] = {"tokens": p.tokens}
    if p.extra.get("decode_step_time") is not None:  # an encoder has no decode step
        ops = op_table(shard, Workload("decode", mb, o.seq_len), o.precision, "full", True)
        w = work_from_ops(ops, device, o.precision, sent).scaled(micro)
        out["decode_step"] = step_energy(w, p.extra["decode_step_time"], device, p.devices)
    ops = op_table(shard, Workload(first, mb, o.seq_len), o.precision, "full", True)
    pre = sum(c["bytes_per_rank"] for c in p.extra["prefill_collectives"])
    w = work_from_ops(ops, device, o.precision, pre).scaled(micro)
    out["prefill"] = step_energy(w, p.extra["prefill_time"], device, p.devices)
    return out
