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
    by = {r.fused: r for r in ROWS}
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
