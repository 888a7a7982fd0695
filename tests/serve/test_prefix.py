"""Prefix caching (`serve.prefix`): hits, shared blocks counted once, eviction; every number
from the step model's own terms and block arithmetic."""

from __future__ import annotations

import pytest

from memwall.serve import simulate
from memwall.serve.engine import Req, State, Trace
from memwall.serve.prefix import PrefixCache

BS = 16


def _run(model, requests, prefix, scheduler="vllm", blocks=10**6):
    return simulate(requests, model, scheduler, 8192, 256, BS, blocks, prefix_tokens=prefix)


def test_second_request_prefills_only_the_uncached_tokens(make_reqs, gpt2_model):
    """Prefix 100 tokens = 6 full blocks of 16 (96 tokens) cached by A; B (same 200-token
    prompt shape) arrives while A decodes, finds 6 blocks, prefills 104 tokens at context 96,
    and allocates 13 - 6 = 7 blocks of its own: 13 + 7 = 20 in use, not 26."""
    m = gpt2_model
    a_ttft = m.prefill_step(1, 200)
    reqs = make_reqs([0.0, a_ttft], 200, [40, 5])  # B arrives as A starts decoding
    on = _run(m, reqs, 100)
    off = _run(m, reqs, 0)
    a, b = on.requests
    assert a.first == pytest.approx(a_ttft, rel=1e-12)  # A missed: the cache was empty
    # step 2: A's decode (context 200, 201 keys) + B's chunk of 104 tokens after 96 cached
    step = m.step(1 + 104, 2, 201 + 104 * (96 + 105 / 2), 201 + 200)
    assert b.first == pytest.approx(a_ttft + step, rel=1e-12)
    full = m.step(1 + 200, 2, 201 + 200 * (0 + 201 / 2), 201 + 200)
    assert off.requests[1].first == pytest.approx(a_ttft + full, rel=1e-12)
    assert step < full
    assert on.kv_used[1] == 13 + 7 and off.kv_used[1] == 13 + 13
    assert max(off.kv_used) - max(on.kv_used) == 6  # the shared blocks counted once
    assert on.extra["prefix"]["hit_tokens"] == 96 and on.extra["prefix"]["queried_tokens"] == 400


def test_a_whole_prompt_hit_still_computes_one_token(make_reqs, gpt2_model):
    """A 96-token prompt that is all prefix: the hit is capped at 95 tokens -> 5 blocks
    (80 tokens); the last 16 are prefilled (vLLM recomputes the last token for its logits)."""
    m = gpt2_model
    tr = _run(m, make_reqs([0.0, 1.0], 96, 1), 96)
    assert tr.requests[1].first - 1.0 == pytest.approx(m.step(16, 1, 16 * (80 + 17 / 2), 96))
    assert tr.extra["prefix"]["hit_tokens"] == 80


def test_prefill_first_scheduler_uses_the_cache(make_reqs, gpt2_model):
    m = gpt2_model
    tr = _run(m, make_reqs([0.0, 1.0], 200, 1), 100, scheduler="prefill-first")
    assert tr.requests[1].first - 1.0 == pytest.approx(m.step(104, 1, 104 * (96 + 105 / 2), 200))


def test_unreferenced_cached_blocks_are_free_and_evicted_last_block_first(gpt2_model):
    """6 cached prefix blocks nobody references count as free; with 4 empty blocks besides
    them, taking 7 blocks evicts 3 from the chain's end, leaving 3 cached (48 tokens)."""
    pc = PrefixCache(100, BS)
    st = State(gpt2_model, 8192, 256, BS, 10, pc)
    st.trace = Trace([], kv_blocks=10)
    r = Req(0, 0.0, 200, 1)
    r.computed, r.blocks = 100, 7  # computed the prefix: 7 blocks of its own
    st.free = 3
    pc.grow(r)  # its 6 full prefix blocks join the cache, shared from now on
    assert (pc.cached, pc.top, r.shared, r.blocks) == (6, 6, 6, 1)
    st.free += r.blocks  # it finishes: its own block back, its reference released
    pc.release(st, r)
    assert (st.free, pc.cached, pc.top) == (10, 6, 0)  # cached but free
    st.take(7)
    assert (st.free, pc.cached, pc.evicted) == (3, 3, 3)
    nxt = Req(1, 0.0, 200, 1)
    assert pc.lookup(nxt) == 3


def test_blocks_all_return_under_preemption(make_reqs, gpt2_model):
    """A cache too small for the load: requests are preempted and resume; every block comes
    back (nothing leaks) and all requests finish."""
    tr = _run(gpt2_model, make_reqs(0.0, 64, [64] * 12), 48, blocks=40)
    assert tr.preemptions > 0
    assert all(r.finish > 0 for r in tr.requests)
    assert max(tr.kv_used) <= 40
