"""Published engine runs are priced with the projections their engine fuses (the `fused`
column of data/published_inference.csv), not with the Hugging Face code's separate GEMMs."""

from __future__ import annotations

from importlib import resources

import pytest

from memwall.errors import MemwallError
from memwall.parallel.published_inference import (
    load_published,
    parse_published,
    predict_row,
    row_model,
)

ROWS = load_published()


def csv_text() -> str:
    return resources.files("memwall.data").joinpath("published_inference.csv").read_text("utf-8")


def test_the_column_follows_each_engine_s_model_code():
    """vLLM: QKVParallelLinear and MergedColumnParallelLinear; TensorRT-LLM 0.9: one qkv
    ColumnLinear, gate and up apart (use_fused_mlp off by default before 0.13); gpt-fast: wqkv;
    llama.cpp and the rest: apart."""
    want = {"vLLM": "qkv+gate_up", "TensorRT-LLM 0.9": "qkv", "gpt-fast": "qkv"}
    for r in ROWS:
        rule = next((v for k, v in want.items() if r.software.startswith(k)), "")
        assert r.fused == rule, r.id
    assert {r.fused for r in ROWS} == {"", "qkv", "qkv+gate_up"}


def test_row_model_fuses_what_the_column_names():
    by = {r.fused: r for r in ROWS if r.metric != "matmul_time_s"}  # GEMM rows name no model
    assert not row_model(by[""]).fused_qkv
    qkv = row_model(by["qkv"])
    assert qkv.fused_qkv and not qkv.fused_gate_up
    both = row_model(by["qkv+gate_up"])
    assert both.fused_qkv and both.fused_gate_up


def test_one_gemm_for_three_is_faster_at_batch_one():
    r = next(r for r in ROWS if r.fused == "qkv+gate_up" and r.batch == 1)
    fused, apart = predict_row(r)[0], predict_row(r.model_copy(update={"fused": ""}))[0]
    assert fused < 0.95 * apart  # latency in seconds: fewer, larger kernels per layer


def test_an_unknown_fusion_is_refused_with_the_row_id():
    text = csv_text()
    line = next(ln for ln in text.splitlines() if ln.endswith(",qkv+gate_up"))
    with pytest.raises(MemwallError, match="fused"):
        parse_published(text.replace(line, line[: -len("qkv+gate_up")] + "qkv+up", 1))


def test_tensorrt_llm_prefills_pay_the_fitted_context_cost_and_only_they():
    from memwall.parallel.published_inference import context_engine
    from memwall.predict.efficiency_data import engine_term

    cost = engine_term("tensorrt-llm-0.9", "context_s")
    ttft = next(r for r in ROWS if r.metric == "ttft_s" and r.software.startswith("TensorRT"))
    assert predict_row(ttft)[0] - predict_row(ttft, context=False)[0] == pytest.approx(cost)
    assert predict_row(ttft, "roofline") == predict_row(ttft, "roofline", context=False)
    other = next(r for r in ROWS if r.metric == "decode_tok_s" and r.software.startswith("llama"))
    assert context_engine(other) is None
    assert predict_row(other) == predict_row(other, context=False)
    with pytest.raises(MemwallError, match="known"):
        engine_term("tensorrt-llm-0.9", "sample_ns_per_vocab")


def test_context_cost_is_what_its_stated_rule_gives_on_its_fit_rows():
    """Fit rows: TensorRT-LLM 0.9 TTFT rows with an even id; value = median gap, low/high =
    quartiles (benchmarks/bench_published.py --fit)."""
    from memwall.parallel.published_inference import fit_context_cost
    from memwall.predict.efficiency_data import engine_term

    ttft = [r for r in ROWS if r.metric == "ttft_s" and r.software.startswith("TensorRT-LLM 0.9")]
    for r in ttft:
        assert (r.fitted == "yes") == (r.id % 2 == 0 and not r.excluded), r.id
    gaps, (q1, med, q3) = fit_context_cost()
    assert sorted(r.id for r, _ in gaps) == sorted(r.id for r in ttft if r.fitted == "yes")
    have = [engine_term("tensorrt-llm-0.9", "context_s", e) for e in ("low", "value", "high")]
    assert have == pytest.approx([q1, med, q3], abs=2e-6)


def test_vllm_decode_steps_pay_the_per_sequence_cost_fitted_on_another_vllm():
    """vLLM's per-sequence term (fitted on ML.ENERGY's vLLM 0.11 H100 runs, not on these rows)
    is paid by each sequence in each decode step of the ROCm vLLM 0.10 latency rows: a static
    batch's latency adds (gen_len - 1) x batch x the term (the last step ends the latency)."""
    from memwall.parallel.published_inference import sequence_engine
    from memwall.predict.efficiency_data import sample_s_per_sequence

    r = next(r for r in ROWS if r.software.startswith("vLLM") and r.batch == 128)
    assert sequence_engine(r) == "vllm-0.11"
    per = sample_s_per_sequence("vllm-0.11", 128256)
    added = predict_row(r)[0] - predict_row(r, context=False)[0]
    assert added == pytest.approx((r.gen_len - 1) * r.batch * per)
    assert all(sequence_engine(x) is None for x in ROWS if not x.software.startswith("vLLM"))
