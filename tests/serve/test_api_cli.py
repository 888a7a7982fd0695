"""memwall.api.serve and `memwall serve`: the JSON, the refusals (one line, exit 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import memwall.api as api
from memwall.errors import MemwallError

KEYS = {
    "ttft", "tpot", "itl", "e2e", "requests_per_s", "output_tokens_per_s", "goodput",
    "kv_utilization", "preemptions", "timeline", "stable", "predictor", "kv_cache",
}  # fmt: skip


def test_json_has_every_metric_and_equals_the_library(serve_json):
    args = ["serve", "gpt2", "--device", "h100-sxm", "--rate", "20", "--requests", "200",
            "--input-len", "64:256", "--output-len", "32",
            "--slo", "ttft=0.5,tpot=0.05"]  # fmt: skip
    d = serve_json(*args)
    assert KEYS <= set(d)
    for k in ("ttft", "tpot", "itl", "e2e"):
        assert set(d[k]) == {"mean", "p50", "p90", "p99"}
        assert 0 < d[k]["p50"] <= d[k]["p99"]
    assert d["stable"] and d["completed"] == 200
    assert d["predictor"]["model"] == "efficiency" and d["predictor"]["launch"] == "graph"
    assert d["predictor"]["max_error_vs_full"] < 0.05
    assert set(d["timeline"]) >= {"time", "batch_size", "kv_utilization", "waiting"}
    assert d["goodput"]["fraction"] == 1.0
    lib = api.serve("gpt2", device="h100-sxm", rate=20, requests=200, input_len="64:256",
                    output_len=32, slo="ttft=0.5,tpot=0.05")  # fmt: skip
    assert json.loads(json.dumps(lib.to_dict())) == d
    assert len(lib.to_frame()) == 200


def test_roofline_predictor_is_named():
    d = api.serve(
        "gpt2", device="h100-sxm", requests=20, input_len=256, output_len=32, predictor="roofline"
    ).to_dict()
    assert d["predictor"]["model"] == "roofline" and "roofline" in d["predictor"]["description"]


def test_one_request_ttft_is_one_prefill_step():
    r = api.serve("gpt2", device="h100-sxm", requests=1, input_len=300, output_len=10)
    sm = r.extra["step_model"]
    assert r["ttft"]["mean"] == pytest.approx(sm.prefill_step(1, 300))
    assert r["kv_cache"]["blocks"] > 1000 and r["preemptions"] == 0


def test_unstable_run_exits_0_with_the_growth_rate(serve_cli):
    code, out, err = serve_cli("serve", "llama-3-8b", "--device", "h100-sxm", "--rate", "200",
                             "--requests", "2000", "--format", "json")  # fmt: skip
    assert code == 0, err
    d = json.loads(out)
    assert d["stable"] is False and d["ttft"] is None
    assert d["queue_growth_per_s"] > 10 and "unstable" in d["message"]


def test_csv_is_one_row_per_request(serve_cli):
    code, out, _ = serve_cli("serve", "gpt2", "--device", "h100-sxm", "--requests", "5",
                             "--input-len", "100", "--format", "csv")  # fmt: skip
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 6 and lines[0].startswith("request,arrival,sent")


def test_lengths_csv(serve_json, tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("input_len,output_len\n100,10\n200,20\n50,5\n")
    d = serve_json("serve", "gpt2", "--device", "h100-sxm", "--lengths", p)
    assert d["completed"] == 3 and d["workload"]["mean_output_len"] == pytest.approx(35 / 3)


def test_table_renders(serve_cli):
    code, out, _ = serve_cli("serve", "gpt2", "--device", "h100-sxm", "--requests", "10",
                             "--input-len", "100")  # fmt: skip
    assert code == 0 and "TTFT" in out and "TPOT" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "-3"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--input-len", "1000", "--output-len", "100"], "context"),
        (["--kv-blocks", "3"], "cannot hold one request"),
        (["--slo", "ttft=0.000001"], "cannot be met"),
        (["--slo", "tpot=0.00001"], "cannot be met"),
        (["--slo", "speed=1"], "--slo key"),
        (["--slo", "ttft=-1"], "--slo ttft"),
        (["--input-len", "0"], "--input-len"),
        (["--output-len", "5:2"], "--output-len"),
        (["--requests", "0"], "--requests"),
        (["--tp", "5"], "tensor-parallel degree"),
        (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--max-batch-tokens", "8", "--max-seqs", "16"], "--max-seqs"),
        (["--burstiness", "0"], "--burstiness"),
        (["--scheduler", "fifo"], "scheduler"),
        (["--predictor", "roofline", "--launch", "eager"], "--launch"),
        (["--precision", "fp8", "--device", "a100-sxm-80gb"], "no fp8 peak"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(serve_cli, args, needle):
    base = ["serve", "gpt2", "--device", "h100-sxm", "--requests", "5"]
    if "--input-len" not in args:
        base += ["--input-len", "256"]
    if "--output-len" not in args:
        base += ["--output-len", "32"]
    code, out, err = serve_cli(*base, *args)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert needle in lines[0] and "Traceback" not in err


def test_encoder_and_unknown_device_refused(serve_cli):
    with pytest.raises(MemwallError, match="decoder"):
        api.serve("bert-base", device="h100-sxm", requests=2, input_len=100)
    code, _, err = serve_cli("serve", "gpt2", "--device", "nonesuch", "--input-len", "100")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_no_room_for_the_weights_is_refused():
    with pytest.raises(MemwallError, match="no room for a KV cache"):
        api.serve("llama-3-70b", device="l4", requests=2)


def test_kv_capacity_is_the_memory_left_in_blocks():
    from memwall.memory import kv_cache_bytes
    from memwall.spec import load_model_config, parse_precision

    d = api.serve("llama-3-8b", device="h100-sxm", requests=3).to_dict()["kv_cache"]
    b = d["memory_budget"]
    left = b["device_share"] - b["weights"] - b["activations"] - b["framework_overhead"]
    spec, _ = load_model_config("llama-3-8b")
    per_block = 16 * kv_cache_bytes(spec, 1, 1, parse_precision("bf16"))
    assert b["device_share"] == pytest.approx(0.9 * 80 * 2**30)
    assert d["bytes_per_block"] == per_block == 16 * 32 * 2 * 1024 * 2  # 16 tok x K,V x layers
    assert d["blocks"] == int(left // per_block)
    tp2 = api.serve("llama-3-8b", device="h100-sxm", tp=2, requests=3).to_dict()["kv_cache"]
    assert tp2["bytes_per_block"] == per_block / 2 and tp2["blocks"] > 2 * d["blocks"]


def test_plot_written(tmp_path):
    out = tmp_path / "timeline.png"
    r = api.serve("gpt2", device="h100-sxm", rate=50, requests=50, input_len=100, plot=out)
    assert out.stat().st_size > 1000 and r["plot"] == str(out)
    with pytest.raises(MemwallError, match="--plot"):
        api.serve("gpt2", device="h100-sxm", requests=5, input_len=100, plot=tmp_path / "x.txt")


def test_rate_inf_sends_everything_at_once(serve_json):
    d = serve_json("serve", "gpt2", "--device", "h100-sxm", "--rate", "inf", "--requests", "20",
                   "--input-len", "100")  # fmt: skip
    assert d["workload"]["rate"] is None and d["stable"]


def test_fp8_serves_with_fp8_gemms_and_kv():
    """`--precision fp8` (as --help lists it): 8-bit weights, activations and KV cache, the
    Linear GEMMs at the FP8 peak; twice the KV blocks of bf16 in the same memory, or more."""
    fp8 = api.serve("llama-3-8b", device="h100-sxm", precision="fp8", requests=20).to_dict()
    bf16 = api.serve("llama-3-8b", device="h100-sxm", requests=20).to_dict()
    assert fp8["precision"] == "fp8"
    assert fp8["kv_cache"]["blocks"] >= 2 * bf16["kv_cache"]["blocks"]


def test_search_finds_the_highest_rate_within_the_slo():
    """Just below the found rate the SLO holds for 90% of requests; 10% above it does not."""
    from memwall.api._serve_search import meets

    kw = dict(device="h100-sxm", input_len=512, output_len=64, requests=300)
    r = api.serve("llama-3-8b", slo="ttft=0.3,tpot=0.03", search=True, **kw).to_dict()
    best = r["search"]["best"]
    assert best["tp"] == 1 and best["max_rate"] > 0
    assert r["workload"]["rate"] == pytest.approx(best["max_rate"])
    assert best["at_max_rate"]["attainment"] >= 0.9 and best["at_max_rate"]["stable"]
    from memwall.api._serve_setup import prepare

    base = dict(model="llama-3-8b", tp=1, precision="bf16", scheduler="vllm", rate=None,
                burstiness=1.0, concurrency=None, lengths=None, seed=0, max_batch_tokens=None,
                max_seqs=None, block_size=16, kv_blocks=None, gpu_memory_utilization=0.9,
                slo="ttft=0.3,tpot=0.03", predictor=None, launch=None, step_overhead=0.0,
                **kw)  # fmt: skip
    cfg = prepare(**base)
    gaps = np.random.default_rng(0).exponential(1.0, size=299)
    assert not meets(cfg, best["max_rate"] * 1.1, gaps, 0.9)["ok"]


def test_search_for_a_target_rate_counts_copies_of_each_tp():
    r = api.serve(
        "llama-3-70b", device="h100-sxm", slo="ttft=2,tpot=0.1", search=True, target_rate=15,
        input_len=512, output_len=64, requests=200,
    ).to_dict()  # fmt: skip
    s = r["search"]
    assert "1" in s["refused"]  # 70B in bf16 does not fit one H100
    for row in s["rows"]:
        assert row["copies"] == math.ceil(15 / row["max_rate"])
        assert row["devices"] == row["copies"] * row["tp"]
    assert s["best"]["devices"] == min(row["devices"] for row in s["rows"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--search"], "--slo"),
        (["--search", "--slo", "ttft=1", "--rate", "3"], "drop --rate"),
        (["--target-rate", "5"], "add --search"),
        (["--search", "--slo", "ttft=1", "--target-rate", "-1"], "--target-rate"),
        (["--search", "--slo", "ttft=1", "--attainment", "1.5"], "--attainment"),
    ],
)
def test_search_bad_input_is_one_line_and_exit_2(serve_cli, args, needle):
    code, out, err = serve_cli(
        "serve", "gpt2", "--device", "h100-sxm", "--requests", "20", "--input-len", "128",
        "--output-len", "16", *args,
    )  # fmt: skip
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err
