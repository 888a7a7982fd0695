"""memwall.memory: closed-form memory of inference and training (no torch needed)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from memwall.errors import MemwallError
from memwall.memory import (
    check_fit,
    claim_check,
    get_optimizer,
    inference_memory,
    kv_cache_bytes,
    max_batch,
    max_context,
    max_train_batch,
    model_states,
    optimizer_names,
    parse_checkpointing,
    remat_curve,
    training_memory,
    weight_bytes,
)
from memwall.memory.activations import part_bytes, saved_tensors
from memwall.memory.fit import resolve_device
from memwall.memory.remat import pareto
from memwall.optimizers import state_bytes
from memwall.search import first_true, largest
from memwall.spec import Workload, load_model, parse_precision, preset_config, spec_from_config
from memwall.studies.figure4 import (
    accelerator_memory_by_year,
    figure4_table,
    paper_training_table,
)

FP32 = parse_precision("fp32")
BF16 = parse_precision("bf16")


@pytest.fixture(scope="module")
def bert():
    return load_model("bert-base")


@pytest.fixture(scope="module")
def gpt2():
    return load_model("gpt2")


@pytest.fixture(scope="module")
def llama8b():
    return load_model("llama-3-8b")


# ---------------------------------------------------------------- optimizers


def test_optimizer_table_names_what_each_keeps():
    assert set(optimizer_names()) >= {"sgd", "momentum", "adam", "adamw", "adahessian"}
    assert get_optimizer("sgd").n_states == 0
    assert get_optimizer("sgd-momentum").states == ("momentum_buffer",)
    assert get_optimizer("AdamW").n_states == 2
    ada = get_optimizer("adahessian")
    assert "exp_hessian_diag_sq" in ada.states and ada.hvp_workspace > 0
    assert all(get_optimizer(n).source for n in optimizer_names())


def test_unknown_optimizer_suggests_closest():
    with pytest.raises(MemwallError, match="did you mean adam"):
        get_optimizer("adm")


# ---------------------------------------------------------------- model states


@pytest.mark.parametrize(
    "stage, published_gb",
    # Rajbhandari et al., ZeRO (SC 2020), Fig. 1: 7.5B parameters, 64 devices, Adam with
    # mixed precision (K = 12): 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per device. The paper trains
    # in fp16 (fp16 weights and gradients, fp32 master and Adam states).
    [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)],
)
def test_zero_stages_reproduce_the_zero_paper(stage, published_gb):
    s = model_states(7.5e9, "adam", parse_precision("fp16"), zero=stage, devices=64)
    total = s["weights"] + s["gradients"] + s["optimizer"] + s["master_weights"]
    assert total / 1e9 == pytest.approx(published_gb, rel=0.02)


def test_model_state_bytes_per_parameter():
    # fp32 Adam: 4 + 4 + 8; mixed bf16 Adam: 2 + 4 (fp32 gradients, as Megatron-LM keeps them
    # for bf16) + (4 master + 8); mixed fp16 Adam: 2 + 2 + (4 + 8), the ZeRO paper's 16;
    # SGD fp32: 4 + 4
    per = {
        ("fp32", "adam"): 16,
        ("bf16", "adam"): 18,
        ("fp16", "adam"): 16,
        ("fp32", "sgd"): 8,
        ("fp32", "momentum"): 12,
        ("bf16", "sgd"): 10,
    }
    for (prec, opt), want in per.items():
        s = model_states(1000, opt, parse_precision(prec))
        assert sum(s[k] for k in ("weights", "gradients", "optimizer", "master_weights")) == (
            want * 1000
        )
    mixed = model_states(1000, "adam", parse_precision("bf16"))
    assert mixed["optimizer"] / 1000 == 8 and mixed["master_weights"] / 1000 == 4
    no_master = model_states(1000, "adam", parse_precision("bf16"), master_weights=False)
    assert no_master["optimizer"] / 1000 == 4  # two bf16 states
    assert no_master["master_weights"] == 0
    assert no_master["gradients"] / 1000 == 2  # pure bf16: gradients in bf16 too


def test_bf16_gradients_are_fp32_but_not_fp16_or_the_papers():
    assert state_bytes(parse_precision("bf16")).grad == 4
    assert state_bytes(parse_precision("fp16")).grad == 2
    assert state_bytes(parse_precision("fp32")).grad == 4
    paper = replace(parse_precision("bf16"), paper=True)
    assert state_bytes(paper).grad == 2


def test_offload_moves_optimizer_state_to_host():
    s = model_states(1e9, "adam", parse_precision("bf16"), offload=True)
    assert s["optimizer"] == 0 and s["master_weights"] == 0 and s["host"] == 12e9


@pytest.mark.parametrize("zero, devices", [(4, 8), (-1, 8), (0, 0), (3, -2)])
def test_bad_parallel_settings(zero, devices):
    with pytest.raises(MemwallError):
        model_states(1e9, "adam", parse_precision("bf16"), zero=zero, devices=devices)


def test_training_needs_16_or_32_bit_weights(bert):
    with pytest.raises(MemwallError, match="16- or 32-bit"):
        training_memory(bert, 1, 128, parse_precision("int8"))


# ---------------------------------------------------------------- activations


def test_fused_activations_match_korthikanti(gpt2):
    """Korthikanti et al. 2022 (eq. 1): per layer 34*s*b*h + 5*a*s^2*b bytes with 16-bit
    activations, dropout, unfused attention (their count ignores norm statistics)."""
    b, s, h, a = 4, 1024, gpt2.d_model, gpt2.n_heads
    saved = saved_tensors(gpt2, b, s, BF16, impl="fused", fused_attention=False, dropout=0.1)
    stats = sum(x.nbytes for x in saved if x.part == "layer" and x.name.endswith("stats"))
    layer = part_bytes(saved, "layer") - stats
    assert layer == pytest.approx(34 * s * b * h + 5 * a * s * s * b, rel=1e-9)


def test_eager_keeps_more_than_fused(gpt2, llama8b):
    for spec in (gpt2, llama8b):
        eager = part_bytes(saved_tensors(spec, 1, 256, BF16, "eager"), "layer")
        fused = part_bytes(saved_tensors(spec, 1, 256, BF16, "fused"), "layer")
        assert eager > fused


def test_unfused_attention_keeps_scores_and_grows_quadratically(bert):
    def per_layer(L, fused):
        return part_bytes(saved_tensors(bert, 1, L, FP32, fused_attention=fused), "layer")

    # the difference is the B*H*L*L probability matrix, minus the fused log-sum-exp
    for L in (128, 512):
        diff = per_layer(L, False) - per_layer(L, True)
        assert diff == pytest.approx(bert.n_heads * L * L * 4 - bert.n_heads * L * 4)


def test_activations_scale_with_tokens(bert):
    a1 = training_memory(bert, 1, 128, FP32).activations
    a4 = training_memory(bert, 4, 128, FP32).activations
    assert a4 == pytest.approx(4 * a1, rel=0.01)


def test_dropout_adds_masks(bert):
    a0 = training_memory(bert, 2, 128, FP32, fused_attention=False).activations
    a1 = training_memory(bert, 2, 128, FP32, fused_attention=False, dropout=0.1).activations
    assert a1 > a0
    with pytest.raises(MemwallError):
        training_memory(bert, 2, 128, FP32, dropout=1.5)


def test_unknown_impl(bert):
    with pytest.raises(MemwallError, match="implementation"):
        training_memory(bert, 1, 128, FP32, impl="jit")


# ---------------------------------------------------------------- checkpointing


def test_parse_checkpointing():
    assert parse_checkpointing("every:3", 12).segments(12) == [(0, 2), (3, 5), (6, 8), (9, 11)]
    assert parse_checkpointing("sqrt").segment_length(12) == round(math.sqrt(12))
    assert parse_checkpointing("full").recomputed_layers(12) == 12
    assert parse_checkpointing("layers:5").recomputed_layers(12) == 5
    assert parse_checkpointing("selective").segments(12) == []
    assert parse_checkpointing("none").label == "none"


@pytest.mark.parametrize(
    "text, match",
    [
        ("every:13", "larger than the model's 12 layers"),
        ("every:0", "at least 1"),
        ("layers:40", "larger than"),
        ("fulll", "did you mean full"),
        ("every", "needs a count"),
    ],
)
def test_bad_checkpointing(text, match):
    with pytest.raises(MemwallError, match=match):
        parse_checkpointing(text, 12)


def test_checkpointing_trades_memory_for_flops(bert):
    none = training_memory(bert, 8, 512, FP32, "adam", "none")
    full = training_memory(bert, 8, 512, FP32, "adam", "full")
    assert full.activations < none.activations / 5
    assert full.peak < none.peak
    # full recomputation reruns every layer's forward: less than one whole forward
    assert 0 < full.recompute_flops < full.forward_flops
    assert 0.25 < full.recompute_overhead < 1 / 3
    assert none.recompute_flops == 0
    # the model states do not change
    assert full.model_states == none.model_states


def test_selective_recomputes_only_attention(bert):
    kw = dict(precision=FP32, fused_attention=False)
    none = training_memory(bert, 8, 512, checkpointing="none", **kw)
    sel = training_memory(bert, 8, 512, checkpointing="selective", **kw)
    full = training_memory(bert, 8, 512, checkpointing="full", **kw)
    assert sel.activations < none.activations
    assert 0 < sel.recompute_flops < full.recompute_flops / 5
    # with fused attention the scores are never kept: selective saves (almost) nothing
    fsel = training_memory(bert, 8, 512, FP32, checkpointing="selective")
    fnone = training_memory(bert, 8, 512, FP32)
    assert fsel.activations == pytest.approx(fnone.activations, rel=0.01)


def test_partial_checkpointing_is_monotone(bert):
    acts = [
        training_memory(bert, 4, 256, FP32, checkpointing=f"layers:{m}").activations
        for m in range(1, 12)
    ]
    flops = [
        training_memory(bert, 4, 256, FP32, checkpointing=f"layers:{m}").recompute_flops
        for m in range(1, 12)
    ]
    assert all(a > b for a, b in zip(acts, acts[1:], strict=False))
    assert all(a < b for a, b in zip(flops, flops[1:], strict=False))


# ---------------------------------------------------------------- ZeRO, offload, optimizers


def test_zero_shards_states_not_activations(llama8b):
    fps = [
        training_memory(llama8b, 1, 2048, BF16, zero=z, devices=8, checkpointing="full")
        for z in range(4)
    ]
    states = [f.model_states for f in fps]
    assert states[0] > states[1] > states[2] > states[3]
    assert len({round(f.activations) for f in fps}) == 1
    # one device: sharding changes nothing in the model states
    one = [training_memory(llama8b, 1, 512, BF16, zero=z, devices=1).model_states for z in (0, 3)]
    assert one[0] == one[1]


def test_offload_lowers_device_peak(llama8b):
    on = training_memory(llama8b, 1, 1024, BF16, offload=True)
    off = training_memory(llama8b, 1, 1024, BF16)
    assert on.peak < off.peak and on.host > 0 and on.optimizer_state == 0


def test_optimizer_order(gpt2):
    peaks = {
        o: training_memory(gpt2, 2, 512, FP32, o).peak
        for o in ("sgd", "momentum", "adam", "adahessian")
    }
    assert peaks["sgd"] < peaks["momentum"] < peaks["adam"] < peaks["adahessian"]


def test_peak_is_on_the_timeline_and_below_the_sum(gpt2, bert):
    for spec in (gpt2, bert):
        fp = training_memory(spec, 4, 512, FP32)
        assert fp.peak == max(e.nbytes for e in fp.events)
        assert fp.model_states < fp.peak <= fp.sum_of_parts
        d = fp.to_dict()
        assert d["peak"] == fp.peak and d["timeline"]


def test_max_train_batch(gpt2):
    cap = 8 * 2**30
    b = max_train_batch(gpt2, 512, cap, precision=FP32)
    assert b >= 1
    assert training_memory(gpt2, b, 512, FP32).peak <= cap
    assert training_memory(gpt2, b + 1, 512, FP32).peak > cap


# ---------------------------------------------------------------- inference


def test_kv_cache_llama3_8b(llama8b):
    # 32 layers x 8 KV heads x 128 x (K and V) x 2 bytes = 128 KiB per token in bf16
    assert kv_cache_bytes(llama8b, 1, 1, BF16) == 128 * 1024
    assert kv_cache_bytes(llama8b, 4, 1000, BF16) == 4000 * 128 * 1024
    assert kv_cache_bytes(load_model("bert-base"), 4, 1000, BF16) == 0


def test_sliding_window_caps_kv_cache():
    cfg = dict(preset_config("mistral-7b"), sliding_window=4096, use_sliding_window=True)
    mistral = spec_from_config(cfg, "mistral-window")
    w = mistral.sliding_window
    assert w == 4096
    assert kv_cache_bytes(mistral, 1, 4 * w, BF16) == kv_cache_bytes(mistral, 1, w, BF16)
    assert kv_cache_bytes(mistral, 1, w // 2, BF16) < kv_cache_bytes(mistral, 1, w, BF16)


def test_quantised_weights(llama8b):
    bf, _ = weight_bytes(llama8b, BF16)
    assert bf == llama8b.n_params() * 2
    int4, q = weight_bytes(llama8b, parse_precision("int4"))
    # layer matrices at 4 bits plus one fp16 scale per 128; embeddings, LM head (untied) and
    # norms stay 16-bit unless the head is quantized too
    vocab = 2 * llama8b.vocab_size * llama8b.d_model
    assert 0 < q < int4 < bf / 2.5
    emb = llama8b.n_params() - q / (0.5 + 2 / 128)
    assert emb > vocab
    assert int4 == pytest.approx(q + 2 * emb)
    int4h, qh = weight_bytes(llama8b, parse_precision("int4", quantize_head=True))
    assert qh == pytest.approx(q + vocab * (0.5 + 2 / 128))
    assert int4h == pytest.approx(int4 - vocab * (2 - 0.5 - 2 / 128))


def test_inference_breakdown(llama8b):
    wl = Workload("generate", 8, 2048, 256)
    fp = inference_memory(llama8b, wl, BF16)
    assert fp.kv_cache == kv_cache_bytes(llama8b, 8, 2304, BF16)
    assert fp.total == fp.weights + fp.kv_cache + fp.activations + fp.overhead
    assert fp.activations > 0
    unf = inference_memory(
        llama8b, Workload("prefill", 1, 8192), BF16, fused_attention=False
    ).activations
    fus = inference_memory(llama8b, Workload("prefill", 1, 8192), BF16).activations
    assert unf > fus  # the score matrix


def test_max_batch_and_context_bracket_capacity(llama8b):
    cap = 40 * 2**30
    wl = Workload("generate", 1, 1024, 128)
    b = max_batch(llama8b, wl, BF16, cap)
    assert inference_memory(llama8b, wl.with_(batch=b), BF16).total <= cap
    assert inference_memory(llama8b, wl.with_(batch=b + 1), BF16).total > cap
    n = max_context(llama8b, 4, BF16, cap)
    fits = inference_memory(llama8b, Workload("generate", 4, n - 1, 1), BF16).total
    over = inference_memory(llama8b, Workload("generate", 4, n, 1), BF16).total
    assert fits <= cap < over
    assert max_batch(llama8b, wl, BF16, 1e9) == 0  # the weights alone do not fit


# ---------------------------------------------------------------- fit


def test_fit_against_catalog_device():
    s70 = load_model("llama-3-70b")
    big = training_memory(s70, 1, 512, BF16, zero=3, devices=64)
    h100 = resolve_device("h100-sxm")
    fit = check_fit(big.peak, h100)
    assert fit.fits and fit.capacity == 80 * 2**30 and fit.origin == "spec sheet"
    alone = check_fit(training_memory(s70, 1, 512, BF16).peak, h100)
    assert not alone.fits and alone.headroom < 0
    with pytest.raises(MemwallError, match="unknown device"):
        resolve_device("h100-sxn")
    with pytest.raises(TypeError, match="Device"):
        check_fit(1.0, "h100-sxm")  # names are resolved at the edge, once
    with pytest.raises(MemwallError, match="no memory capacity"):
        check_fit(1.0, replace(h100, mem_capacity=0.0))


def test_largest_and_first_true_agree_with_a_scan():
    for hi in (1, 2, 7, 64, 1000):
        for t in (0, 1, 3, 63, 64, 65, 999, 1000, 1001):
            calls: list[int] = []

            def pred(n: int, t=t, calls=calls) -> bool:
                calls.append(n)
                return n >= t

            scan = next((n for n in range(1, hi + 1) if pred(n)), None)
            calls.clear()
            assert first_true(pred, 1, hi) == scan
            assert all(1 <= c <= hi for c in calls)
            assert largest(lambda n, t=t: n <= t, hi) == min(t, hi)


# ---------------------------------------------------------------- remat curve


def test_remat_curve_and_claim(bert):
    curve = remat_curve(bert, 8, 512, FP32, "adam")
    none = curve[curve["strategy"] == "none"].iloc[0]
    full = curve[curve["strategy"] == "full"].iloc[0]
    assert none["reduction"] == 1 and none["extra_compute"] == 0
    assert full["reduction"] == curve["reduction"].max()
    front = pareto(curve)
    assert list(front["extra_compute"]) == sorted(front["extra_compute"])
    assert list(front["activation_memory"]) == sorted(front["activation_memory"], reverse=True)
    check = claim_check(curve)
    best = check["best_within_budget"]
    assert best["extra_compute"] <= 0.2
    assert check["holds"] == (best["reduction"] >= 5)
    cheapest = check["cheapest_reaching_reduction"]
    assert cheapest is None or cheapest["reduction"] >= 5


# ---------------------------------------------------------------- paper Figure 4


def test_paper_table_and_accelerators():
    t = paper_training_table()
    assert {"BERT Large", "GPT-2"} <= set(t["model"])
    acc = accelerator_memory_by_year([2012, 2016, 2018, 2019])
    mem = list(acc["mem_capacity"])
    assert mem == sorted(mem)  # the best of each year never shrinks


def test_figure4_memwall_beside_paper():
    t = figure4_table().set_index("model")
    for model in ("BERT Large", "GPT-2"):
        r = t.loc[model]
        # parameters: 4 bytes each, both sides
        assert r["memwall_params_GB"] == pytest.approx(r["paper_params_GB"], rel=0.1)
        assert r["memwall_optimizer_GB"] == pytest.approx(2 * r["memwall_params_GB"])
        # the activation accounting the paper's table matches (see paper_figure4_models.json)
        assert r["memwall_activations_GB"] == pytest.approx(r["paper_activations_GB"], rel=0.15)
    assert t["memwall_params_GB"].notna().all()  # every row predicted (issue 13)


def test_library_takes_parsed_precision_not_text(bert):
    """Text is parsed once, at the edge (the CLI); the library refuses to parse it again."""
    with pytest.raises(TypeError, match="parse_precision"):
        training_memory(bert, 1, 128, "bf16")
    with pytest.raises(TypeError, match="parse_precision"):
        model_states(1000, "adam", "fp32")


def test_selective_recompute_of_mla_attention_asked_unfused():
    # MLA's attention is one counted kernel either way; selective recomputation looked for the
    # unfused score rows and failed (KeyError 'attn_score') under --unfused-attention
    from memwall.memory import training_memory as tm

    spec = load_model("deepseek-v2-lite")
    a = tm(spec, 1, 1024, parse_precision("bf16"), checkpointing="selective", fused_attention=False)
    b = tm(spec, 1, 1024, parse_precision("bf16"), checkpointing="selective", fused_attention=True)
    assert a.recompute_flops == b.recompute_flops > 0
