"""Prefill/decode disaggregation (`serve.disagg`): TTFT at the prefill instance, the KV
transfer, TPOT at the decode instances; numbers from the step model and the link."""

from __future__ import annotations

import numpy as np
import pytest

import memwall.api as api
from memwall.hardware import get_device
from memwall.parallel.collectives import realistic_links
from memwall.parallel.links import links_for
from memwall.serve import simulate
from memwall.serve.disagg import Transfer, transfer_link
from memwall.serve.metrics import metrics

# 1 ms + 1,000 bytes per prompt token at 1 GB/s: 200 tokens move in 1.2 ms
LINK = Transfer(alpha=1e-3, bandwidth=1e9, bytes_per_token=1000.0, tp=1, link="test")


def _run(model, requests, p=1, d=1, link=LINK, blocks=10**6):
    return simulate(requests, model, "vllm", 8192, 256, 16, blocks, disagg=(p, d, link))


def test_one_request_alone(make_reqs, gpt2_model):
    """TTFT = the prefill; E2E = prefill + transfer (1 ms + 200 x 1000 B / 1 GB/s) + 39
    decode steps at contexts 200..238 on the decode instance."""
    m = gpt2_model
    tr = _run(m, make_reqs(0.0, 200, 40))
    (r,) = tr.requests
    pre = m.prefill_step(1, 200)
    move = 1e-3 + 200 * 1000 / 1e9
    assert move == pytest.approx(1.2e-3)
    decodes = [m.decode_step(1, 200 + j) for j in range(39)]
    assert r.first - r.release == pytest.approx(pre, rel=1e-12)
    assert r.finish - r.release == pytest.approx(pre + move + sum(decodes), rel=1e-12)
    # the first gap on the decode instance holds the transfer; the rest are decode steps
    gaps = sorted(np.repeat(tr.itl_gap, tr.itl_count))
    assert gaps == pytest.approx(sorted([move + decodes[0], *decodes[1:]]))
    assert tr.instances == 2 and len(tr.t_step) == 1 + 39
    m_ = metrics(tr, float("inf"), None)
    assert m_["busy_fraction"] <= 0.5 + 1e-9  # two instances, never both busy


def test_prefill_instances_work_side_by_side(make_reqs, gpt2_model):
    """Two requests at t = 0 on 2:1 go to different prefill instances: each TTFT is one
    lone prefill (on 1:1 they share one step of 400 tokens)."""
    m = gpt2_model
    two = _run(m, make_reqs([0.0, 0.0], 200, 10), p=2).requests
    one = _run(m, make_reqs(0.0, [200, 200], 10)).requests
    assert [r.first for r in two] == pytest.approx([m.prefill_step(1, 200)] * 2)
    assert one[0].first == pytest.approx(m.prefill_step(2, 200))
    assert all(r.finish > r.first for r in two)


def test_one_output_token_ends_at_the_prefill(make_reqs, gpt2_model):
    tr = _run(gpt2_model, make_reqs([0.0, 0.0], 100, [1, 3]))
    a, b = tr.requests
    assert a.finish == a.first and b.finish > b.first + LINK.alpha


def test_the_link_is_nvlink_inside_a_node_and_the_network_across():
    """gpt2 bf16 KV: 2 (K, V) x 12 layers x 768 x 2 bytes = 36,864 bytes per token; 2
    devices sit in one 8-GPU H100 node (NVLink at NCCL's bus bandwidth), 16 do not (the
    network link of each device)."""
    dev = get_device("h100-sxm")
    links = realistic_links(links_for("h100-sxm"), dev)
    kv = 2 * 12 * 768 * 2
    inside = transfer_link(dev, "h100-sxm", 2, kv, 1)
    assert inside.alpha == pytest.approx(links.intra.latency)
    assert inside.bandwidth == pytest.approx(links.intra.bandwidth)
    t = float(inside.time([1000])[0])
    assert t == pytest.approx(links.intra.latency + 1000 * kv / links.intra.bandwidth)
    across = transfer_link(dev, "h100-sxm", 16, kv, 8)
    assert across.bandwidth == pytest.approx(links.inter.bandwidth)
    assert "between nodes" in across.link and "inside a node" in inside.link


def test_api_reports_it():
    r = api.serve("gpt2", device="h100-sxm", requests=1, input_len=300, output_len=10,
                  disagg="1:1")  # fmt: skip
    p, sm = r.payload, r.extra["step_model"]
    dg = p["disaggregation"]
    assert dg["prefill_instances"] == 1 and dg["devices"] == 2
    assert dg["transfer"]["kv_bytes_per_token"] == 2 * 12 * 768 * 2
    move = dg["transfer_s"]["mean"]
    assert p["ttft"]["mean"] == pytest.approx(sm.prefill_step(1, 300))
    e2e = sm.prefill_step(1, 300) + move + sum(sm.decode_step(1, 300 + j) for j in range(9))
    assert p["e2e"]["mean"] == pytest.approx(e2e)
    assert any("disaggregated" in n for n in r.notes)
    assert "disagg 1:1" in r.title


def test_a_decode_instance_never_recomputes_a_prompt_whose_kv_arrived(make_reqs, gpt2_model):
    # a small cache preempts on the decode instance; the preempted request is recomputed
    # there, and vLLM's admission then also took the arrived requests behind it as prompts:
    # computed twice, blocks freed twice, and the KV in use went negative (-92%)
    m, n = gpt2_model, 100
    tr = _run(m, make_reqs(np.linspace(0, 0.1, n), 900, 128), blocks=1000)
    used = np.asarray(tr.kv_used)
    assert used.min() >= 0 and used.max() <= 1000
    assert all(r.generated == r.output_len == 128 for r in tr.requests)
    assert tr.preemptions > 0  # the case above happened
