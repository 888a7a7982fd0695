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
- Options, each off by default: `prefix` (automatic prefix caching of a prefix every prompt
  shares), `disagg` (prefill/decode disaggregation: P prefill and D decode instances, the KV
  cache moved over the link), `speculative` (a draft proposes k tokens, the target verifies
  them in one step).

`memwall.api.serve` (the `memwall serve` command) decides the defaults, checks the input and
runs `--search` (`api/_serve_search.py`); `simulate` here runs a prepared simulation.
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
    prefix_tokens: int = 0,
    spec: Any = None,
    disagg: Any = None,
) -> Any:
    """Run `requests` (`workload.Requests`) through a server; returns the engine's `Trace`.
    prefix_tokens > 0: prefix caching of the prompts' shared first `prefix_tokens` tokens;
    spec: a `speculative.Speculative`; disagg: (P, D, `disagg.Transfer`)."""
    if scheduler == "static":
        if prefix_tokens or spec is not None or disagg is not None:
            raise ValueError("static batching has no prefix caching, speculation or disagg")
        from memwall.serve.static import run_static

        return run_static(requests, model, max_seqs, block_size, blocks)
    from memwall.serve.engine import run
    from memwall.serve.schedulers import POLICIES

    real = None
    if spec is not None:  # each engine decode step is one verify step (`speculative`)
        from memwall.serve.workload import Requests

        real = requests.output_len
        requests = Requests(requests.arrival, requests.input_len,
                            spec.verify_steps(real), requests.concurrency)  # fmt: skip

    def make_prefix():
        from memwall.serve.prefix import PrefixCache

        return PrefixCache(prefix_tokens, block_size)

    if disagg is not None:
        from memwall.serve.disagg import run_disagg

        p, d, transfer = disagg
        trace = run_disagg(
            requests, model, POLICIES, max_tokens, max_seqs, block_size, blocks, p, d,
            transfer, make_prefix if prefix_tokens else None,
        )  # fmt: skip
    else:
        pc = make_prefix() if prefix_tokens else None
        trace = run(requests, model, POLICIES[scheduler], max_tokens, max_seqs, block_size,
                    blocks, pc, spec)  # fmt: skip
        if pc is not None:
            trace.extra["prefix"] = pc.stats()
    if real is not None:
        for r, o in zip(trace.requests, real, strict=True):
            r.output_len = r.generated = int(o)
    return trace


__all__ = ["simulate"]
