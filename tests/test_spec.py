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
    ({"model_type": "t5", "hidden_size": 64}, "unsupported model_type"),
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
