"""Model configs are data: validated field by field, with one clear error for each mistake."""

from __future__ import annotations

import json

import pytest

from memwall.errors import MemwallError
from memwall.spec import (
    Workload,
    load_model,
    parse_precision,
    preset_config,
    preset_names,
    spec_from_config,
)

# Parameter counts published with the models (model cards / papers), in millions.
PUBLISHED_PARAMS_M = {
    "bert-base": 110,
    "bert-large": 340,
    "gpt2": 124,
    "gpt2-medium": 355,
    "gpt2-large": 774,
    "gpt2-xl": 1558,
    "opt-1.3b": 1300,
    "llama-2-7b": 6740,
    "llama-2-13b": 13000,
    "llama-2-70b": 69000,
    "llama-3-8b": 8030,
    "llama-3-70b": 70600,
    "mistral-7b": 7240,
    "mixtral-8x7b": 46700,
    "qwen2.5-7b": 7610,
    "qwen3-8b": 8200,
    "phi-3-mini": 3821,
    "pythia-160m": 162.322944,
    "pythia-1b": 1011.781632,
}


def test_all_presets_bundled():
    assert set(PUBLISHED_PARAMS_M) <= set(preset_names())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_preset_parameter_counts_match_published(name):
    s = load_model(name)
    assert s.n_params() / 1e6 == pytest.approx(PUBLISHED_PARAMS_M[name], rel=0.03)
    assert "_source" in preset_config(name)


def test_mixtral_active_parameters():
    s = load_model("mixtral-8x7b")
    assert s.is_moe and s.experts_per_token == 2
    assert s.active_params_per_token() / 1e9 == pytest.approx(12.9, rel=0.02)


def test_family_features():
    llama3 = load_model("llama-3-8b")
    assert (llama3.n_kv_heads, llama3.gated_mlp, llama3.norm, llama3.position) == (
        8,
        True,
        "rmsnorm",
        "rotary",
    )
    assert not llama3.tied_embeddings
    gpt2 = load_model("gpt2")
    assert gpt2.tied_embeddings and gpt2.fused_qkv and gpt2.d_ff == 3072 and not gpt2.gated_mlp
    assert load_model("qwen2.5-7b").qkv_bias
    assert not load_model("bert-base").is_decoder


def test_config_file_path(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(preset_config("gpt2")))
    assert load_model(str(p)).n_params() == load_model("gpt2").n_params()
    assert load_model(str(tmp_path)).d_model == 768  # a folder holding config.json


BAD_CONFIGS = [
    ({"model_type": "llama"}, "missing required field 'hidden_size'"),
    ({"hidden_size": 64}, "model_type"),
    ({"model_type": "bart", "hidden_size": 64}, "unsupported model_type"),
    ({**preset_config("gpt2"), "n_embd": 770}, "must divide the model width"),
    ({**preset_config("gpt2"), "n_layer": 2.5}, "must be an integer"),
    ({**preset_config("gpt2"), "n_layer": -4}, "between 1 and"),
    ({**preset_config("gpt2"), "n_head": "12"}, "must be an integer"),
    ({**preset_config("llama-3-8b"), "num_key_value_heads": 7}, "must divide attention heads"),
    ({**preset_config("llama-3-8b"), "hidden_act": "os.system"}, "unsupported activation"),
    ([1, 2, 3], "JSON object"),
]


@pytest.mark.parametrize("cfg,msg", BAD_CONFIGS)
def test_bad_configs_raise_one_clear_error(cfg, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config(cfg)
    assert "\n" not in str(e.value)


def test_unknown_preset_suggests_closest():
    with pytest.raises(MemwallError, match="did you mean llama-3-8b"):
        load_model("llama3-8b")


def test_config_file_not_json(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{'model_type': 'gpt2', __import__('os')}")
    with pytest.raises(MemwallError, match="not valid JSON"):
        load_model(str(p))
    p.write_text('{"model_type": "gpt2", "n_embd": NaN}')
    with pytest.raises(MemwallError, match="NaN"):
        load_model(str(p))


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"phase": "decoding"}, "unknown phase"),
        ({"phase": "prefill", "seq_len": 10**12}, "between 0 and"),
        ({"phase": "prefill", "batch": 0}, "batch must be between 1"),
        ({"phase": "prefill", "batch": 2.5}, "must be an integer"),
        ({"phase": "prefill", "seq_len": 0}, "needs seq-len >= 1"),
        ({"phase": "generate", "gen_len": 0}, "needs gen-len >= 1"),
    ],
)
def test_bad_workloads(kw, msg):
    with pytest.raises(MemwallError, match=msg):
        Workload(**kw)


def test_precisions():
    assert parse_precision("bf16").compute_dtype == "bf16"
    assert parse_precision("fp16").compute_dtype == "fp16"
    p = parse_precision("4/16/8", group_size=128)
    assert (p.weight_bits, p.act_bits, p.kv_bits) == (4, 16, 8)
    assert p.weight_bytes == 0.5 + 2 / 128 and p.kv_bytes == 1 + 2 / 128
    assert parse_precision("int8").compute_dtype == "int8"
    for bad in ("int3", "5/16/16", "fp8x", "4/16"):
        with pytest.raises(MemwallError):
            parse_precision(bad)


# ---------------------------------------------------------------- issue 10: strict config values

GPT2 = preset_config("gpt2")
LLAMA = preset_config("llama-3-8b")
MISTRAL = preset_config("mistral-7b")
QWEN = preset_config("qwen2.5-7b")
OPT = preset_config("opt-1.3b")
BERT = preset_config("bert-base")

STRICT = [
    ({**GPT2, "layer_norm_epsilon": "abc"}, "'layer_norm_epsilon' must be a finite number"),
    ({**GPT2, "layer_norm_epsilon": "1e-5"}, "'layer_norm_epsilon' must be a finite number"),
    ({**GPT2, "layer_norm_epsilon": True}, "'layer_norm_epsilon' must be a finite number"),
    ({**GPT2, "layer_norm_epsilon": [1e-5]}, "'layer_norm_epsilon' must be a finite number"),
    ({**GPT2, "layer_norm_epsilon": -1e-5}, "'layer_norm_epsilon' must be a finite number above 0"),
    ({**LLAMA, "rms_norm_eps": 0}, "'rms_norm_eps' must be a finite number above 0"),
    ({**LLAMA, "rope_theta": -1.0}, "'rope_theta' must be a finite number above 0"),
    ({**LLAMA, "rope_theta": "big"}, "'rope_theta' must be"),
    ({**BERT, "layer_norm_eps": {"a": 1}}, "'layer_norm_eps' must be"),
    ({**GPT2, "tie_word_embeddings": "false"}, "'tie_word_embeddings' must be true or false"),
    ({**OPT, "do_layer_norm_before": "true"}, "'do_layer_norm_before' must be true or false"),
    ({**OPT, "enable_bias": 0}, "'enable_bias' must be true or false"),
    ({**BERT, "add_pooling_layer": "no"}, "'add_pooling_layer' must be true or false"),
    ({**MISTRAL, "sliding_window": "16"}, "'sliding_window' must be null or an integer"),
    ({**MISTRAL, "sliding_window": True}, "'sliding_window' must be null or an integer"),
    ({**MISTRAL, "sliding_window": 2**200}, "'sliding_window' must be null or an integer"),
    ({**MISTRAL, "sliding_window": 0}, "'sliding_window' must be null or an integer"),
    ({**GPT2, "n_layer": True}, "'n_layer' must be an integer"),
    ({**GPT2, "n_embd": 768.0}, "'n_embd' must be an integer"),
    ({**GPT2, "model_type": 5}, "'model_type' must be a string, got int 5"),
    ({**GPT2, "model_type": ["gpt2"]}, "'model_type' must be a string"),
    ({**GPT2, "add_cross_attention": True}, "'add_cross_attention' is true: not supported"),
    ({**OPT, "word_embed_proj_dim": 512}, "'word_embed_proj_dim' (512) must equal"),
    ({**LLAMA, "head_dim": 7}, "even head width"),
    ({**QWEN, "use_sliding_window": True, "layer_types": ["bogus"] * 28}, "'layer_types' must"),
    ({**QWEN, "use_sliding_window": True, "layer_types": ["full_attention"]}, "one per layer"),
    ({**preset_config("mixtral-8x7b"), "num_experts_per_tok": 9}, "exceeds"),
    ({"model_type": "bart"}, "--engine trace"),
    ({**GPT2, "pad_token_id": 100000}, "'pad_token_id' must be null or a token id between 0"),
    ({**GPT2, "eos_token_id": [50256, -1]}, "'eos_token_id' must be null or a token id"),
    ({**GPT2, "bos_token_id": True}, "'bos_token_id' must be null or a token id"),
    ({**LLAMA, "rope_scaling": {"type": "evil"}}, "'rope_scaling' has rope_type 'evil'"),
    ({**LLAMA, "rope_scaling": "yes"}, "'rope_scaling' must be null or an object"),
    ({**LLAMA, "rope_scaling": {"rope_type": "linear", "factor": -2}}, "has factor -2"),
    ({**GPT2, "id2label": "x"}, "'id2label' must be null or an object of label names"),
]


def test_valid_token_ids_rope_scaling_and_labels_pass():
    ok = {
        **LLAMA,
        "eos_token_id": [128001, 128009],
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
        "id2label": {"0": "a"},
    }
    assert spec_from_config(ok).d_model == 4096


@pytest.mark.parametrize("cfg,msg", STRICT)
def test_config_values_are_strict(cfg, msg):
    with pytest.raises(MemwallError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        spec_from_config(cfg)
    assert "\n" not in str(e.value)


def test_error_names_field_value_and_what_is_accepted():
    with pytest.raises(MemwallError) as e:
        spec_from_config({**GPT2, "n_head": "12"})
    msg = str(e.value)
    assert "'n_head'" in msg and "'12'" in msg and "a string" in msg and "between 1 and" in msg


def test_unknown_keys_are_ignored_and_integer_floats_accepted():
    s = spec_from_config({**LLAMA, "rope_theta": 500000, "some_new_key": {"x": [1]}})
    assert s.rope_theta == 500000.0 and s.d_model == 4096


def test_architectures_names_the_family_when_model_type_is_absent():
    cfg = {k: v for k, v in MISTRAL.items() if k != "model_type"}
    assert spec_from_config(cfg).family == "mistral"


# ---------------------------------------------------------------- issue 10: miscounts


def test_mistral_without_sliding_window_key_gets_transformers_default():
    no_key = {k: v for k, v in MISTRAL.items() if k != "sliding_window"}
    assert spec_from_config(no_key).sliding_window == 4096  # MistralConfig's default
    assert spec_from_config({**MISTRAL, "sliding_window": None}).sliding_window is None
    # Mixtral's default is no window
    mix = {k: v for k, v in preset_config("mixtral-8x7b").items() if k != "sliding_window"}
    assert spec_from_config(mix).sliding_window is None


def test_qwen2_windows_only_layers_from_max_window_layers():
    cfg = {**QWEN, "use_sliding_window": True, "sliding_window": 1024, "max_window_layers": 14}
    s = spec_from_config(cfg)
    assert (s.sliding_window, s.n_window_layers) == (1024, 28 - 14)
    # 14 full layers hold 4097 tokens, 14 windowed ones 1024
    assert s.kv_tokens(4097) == 14 * 4097 + 14 * 1024
    off = spec_from_config({**cfg, "use_sliding_window": False})
    assert off.sliding_window is None and off.kv_tokens(4097) == 28 * 4097
    types = ["full_attention"] * 20 + ["sliding_attention"] * 8
    assert spec_from_config({**cfg, "layer_types": types}).n_window_layers == 8


def test_qwen2_qkv_bias_is_fixed_as_transformers_builds_it():
    s = spec_from_config({**QWEN, "attention_bias": False})
    assert s.qkv_bias and not s.o_bias


def test_opt_without_elementwise_affine_has_no_norm_weights():
    s = spec_from_config(OPT)
    plain = spec_from_config({**OPT, "layer_norm_elementwise_affine": False})
    d, layers = s.d_model, s.n_layers
    # two LayerNorms per layer and the final one, each a weight and a bias of width d
    assert s.n_params() - plain.n_params() == (2 * layers + 1) * 2 * d


def test_new_families_and_unsupported_model_types():
    qwen3 = load_model("qwen3-8b")
    assert qwen3.qk_norm and qwen3.head_dim == 128 and not qwen3.qkv_bias
    phi3 = load_model("phi-3-mini")
    assert phi3.fused_qkv and phi3.fused_gate_up and phi3.head_dim == 96
    assert phi3.n_params() == 3_821_079_552  # exact, keras-hub's published count
    pythia = load_model("pythia-160m")
    assert pythia.parallel_block and pythia.rotary_fraction == 0.25 and pythia.qkv_bias
    assert pythia.n_params() == 162_322_944  # exact, the Pythia README's total
    with pytest.raises(MemwallError, match="accepted: .*qwen3.*--engine trace"):
        spec_from_config({"model_type": "bart"})


def test_kv_note_names_the_window_tokens_not_the_context():
    from memwall.memory import inference_memory

    m = load_model("mistral-7b")
    fp = inference_memory(m, Workload("generate", 1, 16000, 385), parse_precision("bf16"))
    note = {r["component"]: r["note"] for r in fp.rows()}["KV cache"]
    assert note.startswith("4,096 tokens x batch 1") and "sliding window" in note
    assert "16,385" not in note.split("(")[0]
    assert fp.kv_cache == 2 * 32 * 4096 * 8 * 128 * 2  # K and V, 32 layers, 8 x 128, bf16
    g = load_model("gpt2")
    assert g.kv_note(128, 2) == "128 tokens x batch 2"
