"""Today's LLM architectures (issue 13 item 4): Gemma 2/3, Qwen3-MoE, DeepSeek, Falcon, GPT-OSS.

Parameters equal those of the model transformers builds from the same config on the meta device;
the decode KV cache is checked against a hand count; soft-capping, sandwich norms and the
local/global layer pattern are counted, and a config feature memwall does not model is refused.
"""

from __future__ import annotations

import pytest

from memwall.count import matmul_params, op_table, totals, vocab_params
from memwall.errors import MemwallError
from memwall.spec import Workload, load_model, preset_config, spec_from_config

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402
import transformers  # noqa: E402

from memwall.trace import build_model, hf_config, trace_config, trace_table  # noqa: E402

SMALL = dict(
    hidden_size=128, intermediate_size=344, num_hidden_layers=6, num_attention_heads=4,
    num_key_value_heads=2, head_dim=64, vocab_size=1000, max_position_embeddings=8192,
)  # fmt: skip

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow
FP32 = 4


def _meta_params(cfg: dict) -> int:
    return sum(p.numel() for p in build_model(cfg, device="meta").parameters())


@pytest.mark.parametrize(
    "cfg",
    [
        preset_config("gemma-2-2b"),
        preset_config("gemma-3-1b"),
        dict(model_type="gemma2", **SMALL, tie_word_embeddings=False),
        dict(model_type="gemma3_text", **SMALL, attention_bias=True),
    ],
    ids=["gemma-2-2b", "gemma-3-1b", "gemma2-untied", "gemma3-attention_bias"],
)
def test_parameters_equal_what_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _meta_params(cfg)


def test_published_parameter_counts():
    # Gemma 2 2B: 2,614,341,888; Gemma 3 1B: 999,885,952 (the model cards' safetensors totals)
    assert load_model("gemma-2-2b").n_params() == 2_614_341_888
    assert load_model("gemma-3-1b").n_params() == 999_885_952


def _kv_by_hand(layers_full: int, layers_window: int, window: int, keys: int, kv_heads, hd):
    tokens = layers_full * keys + layers_window * min(keys, window)
    return tokens * 2 * kv_heads * hd * FP32  # K and V


@pytest.mark.parametrize(
    ("preset", "full", "local", "window", "kv_heads"),
    [("gemma-2-2b", 13, 13, 4096, 4), ("gemma-3-1b", 4, 22, 512, 1)],
)
@pytest.mark.parametrize("context", [300, 6000])
def test_decode_kv_cache_bytes_by_hand(preset, full, local, window, kv_heads, context):
    spec = load_model(preset)
    assert (spec.n_layers - spec.n_window_layers, spec.n_window_layers) == (full, local)
    got = totals(op_table(spec, Workload("decode", 1, context)))["bytes_kv"]
    assert got == _kv_by_hand(full, local, window, context + 1, kv_heads, 256)


def test_gemma3_kv_cache_agrees_with_the_trace():
    """Gemma 3 runs SDPA: the traced step reads exactly the cache the closed form counts."""
    cfg = dict(model_type="gemma3_text", **SMALL, sliding_window=64)
    wl = Workload("decode", 1, 300)
    closed = totals(op_table(spec_from_config(cfg, "g3"), wl))
    traced = totals(trace_config(cfg, wl, device="meta", name="g3"))
    by_hand = _kv_by_hand(1, 5, 64, 301, 2, 64)
    assert closed["bytes_kv"] == by_hand
    assert traced["bytes_kv"] == pytest.approx(by_hand, rel=0.01)
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)


def test_soft_capping_sandwich_norms_and_embedding_scale_are_counted():
    g2 = spec_from_config(dict(model_type="gemma2", **SMALL), "g2")
    no_caps = dict(attn_logit_softcapping=None, final_logit_softcapping=None)
    plain = spec_from_config(dict(model_type="gemma2", **SMALL, **no_caps))
    wl = Workload("prefill", 1, 64)
    t = op_table(g2, wl).set_index("name")
    p = op_table(plain, wl).set_index("name")
    assert t.loc["logit_softcap", "flops"] == 3 * 64 * 1000  # divide, tanh, multiply per logit
    assert "logit_softcap" not in p.index
    scores = 4 * 64 * 64 * 6  # heads x Lq x Lkv x layers
    assert t.loc["attn_score", "flops"] - p.loc["attn_score", "flops"] == 3 * scores
    # eager attention (transformers has no SDPA path for Gemma 2): scores are materialised
    assert "softmax" in t.index and "attention" not in t.index
    # two norms per residual add (after the branch, before the next one)
    assert (
        g2.layer_params() - 4 * 128
        == spec_from_config(
            dict(model_type="gemma3_text", **SMALL, attention_bias=False)
        ).layer_params()
        - 4 * 128
        - 2 * 64
    )  # Gemma 3 adds only the q/k norms


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ({"rope_scaling": {"rope_type": "yarn2", "factor": 8.0}}, "rope_type"),
        ({"attn_logit_softcapping": "50"}, "attn_logit_softcapping"),
        ({"layer_types": ["full_attention"] * 3}, "layer_types"),
    ],
)
def test_unsupported_features_are_refused_in_one_line(extra, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config(dict(model_type="gemma3_text", **SMALL, **extra))
    assert "\n" not in str(e.value)


def test_layer_pattern_from_config():
    cfg = dict(model_type="gemma3_text", **SMALL, sliding_window_pattern=3)
    assert spec_from_config(cfg).n_window_layers == 4  # layers 3 and 6 are global
    cfg = dict(model_type="gemma2", **SMALL)
    assert spec_from_config(cfg).n_window_layers == 3  # every 2nd layer is global
    types = ["sliding_attention", "full_attention", "full_attention"] * 2
    assert spec_from_config({**cfg, "layer_types": types}).n_window_layers == 2


# ---------------------------------------------------------------- Qwen3-MoE

MOE = dict(
    model_type="qwen3_moe", hidden_size=128, intermediate_size=344, moe_intermediate_size=96,
    num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
    num_experts=16, num_experts_per_tok=4, vocab_size=1000, max_position_embeddings=4096,
)  # fmt: skip


@pytest.mark.parametrize(
    "cfg", [preset_config("qwen3-30b-a3b"), MOE], ids=["qwen3-30b-a3b", "small-qwen3-moe"]
)
def test_qwen3_moe_parameters_equal_what_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _meta_params(cfg)


def test_qwen3_moe_published_counts_and_kv_by_hand():
    spec = load_model("qwen3-30b-a3b")
    # model card: 30.5B parameters, 3.3B activated
    assert round(spec.n_params() / 1e9, 1) == 30.5
    assert round(spec.active_params_per_token() / 1e9, 1) == 3.4  # 3.35B; the card rounds down
    got = totals(op_table(spec, Workload("decode", 1, 300)))["bytes_kv"]
    assert got == 48 * 301 * 2 * 4 * 128 * FP32  # layers x keys x (K, V) x kv heads x head_dim


@pytest.mark.parametrize("wl", [Workload("prefill", 2, 64), Workload("decode", 1, 300)])
def test_qwen3_moe_closed_form_and_trace_agree(wl):
    closed = totals(op_table(spec_from_config(MOE, "moe"), wl))
    traced = totals(trace_config(MOE, wl, device="meta", name="moe"))
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)


def test_qwen3_moe_preset_decode_agrees_with_the_trace():
    spec = load_model("qwen3-30b-a3b")
    wl = Workload("decode", 1, 300)
    closed = totals(op_table(spec, wl))
    traced = totals(trace_table(spec, wl, device="meta"))
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)


@pytest.mark.parametrize(
    ("extra", "msg"),
    [({"decoder_sparse_step": 2}, "decoder_sparse_step"), ({"mlp_only_layers": [0]}, "mlp_only")],
)
def test_qwen3_moe_dense_layers_are_refused(extra, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config({**MOE, **extra})
    assert "\n" not in str(e.value) and "--engine trace" in str(e.value)


# ---------------------------------------------------------------- DeepSeek (MLA)

DS = dict(
    model_type="deepseek_v2", hidden_size=128, intermediate_size=344, moe_intermediate_size=64,
    num_hidden_layers=3, num_attention_heads=4, kv_lora_rank=32, q_lora_rank=None,
    qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32, n_routed_experts=8,
    n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1, vocab_size=1000,
    max_position_embeddings=4096,
)  # fmt: skip
DS3 = {**DS, "model_type": "deepseek_v3", "q_lora_rank": 48, "n_group": 2, "topk_group": 1}


@pytest.mark.parametrize(
    "cfg",
    [preset_config("deepseek-v2-lite"), DS, DS3, {**DS3, "attention_bias": True}],
    ids=["deepseek-v2-lite", "small-v2", "small-v3", "small-v3-attention_bias"],
)
def test_deepseek_parameters_equal_what_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _meta_params(cfg)


def test_deepseek_published_counts():
    # model cards: V2-Lite 15.7B total; V3 671B total (MTP module excluded), 37B activated
    assert round(load_model("deepseek-v2-lite").n_params() / 1e8) == 157
    v3 = load_model("deepseek-v3")
    assert round(v3.n_params() / 1e9) == 671
    assert round(v3.active_params_per_token() / 1e9) in (37, 38)  # 37.55B


@pytest.mark.parametrize(("preset", "layers"), [("deepseek-v2-lite", 27), ("deepseek-v3", 61)])
def test_mla_decode_reads_the_latent_cache(preset, layers):
    """Stored and read per token and layer: the 512-wide latent and the 64-wide rotated key."""
    spec = load_model(preset)
    t = op_table(spec, Workload("decode", 1, 300), mla="expanded")  # transformers' form
    assert t["bytes_kv"].sum() == layers * 301 * (512 + 64) * FP32
    # the up-projection of every cached latent is work, not cache traffic
    up = t.set_index("name").loc["kv_b_proj"]
    assert up["matmul_flops"] == 2 * 301 * 512 * spec.n_heads * (128 + 128) * layers


@pytest.mark.parametrize("cfg", [DS, DS3], ids=["v2", "v3"])
@pytest.mark.parametrize("wl", [Workload("prefill", 1, 32), Workload("decode", 1, 100)])
def test_deepseek_closed_form_and_trace_agree(cfg, wl):
    closed = totals(op_table(spec_from_config(cfg, "ds"), wl, mla="expanded"))  # as traced
    traced = totals(trace_config(cfg, wl, device="meta", name="ds"))
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)
    assert traced["bytes_weight"] == pytest.approx(closed["bytes_weight"], rel=0.01)


def test_deepseek_v3_preset_decode_agrees_with_the_trace():
    spec = load_model("deepseek-v3")
    wl = Workload("decode", 1, 300)
    closed = totals(op_table(spec, wl, mla="expanded"))  # the trace runs transformers' form
    traced = totals(trace_table(spec, wl, device="meta"))
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ({"mlp_bias": True}, "mlp_bias"),
        ({"rope_scaling": {"type": "yarn3", "factor": 40}}, "rope_type"),
        ({"kv_lora_rank": 0}, "kv_lora_rank"),
    ],
)
def test_deepseek_unsupported_features_are_refused(extra, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config({**DS, **extra})
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- Falcon

FALCON = dict(
    model_type="falcon", hidden_size=128, num_hidden_layers=3, num_attention_heads=8,
    vocab_size=1000,
)  # fmt: skip
FALCON_VARIANTS = {
    "multi_query": FALCON,
    "multi_head_sequential": {**FALCON, "multi_query": False, "parallel_attn": False},
    "new_arch": {**FALCON, "new_decoder_architecture": True, "num_kv_heads": 2, "bias": True},
    "new_arch_one_norm": {**FALCON, "new_decoder_architecture": True, "num_kv_heads": 2,
                          "num_ln_in_parallel_attn": 1, "tie_word_embeddings": False},
}  # fmt: skip


@pytest.mark.parametrize(
    "cfg",
    [preset_config("falcon-7b"), preset_config("falcon-40b"), *FALCON_VARIANTS.values()],
    ids=["falcon-7b", "falcon-40b", *FALCON_VARIANTS],
)
def test_falcon_parameters_equal_what_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _meta_params(cfg)


@pytest.mark.parametrize(
    ("preset", "layers", "cached_heads"), [("falcon-7b", 32, 1), ("falcon-40b", 60, 8)]
)
def test_falcon_kv_cache_as_transformers_caches_it(preset, layers, cached_heads):
    """Falcon-7B: one K/V head (multi-query). Falcon-40B: its 8 projected K/V heads, as
    transformers (from 5.25) and serving engines cache them (older transformers cached copies
    for all 128 query heads; only the trace engine still builds that cache for them)."""
    t = totals(op_table(load_model(preset), Workload("decode", 1, 300)))
    assert t["bytes_kv"] == layers * 301 * 2 * cached_heads * 64 * FP32


def _sdpa_extras(cfg: dict, wl: Workload) -> float:
    """Bytes transformers' Falcon (new architecture) prefill reads that a serving kernel does
    not: SDPA gets K/V expanded to every query head and an explicit float causal mask."""
    if wl.phase != "prefill" or not cfg.get("new_decoder_architecture"):
        return 0.0
    heads, kv = cfg["num_attention_heads"], cfg["num_kv_heads"]
    head_dim = cfg["hidden_size"] // heads
    per_layer = 2 * wl.batch * wl.seq_len * (heads - kv) * head_dim + wl.batch * wl.seq_len**2
    return cfg["num_hidden_layers"] * per_layer * FP32


@pytest.mark.parametrize("variant", list(FALCON_VARIANTS))
@pytest.mark.parametrize("wl", [Workload("prefill", 2, 32), Workload("decode", 1, 100)])
def test_falcon_closed_form_and_trace_agree(variant, wl):
    cfg = FALCON_VARIANTS[variant]
    closed = totals(op_table(spec_from_config(cfg, variant), wl))
    traced = totals(trace_config(cfg, wl, device="meta", name=variant))
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"] + _sdpa_extras(cfg, wl), rel=0.05)
    if wl.phase == "decode":  # (prefill reads its fresh K/V: cache bytes in the trace only)
        assert traced["bytes_kv"] == pytest.approx(closed["bytes_kv"], rel=0.01)


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ({"alibi": True}, "alibi"),
        ({"apply_residual_connection_post_layernorm": True}, "post_layernorm"),
        ({"new_decoder_architecture": True, "parallel_attn": False}, "parallel_attn"),
    ],
)
def test_falcon_unsupported_features_are_refused(extra, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config({**FALCON, **extra})
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- GPT-OSS

OSS = dict(
    model_type="gpt_oss", hidden_size=128, intermediate_size=96, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=4, head_dim=32, num_local_experts=8,
    num_experts_per_tok=2, vocab_size=1000, sliding_window=4096,
)  # fmt: skip


def _hf_meta_params(cfg: dict) -> int:
    """The bare transformers model, as transformers builds it (no memwall routing patched in)."""
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config(cfg))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "cfg",
    [
        preset_config("gpt-oss-20b"),
        preset_config("gpt-oss-120b"),
        OSS,
        {**OSS, "attention_bias": False},
    ],
    ids=["gpt-oss-20b", "gpt-oss-120b", "small", "small-no-attention-bias"],
)
def test_gpt_oss_parameters_equal_what_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _hf_meta_params(cfg)


def test_gpt_oss_published_counts_and_kv_by_hand():
    spec = load_model("gpt-oss-20b")
    # model card: 21B parameters, 3.6B active (without the 0.58B embedding table)
    assert round(spec.n_params() / 1e9) == 21
    embed = spec.vocab_size * spec.d_model
    assert round((spec.active_params_per_token() - embed) / 1e8) == 36
    assert (spec.n_window_layers, spec.sliding_window) == (12, 128)
    big = load_model("gpt-oss-120b")  # model card: 117B parameters, 5.1B active
    assert round(big.n_params() / 1e9) == 117
    assert round((big.active_params_per_token() - embed) / 1e8) in (51, 52)  # 5.17B
    got = totals(op_table(spec, Workload("decode", 1, 300)))["bytes_kv"]
    assert got == (12 * 301 + 12 * 128) * 2 * 8 * 64 * FP32  # full + sliding layers


@pytest.mark.parametrize("wl", [Workload("prefill", 1, 32), Workload("decode", 1, 100)])
def test_gpt_oss_closed_form_and_trace_agree_on_cpu(wl):
    """Traced on cpu with its real, value-dependent routing; K/V heads = heads, as eager
    attention's K/V repeat for GQA is not counted."""
    closed = totals(op_table(spec_from_config(OSS, "oss"), wl))
    traced = totals(trace_config(OSS, wl, device="cpu", name="oss"))
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)


def test_gpt_oss_preset_builds_on_meta_with_balanced_routing():
    """Every layer's experts get memwall's count-routed forward (its layout: (E, H, 2I) with
    biases); the meta agreement is checked in tests/test_agreement_presets.py."""
    model = build_model(preset_config("gpt-oss-20b"), device="meta")
    routed = [m for m in model.modules() if type(m).__name__ == "GptOssExperts"]
    assert len(routed) == 24 and all("forward" in vars(m) for m in routed)


# ---------------------------------------------------------------- what a quantiser converts

NEW_PRESETS = [
    "gemma-2-2b", "gemma-3-1b", "qwen3-30b-a3b", "deepseek-v2-lite", "falcon-40b", "gpt-oss-20b",
]  # fmt: skip


@pytest.mark.parametrize("preset", NEW_PRESETS)
def test_matmul_and_vocabulary_parameters_match_the_built_model(preset):
    """Integer formats quantize the layers' weight matrices (3-D expert tensors included):
    biases, norms, sinks and the vocabulary matrices are not among them."""
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config(preset_config(preset)))
    mats = vocab = 0
    for name, p in model.named_parameters():
        if "embed" in name or "lm_head" in name:
            vocab += p.numel()
        elif p.ndim >= 2 and not any(k in name for k in ("bias", "norm", "sinks")):
            mats += p.numel()
    spec = load_model(preset)
    assert (matmul_params(spec), vocab_params(spec)) == (mats, vocab)
