"""A step model measured on a real engine: the per-step costs of a server this machine runs,
fitted to what a load generator saw, so that `simulate` can be checked request by request.

A real server's step costs are not memwall's predictor's: on a CPU with a tiny model, Python
overhead per step and per sequence dominates. `EngineCosts` prices a step like `StepModel`
does, with six measured constants:

    step(T, S, K, F) = per_step + per_token * max(T - free_tokens, 0) + per_seq * S
                       + max(per_key * K, per_qk * F)
    and every request reaches the scheduler entry + entry_per_token * prompt seconds after
    it was sent

- T: tokens in the step (the first `free_tokens` cost no more than one: an engine that pads
  a step's tokens, or whose fixed costs hide small matmuls, prices small steps alike);
  S: sequences; K: keys read, summed over the step's sequences (the
  attention's memory side: a paged cache gathers every cached key of every sequence each
  step, which dominates decode); F: sum over sequences of new tokens x keys attended (the
  attention's compute side, which dominates long prefills);
- entry, entry_per_token: HTTP, tokenisation and streaming, paid once per request (the
  tokeniser's share grows with the prompt) outside the batching loop, so they delay that
  request alone; added to its TTFT and E2E.

`fit` chooses them by least squares in log space: each calibration run (closed loops of 1 and
more clients, at prompt lengths that separate the token and the attention terms) is simulated
with the engine's scheduler settings, and the medians of TTFT and TPOT are compared with the
measured ones. The runs that are then predicted must not be the ones fitted (the benchmark
keeps them apart).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from memwall.errors import MemwallError
from memwall.serve.costmodel import Curve, StepModel
from memwall.serve.metrics import request_table
from memwall.serve.workload import Requests

NAMES = (
    "per_step", "per_token", "per_seq", "per_key", "per_qk", "entry", "entry_per_token",
    "free_tokens",
)  # fmt: skip


# What each cost may be (seconds; free_tokens in tokens): wide physical ranges that keep the
# fit from trading one term for another beyond sense (a tokeniser costs microseconds a token).
BOUNDS = {
    "per_step": (1e-5, 1.0),
    "per_token": (1e-8, 0.1),
    "per_seq": (1e-9, 0.1),
    "per_key": (1e-10, 0.01),
    "per_qk": (1e-13, 0.001),
    "entry": (1e-5, 1.0),
    "entry_per_token": (1e-10, 1e-5),
    "free_tokens": (0.5, 512.0),
}


@dataclass(frozen=True)
class EngineCosts:
    """Seconds: per step, per token, per sequence, per key read, per unit of attention work,
    per request and per prompt token of a request."""

    per_step: float
    per_token: float
    per_seq: float
    per_key: float
    per_qk: float
    entry: float
    entry_per_token: float = 0.0
    free_tokens: float = 0.0  # tokens, not seconds

    def step_model(self) -> StepModel:
        """The costs as a `StepModel` (straight lines: two points each extrapolate exactly)."""
        line = lambda k: Curve((0.0, 1.0), (0.0, k))  # noqa: E731
        return StepModel(
            dense=self._dense(),
            head=line(self.per_seq),
            attn_memory=line(self.per_key),
            attn_compute=line(self.per_qk),
            f_qk=1.0,
            b_key=1.0,
            b_query=0.0,
            n_layers=1,
            window=None,
            window_layers=0,
            predictor="measured engine",
            launch=None,
            about={"costs": asdict(self)},
        )

    def _dense(self) -> Curve:
        """per_step, flat up to free_tokens, then rising per_token per token."""
        knee = max(self.free_tokens, 1e-6)
        return Curve(
            (0.0, knee, knee + 1.0), (self.per_step,) * 2 + (self.per_step + self.per_token,)
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Scheduler:
    """The engine's batching settings the simulation copies."""

    max_tokens: int
    max_seqs: int
    block_size: int
    blocks: int
    policy: str = "vllm"


def simulate_requests(
    costs: EngineCosts, requests: Requests, engine: Scheduler
) -> dict[str, np.ndarray]:
    """Per-request arrays (`metrics.request_table`) with the entry cost added to TTFT and E2E;
    open-loop requests reach the scheduler that long after their send time."""
    from memwall.serve import simulate

    entry = costs.entry + costs.entry_per_token * np.asarray(requests.input_len, dtype=float)
    shifted = Requests(
        requests.arrival + (0.0 if requests.concurrency else entry),
        requests.input_len,
        requests.output_len,
        requests.concurrency,
    )
    trace = simulate(
        shifted, costs.step_model(), engine.policy, engine.max_tokens, engine.max_seqs,
        engine.block_size, engine.blocks,
    )  # fmt: skip
    table = request_table(trace)
    table["ttft"] = table["ttft"] + entry
    table["e2e"] = table["e2e"] + entry
    table["sent"] = requests.arrival
    return table


def _medians(table: dict[str, np.ndarray]) -> tuple[float, float]:
    return float(np.nanmedian(table["ttft"])), float(np.nanmedian(table["tpot"]))


def fit(runs: list[tuple[Requests, float, float]], engine: Scheduler) -> EngineCosts:
    """Costs whose simulation best matches each run's measured (median TTFT, median TPOT):
    `runs` holds (the requests as sent, measured median TTFT s, measured median TPOT s)."""
    from scipy.optimize import least_squares

    if not runs:
        raise MemwallError("calibration needs at least one measured run")
    values = np.array([[t, p] for _, t, p in runs], dtype=float)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise MemwallError("calibration runs need positive measured TTFT and TPOT")
    measured = np.log(values)

    def residuals(x: np.ndarray) -> np.ndarray:
        costs = EngineCosts(*np.exp(x))
        sim = [_medians(simulate_requests(costs, r, engine)) for r, _, _ in runs]
        return (np.log(sim) - measured).ravel()

    # a start of the right order (one decode step is the TPOT of a lone request), inside
    # BOUNDS; soft_l1: a run the engine served badly (a stall) weighs less
    tpot = min(p for _, _, p in runs)
    lo, hi = (np.log([b[i] for b in BOUNDS.values()]) for i in (0, 1))
    x0 = np.clip(
        np.log([tpot * 0.8, tpot * 0.01, tpot * 0.05, tpot * 1e-3, tpot * 1e-5, tpot, 1e-7, 8]),
        lo + 1e-9,
        hi - 1e-9,
    )
    best = least_squares(
        residuals, x0, bounds=(lo, hi), method="trf", loss="soft_l1", f_scale=0.2,
        diff_step=0.05,
    )  # fmt: skip
    costs = EngineCosts(*np.exp(best.x))
    if not all(math.isfinite(v) for v in asdict(costs).values()):
        raise MemwallError("calibration did not converge")
    return costs


def compare(measured: dict[str, Any], simulated: dict[str, np.ndarray]) -> dict[str, Any]:
    """Relative errors (simulated / measured - 1) of p50 and p90 of TTFT, TPOT, E2E and of the
    output throughput, with the values compared; `measured` holds per-request arrays of the same
    keys and `duration`, `output_tokens`."""
    out: dict[str, Any] = {}
    for name in ("ttft", "tpot", "e2e"):
        for q in (50, 90):
            m = float(np.nanpercentile(measured[name], q))
            s = float(np.nanpercentile(simulated[name], q))
            out[f"{name}_p{q}"] = {"measured": m, "simulated": s, "error": s / m - 1}
    span = simulated["sent"] + simulated["e2e"]
    sim_duration = float(np.nanmax(span) - np.nanmin(simulated["sent"]))
    m_tp = measured["output_tokens"] / measured["duration"]
    s_tp = float(np.nansum(simulated["output_len"])) / sim_duration
    out["throughput"] = {"measured": m_tp, "simulated": s_tp, "error": s_tp / m_tp - 1}
    return out
