"""The numbers a serving benchmark reports, as vLLM's `benchmarks/benchmark_serving.py`
defines them, from a simulated run.

Per request: TTFT = first token - sent; E2E = last token - sent; TPOT = (E2E - TTFT) /
(output tokens - 1) (requests of one output token have none); ITL = every gap between two
consecutive tokens of a request, all requests pooled. Each is summarised as mean, p50, p90, p99
(numpy's linear percentiles), in seconds. Throughput divides by the run's duration, from the
first request sent to the last token. Goodput counts the requests meeting every SLO given
(ttft, tpot, e2e; a one-token request meets any tpot). KV utilisation is the share of blocks
in use, averaged over the steps weighted by their length.

Stability: with arrivals at a finite rate, the number of requests in the server is regressed on
time over the second half of the arrival window; growth above 5 % of the rate means the rate is
above what the server sustains, the queue grows without bound, and the latency percentiles only
reflect how long the run was (they are withheld; the growth rate is reported instead).
With several instances (disaggregation) the count is the whole server's, from the requests'
send and finish times at each step's start, and the busy fraction is per instance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memwall.serve.engine import Trace

STATS = ("mean", "p50", "p90", "p99")
SLO_KEYS = ("ttft", "tpot", "e2e")
UNSTABLE_GROWTH = 0.05  # queue growth, as a share of the arrival rate, that marks a run unstable
TIMELINE_POINTS = 200


def summary(x: np.ndarray) -> dict[str, float] | None:
    if len(x) == 0:
        return None
    p = np.percentile(x, [50, 90, 99])
    return {"mean": float(np.mean(x)), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


def weighted_summary(values: np.ndarray, counts: np.ndarray) -> dict[str, float] | None:
    """`summary` of the sample where values[i] appears counts[i] times (exactly numpy's linear
    percentile of the expanded sample, without expanding it)."""
    keep = counts > 0
    v, c = values[keep], counts[keep]
    n = int(c.sum())
    if n == 0:
        return None
    order = np.argsort(v, kind="stable")
    v, c = v[order], c[order]
    last = np.cumsum(c) - 1  # index of each value's last copy in the expanded sample

    def at(k: np.ndarray) -> np.ndarray:
        return v[np.searchsorted(last, k)]

    out = {"mean": float((v * c).sum() / n)}
    for p in (50, 90, 99):
        pos = p / 100 * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        a, b = at(np.array([lo, hi]))
        out[f"p{p}"] = float(a + (b - a) * (pos - lo))
    return out


def request_table(trace: Trace) -> dict[str, np.ndarray]:
    rs = trace.requests
    sent = np.array([r.release for r in rs])
    first = np.array([r.first for r in rs])
    finish = np.array([r.finish for r in rs])
    out = np.array([r.output_len for r in rs], dtype=float)
    ttft, e2e = first - sent, finish - sent
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(out > 1, (e2e - ttft) / np.maximum(out - 1, 1), np.nan)
    return {
        "arrival": np.array([r.arrival for r in rs]),
        "sent": sent,
        "input_len": np.array([r.input_len for r in rs], dtype=float),
        "output_len": out,
        "ttft": ttft,
        "tpot": tpot,
        "e2e": e2e,
        "finish": finish,
        "preemptions": np.array([r.preemptions for r in rs], dtype=float),
    }


def growth_rate(tl: dict[str, np.ndarray], t_end: float) -> float:
    """Slope (requests/s) of the requests in the server over the second half of [0, t_end]."""
    t, n = tl["t_start"], tl["waiting"] + tl["running"]
    sel = (t >= t_end / 2) & (t <= t_end)
    if sel.sum() < 3 or t_end <= 0:
        return 0.0
    ts, ns = t[sel], n[sel]
    if np.ptp(ts) <= 0:
        return 0.0
    return float(np.polyfit(ts, ns, 1)[0])


def in_server(tl: dict[str, np.ndarray], req: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`tl` with `waiting` + `running` replaced by the requests in the whole server at each
    step's start: sent and not finished (for a trace of several instances)."""
    t = tl["t_start"]
    sent = np.searchsorted(np.sort(req["sent"]), t, side="right")
    done = np.searchsorted(np.sort(req["finish"]), t, side="right")
    return {**tl, "waiting": np.zeros_like(t), "running": (sent - done).astype(float)}


def stability(
    tl: dict[str, np.ndarray], req: dict[str, np.ndarray], rate: float, instances: int = 1
) -> dict:
    """Whether the server keeps up with open-loop arrivals at `rate` (see the docstring)."""
    if not math.isfinite(rate) or len(req["arrival"]) < 20:
        return {"stable": True, "queue_growth_per_s": None}
    if instances > 1:
        tl = in_server(tl, req)
    g = growth_rate(tl, float(req["arrival"].max()))
    return {"stable": g <= UNSTABLE_GROWTH * rate, "queue_growth_per_s": g}


def timeline(tl: dict[str, np.ndarray], blocks: int, points: int = TIMELINE_POINTS) -> dict:
    """Up to `points` evenly spaced steps: time, batch, tokens, KV use, queue."""
    n = len(tl["t_start"])
    idx = np.unique(np.linspace(0, n - 1, min(points, n)).astype(int)) if n else np.array([], int)
    return {
        "time": tl["t_start"][idx].tolist(),
        "batch_size": tl["batch"][idx].astype(int).tolist(),
        "tokens": tl["tokens"][idx].astype(int).tolist(),
        "kv_utilization": (tl["kv_used"][idx] / blocks).tolist(),
        "waiting": tl["waiting"][idx].astype(int).tolist(),
        "running": tl["running"][idx].astype(int).tolist(),
    }


def metrics(trace: Trace, rate: float, slo: dict[str, float] | None) -> dict[str, Any]:
    """Everything the run reports, JSON-ready (seconds, requests/s, tokens/s)."""
    req = request_table(trace)
    tl = trace.arrays()
    start = float(req["sent"].min())
    end = float(req["finish"].max())
    duration = max(end - start, 1e-12)
    n = len(req["e2e"])
    w = tl["t_step"]
    busy = float(w.sum())
    kv = tl["kv_used"] / trace.kv_blocks
    in_system = tl["waiting"] + tl["running"]
    out: dict[str, Any] = {
        "completed": n,
        "duration": duration,
        "requests_per_s": n / duration,
        "output_tokens_per_s": float(req["output_len"].sum()) / duration,
        "total_tokens_per_s": float((req["input_len"] + req["output_len"]).sum()) / duration,
        "ttft": summary(req["ttft"]),
        "tpot": summary(req["tpot"][~np.isnan(req["tpot"])]),
        "itl": weighted_summary(
            np.asarray(trace.itl_gap, float), np.asarray(trace.itl_count, np.int64)
        ),
        "e2e": summary(req["e2e"]),
        "kv_utilization": {
            "mean": float((kv * w).sum() / busy) if busy else 0.0,
            "max": float(kv.max()) if len(kv) else 0.0,
        },
        "preemptions": int(trace.preemptions),
        "preempted_requests": int((req["preemptions"] > 0).sum()),
        "steps": len(w),
        "busy_fraction": min(busy / (duration * trace.instances), 1.0),
        "mean_in_system": float((in_system * w).sum() / duration),
        "mean_batch_size": float((tl["batch"] * w).sum() / busy) if busy else 0.0,
    }
    out["goodput"] = goodput(req, slo, duration) if slo else None
    out.update(stability(tl, req, rate, trace.instances))
    out["timeline"] = timeline(tl, trace.kv_blocks)
    out["_requests"] = req
    return out


def goodput(req: dict[str, np.ndarray], slo: dict[str, float], duration: float) -> dict:
    good = np.ones(len(req["e2e"]), dtype=bool)
    for k, limit in slo.items():
        v = np.nan_to_num(req[k], nan=0.0)  # no TPOT (one output token): meets any limit
        good &= v <= limit
    return {
        "slo": dict(slo),
        "good_requests": int(good.sum()),
        "fraction": float(good.mean()) if len(good) else 0.0,
        "requests_per_s": float(good.sum()) / duration,
    }
