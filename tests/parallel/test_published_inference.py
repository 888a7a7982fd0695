"""The published-measurements file stays well-formed, and every row can be priced."""

from __future__ import annotations

import csv
import io
import math
from importlib import resources

import pytest

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.layout import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, plan
from memwall.parallel.published_inference import (
    METRICS,
    PHASE_OF,
    SPEEDS,
    compare,
    context_engine,
    exceeds_gpu_memory,
    gpu_working_set_bytes,
    launch_of,
    load_published,
    measured_time_s,
    parse_published,
    predict_row,
    row_model,
    sequence_engine,
    weight_bound_s,
)
from memwall.spec import parse_precision

ROWS = load_published()
DATACENTER = ("a100", "h100", "h200", "b200", "mi300x")


def csv_text() -> str:
    return resources.files("memwall.data").joinpath("published_inference.csv").read_text("utf-8")


def test_enough_rows_devices_and_vendors_each_with_a_source():
    assert len(ROWS) >= 40
    devices = {r.device for r in ROWS}
    vendors = {get_device(d).vendor for d in devices}
    assert len({get_device(d).derived_from or d for d in devices}) >= 8
    assert {"NVIDIA", "Apple", "AMD"} <= vendors
    for r in ROWS:
        assert "github.com" in r.source or "arxiv" in r.source.lower(), r.id
        assert r.software and r.unit == ("tokens/s" if r.metric in SPEEDS else "s")
        assert r.phase == PHASE_OF[r.metric], r.id
        if r.metric == "decode_tok_s":
            assert r.gen_len > 0 and r.seq_len == 0
        if r.metric in ("prefill_tok_s", "ttft_s"):
            assert r.seq_len > 0
        if r.metric == "matmul_time_s":
            assert r.model.startswith("gemm:") and r.launch == "kernel" and r.tp == 1
    assert {r.fitted for r in ROWS} == {"yes", "no"}  # in-sample rows are marked
    derived = [r for r in ROWS if "@" in r.device]
    assert derived and all("catalog row" in r.notes for r in derived)


def test_datacenter_inference_rows_cover_the_issue():
    """At least 60 inference rows on datacenter GPUs, single-GPU and tensor-parallel, with time
    to first token among them, each saying what it assumed; at least 60 of them out of sample
    (the ten TensorRT-LLM 0.9 FP8 rows looked at when choosing kv8_dq_frac, and its eleven
    even-id TTFT rows that chose its context cost, are marked)."""
    dc = [
        r
        for r in ROWS
        if r.metric != "matmul_time_s" and r.device.split("@")[0].startswith(DATACENTER)
    ]
    assert len(dc) >= 60
    assert {r.device.split("-")[0] for r in dc} >= {"a100", "h100", "h200", "mi300x"}
    assert {r.tp for r in dc} >= {1, 2, 4, 8}
    assert {"ttft_s", "throughput_tok_s", "latency_s", "decode_tok_s"} <= {r.metric for r in dc}
    new = [r for r in dc if r.id > 83]
    assert new and all("assumed" in r.notes for r in new)
    assert sum(r.fitted == "no" for r in new) >= 60
    kv8 = {84, 85, 86, 87, 93, 108, 109, 110, 111, 117}
    ttft = {100, 102, 104, 106, 124, 128, 130, 148, 150, 152, 154}
    assert {r.id for r in new if r.fitted == "yes"} == kv8 | ttft


@pytest.mark.parametrize(
    "old,new,needle",
    [
        (",decode_tok_s,120.6,", ",decode_tok_s,-1,", "greater than 0"),
        (",decode_tok_s,120.6,", ",decode_tok_s,nan,", "finite"),
        (
            ",4/16/16,32,yes,generate,1,1,0,128,decode_tok_s,120.6",
            ",4/17/16,32,yes,generate,1,1,0,128,decode_tok_s,120.6",
            "bits",
        ),
        (",eager,yes,", ",turbo,yes,", "eager"),
        (",decode_tok_s,120.6,tokens/s,", ",speed,120.6,tokens/s,", "decode_tok_s"),
        (",decode_tok_s,120.6,tokens/s,", ",ttft_s,120.6,tokens/s,", "is in s"),
        (",decode_tok_s,120.6,tokens/s,", ",tpot_s,120.6,s,", "needs phase decode"),
        (",generate,1,1,0,128,decode_tok_s", ",generate,1,0,0,128,decode_tok_s", "tp"),
        (",generate,1,1,0,128,decode_tok_s", ",generate,1,1,0,0,decode_tok_s", "gen_len"),
    ],
)
def test_broken_rows_are_refused_with_their_id(old, new, needle):
    text = csv_text()
    assert old in text
    with pytest.raises(MemwallError, match=needle) as e:
        parse_published(text.replace(old, new, 1))
    assert "row '1'" in str(e.value)


def test_duplicate_ids_are_refused():
    lines = csv_text().rstrip("\n").splitlines()
    with pytest.raises(MemwallError, match="duplicate"):
        parse_published("\n".join([*lines, lines[-1]]))


def test_a_file_without_the_tp_column_still_parses_as_one_device():
    lines = [ln for ln in csv_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    keep = [r for r in rows if r["tp"] == "1"]
    out = io.StringIO()
    fields = [f for f in rows[0] if f != "tp"]
    w = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    parsed = parse_published(out.getvalue())
    assert len(parsed) == len(keep) and {r.tp for r in parsed} == {1}


def test_each_kind_of_row_is_priced_with_a_range():
    picks = {}
    for r in ROWS:
        picks.setdefault((r.metric, "@" in r.device, r.tp > 1), r)
    # no source found yet gives TPOT at a fixed batch; tpot_s is priced in the consistency test
    assert {k[0] for k in picks} >= set(METRICS) - {"tpot_s"}
    for r in picks.values():
        v, lo, hi = predict_row(r)
        assert math.isfinite(v) and 0 < lo <= v <= hi, r.id
        # the parallel plan gives no range; a fitted engine cost adds its own
        fitted_cost = context_engine(r) is not None or sequence_engine(r) is not None
        assert (lo < hi) == (r.tp == 1 or fitted_cost), r.id
        assert 0.2 < v / r.value < 5, r.id  # same order of magnitude as the measurement
        roof = predict_row(r, "roofline")
        assert roof[0] == roof[1] == roof[2]
        # the plain roofline is the optimistic bound of the efficiency model
        assert roof[0] >= v * 0.999 if r.metric in SPEEDS else roof[0] <= v * 1.001, r.id


def test_tensor_parallel_rows_are_priced_through_the_parallel_plan():
    r = next(r for r in ROWS if r.metric == "ttft_s" and r.tp == 4)
    prec = parse_precision(r.precision, r.group_size, r.quantize_head == "yes")
    spec = row_model(r)  # the model as the row's engine runs it (its fused projections)
    for model in ("efficiency", "roofline"):
        o = Options("infer", r.batch, r.batch, r.seq_len, prec, efficiency=model == "efficiency",
                    infer_launch=r.prefill_launch or r.launch)  # fmt: skip
        p = plan(spec, get_device(r.device), links_for(r.device), Layout(tp=4), o)
        got = predict_row(r, model, context=False)[0]  # the kernels, without the engine's cost
        assert got == pytest.approx(p.extra["prefill_time"], rel=1e-12)
    one = predict_row(r.model_copy(update={"tp": 1}))[0]
    two = predict_row(r.model_copy(update={"tp": 2}))[0]
    assert two < one and two != predict_row(r)[0]  # splitting the prefill shortens it
    d = next(r for r in ROWS if r.metric == "decode_tok_s" and r.tp == 8)
    assert predict_row(d)[0] > predict_row(d.model_copy(update={"tp": 2}))[0]


def test_metrics_are_made_consistently_from_the_same_times():
    r = next(r for r in ROWS if r.metric == "latency_s" and r.tp == 8)
    as_ = {m: predict_row(r.model_copy(update={"metric": m}))[0] for m in SPEEDS + ("ttft_s",)}
    lat = predict_row(r)[0]
    tput = predict_row(r.model_copy(update={"metric": "throughput_tok_s"}))[0]
    assert tput == pytest.approx(r.batch * r.gen_len / lat)
    ttft = predict_row(r.model_copy(update={"metric": "ttft_s", "phase": "prefill"}))[0]
    tpot = predict_row(r.model_copy(update={"metric": "tpot_s", "phase": "decode"}))[0]
    assert lat == pytest.approx(ttft + (r.gen_len - 1) * tpot)
    assert as_["ttft_s"] == pytest.approx(ttft)


def test_unknown_prediction_model_is_refused():
    with pytest.raises(MemwallError, match="roofline"):
        predict_row(ROWS[0], "magic")


def test_comparison_summarises_each_class_and_metric():
    c = compare([r for r in ROWS if r.device in ("rtx-3090", "apple-m2-ultra")])
    s = c.by_class().set_index("device_class")
    assert set(s.index) == {"gddr-gpu", "apple-gpu", "all"}
    assert s.loc["all", "rows"] == len(c.table)
    assert s.loc["all", "worst_abs_error"] >= s.loc["all", "median_abs_error"] >= 0
    assert s.loc["all", "roofline_worst_abs_error"] >= s.loc["all", "roofline_median_abs_error"]
    picked = [r for r in ROWS if r.id in (1, 20, 100, 161, 171)]
    m = compare(picked).by_metric().set_index("metric")
    assert set(m.index) == {"decode_tok_s", "prefill_tok_s", "ttft_s", "latency_s", "all"}
    t = compare(picked).table.set_index("id")
    # a tensor-parallel row without a fitted engine cost has no range (gpt-fast, tp 2)
    assert math.isnan(t.loc[161, "in_range"]) and not math.isnan(t.loc[1, "in_range"])
    assert not math.isnan(t.loc[171, "in_range"])  # vLLM's per-sequence term has one


def test_tensorrt_llm_09_mixtral_rows_are_priced_sixteen_bit():
    """TensorRT-LLM 0.9.0 could not quantize Mixtral to FP8 (FP8 Mixtral arrived in 0.10.0, its
    release notes), so the Mixtral rows of 0.9.0's H100/H200 'FP8' tables are FP16 runs; the
    Mistral and Llama rows of the same tables stay 8-bit."""
    trt = [r for r in ROWS if r.software.startswith("TensorRT-LLM 0.9")]
    mixtral = [r for r in trt if r.model == "mixtral-8x7b"]
    assert len(mixtral) == 18 and {r.precision for r in mixtral} == {"fp16"}
    hopper = [r for r in mixtral if r.device in ("h100-sxm", "h200-sxm")]
    assert len(hopper) == 12 and all("0.10.0 release notes" in r.notes for r in hopper)
    others = {r.precision for r in trt if r.device != "a100-sxm-80gb" and r not in mixtral}
    assert others == {"8/8/8"}


def test_rows_faster_than_reading_their_weights_or_too_big_for_the_gpu_are_excluded_only():
    """A row is excluded exactly when its published speed beats reading each GPU's share of the
    weights once per forward pass at the spec-sheet bandwidth (no engine can), or when its
    weights are more than its machine lets the GPU hold (the run paged): rules anyone can check,
    not choices; the reason says which, and the row stays in the file."""
    under = {r.id for r in ROWS if measured_time_s(r) < weight_bound_s(r)}
    too_big = {r.id for r in ROWS if exceeds_gpu_memory(r)}
    marked = {r.id for r in ROWS if r.excluded}
    assert under == {115, 126, 139} and too_big == {14}  # f16 7B on a 16 GB M3
    assert marked == under | too_big
    assert all("physics" in r.excluded and "weights" in r.excluded for r in ROWS if r.id in under)
    assert all(r.excluded.startswith("does not fit") for r in ROWS if r.id in too_big)
    assert gpu_working_set_bytes(16) == pytest.approx(10922.67 * 2**20, rel=1e-6)
    assert gpu_working_set_bytes(64) == 49152 * 2**20


def test_excluded_rows_are_priced_but_left_out_of_the_statistics():
    picked = [r for r in ROWS if r.id in (113, 115, 137, 139)]
    c = compare(picked)
    assert len(c.table) == 4 and set(c.excluded["id"]) == {115, 139}
    assert set(c.included["id"]) == {113, 137}
    s = c.by_class().set_index("device_class")
    assert s.loc["all", "rows"] == 2
    worst = c.included["error"].abs().max()
    assert s.loc["all", "worst_abs_error"] == pytest.approx(worst)


def test_tensorrt_llm_prefill_runs_eagerly_and_costs_host_launches():
    """TensorRT-LLM's GptSession runs the context phase through TensorRT's enqueue and captures
    only generation steps in CUDA graphs (gptSession.cpp), so its rows price the prompt with a
    host launch per kernel: a short prompt's time to first token grows, a long one's barely."""
    trt = [r for r in ROWS if "gptSessionBenchmark" in r.software]
    assert trt and all(r.prefill_launch == "eager" and r.launch == "graph" for r in trt)
    assert all(r.prefill_launch == "" for r in ROWS if r not in trt)
    short = next(r for r in trt if r.metric == "ttft_s" and r.tp == 1 and r.seq_len == 128)
    long = next(r for r in trt if r.metric == "ttft_s" and r.tp == 1 and r.seq_len == 2048)
    tp = next(r for r in trt if r.metric == "ttft_s" and r.tp == 4 and r.seq_len == 128)
    for r, grows in ((short, 1.2), (long, 1.0), (tp, 1.2)):
        eager = predict_row(r)[0]
        graph = predict_row(r.model_copy(update={"prefill_launch": "graph"}))[0]
        assert eager >= graph * grows, r.id
    assert (
        predict_row(long)[0]
        < 1.02 * predict_row(long.model_copy(update={"prefill_launch": "graph"}))[0]
    )
    assert launch_of(short, "gen") == "graph" and launch_of(short, "prefill") == "eager"


def test_tensorrt_llm_09_converts_the_fp8_kv_cache_once_per_query_head():
    """TensorRT-LLM 0.9's performance page runs its masked multi-head attention kernel (one thread
    block per query head) for every model but Llama-2-70B (its pre-Hopper XQA, once per KV
    head), so Mistral-7B's FP8 KV cache is widened once per query head: its long generations on
    H100/H200 are conversion-bound. Without that (no conversion, the default) they were predicted
    about 2x too fast."""
    trt = [r for r in ROWS if r.software.startswith("TensorRT-LLM 0.9")]
    assert all(
        r.kv_dequant == ("kv_head" if r.model == "llama-2-70b" else "query_head") for r in trt
    )
    assert all(r.kv_dequant == "" for r in ROWS if r not in trt)
    long = [
        r for r in trt if r.model == "mistral-7b" and r.precision == "8/8/8" and r.gen_len == 2048
    ]
    assert len(long) == 4
    for r in long:
        per_q, per_kv = predict_row(r)[0], predict_row(r.model_copy(update={"kv_dequant": ""}))[0]
        # (1.65: with memory_compute_overlap's 5% the no-conversion price of row 111 is 1.69x)
        assert abs(per_q / r.value - 1) < 0.15 and per_kv > 1.65 * r.value, r.id


def test_llama_cpp_geforce_rows_accumulate_in_fp16_and_only_those():
    rows = load_published()
    acc16 = [r for r in rows if r.accumulate == "fp16"]
    assert acc16 and all(
        r.software.startswith("llama.cpp") and r.device.startswith("rtx-") for r in acc16
    )
    others = [r for r in rows if r.software.startswith("llama.cpp") and r.device.startswith("rtx")]
    assert len(others) == len(acc16)
    prefill = next(r for r in acc16 if r.metric == "prefill_tok_s" and r.precision == "fp16")
    as_fp32 = prefill.model_copy(update={"accumulate": ""})
    assert predict_row(prefill)[0] > 1.3 * predict_row(as_fp32)[0]  # a GEMM-bound prompt


def test_fp16_accumulation_is_refused_over_several_gpus():
    text = csv_text()
    old = ",generate,1,1,0,128,decode_tok_s"  # row 1: llama.cpp on an RTX 3090, fp16 accumulate
    assert old in text and ROWS[0].accumulate == "fp16"
    with pytest.raises(MemwallError, match="one device"):
        parse_published(text.replace(old, ",generate,1,2,0,128,decode_tok_s", 1))
