"""Efficiency model for devices memwall cannot measure: terms, sources, ranges and behaviour."""

from __future__ import annotations

import copy
import json
from importlib import resources

import numpy as np
import pytest

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import get_device, load_catalog
from memwall.precision import parse_precision
from memwall.predict.efficiency import (
    TERMS,
    combine,
    device_class,
    device_prediction,
    efficiency_terms,
    memory_compute_overlap,
    parse_table,
    predict_efficiency,
)
from memwall.predict.whatif import what_if_rows
from memwall.spec import Workload, load_model_config

LLAMA, _ = load_model_config("llama-2-7b")
Q4 = parse_precision("4/16/16", 32)
F16 = parse_precision("fp16")


def gen_table(prec, batch=1, gen=128):
    return op_table(LLAMA, Workload("generate", batch, 0, gen), prec, "full", True)


def raw_table() -> dict:
    text = resources.files("memwall.data").joinpath("efficiency.json").read_text("utf-8")
    return json.loads(text)


def test_every_catalog_device_has_a_class_and_sourced_terms():
    for d in load_catalog():
        terms = efficiency_terms(d)
        assert set(terms) == set(TERMS), d.name
        for t in terms.values():
            assert t.low <= t.value <= t.high, (d.name, t.name)
            assert len(t.source) > 20 and t.unit and t.what
            assert t.origin.startswith(("device-measured", "class default"))
    assert device_class(get_device("apple-m4-max")) == "apple-gpu"
    assert device_class(get_device("rtx-4090")) == "gddr-gpu"
    assert device_class(get_device("mi300x")) == "amd-hbm-gpu"
    assert device_class(get_device("jetson-agx-orin-64gb")) == "edge-gpu"


def test_output_says_which_terms_are_measured_for_the_device():
    h = efficiency_terms(get_device("h100-sxm"))
    assert (
        h["mm_frac"].origin == "device-measured (h100-sxm)"
        and "Matmul FLOPS" in h["mm_frac"].source
    )
    assert h["bw_frac"].origin == "class default (hbm-gpu)"
    d = predict_efficiency(gen_table(F16), get_device("h100-sxm")).to_dict()
    assert "mm_frac" in d["terms_device_measured"] and "bw_frac" in d["terms_class_default"]
    assert {t["name"] for t in d["efficiency_terms"]} == set(TERMS)
    assert all(t["source"] and t["value"] > 0 for t in d["efficiency_terms"])
    # a what-if device keeps the efficiencies of the chip it was derived from
    w = efficiency_terms(get_device("h100-sxm@bw=2"))
    assert w["mm_frac"].origin == "device-measured (h100-sxm)"


@pytest.mark.parametrize(
    "name", [d.name for d in load_catalog() if d.vendor == "Apple" or "rtx-" in d.name]
)
def test_acceptance_workload_on_every_consumer_device(name):
    dev = get_device(name)
    p = device_prediction(gen_table(Q4), dev, Q4)
    t = p.totals
    assert 0 < t["time_low"] <= t["time"] <= t["time_high"]
    assert t["time"] > t["roofline_time"]  # efficiencies only ever slow the datasheet down
    assert t["time"] < 5 * t["roofline_time"]
    assert p.roofline is not None and p.roofline.totals["time"] == pytest.approx(t["roofline_time"])
    json.dumps(p.to_dict())  # plain JSON


def test_decode_is_memory_bound_and_four_bit_is_not_four_times_faster():
    dev = get_device("rtx-4090")
    q4 = predict_efficiency(gen_table(Q4), dev, Q4)
    f16 = predict_efficiency(gen_table(F16), dev, F16)
    mm = q4.ops[q4.ops["kind"] == "matmul"]
    assert (mm["bound"] == "memory").all()
    speedup = f16.totals["time"] / q4.totals["time"]
    byte_ratio = f16.totals["bytes"] / q4.totals["bytes"]
    assert 1.5 < speedup < byte_ratio  # dequantization and kernel gaps eat part of the saving


def test_matmul_efficiency_grows_with_tokens():
    dev = get_device("a100-sxm-80gb")
    bf16 = parse_precision("bf16")

    def matmul_rate(batch, phase, seq):
        df = op_table(LLAMA, Workload(phase, batch, seq), bf16, "full", True)
        ops = predict_efficiency(df, dev, bf16).ops
        mm = ops[ops["name"] == "gate_proj"].iloc[0]
        return mm["flops"] / mm["time"]

    gemv = matmul_rate(1, "decode", 128)
    gemm = matmul_rate(8, "prefill", 2048)
    assert gemm > 50 * gemv
    assert gemm < dev.peak("bf16") * efficiency_terms(dev)["mm_frac"].value


def test_eager_launch_costs_where_kernels_are_short():
    gpt2, _ = load_model_config("gpt2")
    df = op_table(gpt2, Workload("decode", 1, 16), parse_precision("fp16"), "full", True)
    dev = get_device("h100-sxm")
    eager = predict_efficiency(df, dev, launch="eager")
    graph = predict_efficiency(df, dev, launch="graph")
    assert eager.totals["time"] > 1.2 * graph.totals["time"]
    assert (eager.ops["bound"] == "launch").mean() > 0.5
    big = gen_table(F16)
    e, g = (predict_efficiency(big, dev, F16, launch=m).totals["time"] for m in ("eager", "graph"))
    assert e < 1.2 * g  # long kernels hide the host's launches
    with pytest.raises(MemwallError, match="launch mode"):
        predict_efficiency(df, dev, launch="compiled")


def test_memory_and_compute_overlap_imperfectly_near_the_ridge():
    # XLA's GPU cost model: time = t_mem + t_cmp - 0.95 x min(t_mem, t_cmp), so a kernel whose
    # two times are equal (at the ridge) takes 5% longer than the roofline's max of them
    assert memory_compute_overlap() == 0.95
    assert combine(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(1.05)
    assert combine(np.array([1.0]), np.array([0.0]))[0] == pytest.approx(1.0)
    dev = get_device("h100-sxm")
    bf16 = parse_precision("bf16")
    df = op_table(LLAMA, Workload("prefill", 1, 128), bf16, "full", True)
    ops = predict_efficiency(df, dev, bf16, launch="kernel").ops
    mm = ops[ops["kind"] == "matmul"]
    assert (mm["time"] > mm[["t_memory", "t_compute"]].max(axis=1) * 1.02).any()
    assert (mm["time"] <= mm[["t_memory", "t_compute"]].max(axis=1) * 1.05 + 1e-15).all()


def test_what_if_bandwidth_helps_decode_less_than_its_factor():
    base = predict_efficiency(gen_table(Q4), get_device("h100-sxm"), Q4).totals["time"]
    fast = predict_efficiency(gen_table(Q4), get_device("h100-sxm@bw=2"), Q4).totals["time"]
    assert base / 2 < fast < base / 1.3
    more_flops = predict_efficiency(gen_table(Q4), get_device("h100-sxm@flops=4"), Q4)
    assert more_flops.totals["time"] == pytest.approx(base, rel=0.05)  # decode ignores FLOPs


def test_sixteen_bit_runs_as_fp16_where_there_is_no_bf16_but_bf16_by_name_is_refused():
    dev = get_device("apple-m2-max")
    p = predict_efficiency(gen_table(Q4), dev, Q4)
    assert set(p.peaks_used) == {"fp16"} and "fp16 peak" in p.notes[0]
    bf16 = parse_precision("bf16")
    with pytest.raises(MemwallError, match="no bf16 peak"):
        predict_efficiency(gen_table(bf16, gen=4), dev, bf16)
    int8 = parse_precision("int8")
    with pytest.raises(MemwallError, match="no int8 peak"):
        predict_efficiency(gen_table(int8, gen=4), dev, int8)


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda t: t["classes"]["cpu"]["bw_frac"].update(value=2.0), "outside its range"),
        (lambda t: t["classes"]["cpu"]["bw_frac"].update(source="nowhere"), "source"),
        (lambda t: t["classes"]["cpu"].pop("vec_frac"), "every term"),
        (lambda t: t["devices"]["h100-sxm"]["mm_frac"].update(low=-1), "malformed"),
        (lambda t: t["memory_compute_overlap"].update(source="nowhere"), "overlap: unknown"),
        (lambda t: t["memory_compute_overlap"].update(value=1.5), "malformed"),
    ],
)
def test_bad_efficiency_data_is_refused(edit, needle):
    t = copy.deepcopy(raw_table())
    edit(t)
    with pytest.raises(MemwallError, match=needle):
        parse_table(t)


def test_quantize_head_reaches_the_bits_form_of_precision():
    """`4/16/16` with quantize_head prices the LM head at 4 bits (a published row relies on it)."""
    q = parse_precision("4/16/16", 32, True)
    assert q.quantize_head and q.head_weight_bytes == q.weight_bytes < 2.0


def test_what_if_rows_name_each_scaling_and_its_range():
    rows = what_if_rows(gen_table(Q4, gen=16), get_device("h100-sxm"), Q4)
    assert rows[0]["device"] == "h100-sxm" and rows[0]["speedup"] == 1.0
    by = {r["device"]: r for r in rows}
    assert 1.2 < by["h100-sxm@bw=2"]["speedup"] < 2.0  # decode: bandwidth helps
    assert by["h100-sxm@flops=2"]["speedup"] == pytest.approx(1.0, abs=0.05)  # FLOPs do not
    assert by["h100-sxm@mem=2"]["speedup"] == pytest.approx(1.0)
    for r in rows:
        assert r["time_low"] <= r["time"] <= r["time_high"]
        assert ("what-if" in r["display_name"]) == bool(r["what_if"])


def _gate_proj(dev, prec, phase="prefill", batch=8, seq=2048):
    df = op_table(LLAMA, Workload(phase, batch, seq), prec, "full", True)
    ops = predict_efficiency(df, dev, prec).ops
    return ops[ops["name"] == "gate_proj"].iloc[0]


def test_eight_bit_matmuls_reach_a_smaller_share_of_their_doubled_peak_on_hopper():
    """mm8_rel: an FP8 GEMM on Hopper reaches about 0.68 of its peak where a BF16 one reaches
    0.80 (DeepGEMM, tilelang): twice the peak buys 1.7x, not 2x. Devices with no published
    8-bit figure keep the 16-bit share (the class default 1)."""
    w8a8, bf16 = parse_precision("8/8/8", 8192), parse_precision("bf16")
    h100 = get_device("h100-sxm")
    peaks = h100.peak("int8") / h100.peak("bf16")
    assert peaks == pytest.approx(2.0, rel=1e-3)
    fast, slow = _gate_proj(h100, w8a8), _gate_proj(h100, bf16)
    assert fast["bound"] == slow["bound"] == "compute"
    rel = efficiency_terms(h100)["mm8_rel"]
    assert rel.value == pytest.approx(0.85) and rel.origin.startswith("device")
    assert slow["t_compute"] / fast["t_compute"] == pytest.approx(peaks * 0.85, rel=1e-6)
    a100 = get_device("a100-sxm-80gb")  # int8 peak 624 = 2 x bf16; no 8-bit figure published
    assert efficiency_terms(a100)["mm8_rel"].value == 1.0
    ratio = _gate_proj(a100, bf16)["t_compute"] / _gate_proj(a100, w8a8)["t_compute"]
    assert ratio == pytest.approx(a100.peak("int8") / a100.peak("bf16"), rel=1e-6)


def test_blackwell_gemm_terms_are_the_measured_maximum_achievable_matmul():
    """B200 and GB200 price GEMMs at their own MAMF rows (bf16 77.6% and 72.9% of peak), and an
    8-bit GEMM at the FP8 row over the bf16 one of the same device (0.983, 0.992): on Blackwell
    the FP8 GEMM keeps nearly the 16-bit share, unlike Hopper's 0.85."""
    b200, gb200 = get_device("b200"), get_device("gb200")
    tb, tg = efficiency_terms(b200), efficiency_terms(gb200)
    assert tb["mm_frac"].value == pytest.approx(0.776)
    assert tg["mm_frac"].value == pytest.approx(0.729)
    assert tg["mm_frac"].origin.startswith("device")  # was the class default 0.8
    for t, rel in ((tb, 0.983), (tg, 0.992)):
        assert t["mm8_rel"].value == pytest.approx(rel) and "float8" in t["mm8_rel"].source
        assert t["mm8_rel"].low <= t["mm8_rel"].value <= t["mm8_rel"].high
    assert tb["mm8_rel"].value > efficiency_terms(get_device("h100-sxm"))["mm8_rel"].value


def test_attention_stays_sixteen_bit_when_the_matmuls_are_eight_bit():
    """Fused attention's matmuls run at the 16-bit peak under FP8/INT8 precisions (FP8 context
    attention is opt-in: TensorRT-LLM's --use_fp8_context_fmha; FlashAttention-2 has no FP8),
    so an 8-bit prefill's attention is not twice as fast as a 16-bit one."""
    w8a8, bf16 = parse_precision("8/8/8", 8192), parse_precision("bf16")
    dev = get_device("h200-sxm")

    def attention(prec):
        df = op_table(LLAMA, Workload("prefill", 4, 4096), prec, "full", True)
        ops = predict_efficiency(df, dev, prec).ops
        return ops[ops["kind"] == "attention"].iloc[0]

    a8, a16 = attention(w8a8), attention(bf16)
    assert a8["flops"] == a16["flops"] and a8["bound"] == "compute"
    assert a8["t_compute"] == pytest.approx(a16["t_compute"], rel=1e-9)
    frac = efficiency_terms(dev)["attn_frac"].value
    assert a8["t_compute"] == pytest.approx(a8["flops"] / (dev.peak("bf16") * frac), rel=1e-9)


def test_eight_bit_kv_cache_is_widened_on_the_conversion_pipe():
    """kv8_dq_frac: a decode attention kernel that widens an 8-bit KV cache converts every K/V
    element it reads (CUDA: 16 conversions per clock per SM, 1/16 of Hopper's fp32 FLOP rate).
    Converted once per query head (TensorRT-LLM's masked multi-head attention), Mistral-7B's
    grouped-query decode is bound by conversions, not bytes; converted once per element read it
    stays memory-bound on an H100; by default (FP8 MMAs, no conversion) and with a 16-bit cache
    nothing is paid."""
    mistral, _ = load_model_config("mistral-7b")
    w8, bf16 = parse_precision("8/8/8", 8192), parse_precision("bf16")
    dev = get_device("h100-sxm")
    term = efficiency_terms(dev)["kv8_dq_frac"]
    assert term.value == pytest.approx(1 / 16) and "Type Conversions" in term.source.title()

    def attention(prec, kv_dequant="kv_head"):
        df = op_table(mistral, Workload("decode", 64, 2048), prec, "full", True)
        ops = predict_efficiency(df, dev, prec, kv_dequant=kv_dequant).ops
        return ops[ops["kind"] == "attention"].iloc[0]

    per_q, per_kv, half = attention(w8, "query_head"), attention(w8), attention(bf16, "query_head")
    assert per_q["bound"] == "compute" and per_kv["bound"] == half["bound"] == "memory"
    default = attention(w8, "none")
    # not binding on an H100: the conversions hide under the memory traffic (all but the 5% of
    # them that memory_compute_overlap leaves exposed)
    assert per_kv["time"] == pytest.approx(default["time"], rel=0.05)
    assert per_q["time"] > 2.5 * default["time"]
    ops = op_table(mistral, Workload("decode", 64, 2048), w8, "full", True)
    # one conversion per K and per V element per query head: the matmul FLOPs / 2
    elements = float(ops.loc[ops["kind"] == "attention", "matmul_flops"].iloc[0]) / 2
    assert per_q["t_compute"] == pytest.approx(elements / (dev.peak("fp32") * term.value))
    assert per_q["t_compute"] > 2.5 * per_q["t_memory"]  # 4 query heads per KV head
    with pytest.raises(MemwallError, match="kv_dequant"):
        attention(w8, "per_token")


def test_blackwell_sm_counts_drive_wave_quantisation():
    """B200 and GB200 carry their SM counts (148, 152, as the devices report them), so a GEMM
    whose tiles fill one wave of 132 SMs leaves part of a B200 idle."""
    from memwall.predict.efficiency import compute_units
    from memwall.predict.efficiency_data import _tiles
    from memwall.predict.gemm_shape import shape_efficiency

    b200, gb200 = get_device("b200"), get_device("gb200")
    assert compute_units(b200) == 148 and compute_units(gb200) == 152
    # 132 tiles of 128 x 256: one full wave on an H100, 132 / 148 of a wave on a B200
    m, k, n = np.array([128.0 * 12]), np.array([8192.0]), np.array([256.0 * 11])
    h100 = shape_efficiency(m, k, n, compute_units(get_device("h100-sxm")), _tiles(), 64.0)
    b = shape_efficiency(m, k, n, 148, _tiles(), 64.0)
    assert b[0] < h100[0]


def prefill_table(prec, seq=512):
    return op_table(LLAMA, Workload("prefill", 1, seq), prec, "full", True)


def test_fp16_accumulation_speeds_geforce_gemms_only():
    # llama.cpp runs its GEMMs with CUBLAS_COMPUTE_16F; GeForce tensor cores run fp16
    # accumulation at up to twice the fp32-accumulate rate the catalog lists, data-centre parts not
    ops = prefill_table(F16)
    geforce = get_device("rtx-4090")
    acc32 = predict_efficiency(ops, geforce, F16, accumulate="fp32")
    acc16 = predict_efficiency(ops, geforce, F16, accumulate="fp16")
    mm = acc32.ops["kind"] == "matmul"
    ratio = acc32.ops.loc[mm, "t_compute"].sum() / acc16.ops.loc[mm, "t_compute"].sum()
    assert ratio == pytest.approx(efficiency_terms(geforce)["acc16_rel"].value, rel=1e-3)
    assert 1.5 < ratio <= 2.0
    other = ~mm & (acc32.ops["kind"] != "moe")
    assert acc16.ops.loc[other, "time"].tolist() == acc32.ops.loc[other, "time"].tolist()
    assert acc16.totals["time"] < acc32.totals["time"]
    # the default accumulates in fp32: the same prediction as before the knob
    assert predict_efficiency(ops, geforce, F16).totals == acc32.totals
    h100 = get_device("h100-sxm")
    same = predict_efficiency(ops, h100, F16, accumulate="fp16").totals["time"]
    assert same == predict_efficiency(ops, h100, F16).totals["time"]
    with pytest.raises(MemwallError, match="accumulate"):
        predict_efficiency(ops, geforce, F16, accumulate="fp8")


def test_the_roofline_of_an_fp16_accumulating_run_stays_an_upper_bound():
    ops = prefill_table(F16)
    geforce = get_device("rtx-4090")
    acc16 = device_prediction(ops, geforce, F16, accumulate="fp16")
    acc32 = device_prediction(ops, geforce, F16)
    assert acc16.roofline.totals["time"] < acc32.roofline.totals["time"]  # the 2x roof
    assert acc16.roofline.totals["time"] <= acc16.totals["time"]
    assert acc16.roofline.device.peak("fp16") == 2 * geforce.peak("fp16")  # whitepaper ratio
    h100 = get_device("h100-sxm")
    assert device_prediction(ops, h100, F16, accumulate="fp16").roofline.device is h100


def _gemm(m: int, n: int, k: int):
    """One bf16 GEMM as an op table, its output counted as written bytes."""
    import pandas as pd

    return pd.DataFrame(
        [{"name": "gemm", "kind": "matmul", "count": 1, "steps": 1, "flops": 2.0 * m * n * k,
          "matmul_flops": 2.0 * m * n * k, "bytes": 2.0 * (m * k + n * k + m * n),
          "bytes_weight": 2.0 * n * k, "bytes_written": 2.0 * m * n, "dtype": "bf16",
          "m": m, "k": k, "n": n}]
    )  # fmt: skip


def test_amd_gemms_store_their_output_after_the_k_loop_unhidden():
    """aiter's tuned MI355X GEMMs take FLOPs / rate + output bytes / bandwidth (the store after
    the K-loop adds): on AMD Instinct the output store is priced on top of the rest, so a short-K
    GEMM with a large output is slower by about that store; NVIDIA GEMMs hide it as before."""
    bf16 = parse_precision("bf16")
    mi355 = get_device("mi355x")
    assert device_class(mi355) == "amd-hbm-gpu"
    short = predict_efficiency(_gemm(65536, 7168, 256), mi355, bf16, launch="kernel").ops.iloc[0]
    bw = mi355.memory_bandwidth() * efficiency_terms(mi355)["bw_frac"].value
    store = 2.0 * 65536 * 7168 / bw
    reads = short["t_memory"] - store
    want = combine(np.array([reads]), np.array([short["t_compute"]]))[0] + store
    assert short["time"] == pytest.approx(want, rel=1e-9)
    hidden = combine(np.array([short["t_memory"]]), np.array([short["t_compute"]]))[0]
    assert short["time"] > 1.5 * hidden  # K = 256: the store is as long as the math
    # at a long K the output is small beside the math: the store adds a few per cent
    long = predict_efficiency(_gemm(65536, 1024, 7168), mi355, bf16, launch="kernel").ops.iloc[0]
    hidden = combine(np.array([long["t_memory"]]), np.array([long["t_compute"]]))[0]
    assert hidden < long["time"] < 1.1 * hidden
    notes = predict_efficiency(_gemm(65536, 7168, 256), mi355, bf16).notes
    assert any("gemm_epilogue" in n for n in notes)
    # NVIDIA: the output is one more memory stream under the math (the model before the change)
    h100 = get_device("h100-sxm")
    nv = predict_efficiency(_gemm(65536, 7168, 256), h100, bf16, launch="kernel").ops.iloc[0]
    assert nv["time"] == pytest.approx(
        combine(np.array([nv["t_memory"]]), np.array([nv["t_compute"]]))[0], rel=1e-9
    )
    # an op table without written bytes (a caller's own table) keeps the old pricing
    plain = _gemm(65536, 7168, 256).drop(columns=["bytes_written"])
    old = predict_efficiency(plain, mi355, bf16, launch="kernel").ops.iloc[0]
    assert old["time"] == pytest.approx(
        combine(np.array([old["t_memory"]]), np.array([old["t_compute"]]))[0], rel=1e-9
    )


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda t: t["gemm_epilogue"].update(source="nowhere"), "gemm_epilogue"),
        (lambda t: t["gemm_epilogue"].update(serial_classes=["amd-gpu"]), "gemm_epilogue"),
    ],
)
def test_bad_epilogue_data_is_refused(edit, needle):
    t = copy.deepcopy(raw_table())
    edit(t)
    with pytest.raises(MemwallError, match=needle):
        parse_table(t)
