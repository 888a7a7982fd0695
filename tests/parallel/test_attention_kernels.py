"""Attention kernel families (data/efficiency.json attention_kernels) and the knob that picks
one: Options.attention, memwall.api.parallel(attention=...), `memwall parallel --attention`."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import replace
from importlib import resources

import pytest

import memwall.api
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel import Layout, Options, links_for, plan
from memwall.parallel.published import predict_row, published_rows
from memwall.parallel.shard import forward
from memwall.predict.efficiency import (
    attention_names,
    attention_terms,
    efficiency_terms,
    load_table,
    parse_table,
    resolve_attention,
)
from memwall.spec import load_model, parse_precision, spec_from_config

BF16 = parse_precision("bf16")
H100, A100 = get_device("h100-sxm"), get_device("a100-sxm-80gb")


def _figures(kernel: str, arch: str):
    return load_table().attention_kernels.kernels[kernel].archs[arch]


def test_auto_is_what_the_frameworks_run_on_the_device():
    assert resolve_attention(H100, "auto") == "cudnn"  # Transformer Engine on Hopper
    assert resolve_attention(get_device("h200-sxm"), "auto") == "cudnn"
    assert resolve_attention(A100, "auto") == "fa2"
    assert resolve_attention(get_device("b200"), "auto") == "cudnn"  # Blackwell: TE -> cuDNN
    assert resolve_attention(get_device("gb200"), "auto") == "cudnn"
    assert resolve_attention(get_device("mi300x"), "auto") is None  # no figures: class default
    assert resolve_attention(get_device("h100-sxm@clock=0.8"), "auto") == "cudnn"  # what-if
    assert {"auto", "cudnn", "fa3", "fa2", "triton", "torch"} <= set(attention_names())


def test_kernel_figures_replace_the_class_terms_and_scale_for_head_dim_64():
    base = efficiency_terms(H100)
    fa2 = _figures("fa2", "hopper")
    t128, _ = attention_terms(base, H100, "fa2", 128)
    assert t128["attn_frac"].value == fa2.attn_frac.value
    assert t128["attn_bwd_frac"].value == fa2.attn_bwd_frac.value
    assert "fa2" in t128["attn_frac"].origin and "FlashAttention-3" in t128["attn_frac"].source
    t64, note = attention_terms(base, H100, "fa2", 64)
    assert t64["attn_frac"].value == pytest.approx(fa2.attn_frac.value * fa2.hd64.value)
    assert t64["attn_bwd_frac"].value == pytest.approx(fa2.attn_bwd_frac.value * fa2.bwd_hd64.value)
    t96, _ = attention_terms(base, H100, "fa2", 96)  # halfway: the linear mix
    mix = (1 + fa2.hd64.value) / 2
    assert t96["attn_frac"].value == pytest.approx(fa2.attn_frac.value * mix)
    assert "head dim 64" in note
    for t in (t64["attn_frac"], t96["attn_bwd_frac"]):
        assert t.low <= t.value <= t.high
    # no figures for the device: the class terms, said in the note
    b200 = get_device("b200")
    same, note = attention_terms(efficiency_terms(b200), b200, "fa2", 128)
    assert same["attn_frac"].value == efficiency_terms(b200)["attn_frac"].value
    assert "no published figures for b200" in note


def test_a_head_dim_between_builds_runs_as_the_next_build_zero_padded():
    """FlashAttention-2 is built for head dims 32, 64, 96, 128, 160, 192, 256, FlashAttention-3
    for 64, 96, 128, 192, 256 and the 2022 Triton kernel pads to a power of two (its source's
    BLOCK_HEADDIM): a head dim between runs the next build, and the padded share of each dot
    product is lost. cuDNN and unfused attention run the model's own head dim."""
    base = efficiency_terms(H100)
    fa2, fa3, tri = (_figures(k, "hopper") for k in ("fa2", "fa3", "triton"))
    t112, note = attention_terms(base, H100, "fa2", 112)
    assert t112["attn_frac"].value == pytest.approx(fa2.attn_frac.value * 112 / 128)
    assert t112["attn_bwd_frac"].value == pytest.approx(fa2.attn_bwd_frac.value * 112 / 128)
    assert "run as 128 (zero-padded)" in note and "flash_api.cpp" in t112["attn_frac"].source
    t80, note80 = attention_terms(base, H100, "fa2", 80)  # the 96 build, itself between 64 and 128
    at96 = fa2.attn_frac.value * (fa2.hd64.value + 0.5 * (1 - fa2.hd64.value))
    assert t80["attn_frac"].value == pytest.approx(at96 * 80 / 96) and "run as 96" in note80
    t160, _ = attention_terms(base, H100, "fa3", 160)
    assert t160["attn_frac"].value == pytest.approx(fa3.attn_frac.value * 160 / 192)
    t96, _ = attention_terms(base, H100, "triton", 96)
    assert t96["attn_frac"].value == pytest.approx(tri.attn_frac.value * 96 / 128)
    for t in (t112["attn_frac"], t80["attn_bwd_frac"], t160["attn_frac"], t96["attn_frac"]):
        assert t.low <= t.value <= t.high
    # a head dim a kernel is built for, and kernels that run any head dim, are not padded
    same, note96 = attention_terms(base, H100, "fa2", 96)
    assert same["attn_frac"].value == pytest.approx(at96) and "run as" not in note96
    cud = _figures("cudnn", "hopper")
    c112, cnote = attention_terms(base, H100, "cudnn", 112)
    mix = cud.hd64.value + 0.75 * (1 - cud.hd64.value)
    assert c112["attn_frac"].value == pytest.approx(cud.attn_frac.value * mix)
    assert "run as" not in cnote
    # the padding reaches a step: two GPTs with the same attention FLOPs on A100 (FlashAttention-2
    # by default), head dim 80 (run as 96) and 128: attention time in the ratio of their terms
    cfg = {"model_type": "gpt2", "n_embd": 2560, "n_layer": 2, "n_positions": 16384,
           "vocab_size": 50257}  # fmt: skip
    hd80 = spec_from_config({**cfg, "n_head": 32}, name="hd80")
    hd128 = spec_from_config({**cfg, "n_head": 20}, name="hd128")
    assert (hd80.head_dim, hd128.head_dim) == (80, 128)
    a100 = efficiency_terms(A100)
    f80 = forward(hd80, "prefill", 1, 16384, BF16, A100, True, "eager", "auto")
    f128 = forward(hd128, "prefill", 1, 16384, BF16, A100, True, "eager", "auto")
    want = (attention_terms(a100, A100, "auto", 128)[0]["attn_frac"].value
            / attention_terms(a100, A100, "auto", 80)[0]["attn_frac"].value)  # fmt: skip
    assert want > 1.2
    assert f80["attention"] / f128["attention"] == pytest.approx(want, rel=0.02)


def test_a_head_dim_past_the_largest_build_is_refused_for_a_named_kernel():
    """llm-foundry's Triton kernel asserts head dim <= 128: asking it for Gemma-2's 256 is an
    error with one line (exit 2 on the command line); auto falls back to the class terms."""
    base = efficiency_terms(H100)
    with pytest.raises(MemwallError, match="triton runs head dims up to 128, not 256"):
        attention_terms(base, H100, "triton", 256)
    with pytest.raises(MemwallError, match="up to 128"):
        memwall.api.parallel("gemma-2-2b", devices=8, seq_len=4096, attention="triton")
    from memwall.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as e:
            main(["parallel", "gemma-2-2b", "--devices", "8", "--attention", "triton"])
    assert e.value.code == 2
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert len(lines) == 1 and "up to 128" in lines[0] and "Traceback" not in err.getvalue()
    # no head dim given: the figures as published (head dim 128), neither padded nor refused
    none, _ = attention_terms(base, H100, "triton", None)
    assert none["attn_frac"].value == _figures("triton", "hopper").attn_frac.value
    ok = memwall.api.parallel("gemma-2-2b", devices=8, seq_len=4096, attention="fa2").to_dict()
    assert ok["attention"]["kernel"] == "fa2"


def test_blackwell_cudnn_figures_hold_for_head_dim_128_only():
    """The B200 cuDNN figures (cudnn-frontend's SDPA benchmark) are at head dim 128: a narrower
    head keeps the class terms and says so, rather than borrowing another architecture's ratio."""
    b200 = get_device("b200")
    base = efficiency_terms(b200)
    figs = _figures("cudnn", "blackwell")
    assert figs.hd64 is None and figs.bwd_hd64 is None
    t128, note = attention_terms(base, b200, "auto", 128)
    assert t128["attn_frac"].value == figs.attn_frac.value
    assert t128["attn_bwd_frac"].value == figs.attn_bwd_frac.value
    assert "cudnn-frontend" in t128["attn_frac"].source and "blackwell" in note
    t64, note64 = attention_terms(base, b200, "auto", 64)
    assert t64["attn_frac"].value == base["attn_frac"].value
    assert "head dim 128 only" in note64


def test_fa2_makes_a_long_sequence_h100_step_slower_by_its_published_ratio():
    """At 32k tokens attention is compute-bound: its forward time scales as 1 / attn_frac and
    its backward as 1 / attn_bwd_frac, the fractions of the FlashAttention-3 paper's figures."""
    spec = load_model("llama-3-8b")  # head dim 128
    fa2 = forward(spec, "prefill", 1, 32768, BF16, H100, True, "eager", "fa2")
    cud = forward(spec, "prefill", 1, 32768, BF16, H100, True, "eager", "cudnn")
    f2, fc = _figures("fa2", "hopper"), _figures("cudnn", "hopper")
    assert fa2["attention"] / cud["attention"] == pytest.approx(
        fc.attn_frac.value / f2.attn_frac.value, rel=0.02
    )
    assert fa2["attention"] > 1.5 * cud["attention"]
    assert fa2["backward"] > cud["backward"] and fa2["time"] > cud["time"]
    # the class terms (attention=None) are what callers outside parallel still get
    none = forward(spec, "prefill", 1, 32768, BF16, H100, True, "eager", None)
    cls = efficiency_terms(H100)["attn_frac"].value
    assert none["attention"] / cud["attention"] == pytest.approx(fc.attn_frac.value / cls, rel=0.02)


def test_the_knob_reaches_the_step_time_and_says_what_priced_attention():
    spec, links = load_model("llama-3-8b"), links_for("h100-sxm")
    lay = Layout(tp=1, dp=8, zero=1)
    o = Options("train", 16, 1, 16384, BF16)
    assert o.attention == "auto"
    steps = {}
    for k in ("auto", "cudnn", "fa3", "fa2", "triton"):
        p = plan(spec, H100, links, lay, replace(o, attention=k))
        steps[k] = p.step_time
        assert p.extra["attention"]["requested"] == k
        assert p.extra["attention"]["kernel"] == ("cudnn" if k == "auto" else k)
    assert steps["auto"] == steps["cudnn"]
    assert steps["fa3"] < steps["cudnn"] < steps["fa2"] < steps["triton"]
    with pytest.raises(MemwallError, match="unknown attention kernel 'fa9'"):
        plan(spec, H100, links, lay, replace(o, attention="fa9"))
    # inference: auto keeps the class terms; a named family prices prefill
    inf = Options("infer", 8, 1, 8192, BF16)
    auto = plan(spec, H100, links, Layout(tp=8), inf)
    tri = plan(spec, H100, links, Layout(tp=8), replace(inf, attention="triton"))
    assert auto.extra["attention"]["kernel"] is None
    assert tri.extra["prefill_time"] > auto.extra["prefill_time"]


def test_api_and_cli_take_attention_and_refuse_it_with_the_roofline():
    kw = dict(devices=8, tp=1, seq_len=8192)
    cud = memwall.api.parallel("llama-3-8b", **kw).to_dict()
    tri = memwall.api.parallel("llama-3-8b", attention="triton", **kw).to_dict()
    assert cud["attention"]["kernel"] == "cudnn" and tri["attention"]["kernel"] == "triton"
    assert tri["step_time"] > cud["step_time"]
    with pytest.raises(MemwallError, match="--attention"):
        memwall.api.parallel("llama-3-8b", attention="triton", roofline=True, **kw)
    with pytest.raises(MemwallError, match="--attention must be one of auto"):
        memwall.api.parallel("llama-3-8b", attention="flash", **kw)
    from memwall.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["parallel", "llama-3-8b", "--devices", "8", "--seq-len", "8192",
                  "--attention", "fa2", "--format", "json"])  # fmt: skip
        except SystemExit as e:
            assert not e.code, err.getvalue()
    d = json.loads(out.getvalue())
    assert d["attention"]["kernel"] == "fa2"
    assert cud["step_time"] < d["step_time"] < tri["step_time"]


def test_default_headline_search_still_runs():
    """`memwall parallel llama-3-70b --mode train --devices 64 --device h100-sxm --search`:
    the default (auto = cuDNN on Hopper) is no slower than the class terms it replaced."""
    r = memwall.api.parallel("llama-3-70b", mode="train", devices=64, device="h100-sxm",
                             search=True).to_dict()  # fmt: skip
    assert r["attention"]["kernel"] == "cudnn"
    assert r["search"]["ranked"] and r["fits"]
    assert 0.45 < r["mfu"] < 0.62
    fa2 = memwall.api.parallel("llama-3-70b", mode="train", devices=64, device="h100-sxm",
                               search=True, attention="fa2").to_dict()  # fmt: skip
    assert fa2["mfu"] < r["mfu"]


def test_every_published_row_names_the_attention_it_ran():
    rows = published_rows()
    assert all(r["attention"] in attention_names() for r in rows)
    mpt = [r for r in rows if r["id"].startswith("mpt-")]
    assert mpt and all(r["attention"] == "triton" for r in mpt)  # llm-foundry attn_impl triton
    assert all(r["attention"] == "cudnn" for r in rows if r["id"].startswith(("dgxc-", "mcore-")))
    row = next(r for r in rows if r["id"] == "mpt-7b-h100-8g-64k")
    tri = predict_row(row)
    assert tri["attention"] == "triton"
    assert predict_row({**row, "attention": "cudnn"})["predicted"] > 1.5 * tri["predicted"]


def _data():
    text = resources.files("memwall.data").joinpath("efficiency.json").read_text("utf-8")
    return json.loads(text)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["attention_kernels"]["kernels"]["fa2"]["archs"]["hopper"]["attn_frac"]
         .update(value=0.9), "outside its range"),
        (lambda d: d["attention_kernels"]["kernels"]["fa3"]["archs"]["hopper"]["hd64"]
         .update(source="nowhere"), "unknown source"),
        (lambda d: d["attention_kernels"]["defaults"].update(ampere="fa3"), "default 'fa3'"),
        (lambda d: d["attention_kernels"]["kernels"]["fa2"].update(head_dims=[128, 64]),
         "head_dims must rise"),
        (lambda d: d["attention_kernels"]["kernels"]["fa3"].update(head_dims_source="nowhere"),
         "head_dims must rise"),
        (lambda d: d["attention_kernels"]["kernels"]["fa2"]["archs"].update(
            volta=d["attention_kernels"]["kernels"]["fa2"]["archs"]["hopper"]), "unknown arch"),
    ],
)  # fmt: skip
def test_bad_attention_data_is_refused(edit, needle):
    d = copy.deepcopy(_data())
    edit(d)
    with pytest.raises(MemwallError, match=needle):
        parse_table(d)
