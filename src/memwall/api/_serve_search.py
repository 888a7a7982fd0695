"""`memwall serve --search`: the highest request rate a server sustains within an SLO, and the
fewest devices (copies x tensor-parallel degree) that serve a target rate within it.

A rate meets the SLO when the simulated server keeps up (stable) and at least `attainment`
of its requests meet every target (DistServe's SLO attainment; 90% by default). Goodput
falls as the rate rises (queues only grow), so the highest such rate is found by bisection
between 0 and the server's throughput with every request queued at once, which no stable
rate exceeds. Each probe simulates the same requests (lengths and gamma gaps from one seed,
the gaps scaled to the rate), so the answer does not move with sampling noise between
probes. Copies of a server do not interact: a target rate needs ceil(target / best rate)
copies of tp devices each ((P + D) x tp with `--disagg P:D`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memwall.errors import MemwallError

BISECTIONS = 12  # the bracket shrinks 4096-fold: 0.03% of the throughput bound
TP_CANDIDATES = (1, 2, 4, 8)


def _run(cfg: Any, arrival: np.ndarray) -> Any:
    """`cfg`'s requests (its lengths) sent at `arrival`, through its server; the trace."""
    from memwall.serve import simulate
    from memwall.serve.workload import Requests

    reqs = Requests(arrival, cfg.requests.input_len, cfg.requests.output_len, 0)
    return simulate(
        reqs, cfg.step_model, cfg.scheduler, cfg.max_batch_tokens, cfg.max_seqs,
        cfg.kv.block_size, cfg.kv.blocks, **cfg.sim,
    )  # fmt: skip


def meets(cfg: Any, rate: float, unit_gaps: np.ndarray, attainment: float) -> dict[str, Any]:
    """Simulate `cfg`'s requests arriving at `rate`; its goodput summary and the verdict."""
    from memwall.serve.metrics import metrics

    trace = _run(cfg, np.concatenate([[0.0], np.cumsum(unit_gaps / rate)]))
    m = metrics(trace, rate, cfg.slo)
    fraction = m["goodput"]["fraction"]
    return {
        "rate": rate,
        "stable": bool(m["stable"]),
        "attainment": fraction,
        "ok": bool(m["stable"]) and fraction >= attainment,
        "ttft_p90": m["ttft"]["p90"],
        "tpot_p90": m["tpot"]["p90"] if m["tpot"] else None,
        "output_tokens_per_s": m["output_tokens_per_s"],
    }


def highest_rate(cfg: Any, burstiness: float, seed: int, attainment: float) -> dict[str, Any]:
    """The highest rate (requests/s) whose run meets the SLO, by bisection (module docstring);
    `rate` None when even a trickle of requests misses it."""
    n = len(cfg.requests.input_len)
    finish = max(r.finish for r in _run(cfg, np.zeros(n)).requests)
    bound = n / finish  # requests/s with all queued at once: no stable rate is higher
    rng = np.random.default_rng(seed)
    unit_gaps = rng.gamma(shape=burstiness, scale=1.0 / burstiness, size=max(n - 1, 0))
    lo, hi = 0.0, bound
    best = None
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        probe = meets(cfg, mid, unit_gaps, attainment)
        if probe["ok"]:
            lo, best = mid, probe
        else:
            hi = mid
    return {"rate": lo if best else None, "bound": bound, "at_rate": best}


def search(
    base: dict[str, Any], target_rate: float | None, attainment: float, tps: tuple[int, ...]
) -> dict[str, Any]:
    """Per tensor-parallel degree, the highest rate within the SLO and, for `target_rate`, the
    copies and devices it needs; the fewest devices first. `base`: `prepare`'s arguments."""
    from memwall.api._serve_setup import prepare

    if not base.get("slo"):
        raise MemwallError("--search needs --slo (e.g. --slo ttft=0.5,tpot=0.05)")
    if not 0 < attainment <= 1:
        raise MemwallError(f"--attainment must be in (0, 1], got {attainment!r}")
    if target_rate is not None:
        if not (isinstance(target_rate, int | float) and math.isfinite(target_rate)):
            raise MemwallError(f"--target-rate must be a finite number, got {target_rate!r}")
        if target_rate <= 0:
            raise MemwallError(f"--target-rate must be > 0 requests/s, got {target_rate!r}")
    rows, refused = [], {}
    for tp in tps:
        try:
            cfg = prepare(**{**base, "tp": tp, "rate": math.inf})
        except MemwallError as e:
            refused[tp] = str(e)
            continue
        found = highest_rate(cfg, base["burstiness"], base["seed"], attainment)
        row: dict[str, Any] = {"tp": tp, "max_rate": found["rate"], "bound": found["bound"]}
        row["at_max_rate"] = found["at_rate"]
        if target_rate is not None and found["rate"]:
            row["copies"] = math.ceil(target_rate / found["rate"])
            row["devices"] = row["copies"] * tp * cfg.instances
        rows.append(row)
    if not rows:
        raise MemwallError("no tensor-parallel degree fits: " + "; ".join(refused.values()))

    def order(r: dict[str, Any]) -> tuple:
        if target_rate is not None:
            return (r.get("devices") is None, r.get("devices") or 0, r["tp"])
        return (r["max_rate"] is None, -(r["max_rate"] or 0) / r["tp"], r["tp"])

    rows.sort(key=order)
    return {
        "attainment": attainment,
        "target_rate": target_rate,
        "rows": rows,
        "best": rows[0] if rows[0]["max_rate"] else None,
        "refused": {str(k): v for k, v in refused.items()},
    }
