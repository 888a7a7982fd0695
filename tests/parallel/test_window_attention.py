"""Sliding-window layers in the parallel path: a fused kernel computes only the band of a
window, a pipeline stage holds its share of the window layers, and models whose transformers
code has no fused path (GPT-OSS's sinks, Gemma 2's soft-capping) still run fused kernels in
the frameworks and engines `memwall parallel` describes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel import Layout, Options, links_for, plan
from memwall.parallel.shard import forward, shard_spec
from memwall.predict.efficiency import predict_efficiency
from memwall.predict.prompt_attention import (
    CAUSAL_WORK,
    FLASH_Q_TILE,
    attention_share,
    attention_work,
    prompt_attention_work,
)
from memwall.spec import Workload, load_model, parse_precision

BF16 = parse_precision("bf16")
H100 = get_device("h100-sxm")


def test_full_attention_layers_compute_the_causal_half():
    assert prompt_attention_work(load_model("llama-3-8b"), 8192) == CAUSAL_WORK
    # a window wider than the prompt (plus one query tile) masks nothing more than causality
    assert prompt_attention_work(load_model("mistral-7b"), 2048) == CAUSAL_WORK


def test_window_layers_compute_their_band_and_one_query_tile():
    oss = load_model("gpt-oss-120b")  # window 128 on half of its 36 layers
    assert (oss.sliding_window, oss.n_window_layers, oss.n_layers) == (128, 18, 36)
    L, width = 8192, 128 + FLASH_Q_TILE
    # entries of the band, row by row: the first `width` rows hold 1..width, the rest width each
    band = sum(min(i, width) for i in range(1, L + 1))
    windowed = CAUSAL_WORK * band / (L * (L + 1) / 2)
    assert windowed < 0.035  # about (128 + 128) / 8192 of the square
    assert prompt_attention_work(oss, L) == pytest.approx((CAUSAL_WORK + windowed) / 2)
    mistral = load_model("mistral-7b")  # every layer windowed at 4096
    assert prompt_attention_work(mistral, 32768) < prompt_attention_work(mistral, 8192) < 0.5


def test_only_a_decoder_prompt_is_causal_and_shares_are_checked():
    oss = load_model("gpt-oss-120b")
    assert attention_work(oss, "decode", 4096) == 1.0
    assert attention_work(load_model("bert-base"), "prefill", 512) == 1.0
    assert attention_work(oss, "prefill", 4096) == prompt_attention_work(oss, 4096)
    assert (attention_share(True), attention_share(False), attention_share(0.25)) == (
        0.5, 1.0, 0.25,
    )  # fmt: skip
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(MemwallError, match="attention work share"):
            attention_share(bad)


def test_the_attention_kernel_time_scales_with_the_share_it_computes():
    spec = load_model("llama-3-8b")
    ops = op_table(spec, Workload("prefill", 1, 8192), BF16, "full", True)
    attn = ops["kind"] == "attention"

    def t(causal, col="t_compute"):
        return float(predict_efficiency(ops, H100, BF16, causal=causal).ops[col][attn].sum())

    assert t(0.25) == pytest.approx(t(True) / 2, rel=1e-9)
    assert t(True) == pytest.approx(t(False) / 2, rel=1e-9)
    assert t(0.25, "time") < t(True, "time") < t(False, "time")


def test_a_window_model_trains_faster_than_the_same_model_without_its_window():
    oss = load_model("gpt-oss-120b")
    full = replace(oss, sliding_window=None, window_layers=None)
    args = ("prefill", 1, 8192, BF16, H100, True, "eager", "auto")
    a, b = forward(oss, *args), forward(full, *args)
    assert a["attention"] < 0.6 * b["attention"]  # half the layers drop to a 256-key band
    assert a["time"] < b["time"]


def test_parallel_counts_sinks_and_soft_capping_models_as_fused_kernels():
    # transformers runs GPT-OSS eagerly (scores materialised); Megatron's Transformer Engine runs
    # its sinks in cuDNN's fused attention (TE 2.9), so a training step has one attention kernel
    oss = load_model("gpt-oss-120b")
    assert op_table(oss, Workload("prefill", 1, 4096), BF16)["kind"].ne("attention").all()
    f = forward(oss, "prefill", 1, 4096, BF16, H100, True, "eager", "auto")
    assert f["attention"] > 0


def test_a_pipeline_stage_holds_its_share_of_the_window_layers():
    oss = load_model("gpt-oss-120b")
    for pp, layers, window in ((1, 36, 18), (2, 18, 9), (4, 9, 4), (36, 1, 0)):
        s = shard_spec(oss, Layout(pp=pp))
        assert (s.n_layers, s.window_layers) == (layers, window)
        assert 0 < s.kv_tokens(8192) <= layers * 8192
    assert shard_spec(load_model("mistral-7b"), Layout(pp=4)).n_window_layers == 8  # all
    llama4 = load_model("llama-4-scout-17b-16e")  # chunked layers, counted as a window
    assert shard_spec(llama4, Layout(pp=4)).n_window_layers * 4 <= llama4.n_window_layers


def test_window_model_inference_over_a_pipeline_prices_its_cache():
    # before: a stage of 9 layers kept 18 window layers, a negative KV cache, and the plan failed
    oss = load_model("gpt-oss-120b")
    o = Options("infer", 8, 8, 8192, BF16, efficiency=True)
    p = plan(oss, H100, links_for("h100-sxm"), Layout(pp=4, dp=1), o)
    one = plan(oss, get_device("h200-sxm"), links_for("h200-sxm"), Layout(dp=1), o)
    assert 0 < p.per_device["kv_cache"] < one.per_device["kv_cache"]


def test_a_pipeline_stage_of_llama_4_holds_its_share_of_nope_and_chunked_layers():
    # before: 6-layer stages kept all 12 NoPE layers, -6 rotary layers, and every plan failed
    scout = load_model("llama-4-scout-17b-16e")  # 48 layers: 12 NoPE, 36 chunked (window)
    s = shard_spec(scout, Layout(pp=8))
    assert (s.n_layers, s.nope_layers, s.n_window_layers, s.rope_layers) == (6, 2, 4, 4)
    o = Options("infer", 8, 8, 8192, BF16, efficiency=True)
    p = plan(scout, H100, links_for("h100-sxm"), Layout(pp=8, dp=1), o)
    assert p.step_time > 0 and p.per_device["kv_cache"] > 0


def test_a_window_model_s_mfu_counts_its_window_and_stays_under_one():
    # the count holds L keys per query; the kernels compute the band; MFU counted the square,
    # so Mistral-7B (window 4096) trained at 32K came out at 107% MFU
    from memwall.parallel.shard import mfu_flops
    from memwall.predict.prompt_attention import window_count_share

    mistral = load_model("mistral-7b")
    assert window_count_share(mistral, "prefill", 32768) == pytest.approx(4096 / 32768)
    assert window_count_share(mistral, "prefill", 2048) == 1.0
    assert window_count_share(mistral, "decode", 32768) == 1.0
    ops = op_table(mistral, Workload("prefill", 1, 32768), BF16, "full", True)
    attn = float(ops.loc[ops["kind"] == "attention", "flops"].sum())
    counted = float(ops["flops"].sum())
    assert mfu_flops(mistral, "prefill", 1, 32768, BF16) == pytest.approx(counted - attn * 7 / 8)
    o = Options("train", 64, 2, 32768, BF16, efficiency=True, tp_overlap=True)
    p = plan(mistral, H100, links_for("h100-sxm"), Layout(tp=2, dp=32), o)
    assert 0.3 < p.mfu < 0.8
