"""Issue 21: multi-head latent attention is counted absorbed for decode, as serving engines
(vLLM, SGLang, FlashMLA) run it, and expanded (transformers' code) on request and for prefill.

The hand counts read DeepSeek-V3's published config only (`data/models/deepseek-v3.json`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from memwall.count import op_table, totals
from memwall.spec import Workload, load_model, parse_precision, preset_config

CONTEXT = 8192
BF16 = 2


def _absorbed_decode(cfg: dict[str, Any], context: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one absorbed decode step at batch 1, bf16, by hand."""
    h, heads, keys = cfg["hidden_size"], cfg["num_attention_heads"], context + 1
    ql, kvl, rope = cfg["q_lora_rank"], cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
    nope, v = cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    layers, dense = cfg["num_hidden_layers"], cfg["first_k_dense_replace"]
    experts, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    shared, f_moe = cfg["n_shared_experts"], cfg["moe_intermediate_size"]
    f_dense, vocab = cfg["intermediate_size"], cfg["vocab_size"]
    attn_w = (
        h * ql  # q_a_proj
        + ql * heads * (nope + rope)  # q_b_proj
        + heads * nope * kvl  # W_UK absorbed into the query
        + h * (kvl + rope)  # kv_a_proj: the latent and the shared rotated key
        + heads * kvl * v  # W_UV: each head's latent output to its value width
        + heads * v * h  # o_proj
    )
    attn_keys = heads * (kvl + rope) * keys + heads * kvl * keys  # scores, values over latents
    dense_w = 3 * h * f_dense
    moe_w_active = (k + shared) * 3 * h * f_moe + h * experts  # touched experts + router
    moe = layers - dense
    macs = layers * (attn_w + attn_keys) + dense * dense_w + moe * moe_w_active + h * vocab
    weights = layers * attn_w + dense * dense_w + moe * moe_w_active + h * vocab + h  # + 1 row
    cache = layers * keys * (kvl + rope)
    return 2.0 * macs, BF16 * (weights + cache)


def _expanded_decode_flops(cfg: dict[str, Any], context: int) -> float:
    """FLOPs of one expanded decode step (transformers): every cached latent up-projected."""
    h, heads, keys = cfg["hidden_size"], cfg["num_attention_heads"], context + 1
    ql, kvl, rope = cfg["q_lora_rank"], cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
    nope, v = cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    layers, dense = cfg["num_hidden_layers"], cfg["first_k_dense_replace"]
    per_layer = (
        h * ql
        + ql * heads * (nope + rope)
        + h * (kvl + rope)
        + keys * kvl * heads * (nope + v)  # kv_b_proj over every key
        + heads * keys * (nope + rope + v)  # scores and values over full heads
        + heads * v * h
    )
    moe_active = (cfg["num_experts_per_tok"] + cfg["n_shared_experts"]) * 3 * h
    moe_active = moe_active * cfg["moe_intermediate_size"] + h * cfg["n_routed_experts"]
    mlp = dense * 3 * h * cfg["intermediate_size"] + (layers - dense) * moe_active
    return 2.0 * (layers * per_layer + mlp + h * cfg["vocab_size"])


@pytest.fixture(scope="module")
def v3():
    return load_model("deepseek-v3"), preset_config("deepseek-v3")


def test_absorbed_decode_matches_the_hand_count(v3):
    spec, cfg = v3
    t = totals(op_table(spec, Workload("decode", 1, CONTEXT), parse_precision("bf16")))
    flops, nbytes = _absorbed_decode(cfg, CONTEXT)
    assert t["flops"] == pytest.approx(flops, rel=0.02)
    assert t["bytes"] == pytest.approx(nbytes, rel=0.02)
    assert 0.19e12 < t["flops"] < 0.23e12 and 70e9 < t["bytes"] < 78e9  # the figures


def test_expanded_is_transformers_code_and_an_option(v3):
    spec, cfg = v3
    wl, bf16 = Workload("decode", 1, CONTEXT), parse_precision("bf16")
    expanded = op_table(spec, wl, bf16, mla="expanded")
    absorbed = op_table(spec, wl, bf16, mla="absorbed")
    assert totals(expanded)["flops"] == pytest.approx(_expanded_decode_flops(cfg, CONTEXT), 0.02)
    assert totals(expanded)["flops"] > 50 * totals(absorbed)["flops"]
    # the same latent cache is read, once, in both forms
    assert totals(expanded)["bytes_kv"] == totals(absorbed)["bytes_kv"]
    # every weight is read once in both forms: W_UK and W_UV are kv_b_proj's halves
    assert totals(expanded)["bytes_weight"] == pytest.approx(totals(absorbed)["bytes_weight"])
    assert expanded.attrs["mla_form"] == "expanded" and absorbed.attrs["mla_form"] == "absorbed"
    assert {"q_absorb", "v_up_proj"} <= set(absorbed["name"])
    assert "kv_b_proj" in set(expanded["name"]) and "kv_b_proj" not in set(absorbed["name"])


@pytest.mark.parametrize(
    ("phase", "form"),
    [("decode", "absorbed"), ("generate", "absorbed"), ("prefill", "expanded")],
)
def test_default_form_by_phase(phase, form):
    spec = load_model("deepseek-v2-lite")  # no q_lora_rank: one q_proj
    wl = Workload(phase, 1, 256, 4 if phase == "generate" else 0)
    assert op_table(spec, wl).attrs["mla_form"] == form


def test_absorbed_v2_lite_flops_per_key():
    """Per extra cached token the absorbed form adds 2 x heads x (2 x kv_lora + rope) FLOPs per
    layer (scores and values over the latent) and the softmax's 5 per score."""
    spec, cfg = load_model("deepseek-v2-lite"), preset_config("deepseek-v2-lite")

    def flops(ctx: int) -> float:
        return totals(op_table(spec, Workload("decode", 1, ctx)))["flops"]

    heads, kvl, rope = cfg["num_attention_heads"], cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
    per_key = cfg["num_hidden_layers"] * heads * (2 * (2 * kvl + rope) + 5)
    assert (flops(5000) - flops(4000)) / 1000 == pytest.approx(per_key, rel=1e-9)


def test_non_mla_models_ignore_the_option():
    t = op_table(load_model("gpt2"), Workload("decode", 1, 64), mla="absorbed")
    assert t.attrs["mla_form"] is None


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def run():
    from typer.testing import CliRunner

    from memwall.cli import app

    runner = CliRunner()
    return lambda *a: runner.invoke(app, ["analyze", *a])


def test_cli_names_the_form_and_takes_the_option(run):
    args = ("deepseek-v3", "--phase", "decode", "--seq-len", str(CONTEXT), "--precision", "bf16")
    default = json.loads(run(*args, "--format", "json").stdout)
    expanded = json.loads(run(*args, "--mla", "expanded", "--format", "json").stdout)
    assert default["mla_form"] == "absorbed" and expanded["mla_form"] == "expanded"
    assert expanded["totals"]["flops"] > 50 * default["totals"]["flops"]
    assert any("absorbed" in n for n in default["notes"])
    assert "moe_routing" in default and "independent" in default["moe_routing"]
    table = run(*args).stdout
    assert "latent attention counted absorbed" in table and "uniform top-k" in table


def test_cli_refuses_what_does_not_apply(run):
    r = run("gpt2", "--mla", "absorbed")
    assert r.exit_code != 0 and "multi-head latent attention" in str(r.exception or r.output)
    r = run("deepseek-v2-lite", "--engine", "trace", "--phase", "decode", "--mla", "absorbed")
    assert r.exit_code != 0 and "expands" in str(r.exception or r.output)


def test_models_without_mla_or_moe_carry_neither_field(run):
    out = json.loads(run("llama-3-8b", "--phase", "decode", "--format", "json").stdout)
    assert "mla_form" not in out and "moe_routing" not in out
    moe = json.loads(run("mixtral-8x7b", "--phase", "decode", "--format", "json").stdout)
    assert "mla_form" not in moe and "upper bound" in moe["moe_routing"]
