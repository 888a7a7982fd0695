"""The measured-engine step model: hand-checked steps, and a fit that recovers known costs
from runs simulated with them (what the real-engine benchmark relies on)."""

from __future__ import annotations

import numpy as np
import pytest

from memwall.errors import MemwallError
from memwall.serve.calibrate import EngineCosts, Scheduler, compare, fit, simulate_requests
from memwall.serve.workload import Requests

COSTS = EngineCosts(
    per_step=4e-3,
    per_token=1.5e-4,
    per_seq=2e-4,
    per_key=6e-6,
    per_qk=2e-8,
    entry=3e-3,
    entry_per_token=2e-5,
)
SCHED = Scheduler(max_tokens=256, max_seqs=64, block_size=16, blocks=1024)


def test_one_request_alone_is_entry_plus_prefill_then_decode_steps():
    prompt, out = 100, 5
    reqs = Requests(np.zeros(1), np.array([prompt]), np.array([out]), 0)
    t = simulate_requests(COSTS, reqs, SCHED)
    keys = prompt  # the prefill reads its own keys; its work is sum q x (keys attended)
    qk = prompt * (prompt + 1) / 2
    prefill = 4e-3 + 1.5e-4 * prompt + 2e-4 + max(6e-6 * keys, 2e-8 * qk)
    entry = 3e-3 + 2e-5 * prompt
    assert t["ttft"][0] == pytest.approx(entry + prefill, rel=1e-6)
    decodes = [4e-3 + 1.5e-4 + 2e-4 + 6e-6 * (prompt + i + 1) for i in range(out - 1)]
    assert t["e2e"][0] == pytest.approx(entry + prefill + sum(decodes), rel=1e-6)


def _runs(costs: EngineCosts) -> list[tuple[Requests, float, float]]:
    runs = []
    for prompt, out, conc, n in ((32, 32, 1, 6), (192, 16, 1, 6), (480, 16, 1, 4),
                                 (64, 48, 4, 16), (64, 48, 8, 24), (320, 24, 8, 24)):  # fmt: skip
        reqs = Requests(np.zeros(n), np.full(n, prompt), np.full(n, out), conc)
        t = simulate_requests(costs, reqs, SCHED)
        runs.append((reqs, float(np.median(t["ttft"])), float(np.median(t["tpot"]))))
    return runs


def test_fit_recovers_the_costs_that_made_the_runs():
    fitted = fit(_runs(COSTS), SCHED)
    # what the runs pin down: a lone decode step, a long prefill, a batched long decode
    for prompt, out, conc in ((32, 16, 1), (480, 8, 1), (320, 16, 8)):
        reqs = Requests(np.zeros(conc), np.full(conc, prompt), np.full(conc, out), conc)
        want, got = (simulate_requests(c, reqs, SCHED) for c in (COSTS, fitted))
        for k in ("ttft", "tpot"):
            assert np.median(got[k]) == pytest.approx(np.median(want[k]), rel=0.05)


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


def test_fit_refuses_no_runs_or_bad_measurements():
    with pytest.raises(MemwallError, match="at least one"):
        fit([], SCHED)
    reqs = Requests(np.zeros(1), np.array([10]), np.array([4]), 1)
    with pytest.raises(MemwallError, match="positive"):
        fit([(reqs, 0.0, 0.01)], SCHED)


def test_free_tokens_price_small_steps_alike():
    costs = EngineCosts(
        per_step=4e-3, per_token=1e-4, per_seq=0.0, per_key=0.0, per_qk=0.0, entry=0.0,
        free_tokens=64,
    )  # fmt: skip
    model = costs.step_model()
    assert model.fixed(1, 1) == pytest.approx(4e-3)
    assert model.fixed(64, 1) == pytest.approx(4e-3)
    assert model.fixed(164, 1) == pytest.approx(4e-3 + 100 * 1e-4)
