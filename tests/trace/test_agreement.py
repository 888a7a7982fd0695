"""Acceptance: the closed form (`memwall.count`) and the trace of the real model agree.

Real CPU tensors at fp32, batch 1, random weights. Totals must agree (FLOPs within 1%, bytes
within 5%); the trace's matmul FLOPs must equal torch's FlopCounterMode on the same run.
On failure the message prints both tables, row by row, to show where they part.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memwall.count import op_table, totals  # noqa: E402
from memwall.spec import Workload, load_model, spec_from_config  # noqa: E402
from memwall.trace import trace_config, trace_table  # noqa: E402

# A small Llama-architecture model: grouped-query attention (8 query heads share 2 K/V heads),
# SwiGLU, RMSNorm, rotary positions, untied LM head.
SMALL_LLAMA = dict(
    model_type="llama",
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=3,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=4096,
    max_position_embeddings=1024,
    tie_word_embeddings=False,
)

CASES = [
    ("bert-base", Workload("encode", 1, 128)),
    ("bert-base", Workload("encode", 1, 512)),
    ("gpt2", Workload("prefill", 1, 256)),
    ("gpt2", Workload("decode", 1, 256)),
    ("small-llama", Workload("prefill", 1, 128)),
    ("small-llama", Workload("decode", 1, 200)),
]
SHOW = ["name", "count", "flops", "matmul_flops", "bytes_read", "bytes_written", "bytes"]


def _tables(name: str, wl: Workload):
    if name == "small-llama":
        spec = spec_from_config(SMALL_LLAMA, name)
        traced = trace_config(SMALL_LLAMA, wl, device="cpu", name=name)
    else:
        spec = load_model(name)
        traced = trace_table(spec, wl, device="cpu")
    return op_table(spec, wl, convention="full"), traced


def _explain(closed, traced) -> str:
    return "\nclosed form:\n" + closed[SHOW].to_string() + "\ntrace:\n" + traced[SHOW].to_string()


@pytest.mark.parametrize(
    ("name", "wl"), CASES, ids=[f"{n}-{w.phase}-{w.seq_len}" for n, w in CASES]
)
def test_closed_form_and_trace_agree(name, wl):
    closed, traced = _tables(name, wl)
    c, t = totals(closed), totals(traced)
    why = _explain(closed, traced)
    assert t["flops"] == pytest.approx(c["flops"], rel=0.01), why
    assert t["bytes"] == pytest.approx(c["bytes"], rel=0.05), why
    # both engines count the same matmuls and attention products
    assert t["matmul_flops"] == pytest.approx(c["matmul_flops"], rel=1e-9), why
    # and they are what torch's own counter saw on the traced run
    assert t["matmul_flops"] == pytest.approx(traced.attrs["flop_counter_flops"], rel=1e-9)
    assert traced.attrs["coverage"] == {}, "every op of these models has a formula"
    assert traced.attrs["device"] == "cpu" and traced.attrs["engine"] == "trace"
    # the weights are read once per step in both, whatever the row names
    assert t["bytes_weight"] == pytest.approx(c["bytes_weight"], rel=0.01), why


# Every bundled preset against its real HF module on the meta device (prefill 2 x 128 and
# decode at 300): tests/test_agreement_presets.py.


# ------------------------------------------------------- issue 10: what transformers builds

SMALL = dict(
    hidden_size=128, intermediate_size=344, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, vocab_size=1000, max_position_embeddings=8192,
)  # fmt: skip


def _meta_params(cfg: dict) -> int:
    from memwall.trace import build_model

    return sum(p.numel() for p in build_model(cfg, device="meta").parameters())


OPT_SMALL = dict(
    model_type="opt", hidden_size=128, ffn_dim=512, num_hidden_layers=3, num_attention_heads=4,
    vocab_size=1000, max_position_embeddings=256, word_embed_proj_dim=128,
)  # fmt: skip


@pytest.mark.parametrize(
    "cfg",
    [
        {**OPT_SMALL, "layer_norm_elementwise_affine": False},
        dict(model_type="qwen2", **SMALL, attention_bias=False),
        dict(model_type="mistral", **SMALL),
        dict(model_type="gpt2", n_embd=128, n_layer=2, n_head=4, vocab_size=1000, n_positions=64),
        dict(model_type="qwen3", **SMALL, head_dim=64, attention_bias=True),
        dict(model_type="phi3", **SMALL, pad_token_id=0),
        dict(model_type="gpt_neox", **SMALL, use_parallel_residual=False, attention_bias=False),
    ],
    ids=[
        "opt-no-affine",
        "qwen2-attention_bias-false",
        "mistral",
        "gpt2",
        "qwen3",
        "phi3",
        "gpt_neox-sequential",
    ],  # fmt: skip
)
def test_parameter_count_matches_the_model_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _meta_params(cfg)


def test_qwen2_window_layers_agree_with_the_trace():
    cfg = dict(
        model_type="qwen2", **SMALL, use_sliding_window=True, sliding_window=64,
        max_window_layers=2,
    )  # fmt: skip
    spec = spec_from_config(cfg, "small-qwen2")
    wl = Workload("decode", 1, 300)
    closed = totals(op_table(spec, wl))
    traced = totals(trace_config(cfg, wl, device="meta", name="small-qwen2"))
    by_hand = (2 * 301 + 2 * 64) * 2 * 2 * 32 * 4  # K and V, 2 heads x 32, fp32
    assert closed["bytes_kv"] == by_hand
    assert traced["bytes_kv"] == pytest.approx(by_hand, rel=0.01)
