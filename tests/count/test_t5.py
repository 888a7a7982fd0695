"""T5 (encoder-decoder with cross-attention): parameters as transformers builds them, the KV
caches a decoder step reads by hand, the closed form against the traced real module, and the
workload semantics `count.encdec` states."""

from __future__ import annotations

import pytest

from memwall.count import op_table, totals
from memwall.errors import MemwallError
from memwall.memory import inference_memory, kv_cache_bytes, training_memory
from memwall.spec import Workload, load_model, parse_precision, preset_config, spec_from_config

# Flan-T5 / T5 v1.1 style: gated tanh-GELU MLP, untied LM head, more decoder than encoder
# layers, d_kv * heads != d_model
SMALL_FLAN = dict(
    model_type="t5", d_model=64, d_kv=16, d_ff=96, num_layers=2, num_decoder_layers=3,
    num_heads=6, vocab_size=500, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    relative_attention_num_buckets=8,
)  # fmt: skip
FP32 = parse_precision("fp32")


def _meta_params(cfg: dict) -> int:
    from memwall.trace import build_model

    return sum(p.numel() for p in build_model(cfg, device="meta").parameters())


def test_t5_base_spec_and_parameters_match_transformers():
    pytest.importorskip("transformers")
    spec = load_model("t5-base")
    assert (spec.family, spec.n_layers, spec.n_decoder_layers) == ("t5", 12, 12)
    assert (spec.q_dim, spec.activation, spec.gated_mlp, spec.norm) == (
        768,
        "relu",
        False,
        "rmsnorm",
    )
    assert not (spec.qkv_bias or spec.o_bias or spec.mlp_bias) and spec.tied_embeddings
    assert spec.n_params() == _meta_params(preset_config("t5-base"))


def test_flan_style_config_parameters():
    """transformers v5 ties T5's LM head to the shared embedding whatever the config says (it
    reads tie_word_embeddings false only as 'do not scale the decoder output'); memwall counts
    the untied head the checkpoint stores: exactly one vocab x width matrix more."""
    pytest.importorskip("transformers")
    spec = spec_from_config(SMALL_FLAN)
    assert spec.gated_mlp and spec.activation == "gelu_tanh" and not spec.tied_embeddings
    assert (spec.head_dim, spec.n_layers, spec.n_decoder_layers) == (16, 2, 3)
    tied = spec_from_config({**SMALL_FLAN, "tie_word_embeddings": True})
    assert tied.n_params() == _meta_params(SMALL_FLAN)
    assert spec.n_params() - tied.n_params() == 500 * 64


def test_decode_kv_bytes_by_hand():
    """One decoder step reads K and V of its self-attention cache (L + 1 tokens, its own
    included) and of the cross-attention cache (the L encoder tokens) in every decoder layer,
    and writes its own K and V."""
    spec = load_model("t5-base")
    L, B = 512, 2
    t = totals(op_table(spec, Workload("decode", B, L), FP32))
    per_token = 2 * 12 * 64 * 4  # K and V, 12 heads x d_kv 64, fp32
    assert t["bytes_kv"] == 12 * B * per_token * ((L + 1) + L)
    df = op_table(spec, Workload("decode", B, L), FP32).set_index("name")
    assert df.loc["decoder.self.kv_cache_write", "bytes_written"] == 12 * B * per_token
    # the footprint holds both caches
    assert kv_cache_bytes(spec, B, L + 1, FP32, L) == 12 * B * per_token * (2 * L + 1)
    fp = inference_memory(spec, Workload("decode", B, L), FP32)
    assert fp.kv_cache == 12 * B * per_token * (2 * L + 1)
    assert "cross-attention 512" in fp.kv_note


def test_workload_semantics():
    """encode: encoder only; prefill: encoder + the decoder's first token (cross K/V projected
    once for every encoder token); decode: decoder only, cross K/V read from the cache."""
    spec = load_model("t5-base")
    enc = op_table(spec, Workload("encode", 1, 256), FP32)
    pre = op_table(spec, Workload("prefill", 1, 256), FP32)
    dec = op_table(spec, Workload("decode", 1, 256), FP32)
    assert all(n.startswith("encoder.") for n in enc["name"])
    assert set(enc["name"]) < set(pre["name"])
    assert not any(n.startswith("encoder.") for n in dec["name"])
    assert "decoder.cross.k_proj" in set(pre["name"]) - set(dec["name"])
    head = pre.set_index("name").loc["lm_head"]
    assert head["flops"] == 2 * 1 * 768 * 32128  # one decoder token per sequence
    assert int(pre.set_index("name").loc["decoder.self.q_proj", "count"]) == 12
    # generate: 8 steps at self-attention contexts 256..263, all cross-attending 256 tokens
    gen = totals(op_table(spec, Workload("generate", 1, 256, 8), FP32))
    steps = [op_table(spec, Workload("decode", 1, c), FP32) for c in range(256, 264)]
    cross = steps[0]["name"].str.startswith("decoder.cross.")
    want = {
        k: sum(float(t.loc[~cross, k].sum()) for t in steps)
        + 8 * float(steps[0].loc[cross, k].sum())
        for k in ("flops", "bytes", "bytes_kv")
    }
    assert {k: gen[k] for k in want} == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: op_table(s, Workload("decode", 1, 0)), "seq-len"),
        (lambda s: op_table(s, Workload("prefill", 1, 8), convention="paper"), "encoder-decoder"),
        (lambda s: training_memory(s, 1, 64), "not modelled"),
        (lambda s: spec_from_config({**SMALL_FLAN, "feed_forward_proj": "gated-swish"}), "ffn"),
    ],
    ids=["seq-len-0", "paper", "training", "ffn-proj"],
)
def test_refusals_are_one_line(call, match):
    with pytest.raises(MemwallError) as e:
        call(load_model("t5-base"))
    msg = str(e.value)
    assert "\n" not in msg and (match in msg or "feed_forward_proj" in msg)


# ---------------------------------------------------------------- closed form vs trace


def _agree(closed, traced) -> None:
    c, t = totals(closed), totals(traced)
    show = ["name", "count", "flops", "bytes"]
    why = "\n" + closed[show].to_string() + "\n" + traced[show].to_string()
    assert t["flops"] == pytest.approx(c["flops"], rel=0.01), why
    assert t["bytes"] == pytest.approx(c["bytes"], rel=0.05), why
    assert t["matmul_flops"] == pytest.approx(c["matmul_flops"], rel=1e-9), why
    assert t["bytes_weight"] == pytest.approx(c["bytes_weight"], rel=0.01), why
    assert traced.attrs["coverage"] == {}


@pytest.mark.parametrize(
    "wl",
    [
        Workload("prefill", 2, 128),
        Workload("decode", 1, 300),
        Workload("encode", 1, 128),
        Workload("generate", 1, 64, 16),
    ],
    ids=lambda w: f"{w.phase}-{w.batch}x{w.seq_len}",
)
def test_t5_base_closed_form_and_trace_agree_on_meta(wl):
    pytest.importorskip("transformers")
    from memwall.trace import trace_table

    spec = load_model("t5-base")
    traced = trace_table(spec, wl, device="meta")
    _agree(op_table(spec, wl), traced)
    assert traced.attrs["flop_counter_flops"] == pytest.approx(totals(traced)["matmul_flops"])


def test_flan_t5_base_preset():
    """Gated tanh-GELU MLP, untied LM head (one more vocab x width matrix than transformers
    v5 builds, see above), and the two engines agree on a decode step."""
    pytest.importorskip("transformers")
    from memwall.trace import trace_table

    spec = load_model("flan-t5-base")
    assert spec.gated_mlp and not spec.tied_embeddings and spec.d_ff == 2048
    built = _meta_params(preset_config("flan-t5-base"))
    assert spec.n_params() == built + spec.vocab_size * spec.d_model
    wl = Workload("decode", 1, 200)
    _agree(op_table(spec, wl), trace_table(spec, wl, device="meta"))


@pytest.mark.parametrize("wl", [Workload("prefill", 1, 40), Workload("decode", 2, 24)])
def test_flan_style_config_agrees_on_cpu(wl):
    """Real values: the decode step's caches are filled by an untraced call first."""
    pytest.importorskip("transformers")
    from memwall.trace import trace_config

    spec = spec_from_config(SMALL_FLAN, "small-flan")
    traced = trace_config(SMALL_FLAN, wl, device="cpu", name="small-flan")
    assert traced.attrs["device"] == "cpu"
    _agree(op_table(spec, wl), traced)
