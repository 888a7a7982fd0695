"""Families people run today (issue 21 item 6): Llama 4 (text), Qwen2-MoE / Qwen1.5-MoE, ViT.

Parameters equal those of the model transformers builds from the same config on the meta
device; the decode KV cache is checked against a hand count (Llama 4's chunked layers read at
most a chunk); the closed form agrees with the trace of the real module (FLOPs within 1%, bytes
within 5%, as tests/test_agreement_presets.py) at prefill 2 x 128 and decode 300 (a ViT encodes
its image); a config feature memwall does not model is refused in one line.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from memwall.count import matmul_params, op_table, totals, vocab_params
from memwall.errors import MemwallError
from memwall.spec import Workload, load_model, preset_config, spec_from_config

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402
import transformers  # noqa: E402

from memwall.trace import build_model, hf_config, trace_config  # noqa: E402

FP32 = 4
LLAMA4 = dict(
    model_type="llama4_text", hidden_size=128, intermediate_size=96, intermediate_size_mlp=256,
    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    num_local_experts=4, num_experts_per_tok=1, vocab_size=1000, max_position_embeddings=8192,
)  # fmt: skip
QWEN2_MOE = dict(
    model_type="qwen2_moe", hidden_size=128, intermediate_size=344, moe_intermediate_size=64,
    shared_expert_intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, vocab_size=1000,
    max_position_embeddings=4096,
)  # fmt: skip
VIT = dict(
    model_type="vit", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=256,
)  # fmt: skip

SMALL = {
    "llama4": LLAMA4,
    "llama4-dense-every-2nd": {**LLAMA4, "interleave_moe_layer_step": 2, "num_experts_per_tok": 2},
    "llama4-moe-layers-no-chunks": {
        **LLAMA4, "moe_layers": [1, 3], "attention_chunk_size": None,
        "no_rope_layers": [1, 0, 1, 1], "tie_word_embeddings": True,
    },
    "llama4-no-qk-norm-no-temperature-biases": {
        **LLAMA4, "use_qk_norm": False, "attn_temperature_tuning": False, "attention_bias": True,
    },
    "llama4-all-dense": {**LLAMA4, "moe_layers": []},
    "qwen2_moe": QWEN2_MOE,
    "qwen2_moe-dense-layers": {
        **QWEN2_MOE, "decoder_sparse_step": 2, "mlp_only_layers": [2], "qkv_bias": False,
    },
    "qwen2_moe-all-dense": {**QWEN2_MOE, "decoder_sparse_step": 4},
    "vit": VIT,
    "vit-patch14-no-pooler": {
        **VIT, "image_size": 56, "patch_size": 14, "num_channels": 1, "qkv_bias": False,
        "add_pooling_layer": False,
    },
}  # fmt: skip
PRESETS = ["llama-4-scout-17b-16e", "qwen1.5-moe-a2.7b", "vit-base-patch16-224"]
# No layer runs experts: counted as a dense model; the meta trace has no experts to route (its
# builder refuses a mixture-of-experts config without them), so these are not traced.
ALL_DENSE = {"llama4-all-dense", "qwen2_moe-all-dense"}


def _traced(prefix: str) -> list[str]:
    return [k for k in SMALL if k.startswith(prefix) and k not in ALL_DENSE]


def _hf_meta_params(cfg: dict) -> int:
    """The bare transformers model, as transformers builds it (no memwall routing patched in)."""
    auto = "AutoModel" if cfg["model_type"] == "vit" else "AutoModelForCausalLM"
    kwargs = (
        {"add_pooling_layer": cfg.get("add_pooling_layer", True)} if auto == "AutoModel" else {}
    )
    with torch.device("meta"):
        model = getattr(transformers, auto).from_config(hf_config(cfg), **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "cfg", [*(preset_config(p) for p in PRESETS), *SMALL.values()], ids=[*PRESETS, *SMALL]
)
def test_parameters_equal_what_transformers_builds(cfg):
    assert spec_from_config(cfg).n_params() == _hf_meta_params(cfg)


def test_published_parameter_counts():
    # Llama 4 Scout: 17B activated; 109B total with its vision tower (its text model: 107.8B)
    scout = load_model("llama-4-scout-17b-16e")
    assert scout.n_params() == 107_769_861_120
    assert round(scout.active_params_per_token() / 1e9) == 17
    # Qwen1.5-MoE-A2.7B: 14.3B parameters, 2.7B activated (model card)
    qwen = load_model("qwen1.5-moe-a2.7b")
    assert round(qwen.n_params() / 1e8) == 143
    assert round(qwen.active_params_per_token() / 1e8) == 27
    # ViT-B/16: 86M (ViTModel with its pooler: 86,389,248)
    assert load_model("vit-base-patch16-224").n_params() == 86_389_248


def test_matmul_and_vocabulary_parameters_match_the_built_model():
    """What an integer format quantises: the layers' matrices (3-D expert tensors and Qwen2-MoE's
    Linear(hidden, 1) shared-expert gate included); the embeddings and LM head apart."""
    for preset in PRESETS[:2]:
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(hf_config(preset_config(preset)))
        mats = vocab = 0
        for name, p in model.named_parameters():
            if "embed" in name or "lm_head" in name:
                vocab += p.numel()
            elif p.ndim >= 2 and "bias" not in name and "norm" not in name:
                mats += p.numel()
        spec = load_model(preset)
        assert (matmul_params(spec), vocab_params(spec)) == (mats, vocab), preset


# ---------------------------------------------------------------- Llama 4


def test_llama4_layers_as_transformers_decides_them():
    scout = load_model("llama-4-scout-17b-16e")
    # every 4th layer has no rope and attends globally; the others attend within 8192-token chunks
    assert (scout.nope_layers, scout.n_window_layers, scout.sliding_window) == (12, 36, 8192)
    assert scout.moe_layers == 48 and scout.dense_layers == 0
    maverick_like = spec_from_config({**LLAMA4, "interleave_moe_layer_step": 2})
    assert (maverick_like.moe_layers, maverick_like.dense_layers) == (2, 2)  # layers 1 and 3
    explicit = spec_from_config({**LLAMA4, "no_rope_layers": [0, 1, 1, 0], "moe_layers": [0]})
    assert (explicit.nope_layers, explicit.n_window_layers, explicit.dense_layers) == (2, 2, 3)
    dense = spec_from_config(SMALL["llama4-all-dense"])  # no MoE layer: a dense model
    assert (dense.is_moe, dense.d_ff, dense.shared_width) == (False, 256, 0)


@pytest.mark.parametrize("context", [300, 20000])
def test_llama4_decode_kv_cache_bytes_by_hand(context):
    """12 NoPE layers hold every token; 36 chunked layers at most a chunk (8192)."""
    spec = load_model("llama-4-scout-17b-16e")
    got = totals(op_table(spec, Workload("decode", 1, context)))["bytes_kv"]
    keys = context + 1
    assert got == (12 * keys + 36 * min(keys, 8192)) * 2 * 8 * 128 * FP32


def test_llama4_rows_run_on_their_layers():
    """Rope (and the q/k norms) on the rotary layers, the query temperature on the NoPE ones,
    the shared expert on every MoE layer, the dense MLP on the others."""
    spec = spec_from_config({**LLAMA4, "interleave_moe_layer_step": 2}, "l4")
    t = op_table(spec, Workload("prefill", 1, 64)).set_index("name")
    q_and_k = 64 * (4 + 2) * 32
    assert t.loc["rope", "flops"] == 3 * (3 + 4) * q_and_k  # 3 rotary layers: rope + RMSNorm
    assert t.loc["attn_temp", "flops"] == 1 * (64 * 4 * 32 + 7 * 64)  # 1 NoPE layer
    assert t.loc["shared_gate", "flops"] == 2 * 2 * 64 * 128 * 96  # 2 MoE layers
    assert t.loc["gate_proj", "flops"] == 2 * 2 * 64 * 128 * 256  # 2 dense layers, mlp width
    plain = spec_from_config({**LLAMA4, "use_qk_norm": False, "attn_temperature_tuning": False})
    names = set(op_table(plain, Workload("prefill", 1, 64))["name"])
    assert "attn_temp" not in names and "gate_proj" not in names


@pytest.mark.parametrize("variant", _traced("llama4"))
@pytest.mark.parametrize("wl", [Workload("prefill", 2, 128), Workload("decode", 1, 300)])
def test_llama4_closed_form_and_trace_agree(variant, wl):
    """On meta with count routing (transformers' own eager MoE runs every expert on every token,
    scores zero for those not picked; memwall counts the top-k serving engines run)."""
    cfg = SMALL[variant]
    closed = totals(op_table(spec_from_config(cfg, variant), wl))
    traced_df = trace_config(cfg, wl, device="meta", name=variant)
    traced = totals(traced_df)
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)
    assert traced["bytes_weight"] == pytest.approx(closed["bytes_weight"], rel=0.01)
    assert traced_df.attrs["coverage"] == {}
    if wl.phase == "decode":
        assert traced["bytes_kv"] == pytest.approx(closed["bytes_kv"], rel=0.01)


def test_llama4_chunk_is_read_as_a_window_by_both_engines():
    cfg = {**LLAMA4, "attention_chunk_size": 64}
    wl = Workload("decode", 1, 300)
    closed = totals(op_table(spec_from_config(cfg, "c64"), wl))
    traced = totals(trace_config(cfg, wl, device="meta", name="c64"))
    by_hand = (1 * 301 + 3 * 64) * 2 * 2 * 32 * FP32  # 1 NoPE layer, 3 chunked layers
    assert closed["bytes_kv"] == by_hand
    assert traced["bytes_kv"] == pytest.approx(by_hand, rel=0.01)
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)


def test_llama4_moe_is_routed_by_count_on_meta():
    model = build_model(preset_config("llama-4-scout-17b-16e"), device="meta")
    blocks = [m for m in model.modules() if type(m).__name__ == "Llama4TextMoe"]
    assert len(blocks) == 48 and all("forward" in vars(m) for m in blocks)


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ({"no_rope_layers": [1, 1]}, "no_rope_layers"),
        ({"no_rope_layers": [1, 2, 1, 0]}, "no_rope_layers"),
        ({"attn_temperature_tuning": 4}, "attn_temperature_tuning"),  # transformers v5 too
        ({"moe_layers": "all"}, "moe_layers"),
        ({"num_experts_per_tok": 5}, "num_experts_per_tok"),
    ],
)
def test_llama4_bad_configs_are_refused_in_one_line(extra, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config({**LLAMA4, **extra})
    assert "\n" not in str(e.value)


def test_llama4_multimodal_config_points_to_its_text_config():
    """The hub's config.json of Llama 4 wraps the text model (and a vision tower)."""
    with pytest.raises(MemwallError, match="give its 'text_config'") as e:
        spec_from_config({"model_type": "llama4", "text_config": LLAMA4})
    assert "\n" not in str(e.value)


def test_chunked_layers_are_llama4_only():
    cfg = dict(
        model_type="qwen2", hidden_size=128, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, vocab_size=1000, max_position_embeddings=4096,
        layer_types=["chunked_attention"] * 4,
    )  # fmt: skip
    with pytest.raises(MemwallError, match="chunked_attention"):
        spec_from_config(cfg)


# ---------------------------------------------------------------- Qwen2-MoE


def test_qwen2_moe_kv_by_hand_and_rows():
    spec = load_model("qwen1.5-moe-a2.7b")
    got = totals(op_table(spec, Workload("decode", 1, 300)))["bytes_kv"]
    assert got == 24 * 301 * 2 * 16 * 128 * FP32  # layers x keys x (K, V) x heads x head_dim
    t = op_table(spec, Workload("prefill", 1, 64)).set_index("name")
    assert t.loc["shared_up", "flops"] == 24 * 2 * 64 * 2048 * 5632
    assert t.loc["expert_up", "flops"] == 24 * 2 * 64 * 4 * 2048 * 1408  # top-4
    assert t.loc["shared_expert_gate", "matmul_flops"] == 24 * 2 * 64 * 2048  # Linear(d, 1)
    dense = spec_from_config(SMALL["qwen2_moe-dense-layers"])
    assert (dense.moe_layers, dense.dense_layers) == (1, 2)  # layer 1 only: index 2 is listed


@pytest.mark.parametrize("variant", _traced("qwen2_moe"))
@pytest.mark.parametrize("wl", [Workload("prefill", 2, 128), Workload("decode", 1, 300)])
def test_qwen2_moe_closed_form_and_trace_agree(variant, wl):
    cfg = SMALL[variant]
    closed = totals(op_table(spec_from_config(cfg, variant), wl))
    traced_df = trace_config(cfg, wl, device="meta", name=variant)
    traced = totals(traced_df)
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)
    assert traced["bytes_weight"] == pytest.approx(closed["bytes_weight"], rel=0.01)
    assert traced_df.attrs["coverage"] == {}
    if wl.phase == "decode":
        assert traced["bytes_kv"] == pytest.approx(closed["bytes_kv"], rel=0.01)


def test_qwen2_moe_sliding_window_is_refused():
    with pytest.raises(MemwallError, match="use_sliding_window") as e:
        spec_from_config({**QWEN2_MOE, "use_sliding_window": True})
    assert "\n" not in str(e.value) and "--engine trace" in str(e.value)


# ---------------------------------------------------------------- ViT


def test_vit_tokens_are_the_patches_and_a_class_token():
    spec = load_model("vit-base-patch16-224")
    assert (spec.image_tokens(), spec.max_positions, spec.is_decoder) == (197, 197, False)
    assert spec.image_tokens(384) == 577
    t = op_table(spec, Workload("encode", 1, 197)).set_index("name")
    # the patch projection: a (16 x 16 x 3) -> 768 matmul on each of 196 patches, plus its bias
    assert t.loc["embed", "matmul_flops"] == 2 * 196 * 768 * 768
    assert t.loc["embed", "flops"] == 2 * 196 * 768 * 768 + 196 * 768
    assert totals(op_table(spec, Workload("encode", 1, 197)))["bytes_kv"] == 0
    # ViT-B/16 at 224: 17.6 GMACs (35.2 GFLOPs), the figure published for it
    assert round(totals(op_table(spec, Workload("encode", 1, 197)))["flops"] / 1e9, 1) == 35.3


@pytest.mark.parametrize("variant", [k for k in SMALL if k.startswith("vit")])
def test_vit_closed_form_and_trace_agree(variant):
    cfg = SMALL[variant]
    spec = spec_from_config(cfg, variant)
    wl = Workload("encode", 2, spec.image_tokens())
    closed = totals(op_table(spec, wl))
    traced_df = trace_config(cfg, wl, device="meta", name=variant)
    traced = totals(traced_df)
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.01)
    assert traced["matmul_flops"] == pytest.approx(closed["matmul_flops"], rel=1e-9)
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.05)
    assert traced["bytes_weight"] == pytest.approx(closed["bytes_weight"], rel=0.01)
    assert traced_df.attrs["coverage"] == {}


def test_vit_trace_runs_the_config_image_only():
    with pytest.raises(MemwallError, match="image size"):
        trace_config(VIT, Workload("encode", 1, 50), device="meta")


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ({"patch_size": 300}, "patch_size"),
        ({"image_size": [224, 224]}, "image_size"),
        ({"pooler_output_size": 64}, "pooler_output_size"),
    ],
)
def test_vit_bad_configs_are_refused_in_one_line(extra, msg):
    with pytest.raises(MemwallError, match=msg) as e:
        spec_from_config({**VIT, **extra})
    assert "\n" not in str(e.value)


def _memwall(*args: str) -> tuple[int, str, str]:
    from memwall.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def test_cli_vit_counts_the_image_tokens():
    code, out, err = _memwall("analyze", "vit-base-patch16-224", "--phase", "encode", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["workload"]["seq_len"] == 197  # (224 / 16)^2 patches + class token
    code, out, err = _memwall(
        "analyze", "vit-base-patch16-224", "--image-size", "384", "-f", "json"
    )
    assert code == 0, err
    assert json.loads(out)["workload"]["seq_len"] == 577
    code, out, err = _memwall("analyze", "vit-base-patch16-224", "--seq-len", "128")
    assert code == 2 and "--image-size" in err and len(err.strip().splitlines()) == 1
    code, out, err = _memwall("analyze", "gpt2", "--image-size", "224")
    assert code == 2 and "--image-size" in err
