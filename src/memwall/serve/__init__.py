"""Request-level simulation of an LLM server: continuous batching, paged KV blocks,
preemption, SLOs, each step priced by memwall's own predictor.

- `workload`: arrivals (Poisson / gamma, closed loop) and lengths.
- `costmodel`: the step-time model, tabulated once from op tables and the predictor.
- `kvcache`: KV blocks: capacity from the device's memory, block arithmetic.
- `schedulers`: vLLM V1 (chunked prefill), prefill-first (V0), static batching.
- `engine`: the event loop of the continuous schedulers; `static`: static batching's loop.
- `metrics`: TTFT, TPOT, ITL, E2E, throughput, goodput, KV use, stability, timeline.
- `setup`: tensor-parallel share and collectives, vLLM's device-dependent defaults.
- `calibrate`: a step model fitted to a real engine's own timed steps, to check the simulation
  against that engine request by request (`benchmarks/bench_serve.py`).

`memwall.api.serve` (the `memwall serve` command) decides the defaults, checks the input and
runs `--search` (`api/_serve_search.py`); `simulate` here runs a prepared simulation. Not here
yet (hooks: a scheduler is a function of the engine state in `schedulers.POLICIES`; the step
model is one object): prefix caching, prefill/decode disaggregation, speculative decoding.
"""

from __future__ import annotations

from typing import Any


def simulate(
    requests: Any,
    model: Any,
    scheduler: str,
    max_tokens: int,
    max_seqs: int,
    block_size: int,
    blocks: int,
) -> Any:
    """Run `requests` (`workload.Requests`) through a server; returns the engine's `Trace`."""
    if scheduler == "static":
        from memwall.serve.static import run_static

        return run_static(requests, model, max_seqs, block_size, blocks)
    from memwall.serve.engine import run
    from memwall.serve.schedulers import POLICIES

    return run(requests, model, POLICIES[scheduler], max_tokens, max_seqs, block_size, blocks)


__all__ = ["simulate"]
