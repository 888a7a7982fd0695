"""Energy of a simulated serving run: every engine step's work, priced by `memwall.energy`.

A step of T tokens (prefill chunks and decodes) on each of the tp devices reads the device's
weights once, computes T tokens' worth of every op but attention (FLOPs and activation bytes
per token from the op table of one token), reads the KV cache the step's sequences hold (the
blocks in use x block size x KV bytes per cached token: an upper bound, as allocated blocks may
be partly empty) and, with tp > 1, sends two all-reduces of T x d_model per layer (ring: 2 (tp
- 1) / tp of the message per device). Attention FLOPs are not counted here (a small share at
serving contexts). The busy time is the sum of the steps' predicted times, at static power;
the rest of the run the devices idle at their idle power. With disaggregation the steps of
every instance are summed and each instance idles when it has no step. Speculative decoding:
the verify tokens are counted as tokens (the trace records them), the draft model's work is
not. Everything is predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memwall.count import op_table
from memwall.energy import Energy, Work, step_energy, work_from_ops
from memwall.energy.coefficients import coefficients_for
from memwall.parallel.layout import Layout
from memwall.parallel.shard import shard_spec
from memwall.spec import Workload

KV_PROBE = 1024  # cached tokens of the probe that measures KV bytes per cached token


@dataclass(frozen=True)
class RunEnergy:
    """A run's predicted energy: busy steps, and idle time between them."""

    busy: Energy
    idle_j: float
    idle_s: float

    @property
    def total_j(self) -> float:
        return self.busy.total_j + self.idle_j


def per_token_work(spec: Any, device: Any, prec: Any, tp: int) -> tuple[Work, Work, float]:
    """Per device: the work of a step's fixed part (weights read once), of one more token, and
    KV bytes per cached token."""
    shard = shard_spec(spec, Layout(tp=tp))
    one = op_table(shard, Workload("prefill", 1, 1), prec, "full", True)
    weights = float(one["bytes_weight"].sum())
    no_attn = one[one["kind"] != "attention"]
    tok = work_from_ops(no_attn, device, prec)
    token = Work(tok.flops, max(tok.dram_bytes - weights, 0.0))
    kv = [
        float(op_table(shard, Workload("decode", 1, c), prec, "full", True)["bytes_kv"].sum())
        for c in (0, KV_PROBE)
    ]
    return Work({}, weights), token, (kv[1] - kv[0]) / KV_PROBE


def run_energy(
    spec: Any, device: Any, prec: Any, tp: int, steps: dict[str, np.ndarray], block_size: int,
    duration: float, instances: int = 1,
) -> RunEnergy:  # fmt: skip
    """The energy of every step of a run (`steps`: Trace.arrays()) and of its idle time;
    `instances`: servers of tp devices whose steps `steps` holds (each idles on its own)."""
    fixed, token, kv_tok = per_token_work(spec, device, prec, tp)
    n = float(len(steps["t_step"]))
    tokens = float(steps["tokens"].sum())
    kv_tokens = float((steps["kv_used"] * block_size).sum())
    link = 0.0
    if tp > 1:
        per_token = 2 * spec.n_layers * spec.d_model * prec.hidden_bytes
        link = tokens * per_token * 2 * (tp - 1) / tp
    work = Work(
        {d: tokens * v for d, v in token.flops.items()},
        n * fixed.dram_bytes + tokens * token.dram_bytes + kv_tokens * kv_tok,
        link,
    )
    busy_s = float(steps["t_step"].sum())
    idle_s = max(duration * instances - busy_s, 0.0)
    idle_w = coefficients_for(device).idle_w
    return RunEnergy(step_energy(work, busy_s, device, tp), idle_w * idle_s * tp, idle_s)
