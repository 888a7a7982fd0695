"""The simulation on cases checkable by hand: every number from the step model's own terms."""

from __future__ import annotations

import numpy as np
import pytest

from memwall.serve import simulate
from memwall.serve.metrics import metrics


def _run(model, requests, scheduler="vllm", max_tokens=8192, max_seqs=256, bs=16, blocks=10**6):
    tr = simulate(requests, model, scheduler, max_tokens, max_seqs, bs, blocks)
    return tr, tr.requests


@pytest.mark.parametrize("scheduler", ["vllm", "prefill-first", "static"])
def test_one_request_alone_is_a_prefill_then_decode_steps(make_reqs, gpt2_model, scheduler):
    """TTFT = the prefill step; E2E = that + n - 1 decode steps at growing context."""
    m, n_in, n_out = gpt2_model, 200, 40
    tr, (r,) = _run(m, make_reqs(0.0, n_in, n_out), scheduler)
    ttft = m.prefill_step(1, n_in)
    decodes = [m.decode_step(1, n_in + j) for j in range(n_out - 1)]  # contexts 200..238
    assert r.first - r.release == pytest.approx(ttft, rel=1e-9)
    assert r.finish - r.release == pytest.approx(ttft + sum(decodes), rel=1e-9)
    assert len(tr.t_step) == n_out
    assert sorted(np.repeat(tr.itl_gap, tr.itl_count)) == pytest.approx(sorted(decodes))


def test_chunked_prefill_prices_each_chunk_at_its_context(make_reqs, gpt2_model):
    m = gpt2_model
    _, (r,) = _run(m, make_reqs(0.0, 100, 1), max_tokens=64, max_seqs=64)
    first = m.step(64, 1, 64 * 32.5, 64)  # tokens 0..63: 1..64 keys (causal), 32.5 on average
    second = m.step(36, 1, 36 * 82.5, 100)  # tokens 64..99 attend to 65..100 keys
    assert r.finish == r.first == pytest.approx(first + second)


def test_static_batch(make_reqs, gpt2_model):
    m, b, n_in, outs = gpt2_model, 4, 128, [10, 20, 20, 5]
    tr, rs = _run(m, make_reqs(0.0, n_in, outs), "static")
    pre = m.prefill_step(b, n_in)
    dec = [m.decode_step(b, n_in + j) for j in range(max(outs) - 1)]
    for r, o in zip(rs, outs, strict=True):
        assert r.first == pytest.approx(pre)
        assert r.finish == pytest.approx(pre + sum(dec[: o - 1]))  # streams its own last token
    # the batch runs to its longest output: a request arriving meanwhile starts after it
    tr2, rs2 = _run(m, make_reqs([0, 0, 0, 0, 1e-6], n_in, [*outs, 3]), "static")
    assert rs2[4].first == pytest.approx(pre + sum(dec) + m.prefill_step(1, n_in))


def test_static_batch_in_a_closed_loop_of_one(make_reqs, gpt2_model):
    # a client that sends one request at a time: each batch holds one, the next request is
    # sent when the last one ends (the loop read a slot before checking one was left)
    m, n_in, outs = gpt2_model, 64, [5, 7, 3]
    _, rs = _run(m, make_reqs(0.0, n_in, outs, concurrency=1), "static")
    for a, b in zip(rs, rs[1:], strict=False):
        assert b.release == pytest.approx(a.finish)
    one = [m.prefill_step(1, n_in) + sum(m.decode_step(1, n_in + j) for j in range(o - 1))
           for o in outs]  # fmt: skip
    assert rs[-1].finish == pytest.approx(sum(one))


def test_kv_cache_holding_exactly_k_requests_makes_the_next_wait(make_reqs, gpt2_model):
    """24 prompt + 9 output tokens: 32 cached at most = 2 blocks of 16, all taken at
    prefill; a cache of 2k blocks holds k such requests and the (k+1)-th waits."""
    m, k = gpt2_model, 5
    tr, rs = _run(m, make_reqs(0.0, 24, [9] * (k + 1)), blocks=2 * k)
    first_done = min(r.finish for r in rs[:k])
    assert all(r.first == pytest.approx(rs[0].first) for r in rs[:k])  # one prefill step
    assert rs[k].first > first_done  # admitted only once a request freed its blocks
    assert rs[k].first == pytest.approx(first_done + m.prefill_step(1, 24))
    assert tr.preemptions == 0 and max(tr.kv_used) == 2 * k
    _, rs_more = _run(m, make_reqs(0.0, 24, [9] * (k + 1)), blocks=2 * k + 2)
    assert rs_more[k].first == pytest.approx(rs_more[0].first)  # room for all at once


def test_preemption_when_the_cache_is_too_small(make_reqs, gpt2_model):
    """Prompts take one block each at admission, then grow to 5 blocks: 8 requests cannot
    all fit in 10 blocks, so the newest are preempted (recompute) and all still finish."""
    tr, rs = _run(gpt2_model, make_reqs(0.0, 16, [64] * 8), blocks=10)
    assert tr.preemptions > 0
    assert all(r.finish > 0 and r.generated == 64 for r in rs)
    assert sum(tr.itl_count) == len(rs) * 63  # every inter-token gap counted once
    assert max(tr.kv_used) <= 10
    m = metrics(tr, float("inf"), None)
    assert m["preemptions"] == tr.preemptions and m["kv_utilization"]["max"] <= 1.0


@pytest.mark.parametrize("scheduler", ["vllm", "prefill-first", "static"])
def test_every_gap_counted_under_load(make_reqs, gpt2_model, scheduler):
    rng = np.random.default_rng(3)
    outs = rng.integers(1, 80, 300)
    r = make_reqs(np.sort(rng.random(300)) * 2, rng.integers(10, 600, 300), outs)
    tr, rs = _run(gpt2_model, r, scheduler, max_tokens=1024, max_seqs=64, blocks=400)
    assert sum(tr.itl_count) == int((outs - 1).sum())
    assert all(x.finish >= x.first >= x.release >= x.arrival for x in rs)


def test_littles_law_on_a_long_stable_run(gpt2_model):
    from memwall.serve.workload import Lengths, generate

    rate = 40.0
    r = generate(5000, rate, 1.0, Lengths(100, 400), Lengths(20, 200), 7)
    tr, _ = _run(gpt2_model, r)
    m = metrics(tr, rate, None)
    assert m["stable"]
    assert m["mean_in_system"] == pytest.approx(rate * m["e2e"]["mean"], rel=0.05)


def test_closed_loop_of_one_serialises_requests(make_reqs, gpt2_model):
    tr, rs = _run(gpt2_model, make_reqs(0.0, 50, [5] * 4, concurrency=1))
    for a, b in zip(rs, rs[1:], strict=False):
        assert b.release == pytest.approx(a.finish)
        assert b.first - b.release == pytest.approx(rs[0].first - rs[0].release)


def test_prefill_first_never_mixes_prefill_and_decode(make_reqs, gpt2_model):
    r = make_reqs([0.0, 0.0005, 0.001], 300, 30)
    tr, rs = _run(gpt2_model, r, "prefill-first")
    toks = np.array(tr.tokens)
    prefill_steps = toks[toks >= 300]
    assert len(prefill_steps) >= 2 and set(prefill_steps.tolist()) <= {300, 600, 900}


def test_overload_is_reported_unstable(gpt2_model):
    from memwall.serve.workload import Lengths, generate

    rate = 5000.0
    r = generate(3000, rate, 1.0, Lengths(500, 500), Lengths(200, 200), 0)
    tr, _ = _run(gpt2_model, r)
    m = metrics(tr, rate, None)
    assert not m["stable"] and m["queue_growth_per_s"] > 0.05 * rate
