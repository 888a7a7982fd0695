"""Speculative decoding (`serve.speculative`): tokens per verify step, the verify step
priced at batch x (k + 1) tokens, the speed-up at batch 1 by hand, smaller at a large batch,
none at acceptance 0. gpt2-large verifies, gpt2 drafts (same vocabulary)."""

from __future__ import annotations

import numpy as np
import pytest

from memwall.serve import simulate
from memwall.serve.speculative import Speculative, expected_tokens


def test_expected_tokens_per_step():
    assert expected_tokens(0.5, 1) == pytest.approx(1.5)  # 1 + 0.5
    assert expected_tokens(0.8, 3) == pytest.approx(1 + 0.8 + 0.64 + 0.512)  # 2.952
    assert expected_tokens(0.0, 4) == 1.0  # only the target's own token
    assert expected_tokens(1.0, 4) == 5.0


def test_verify_steps_round_up():
    sp = Speculative(1, 0.5, None, "ngram")  # 1.5 tokens per step
    assert sp.verify_steps(np.array([1, 2, 31, 32])).tolist() == [1, 2, 21, 22]


def _run(model, requests, sp=None):
    return simulate(requests, model, "vllm", 8192 + 3 * 256, 256, 16, 10**6, spec=sp)


def test_batch_1_by_hand(make_reqs, spec_pair):
    """k = 1, A = 0.5: 1.5 tokens per step, so 30 tokens after the first take 20 verify
    steps. Each: gpt2 drafts one token (a decode step) and gpt2-large verifies 2 tokens at
    context c: 2 queries over c + 1 and c + 2 keys, the K/V of c + 2 read once. The prefill
    runs both models over the prompt."""
    t, d = spec_pair
    sp = Speculative(1, 0.5, d, "gpt2")
    n_in, n_out = 200, 31
    (r,) = _run(t, make_reqs(0.0, n_in, n_out), sp).requests
    ttft = t.prefill_step(1, n_in) + d.prefill_step(1, n_in)
    verify = [t.step(2, 1, (c + 1) + (c + 2), c + 2) + d.decode_step(1, c)
              for c in range(n_in, n_in + 20)]  # fmt: skip
    assert r.first - r.release == pytest.approx(ttft, rel=1e-12)
    assert r.finish - r.release == pytest.approx(ttft + sum(verify), rel=1e-12)
    assert r.output_len == n_out  # TPOT counts the real tokens
    plain = _run(t, make_reqs(0.0, n_in, n_out)).requests[0]
    tpot_spec = (r.finish - r.first) / 30
    tpot_plain = (plain.finish - plain.first) / 30
    # speed-up = E x t_decode / (t_draft + t_verify), per step at each context
    hand = 1.5 * sum(t.decode_step(1, c) for c in range(n_in, n_in + 30)) / 30 / (
        sum(verify) / 20)  # fmt: skip
    assert tpot_plain / tpot_spec == pytest.approx(hand, rel=1e-9)
    s1 = sp.per_token(t, 1, n_in)[2]
    by_hand = 1.5 * t.decode_step(1, n_in) / (
        t.step(2, 1, 2 * n_in + 3, n_in + 2) + d.decode_step(1, n_in))  # fmt: skip
    assert s1 == pytest.approx(by_hand, rel=1e-12)
    assert 1.1 < s1 < 1.5  # about 1.16 on an H100


def test_the_gain_shrinks_as_the_batch_grows(make_reqs, spec_pair):
    """k = 3, A = 0.8 (2.952 tokens per step) on 32-token prompts: at batch 1 the verify
    step costs about a decode step; at 256 sequences it runs 1,024 tokens and is
    compute-bound, so the simulated TPOT gain is smaller."""
    t, d = spec_pair
    sp = Speculative(3, 0.8, d, "gpt2")

    def gain(batch):
        reqs = make_reqs([0.0] * batch, 32, 60)
        on = np.mean([(r.finish - r.first) / 59 for r in _run(t, reqs, sp).requests])
        off = np.mean([(r.finish - r.first) / 59 for r in _run(t, reqs).requests])
        return off / on

    g1, g256 = gain(1), gain(256)
    assert g1 > 1.4 and g256 < g1 - 0.2
    assert sp.per_token(t, 256, 32)[2] < sp.per_token(t, 1, 32)[2]


def test_acceptance_0_is_slower(make_reqs, spec_pair):
    """A = 0: one token per step, paid for with a draft step and a 2-token verify."""
    t, d = spec_pair
    sp = Speculative(1, 0.0, d, "gpt2")
    reqs = make_reqs(0.0, 200, 21)
    on, off = _run(t, reqs, sp).requests[0], _run(t, reqs).requests[0]
    assert on.finish - on.first > off.finish - off.first
    assert sp.per_token(t, 1, 200)[2] < 1.0


def test_ngram_has_no_draft_cost(make_reqs, spec_pair):
    t, _ = spec_pair
    sp = Speculative(2, 0.6, None, "ngram")
    (r,) = _run(t, make_reqs(0.0, 100, 2), sp).requests
    c = 100
    verify = t.step(3, 1, (c + 1) + (c + 2) + (c + 3), c + 3)
    assert r.first == pytest.approx(t.prefill_step(1, 100))
    assert r.finish - r.first == pytest.approx(verify)
