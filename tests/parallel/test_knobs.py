"""The knobs that describe real runs (issue 23): link what-ifs per level, node size and a
switchless node, power and clock caps, FP8 training, context parallelism, FSDP with pipelines,
MLA training, wide expert parallelism; and the regressions of the expert-parallel check and of
ZeRO-3's data-parallel pricing."""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import replace

import pytest

import memwall.api
from memwall.cli import main
from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.hardware.derived import power_scaling
from memwall.parallel import Layout, Options, links_for, plan, validate_layout
from memwall.parallel.comm import kv_block_bytes, overlapped
from memwall.parallel.links import with_topology
from memwall.precision import FP8_TRAINING, training_precision
from memwall.predict.efficiency import efficiency_terms
from memwall.spec import Workload, load_model, parse_precision

BF16 = parse_precision("bf16")
H100 = get_device("h100-sxm")
LINKS = links_for("h100-sxm")
LLAMA = load_model("llama-3-8b")


def _train(spec, lay, batch=8, seq=2048, prec=BF16, device=H100, links=LINKS, mb=1, **kw):
    return plan(spec, device, links, lay, Options("train", batch, mb, seq, prec, **kw))


def _coll(p, group, kind=None):
    return [c for c in p.collectives if c.group == group and (kind is None or c.kind == kind)]


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ a. link what-ifs per level


def test_nvlink_and_net_what_ifs_scale_one_level_each():
    up, out, both = (links_for(f"h100-sxm@{k}") for k in ("nvlink=2", "net=0.5", "link=2"))
    assert up.intra.bandwidth == 2 * LINKS.intra.bandwidth
    assert up.inter.bandwidth == LINKS.inter.bandwidth
    assert out.intra.bandwidth == LINKS.intra.bandwidth
    assert out.inter.bandwidth == 0.5 * LINKS.inter.bandwidth
    assert (both.intra.bandwidth, both.inter.bandwidth) == (
        2 * LINKS.intra.bandwidth, 2 * LINKS.inter.bandwidth)  # fmt: skip
    assert get_device("h100-sxm@nvlink=2").interconnect_bandwidth == 2 * H100.interconnect_bandwidth
    # the network what-if moves the cross-node gradient sync and leaves the in-node TP alone
    lay = Layout(tp=8, dp=2)
    base = _train(LLAMA, lay, batch=16, overlap=False)
    slow_net = _train(LLAMA, lay, batch=16, overlap=False, links=out)
    assert slow_net.breakdown["tp_comm"] == pytest.approx(base.breakdown["tp_comm"])
    assert slow_net.breakdown["dp_comm"] > 1.9 * base.breakdown["dp_comm"]
    fast_up = _train(LLAMA, lay, batch=16, overlap=False, links=up)
    assert fast_up.breakdown["tp_comm"] < 0.6 * base.breakdown["tp_comm"]
    assert fast_up.breakdown["dp_comm"] == pytest.approx(base.breakdown["dp_comm"])


# -------------------------------------------------------------- b. node size, switchless node


def test_node_size_and_ring_inside_a_node():
    four = with_topology(LINKS, node_size=4)
    p = _train(LLAMA, Layout(tp=8), links=four)
    assert {c.level for c in _coll(p, "tp")} == {"inter"}  # tp 8 no longer fits a node of 4
    ring = with_topology(LINKS, intra="ring")
    assert ring.intra.bandwidth == pytest.approx(450e9 / 7)  # one of 7 mesh links
    assert ring.intra_all_to_all.bandwidth == 450e9  # an all-to-all uses every link
    assert ring.to_dict()["intra_topology"] == "ring"
    mi300 = with_topology(links_for("mi300x"), intra="ring")
    assert mi300.intra.bandwidth == pytest.approx(64e9)  # the datasheet's per-peer figure
    sw = _train(LLAMA, Layout(tp=8))
    rg = _train(LLAMA, Layout(tp=8), links=ring)
    assert rg.breakdown["tp_comm"] > 4 * sw.breakdown["tp_comm"]
    mix = load_model("mixtral-8x7b")
    o = Options("infer", 8, 1, 256, BF16)
    a2a = [plan(mix, H100, lk, Layout(dp=8, ep=8), o).breakdown["ep_comm"] for lk in (LINKS, ring)]
    assert a2a[1] == pytest.approx(a2a[0])
    for bad in (dict(node_size=0), dict(intra="mesh")):
        with pytest.raises(MemwallError) as e:
            with_topology(LINKS, **bad)
        assert "\n" not in str(e.value)
    r = memwall.api.parallel("gpt2", devices=4, tp=4, intra="ring", node_size=4)
    assert r.payload["links"]["intra_topology"] == "ring" and r.payload["links"]["node_size"] == 4


# ------------------------------------------------------------------ c. power and clock limits


def test_clock_and_power_caps_scale_compute_not_bandwidth():
    c = get_device("h100-sxm@clock=0.8")
    assert c.peak("bf16") == pytest.approx(0.8 * H100.peak("bf16"))
    assert c.peak("fp8") == pytest.approx(0.8 * H100.peak("fp8"))
    assert c.memory_bandwidth() == H100.memory_bandwidth()
    rel = power_scaling()
    assert rel["source"] and rel["exponent"] > 0
    p = get_device("h100-sxm@power=500")
    want = (500 / H100.tdp_w) ** (1 / rel["exponent"])
    assert p.peak("bf16") == pytest.approx(want * H100.peak("bf16"))
    assert 0.8 < want < 1 and "500 W" in p.display_name
    assert p.memory_bandwidth() == H100.memory_bandwidth()
    assert get_device("h100-sxm@power=2000").peak("bf16") == H100.peak("bf16")  # no boost
    slow = _train(LLAMA, Layout(dp=8), batch=8, device=get_device("h100-sxm@power=330"))
    assert slow.step_time > _train(LLAMA, Layout(dp=8), batch=8).step_time


# ---------------------------------------------------------------------------- d. FP8 training


def test_fp8_training_runs_the_linear_gemms_at_the_fp8_peak():
    assert training_precision("fp8") is FP8_TRAINING
    ops = op_table(LLAMA, Workload("prefill", 1, 2048), FP8_TRAINING)
    dt = dict(zip(ops["name"], ops["dtype"], strict=True))
    assert dt["q_proj"] == dt["down_proj"] == "fp8"
    assert dt["attention"] == dt["lm_head"] == dt["attn_add_norm"] == "bf16"
    lay = Layout(dp=8)
    bf, f8 = _train(LLAMA, lay), _train(LLAMA, lay, prec=FP8_TRAINING)
    assert f8.breakdown["forward"] < 0.75 * bf.breakdown["forward"]
    assert f8.per_device["optimizer_state"] == bf.per_device["optimizer_state"]  # fp32 Adam
    assert f8.per_device["weights"] == bf.per_device["weights"]  # bf16 weights
    d = memwall.api.parallel("gpt2", devices=2, precision="fp8").payload
    assert d["precision"] == "fp8" and any("FP8" in a for a in d["assumptions"])
    with pytest.raises(MemwallError, match="mode train"):
        memwall.api.parallel("gpt2", mode="infer", devices=2, precision="fp8")
    with pytest.raises(MemwallError, match="no fp8 peak"):
        memwall.api.parallel("gpt2", devices=2, device="a100-sxm-80gb", precision="fp8")


# ------------------------------------------------------------------ e. context parallelism


def test_context_parallelism_splits_the_sequence_and_rings_the_kv():
    seq = 16384
    lay = Layout(tp=2, cp=4, dp=1)
    assert lay.devices == 8 and "cp4" in lay.label and lay.to_dict()["cp"] == 4
    p = _train(LLAMA, lay, batch=2, seq=seq)
    no = _train(LLAMA, Layout(tp=2, dp=1), batch=2, seq=seq)
    assert p.per_device["activations"] < 0.3 * no.per_device["activations"]  # ~ 1/cp
    layers = LLAMA.n_layers
    sends = _coll(p, "cp", "send_recv")
    fwd = next(c for c in sends if c.phase == "forward")
    bwd = next(c for c in sends if c.phase == "backward")
    m = p.micro_batches
    assert fwd.calls == (4 - 1) * layers * m and bwd.calls == fwd.calls
    assert fwd.message == kv_block_bytes(LLAMA, lay, 1, seq, 2)
    assert bwd.message == 2 * fwd.message  # K/V and their gradients
    assert fwd.message == 1 * seq / 4 * 2 * LLAMA.n_kv_heads * LLAMA.head_dim / 2 * 2
    assert p.breakdown["cp_attention"] > 0
    # the same tokens through one device's worth of attention: cp ranks do 1/cp of it each
    assert p.extra["context_parallel"]["extra_attention_time"] > 0
    dp = _coll(_train(LLAMA, Layout(cp=4, dp=2), batch=2, seq=seq), "dp")
    assert dp and dp[0].group_size == 8  # gradients reduced over dp x cp
    assert p.model_flops == pytest.approx(no.model_flops)
    with pytest.raises(MemwallError, match="divisible by 2 x cp"):
        _train(LLAMA, Layout(cp=4, dp=2), batch=2, seq=2052)
    with pytest.raises(MemwallError, match="train only"):
        plan(LLAMA, H100, LINKS, Layout(cp=2, dp=4), Options("infer", 8, 2, 2048, BF16))
    r = memwall.api.parallel("llama-3-8b", devices=8, tp=2, cp=4, batch=2, seq_len=8192)
    assert r.payload["layout"]["cp"] == 4 and r.payload["layout"]["dp"] == 1


# ------------------------------------------------------------ f. FSDP (ZeRO-3) with a pipeline


def test_zero3_with_pipeline_prices_one_gather_and_one_reduce_scatter():
    lay = Layout(pp=2, dp=4, zero=3)
    validate_layout(LLAMA, lay, 8, 32, 1)  # refused before
    p = _train(LLAMA, lay, batch=32)
    ag, rs = _coll(p, "dp", "all_gather"), _coll(p, "dp", "reduce_scatter")
    assert [c.calls for c in ag] == [1] and [c.calls for c in rs] == [1]
    z1 = _train(LLAMA, replace(lay, zero=1), batch=32)
    assert p.per_device["weights"] == z1.per_device["weights"]  # stage weights held unsharded
    with pytest.raises(MemwallError, match="ZeRO stage 2"):
        validate_layout(LLAMA, replace(lay, zero=2), 8, 32, 1)


# ---------------------------------------------------------------------------- g. MLA training


def test_mla_models_train():
    v2 = load_model("deepseek-v2-lite")
    p = _train(v2, Layout(dp=8, ep=8), batch=8, seq=4096)
    assert p.step_time > 0 and p.per_device["activations"] > 0
    v3 = load_model("deepseek-v3")
    q = _train(v3, Layout(tp=8, pp=8, dp=8, ep=8), batch=64, seq=4096)
    assert q.step_time > 0 and 0 < q.mfu < 1


# ----------------------------------------------------------- h. expert parallelism, full width


def test_expert_parallelism_as_wide_as_the_experts():
    mix = load_model("mixtral-8x7b")  # 8 experts, top-2
    p = _train(mix, Layout(dp=8, ep=8), batch=8)
    assert _coll(p, "ep", "all_to_all")[0].group_size == 8
    assert p.per_device["weights"] < _train(mix, Layout(dp=8, ep=4), batch=8).per_device["weights"]
    validate_layout(mix, Layout(cp=2, dp=4, ep=8), 8, 8, 1, seq_len=4096)  # ep over dp x cp
    with pytest.raises(MemwallError, match="experts"):
        validate_layout(mix, Layout(dp=16, ep=16), 16, 16, 1)  # 16 does not divide 8 experts


# ------------------------------------------------------------------------------ regressions


def test_bug1_deepseek_v3_at_ep64_has_fewer_experts_per_rank_than_top_k():
    v3 = load_model("deepseek-v3")  # 256 experts, top-8: 4 per rank at EP 64
    lay = Layout(tp=8, dp=64, ep=64)
    validate_layout(v3, lay, 512, 64, 1, "infer")
    p = plan(v3, H100, LINKS, lay, Options("infer", 64, 1, 1024, BF16))
    assert p.step_time > 0 and math.isfinite(p.per_device["weights"])
    wide = p.per_device["weights"]
    narrow = plan(v3, H100, LINKS, Layout(tp=8, dp=64, ep=32), Options("infer", 64, 1, 1024, BF16))
    assert wide < narrow.per_device["weights"]


def test_bug2_zero3_has_no_post_step_gather_and_overlaps_each_micro_batch():
    lay = Layout(dp=16, zero=3)
    p = _train(LLAMA, lay, batch=64, mb=2)
    m = p.micro_batches
    dp = _coll(p, "dp")
    assert all(c.phase != "step" for c in dp)  # ZeRO-3 gathers layer by layer, never after
    ag = next(c for c in dp if c.kind == "all_gather")
    rs = next(c for c in dp if c.kind == "reduce_scatter")
    assert (ag.calls, rs.calls) == (2 * m, m)  # forward + backward gathers; backward scatter
    t_f = p.breakdown["forward"] / m
    t_b = p.breakdown["backward"] / m
    r = efficiency_terms(H100)["overlap_rate"].value  # compute beside a collective slows
    want = m * (overlapped(ag.time_each, t_f, r) + overlapped(ag.time_each + rs.time_each, t_b, r))
    assert p.breakdown["dp_comm"] == pytest.approx(want)
    # with enough compute per micro-batch every gather and scatter hides: only the slowdown
    # of the compute beside them is left
    big = _train(LLAMA, Layout(tp=1, dp=8, zero=3), batch=64, mb=8, seq=4096,
                 links=links_for("h100-sxm@net=100"))  # fmt: skip
    bag, brs = (
        next(c for c in _coll(big, "dp") if c.kind == k) for k in ("all_gather", "reduce_scatter")
    )
    hidden = big.micro_batches * (2 * bag.time_each + brs.time_each)
    assert big.breakdown["dp_comm"] == pytest.approx((1 - r) * hidden)


def test_tp_overlap_hides_tensor_parallel_collectives_behind_the_matmuls():
    """--tp-overlap (Megatron's --tp-comm-overlap): each pass's tensor-parallel collectives
    hide behind that pass's GEMMs, leaving max(M - C, M (1 - overlap_rate)) exposed; without
    it they are all exposed. Published runs that state it carry tp_overlap in the CSV."""
    from memwall.parallel.shard import forward

    lay = Layout(tp=8, dp=1, sequence_parallel=True)
    plain = _train(LLAMA, lay, batch=2, seq=4096)
    over = _train(LLAMA, lay, batch=2, seq=4096, tp_overlap=True)
    tp = _coll(plain, "tp")
    assert plain.breakdown["tp_comm"] == pytest.approx(sum(c.time for c in tp))
    rate = efficiency_terms(H100)["overlap_rate"].value
    shard = replace(LLAMA, n_heads=4, n_kv_heads=1, d_ff=LLAMA.d_ff // 8, vocab_size=16032)
    mm = forward(shard, "prefill", 1, 4096, BF16, H100, True, "eager", "auto")["matmul"]
    assert mm > 0
    want = 0.0
    for phase, hide in (("forward", mm), ("backward", 2 * mm)):
        m = sum(c.time for c in tp if c.phase == phase) / plain.micro_batches
        want += overlapped(m, hide, rate)
    assert over.breakdown["tp_comm"] == pytest.approx(plain.micro_batches * want, rel=0.02)
    assert over.breakdown["tp_comm"] < plain.breakdown["tp_comm"]
    assert over.step_time < plain.step_time
    d = memwall.api.parallel("llama-3-8b", devices=8, tp=8, sequence_parallel=True,
                             tp_overlap=True).to_dict()  # fmt: skip
    assert d["tp_overlap"] is True
    code, _, err = _run("parallel", "gpt2", "--mode", "infer", "--devices", "2", "--tp", "2",
                        "--tp-overlap")  # fmt: skip
    assert code == 2 and "--tp-overlap" in err and len(err.strip().splitlines()) == 1


def test_published_rows_state_tp_overlap_where_their_sources_do():
    from memwall.parallel.published import published_rows

    rows = {r["id"]: r for r in published_rows()}
    assert rows["mcore-weak-70b"]["tp_overlap"] is True  # README: --tp-comm-overlap
    assert rows["dgxc-nemotron4-340b-h100-128"]["tp_overlap"] is False  # yaml: false
    assert not any(r["tp_overlap"] for r in rows.values() if r["tp"] == 1)


# ---------------------------------------------------------------------------------- --help


def test_help_names_every_new_flag_with_its_unit():
    code, out, _ = _run("parallel", "--help")
    assert code == 0
    text = " ".join(out.split())
    for flag in ("--cp", "--node-size", "--intra", "@nvlink", "@net", "@power", "@clock", "fp8",
                 "--tp-overlap"):  # fmt: skip
        assert flag in text, flag
    assert "watts" in text and "in devices" in text and "bytes/s" in text
    code, out, err = _run("parallel", "gpt2", "--devices", "2", "--cp", "2", "--mode", "infer")
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, out, _ = _run("parallel", "gpt2", "--devices", "2", "--cp", "2", "--seq-len", "1024",
                        "--format", "json")  # fmt: skip
    assert code == 0 and json.loads(out)["layout"]["cp"] == 2


def test_kernel_rate_knob_sets_the_whole_step_rate_and_says_so():
    """--kernel-rate FRACTION replaces the fitted whole-step rate (train, realistic); bad
    values, the roofline and inference are refused in one line."""
    code, out, _ = _run("parallel", "--help")
    assert code == 0 and "--kernel-rate" in out and "FRACTION" in out
    args = ("parallel", "gpt2", "--devices", "2", "--seq-len", "512", "--format", "json")
    code, out, _ = _run(*args)
    fitted = json.loads(out)
    code, out, _ = _run(*args, "--kernel-rate", "1.0")
    given = json.loads(out)
    assert code == 0 and given["step_time"] < fitted["step_time"]
    assert "as given (--kernel-rate)" in given["compute_model"]
    assert "fitted on published training runs" in fitted["compute_model"]
    for extra in (("--kernel-rate", "0"), ("--kernel-rate", "1.6"),
                  ("--kernel-rate", "0.9", "--roofline"),
                  ("--kernel-rate", "0.9", "--mode", "infer")):  # fmt: skip
        code, _, err = _run(*args, *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1, extra
        assert "--kernel-rate" in err, extra  # the line names the flag
