"""The closed-form counting engine: the mistakes peer tools make, properties, the paper's rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwall.count import op_table, point_totals, sweep, totals
from memwall.spec import PAPER_PRECISION, Workload, load_model, parse_precision

FP32 = parse_precision("fp32")
DECODERS = ["gpt2", "opt-1.3b", "llama-3-8b", "mistral-7b", "qwen2.5-7b", "mixtral-8x7b"]
ALL = ["bert-base", "bert-large", *DECODERS, "llama-2-70b"]


def row(df, name):
    r = df[df.name == name]
    assert len(r) == 1, f"expected one {name!r} row, got {list(df.name)}"
    return r.iloc[0]


# ------------------------------------------------------------ mistakes peers are known to make


@pytest.mark.parametrize("model", DECODERS)
def test_lm_head_counts_two_flops_per_mac(model):
    s = load_model(model)
    df = op_table(s, Workload("prefill", 2, 64), FP32)
    assert row(df, "lm_head").flops == 2 * 2 * 64 * s.d_model * s.vocab_size


@pytest.mark.parametrize("model", DECODERS)
def test_decode_flops_include_attention_over_the_whole_cache(model):
    s = load_model(model)
    short = op_table(s, Workload("decode", 1, 256), FP32)
    long = op_table(s, Workload("decode", 1, 1024), FP32)
    assert totals(long)["flops"] > totals(short)["flops"]
    growth = row(long, "attention").matmul_flops - row(short, "attention").matmul_flops
    # QK^T and PV: 2 matmuls x 2 FLOPs x heads x head_dim per extra key, in every layer
    assert growth == 4 * s.n_heads * s.head_dim * (1024 - 256) * s.n_layers


@pytest.mark.parametrize("model", DECODERS)
@pytest.mark.parametrize("prec", ["fp32", "bf16", "4/16/8"])
def test_kv_cache_read_once_per_step_at_current_context(model, prec):
    s = load_model(model)
    p = parse_precision(prec)
    for ctx in (0, 100, 4000):
        df = op_table(s, Workload("decode", 3, ctx), p)
        keys = min(ctx + 1, s.sliding_window or ctx + 1)
        expected = 2 * s.n_layers * 3 * keys * s.kv_dim * p.kv_bytes
        assert totals(df)["bytes_kv"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("model", ["gpt2", "opt-1.3b"])
def test_plain_mlp_has_no_gate_and_activation_sized_by_ffn_width(model):
    s = load_model(model)
    df = op_table(s, Workload("prefill", 2, 32), FP32)
    assert "gate_proj" not in set(df.name) and "up_proj" not in set(df.name)
    act = row(df, "act")
    assert act.bytes_written == s.n_layers * 2 * 32 * s.d_ff * 4
    assert act.bytes_act == s.n_layers * 2 * 32 * s.d_ff * 4


def test_gated_mlp_has_gate_and_up():
    s = load_model("llama-2-7b")
    names = set(op_table(s, Workload("prefill", 1, 16), FP32).name)
    assert {"gate_proj", "up_proj", "act_mul", "down_proj"} <= names


@pytest.mark.parametrize("model", ["bert-base", "gpt2", "llama-3-8b"])
def test_fused_attention_output_is_tokens_by_width_not_length_squared(model):
    s = load_model(model)
    L = 512
    ph = "prefill" if s.is_decoder else "encode"
    fused = op_table(s, Workload(ph, 2, L), FP32)
    att = row(fused, "attention")
    assert att.bytes_written == s.n_layers * 2 * L * s.q_dim * 4
    unfused = op_table(s, Workload(ph, 2, L), FP32, fused_attention=False)
    assert row(unfused, "softmax").bytes_written == s.n_layers * 2 * s.n_heads * L * L * 4
    # same arithmetic either way, more bytes when the L x L matrix is materialised
    assert totals(unfused)["matmul_flops"] == totals(fused)["matmul_flops"]
    assert totals(unfused)["bytes"] > totals(fused)["bytes"]


@pytest.mark.parametrize("model", ["gpt2", "llama-2-7b", "bert-base"])
def test_embedding_reads_rows_and_lm_head_reads_whole_matrix(model):
    s = load_model(model)
    ph = "prefill" if s.is_decoder else "encode"
    df = op_table(s, Workload(ph, 1, 10), FP32)
    tables = 1 + (s.position == "learned") + (s.type_vocab_size > 0)
    emb = row(df, "embed")
    assert emb.bytes_weight == tables * 10 * s.d_model * 4
    assert emb.bytes_weight < s.vocab_size * s.d_model * 4 / 100
    if s.is_decoder:
        assert row(df, "lm_head").bytes_weight == s.vocab_size * s.d_model * 4


def test_gqa_shares_kv_heads():
    s = load_model("llama-3-8b")  # 32 query heads, 8 key/value heads
    df = op_table(s, Workload("decode", 1, 1000), FP32)
    assert row(df, "k_proj").bytes_weight == s.n_layers * s.d_model * 8 * 128 * 4
    assert row(df, "attention").bytes_kv == s.n_layers * 2 * 1001 * 8 * 128 * 4


def test_moe_reads_only_touched_experts_at_batch_one():
    s = load_model("mixtral-8x7b")
    df = op_table(s, Workload("decode", 1, 100), parse_precision("bf16"))
    per_expert = s.d_model * s.d_ff * 2  # bytes of one expert's gate matrix in bf16
    assert row(df, "expert_gate").bytes_weight == pytest.approx(s.n_layers * 2 * per_expert)
    big = op_table(s, Workload("prefill", 8, 512), parse_precision("bf16"))
    assert row(big, "expert_gate").bytes_weight == pytest.approx(s.n_layers * 8 * per_expert)


def test_quantised_weights_carry_group_scales():
    s = load_model("llama-2-7b")
    p4 = parse_precision("int4", group_size=64)
    assert p4.weight_bytes == 0.5 + 2 / 64
    df = op_table(s, Workload("decode", 1, 10), p4)
    assert row(df, "q_proj").bytes_weight == s.n_layers * s.d_model * s.q_dim * p4.weight_bytes


# ------------------------------------------------------------ the paper's convention


def test_paper_convention_follows_its_definition():
    s = load_model("bert-base")
    df = op_table(s, Workload("encode", 1, 128), convention="paper")
    assert set(df.name) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "attn_score",
        "attn_value",
        "fc1",
        "fc2",
        "softmax",
        "attn_norm",
        "act",
        "attn_residual",
        "mlp_residual",
        "mlp_norm",
    }
    L, d, f = 128, s.d_model, s.d_ff
    q = row(df, "q_proj")  # 8-bit: weights d*d bytes, input L*d, output L*d; 2 FLOPs per MAC
    assert (q.bytes_weight, q.bytes_act, q.bytes_written) == (12 * d * d, 12 * L * d, 12 * L * d)
    assert q.flops == 12 * 2 * L * d * d
    fc1 = row(df, "fc1")
    assert fc1.bytes == 12 * (d * f + L * d + L * f)
    score = row(df, "attn_score")
    assert score.bytes_written == 12 * s.n_heads * L * L  # scores materialised, 1 byte each


def test_paper_generate_is_sum_of_single_token_steps_from_no_prompt():
    s = load_model("gpt2")
    gen = totals(op_table(s, Workload("generate", 1, 0, 64), convention="paper"))
    steps = [totals(op_table(s, Workload("decode", 1, c), convention="paper")) for c in range(64)]
    for k in ("flops", "bytes", "bytes_weight", "bytes_kv"):
        assert gen[k] == pytest.approx(sum(t[k] for t in steps), rel=1e-12)
    # weights re-read for every token: 64 x the 8-bit matrices and the two norms' gamma/beta
    per_layer = 4 * 768 * 768 + 2 * 768 * 3072 + 2 * 2 * 768
    assert gen["bytes_weight"] == 64 * s.n_layers * per_layer


def test_papers_central_observation_encoder_vs_decoder_intensity():
    bert = totals(op_table(load_model("bert-base"), Workload("encode", 1, 128), convention="paper"))
    gpt2 = totals(op_table(load_model("gpt2"), Workload("generate", 1, 0, 128), convention="paper"))
    assert bert["flops"] == pytest.approx(gpt2["flops"], rel=0.1)  # about the same work
    assert bert["intensity"] > 50 * gpt2["intensity"]
    assert 1 < gpt2["intensity"] < 3  # matrix-vector work: near 2 FLOPs per byte at 8 bits


def test_generate_sum_is_exact_with_sliding_window():
    s = load_model("mistral-7b")  # window 4096
    gen = totals(op_table(s, Workload("generate", 1, 4000, 200), parse_precision("bf16")))
    steps = [
        totals(op_table(s, Workload("decode", 1, c), parse_precision("bf16")))
        for c in range(4000, 4200)
    ]
    assert gen["bytes_kv"] == pytest.approx(sum(t["bytes_kv"] for t in steps), rel=1e-12)


# ------------------------------------------------------------ properties


models = st.sampled_from(ALL)
lengths = st.integers(min_value=16, max_value=4096)


@settings(max_examples=40, deadline=None)
@given(models, st.integers(1, 64), lengths)
def test_linear_flops_scale_exactly_with_batch(model, batch, L):
    s = load_model(model)
    ph = "prefill" if s.is_decoder else "encode"
    one = op_table(s, Workload(ph, 1, L), FP32)
    many = op_table(s, Workload(ph, batch, L), FP32)
    for name in set(one[one.kind == "matmul"].name) - {"pooler"}:
        assert row(many, name).flops == batch * row(one, name).flops


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(DECODERS),
    st.integers(1, 16),
    lengths,
    st.sampled_from(["fp32", "bf16", "int8", "int4"]),
)
def test_decode_intensity_below_prefill(model, batch, L, prec):
    s = load_model(model)
    p = parse_precision(prec)
    pre = totals(op_table(s, Workload("prefill", batch, L), p))
    dec = totals(op_table(s, Workload("decode", batch, L), p))
    assert dec["intensity"] < pre["intensity"]


@settings(max_examples=40, deadline=None)
@given(models, st.integers(1, 8), lengths, st.integers(1, 512), st.sampled_from(["full", "paper"]))
def test_totals_grow_with_length_and_every_op_moves_bytes(model, batch, L, extra, conv):
    s = load_model(model)
    if conv == "paper" and s.gated_mlp:
        conv = "full"
    phases = ["prefill", "decode", "generate"] if s.is_decoder else ["encode"]
    for ph in phases:
        a = op_table(s, Workload(ph, batch, L, 8 if ph == "generate" else 0), FP32, conv)
        b = op_table(s, Workload(ph, batch, L + extra, 8 if ph == "generate" else 0), FP32, conv)
        ta, tb = totals(a), totals(b)
        if s.sliding_window and ph != "prefill" and L + 1 >= s.sliding_window:
            # past the window a decode step attends to a fixed number of keys
            assert tb["flops"] >= ta["flops"] and tb["bytes"] >= ta["bytes"]
        else:
            assert tb["flops"] > ta["flops"] and tb["bytes"] > ta["bytes"]
        assert (a.bytes > 0).all() and (b.bytes > 0).all()
        assert (a.flops >= 0).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 64), st.integers(1, 1000))
def test_generate_grows_with_generated_length(batch, G):
    s = load_model("gpt2")
    a = totals(op_table(s, Workload("generate", batch, 10, G), FP32))
    b = totals(op_table(s, Workload("generate", batch, 10, G + 1), FP32))
    assert b["flops"] > a["flops"] and b["bytes"] > a["bytes"]


# ------------------------------------------------------------ the vectorised sweep


@pytest.mark.parametrize(
    "model,phase",
    [
        ("gpt2", "decode"),
        ("bert-base", "encode"),
        ("llama-3-8b", "generate"),
        ("mixtral-8x7b", "prefill"),
    ],
)
def test_sweep_matches_op_table_and_point_loop(model, phase):
    s = load_model(model)
    precs = [parse_precision(p) for p in ("fp32", "bf16", "int4", "4/16/8")]
    grid = sweep(s, phase, [1, 3, 16], [1, 100, 2048], [5, 64], precs)
    assert len(grid) == 3 * 3 * 2 * 4
    rng = np.random.default_rng(0)
    for i in rng.choice(len(grid), 12, replace=False):
        r = grid.iloc[i]
        p = precs[[q.label for q in precs].index(r.precision)]
        wl = Workload(
            phase, int(r.batch), int(r.seq_len), int(r.gen_len) if phase == "generate" else 0
        )
        t = totals(op_table(s, wl, p))
        assert r.flops == pytest.approx(t["flops"], rel=1e-12)
        assert r.bytes == pytest.approx(t["bytes"], rel=1e-12)
        f, b = point_totals(s, phase, wl.batch, wl.seq_len, wl.gen_len, p)
        assert (f, b) == (pytest.approx(r.flops, rel=1e-12), pytest.approx(r.bytes, rel=1e-12))


def test_paper_convention_ignores_user_precision():
    s = load_model("gpt2")
    a = op_table(s, Workload("generate", 1, 0, 16), parse_precision("fp32"), "paper")
    b = op_table(s, Workload("generate", 1, 0, 16), PAPER_PRECISION, "paper")
    assert totals(a) == totals(b)


# ------------------------------------------------------------ issue 10: miscounts, by hand


def test_qwen2_window_applies_only_from_max_window_layers():
    from memwall.spec import preset_config, spec_from_config

    cfg = {
        **preset_config("qwen2.5-7b"),
        "use_sliding_window": True,
        "sliding_window": 1024,
        "max_window_layers": 14,
    }
    s = spec_from_config(cfg)
    bf16 = parse_precision("bf16")
    t = totals(op_table(s, Workload("decode", 1, 4096), bf16))
    # 14 full layers read 4097 keys and values, 14 windowed layers 1024; 4 KV heads x 128, bf16
    by_hand = (14 * 4097 + 14 * 1024) * 2 * 4 * 128 * 2
    assert t["bytes_kv"] == by_hand
    assert t["bytes_kv"] / 1e6 == pytest.approx(146.8, abs=0.05)
    # generate sums the same steps, each split the same way
    gen = totals(op_table(s, Workload("generate", 1, 1000, 50), bf16))["bytes_kv"]
    steps = sum(
        totals(op_table(s, Workload("decode", 1, c), bf16))["bytes_kv"] for c in range(1000, 1050)
    )
    assert gen == pytest.approx(steps, rel=1e-9)
    grid = sweep(s, "decode", 1, [4096], 0, [bf16])
    assert grid["bytes"].iloc[0] == pytest.approx(t["bytes"], rel=1e-12)


def test_int4_keeps_norms_embeddings_and_head_16_bit():
    s = load_model("llama-3-8b")
    p = parse_precision("int4")
    t = totals(op_table(s, Workload("decode", 1, 4096), p))
    d, layers = s.d_model, s.n_layers
    mats = layers * (2 * d * s.q_dim + 2 * d * s.kv_dim + 3 * d * s.d_ff)
    norms = (2 * layers + 1) * d  # RMSNorm weights, 16-bit
    head = s.vocab_size * d  # untied LM head, 16-bit
    embed_row = d  # one embedding row read for the one new token, 16-bit
    by_hand = mats * (0.5 + 2 / 128) + 2 * (norms + head + embed_row)
    assert t["bytes_weight"] == pytest.approx(by_hand, rel=1e-12)
    assert t["bytes_weight"] / 1e9 == pytest.approx(4.65, abs=0.01)
    qh = parse_precision("int4", quantize_head=True)
    q = totals(op_table(s, Workload("decode", 1, 4096), qh))
    assert q["bytes_weight"] == pytest.approx(by_hand - (head + embed_row) * (2 - 0.5 - 2 / 128))
    assert "16-bit" in p.note and parse_precision("bf16").note == ""


def test_opt_without_norm_affine_reads_no_norm_weights():
    from memwall.spec import preset_config, spec_from_config

    cfg = preset_config("opt-1.3b")
    wl = Workload("decode", 1, 100)
    a = op_table(spec_from_config(cfg), wl, FP32)
    b = op_table(spec_from_config({**cfg, "layer_norm_elementwise_affine": False}), wl, FP32)
    for name in ("attn_add_norm", "mlp_add_norm", "embed_norm"):
        assert row(b, name).bytes_weight == 0 < row(a, name).bytes_weight


def test_inference_peak_holds_what_eager_transformers_holds():
    """Gated MLP at prefill (issue 10: predicted 6-8% below torch.profiler's peak): gate, up and
    act*up (T x F each) live with four T x d tensors: the layer input (held by the model's
    loop), the sum after attention (the residual), the MLP's normalised input and the
    embedding output (held by the model's forward), plus the rotary cos / sin tables. On this
    config torch.profiler's memory events peak at 508.5 MB (fp32, measured once by hand)."""
    from memwall.memory.activations import inference_activation_peak
    from memwall.spec import spec_from_config

    cfg = dict(
        model_type="llama", hidden_size=1536, intermediate_size=8192, num_hidden_layers=2,
        num_attention_heads=12, vocab_size=1000, max_position_embeddings=4096,
    )  # fmt: skip
    s = spec_from_config(cfg)
    peak, op = inference_activation_peak(s, Workload("prefill", 2, 2048), FP32)
    T = 2 * 2048
    assert op == "act_mul"
    assert peak == (3 * T * 8192 + 4 * T * 1536 + 2 * T * 128) * 4
    assert peak / 1e6 == pytest.approx(508.5, rel=0.01)
    one = spec_from_config({**cfg, "num_hidden_layers": 1})  # the embedding is the layer input
    assert (
        inference_activation_peak(one, Workload("prefill", 2, 2048), FP32)[0] == peak - T * 1536 * 4
    )


@pytest.mark.parametrize(
    "model,heads,window",
    [("qwen3-8b", 8 * 128, None), ("phi-3-mini", 32 * 96, 2047), ("pythia-1b", 2048, None)],
)
def test_new_families_decode_kv_bytes_by_hand(model, heads, window):
    s = load_model(model)
    bf16 = parse_precision("bf16")
    t = totals(op_table(s, Workload("decode", 1, 4096), bf16))
    keys = 4097 if window is None else window
    assert t["bytes_kv"] == s.n_layers * 2 * keys * heads * 2  # K and V, every layer, bf16


def test_qwen3_qk_norm_is_counted_in_the_rope_kernel():
    from memwall.spec import preset_config, spec_from_config

    s = spec_from_config(preset_config("qwen3-8b"))
    plain = dataclasses.replace(s, qk_norm=False)  # the same without q/k norms
    wl = Workload("prefill", 1, 64)
    a, b = row(op_table(s, wl, FP32), "rope"), row(op_table(plain, wl, FP32), "rope")
    T = 64
    assert a.flops - b.flops == 4 * T * (s.q_dim + s.kv_dim) * s.n_layers  # RMSNorm: 4/elem
    assert a.bytes_weight == 2 * s.head_dim * 4 * s.n_layers
    assert s.n_params() - plain.n_params() == 2 * s.head_dim * s.n_layers


def test_parallel_block_adds_both_branches_in_one_kernel():
    from memwall.spec import preset_config, spec_from_config

    cfg = preset_config("pythia-160m")
    par = op_table(spec_from_config(cfg), Workload("prefill", 1, 32), FP32)
    seq = op_table(
        spec_from_config({**cfg, "use_parallel_residual": False}), Workload("prefill", 1, 32), FP32
    )
    assert "attn_add_norm" not in set(par.name) and "attn_add_norm" in set(seq.name)
    n = 32 * 768 * 4 * 12  # one T x d fp32 tensor in each of the 12 layers
    assert row(par, "mlp_add_norm").bytes_act == 3 * n  # x, attention out, MLP out
    assert row(par, "mlp_add_norm").bytes_written == 3 * n  # the sum and its two norms
