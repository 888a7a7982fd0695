"""The measured-engine step model: hand-checked steps, step costs recovered from timed steps,
the entry cost from lone requests (what the real-engine benchmark relies on)."""

from __future__ import annotations

import numpy as np
import pytest

from memwall.errors import MemwallError
from memwall.serve.calibrate import (
    EngineCosts,
    Scheduler,
    compare,
    fit_entry,
    fit_steps,
    simulate_requests,
)
from memwall.serve.workload import Requests

COSTS = EngineCosts(
    per_step=4e-3, per_token=1.5e-4, per_seq=2e-4, per_key=2e-6, per_token_key=3e-8, entry=3e-3
)
SCHED = Scheduler(max_tokens=256, max_seqs=64, block_size=16, blocks=1024)


def test_one_request_alone_is_entry_plus_prefill_then_decode_steps():
    prompt, out = 100, 5
    reqs = Requests(np.zeros(1), np.array([prompt]), np.array([out]), 0)
    t = simulate_requests(COSTS, reqs, SCHED)
    # the prefill: 100 tokens, one sequence, 100 keys read, 100 x 100 masked attention
    prefill = 4e-3 + 1.5e-4 * 100 + 2e-4 + 2e-6 * 100 + 3e-8 * 100 * 100
    assert t["ttft"][0] == pytest.approx(3e-3 + prefill, rel=1e-9)
    decodes = [4e-3 + 1.5e-4 + 2e-4 + (2e-6 + 3e-8) * (prompt + i + 1) for i in range(out - 1)]
    assert t["e2e"][0] == pytest.approx(3e-3 + prefill + sum(decodes), rel=1e-9)


def test_a_batch_pays_its_attention_over_all_its_keys():
    """One step of two decodes saves a per-step cost on two lone steps but pays the masked
    attention of both queries against both sequences' keys (T x K: 2 x 1000, not 2 x 500)."""
    one, two = COSTS.step(1, 1, 500), COSTS.step(2, 2, 1000)
    assert two - 2 * one == pytest.approx(-4e-3 + 3e-8 * (2 * 1000 - 2 * 500))


def test_fit_steps_recovers_the_costs_that_timed_the_steps():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 257, 400).astype(float)
    seqs = np.minimum(tokens, rng.integers(1, 33, 400))
    keys = tokens + rng.integers(0, 4000, 400)
    seconds = np.array([COSTS.step(t, s, k) for t, s, k in zip(tokens, seqs, keys, strict=True)])
    steps = dict(seconds=seconds * rng.normal(1, 0.01, 400), tokens=tokens, seqs=seqs, keys=keys,
                 token_keys=tokens * keys)  # fmt: skip
    fitted, quality = fit_steps(steps)
    assert quality["steps"] == 400 and quality["median"] < 0.02
    for t, s, k in ((1, 1, 100), (8, 8, 2000), (256, 4, 1500)):
        assert fitted.step(t, s, k) == pytest.approx(COSTS.step(t, s, k), rel=0.03)


def test_fit_entry_is_ttft_less_the_prefill():
    costs = EngineCosts(**{**COSTS.to_dict(), "entry": 0.0})
    prompts = np.array([32, 192, 480])
    ttft = np.array([costs.step(p, 1, p) for p in prompts]) + 5e-3
    assert fit_entry(costs, prompts, ttft).entry == pytest.approx(5e-3)
    with pytest.raises(MemwallError, match="lone requests"):
        fit_entry(costs, np.array([]), np.array([]))


def test_compare_reports_relative_errors():
    reqs = Requests(np.arange(10) * 0.1, np.full(10, 50), np.full(10, 20), 0)
    sim = simulate_requests(COSTS, reqs, SCHED)
    measured = {k: sim[k] * 2 for k in ("ttft", "tpot", "e2e")}
    measured["duration"] = float(np.max(sim["sent"] + sim["e2e"]))
    measured["output_tokens"] = 100.0
    err = compare(measured, sim)
    assert err["ttft_p50"]["error"] == pytest.approx(-0.5)
    assert err["e2e_p90"]["error"] == pytest.approx(-0.5)
    assert err["throughput"]["error"] == pytest.approx(200 / 100 - 1)


def test_fit_steps_refuses_too_few_steps():
    steps = dict(seconds=[0.01, 0.02], tokens=[1, 2], seqs=[1, 1], keys=[5, 6], token_keys=[5, 12])
    with pytest.raises(MemwallError, match="timed steps"):
        fit_steps(steps)
