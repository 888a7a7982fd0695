"""A step model measured on a real engine: the per-step costs of a server this machine runs,
fitted to its own timed steps, so that `simulate` can be checked request by request.

A real server's step costs are not memwall's predictor's: on a CPU with a tiny model, Python
overhead per step dominates, and transformers' paged attention on a CPU (SDPA with a mask)
computes one masked attention over the whole batch, every query token against every key read
in the step. `EngineCosts` prices a step with five constants:

    step(T, S, K) = per_step + per_token * T + per_seq * S + per_key * K + per_token_key * T * K
    and every request reaches the scheduler `entry` seconds after it was sent

- T: tokens in the step; S: sequences; K: keys read, summed over the step's sequences (the
  cache gather), T x K: the masked attention over the batch;
- entry: HTTP, tokenisation and streaming, paid once per request outside the batching loop,
  so it delays that request alone; added to its TTFT and E2E.

`fit_steps` takes them from the engine's steps timed from inside it (`measure.engine_steps`:
one record per pass of its batching loop) by non-negative least squares on relative errors;
`fit_entry` takes the entry cost from lone requests, TTFT minus their prefill step. The runs
that are then predicted must not be the ones fitted (the benchmark keeps them apart).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from memwall.errors import MemwallError
from memwall.serve.costmodel import Curve, StepModel
from memwall.serve.metrics import request_table
from memwall.serve.workload import Requests

STEP_TERMS = ("per_step", "per_token", "per_seq", "per_key", "per_token_key")


class EngineStepModel(StepModel):
    """`StepModel` whose attention is per_key * K + per_token_key * T * K (one masked
    attention over the batch) instead of max(memory, compute) of fused per-sequence kernels."""

    per_key: float = 0.0
    per_token_key: float = 0.0

    def attention(self, tokens: float, qk: float, keys: float) -> float:
        return keys * (self.per_key + self.per_token_key * tokens)

    def decode_many(self, batch: int, keys: np.ndarray) -> np.ndarray:
        return self.fixed(batch, batch) + keys * (self.per_key + self.per_token_key * batch)


@dataclass(frozen=True)
class EngineCosts:
    """Seconds per step, per token, per sequence, per key read, per (token x key), per request."""

    per_step: float
    per_token: float
    per_seq: float
    per_key: float
    per_token_key: float
    entry: float = 0.0

    def step_model(self) -> EngineStepModel:
        """The costs as a step model the simulator runs."""
        line = lambda k: Curve((0.0, 1.0), (0.0, k))  # noqa: E731
        model = EngineStepModel(
            dense=Curve((0.0, 1.0), (self.per_step, self.per_step + self.per_token)),
            head=line(self.per_seq),
            attn_memory=line(0.0),
            attn_compute=line(0.0),
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
        model.per_key, model.per_token_key = self.per_key, self.per_token_key
        return model

    def step(self, tokens: float, seqs: float, keys: float) -> float:
        return (
            self.per_step + self.per_token * tokens + self.per_seq * seqs
            + keys * (self.per_key + self.per_token_key * tokens)
        )  # fmt: skip

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


def fit_steps(steps: dict[str, Any]) -> tuple[EngineCosts, dict[str, float]]:
    """Step costs from timed steps (`engine_steps.read`: seconds, tokens, seqs, keys,
    token_keys) by non-negative least squares, and how well they fit (median and p90 of
    |predicted / measured - 1| over the steps)."""
    from scipy.optimize import nnls

    y = np.asarray(steps["seconds"], dtype=float)
    if len(y) < len(STEP_TERMS) or not (np.isfinite(y).all() and (y > 0).all()):
        raise MemwallError(f"calibration needs at least {len(STEP_TERMS)} timed steps")
    cols = [np.ones_like(y)] + [np.asarray(steps[k], float) for k in ("tokens", "seqs", "keys")]
    x = np.column_stack([*cols, np.asarray(steps["token_keys"], float)])
    # relative least squares: each step weighs alike, so the many short decode steps (which
    # set TPOT) are fitted as well as the few long prefills (absolute errors would favour those)
    coef, _ = nnls(x / y[:, None], np.ones_like(y))
    rel = np.abs(x @ coef / y - 1)
    quality = {
        "steps": len(y),
        "median": float(np.median(rel)),
        "p90": float(np.percentile(rel, 90)),
    }
    return EngineCosts(*map(float, coef)), quality


def fit_entry(costs: EngineCosts, prompts: np.ndarray, ttft: np.ndarray) -> EngineCosts:
    """The entry cost from lone requests (one client, one request at a time): the median of
    TTFT minus the prefill step of the prompt, floored at 0."""
    prompts, ttft = np.asarray(prompts, float), np.asarray(ttft, float)
    if not len(ttft):
        raise MemwallError("the entry cost needs lone requests' TTFT")
    prefill = np.array([costs.step(p, 1, p) for p in prompts])
    entry = max(float(np.median(ttft - prefill)), 0.0)
    return EngineCosts(**{**asdict(costs), "entry": entry})


def simulate_requests(
    costs: EngineCosts, requests: Requests, engine: Scheduler
) -> dict[str, np.ndarray]:
    """Per-request arrays (`metrics.request_table`) with the entry cost added to TTFT and E2E;
    open-loop requests reach the scheduler that long after their send time."""
    from memwall.serve import simulate

    shifted = Requests(
        requests.arrival + (0.0 if requests.concurrency else costs.entry),
        requests.input_len,
        requests.output_len,
        requests.concurrency,
    )
    trace = simulate(
        shifted, costs.step_model(), engine.policy, engine.max_tokens, engine.max_seqs,
        engine.block_size, engine.blocks,
    )  # fmt: skip
    table = request_table(trace)
    table["ttft"] = table["ttft"] + costs.entry
    table["e2e"] = table["e2e"] + costs.entry
    table["sent"] = requests.arrival
    return table


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
