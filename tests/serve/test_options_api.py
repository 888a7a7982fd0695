"""The three engine options through `memwall.api.serve` and `memwall serve`: off by default,
named in the output when on, bad values and combinations refused in one line."""

from __future__ import annotations

import json

import pytest

import memwall.api as api
from memwall.errors import MemwallError

SMALL = dict(device="h100-sxm", requests=20, input_len=256, output_len=16)


def test_off_by_default():
    p = api.serve("gpt2", **SMALL).payload
    assert p["prefix_caching"] is False
    assert p["disaggregation"] is None and p["speculative_decoding"] is None
    assert p["workload"]["shared_prefix"] == 0


def test_prefix_caching_payload_and_cli(serve_json):
    lib = api.serve("gpt2", shared_prefix=200, prefix_caching=True, rate=50, **SMALL)
    pc = lib.payload["prefix_caching"]
    # 200 shared tokens = 12 full blocks (192 tokens); the first request misses, the 19
    # others hit 192 of their 256 tokens
    assert pc["cacheable_blocks"] == 12 and pc["hit_tokens"] == 19 * 192
    assert pc["queried_tokens"] == 20 * 256
    assert any("prefix cache:" in n for n in lib.notes)
    off = api.serve("gpt2", shared_prefix=200, rate=50, **SMALL).payload
    assert lib.payload["ttft"]["p50"] < off["ttft"]["p50"]
    d = serve_json("serve", "gpt2", "--device", "h100-sxm", "--requests", "20", "--input-len",
                   "256", "--output-len", "16", "--rate", "50", "--shared-prefix", "200",
                   "--prefix-caching")  # fmt: skip
    assert json.loads(json.dumps(lib.to_dict())) == d


def test_spec_payload_and_cli(serve_json):
    lib = api.serve("gpt2-large", spec_draft="gpt2", spec_k=3, spec_acceptance=0.8, **SMALL)
    sd = lib.payload["speculative_decoding"]
    assert sd["tokens_per_step"] == pytest.approx(2.952) and sd["k"] == 3
    assert sd["speedup_at_batch"]["1"] > sd["speedup_at_batch"]["256"]
    base = api.serve("gpt2-large", **SMALL).payload
    assert lib.payload["kv_cache"]["blocks"] < base["kv_cache"]["blocks"]  # draft's share
    assert lib.payload["tpot"]["mean"] < base["tpot"]["mean"]
    d = serve_json("serve", "gpt2-large", "--device", "h100-sxm", "--requests", "20",
                   "--input-len", "256", "--output-len", "16", "--spec-draft", "gpt2",
                   "--spec-k", "3", "--spec-acceptance", "0.8")  # fmt: skip
    assert json.loads(json.dumps(lib.to_dict())) == d
    ng = api.serve("gpt2", spec_draft="ngram", spec_acceptance=0.6, **SMALL).payload
    assert ng["speculative_decoding"]["draft"] == "ngram"


def test_disagg_cli_and_search(serve_json):
    d = serve_json("serve", "gpt2", "--device", "h100-sxm", "--requests", "20", "--input-len",
                   "256", "--output-len", "16", "--rate", "50", "--disagg", "2:1")  # fmt: skip
    assert d["disaggregation"]["devices"] == 3 and d["completed"] == 20
    r = api.serve("gpt2", device="h100-sxm", requests=60, input_len=256, output_len=16,
                  disagg="1:1", search=True, slo="ttft=0.05,tpot=0.01",
                  target_rate=500)  # fmt: skip
    row = r.payload["search"]["rows"][0]
    assert row["devices"] == row["copies"] * row["tp"] * 2


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(shared_prefix=300), "--shared-prefix"),
        (dict(shared_prefix=-1), "--shared-prefix"),
        (dict(shared_prefix=1.5), "--shared-prefix"),
        (dict(disagg="2"), "--disagg"),
        (dict(disagg="0:1"), "--disagg"),
        (dict(disagg="1:1", scheduler="static"), "static"),
        (dict(disagg="1:1", scheduler="prefill-first"), "--scheduler vllm"),
        (dict(disagg="1:1", concurrency=4), "--concurrency"),
        (dict(prefix_caching=True, scheduler="static"), "static"),
        (dict(spec_draft="gpt2", spec_acceptance=0.7, scheduler="static"), "static"),
        (dict(spec_k=3), "--spec-draft"),
        (dict(spec_acceptance=0.5), "--spec-draft"),
        (dict(spec_draft="gpt2"), "--spec-acceptance"),
        (dict(spec_draft="gpt2", spec_acceptance=1.5), "--spec-acceptance"),
        (dict(spec_draft="gpt2", spec_acceptance=float("nan")), "--spec-acceptance"),
        (dict(spec_draft="gpt2", spec_acceptance=0.5, spec_k=0), "--spec-k"),
        (dict(spec_draft="llama-3-8b", spec_acceptance=0.5), "vocabulary"),
        (dict(spec_draft="bert-base", spec_acceptance=0.5), "decoder"),
        (dict(spec_draft="gpt2", spec_acceptance=0.5, disagg="1:1"), "not modelled"),
    ],
)
def test_refusals_are_one_line(kw, words):
    with pytest.raises(MemwallError) as e:
        api.serve("gpt2", **{**SMALL, **kw})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_cli_refusal_exits_2(serve_cli):
    code, out, err = serve_cli("serve", "gpt2", "--device", "h100-sxm", "--disagg", "x")
    assert code == 2 and "--disagg must be P:D" in err


def test_prefix_caching_without_a_shared_prefix_finds_nothing():
    r = api.serve("gpt2", prefix_caching=True, **SMALL)
    pc = r.payload["prefix_caching"]
    assert pc["hit_tokens"] == 0 and pc["queried_tokens"] == 20 * 256
    assert any("nothing to reuse" in n for n in r.notes)
