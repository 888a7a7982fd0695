"""--price-per-hour and the energy block of analyze, parallel and serve."""

from __future__ import annotations

import pytest

ANALYZE = ("analyze", "llama-3-8b", "--phase", "decode", "--precision", "bf16", "--seq-len",
           "512", "--device", "h100-sxm")  # fmt: skip


def test_analyze_gives_joules_per_token_power_and_cost(cli):
    r = cli(*ANALYZE, "--price-per-hour", "2.5", "--format", "json")
    assert r.code == 0, r.err
    e = r.json["energy"]
    assert e["predicted"] is True
    assert 0.1 < e["j_per_output_token"] < 10
    assert 100 < e["avg_power_w"] <= 700
    t = r.json["prediction"]["totals"]["time"]
    assert e["usd_per_million_output_tokens"] == pytest.approx(2.5 * t / 3600 * 1e6)
    table = cli(*ANALYZE, "--price-per-hour", "2.5")
    assert "J per output token" in table.out and "per device-hour" in table.out


def test_analyze_energy_without_a_price_has_no_cost(cli):
    r = cli(*ANALYZE, "--format", "json")
    assert r.code == 0, r.err
    assert "usd_per_million_output_tokens" not in r.json["energy"]


@pytest.mark.parametrize("price", ["0", "-3", "nan", "inf"])
def test_a_bad_price_is_one_line(cli, price):
    cli(*ANALYZE, "--price-per-hour", price).assert_one_line_error("--price-per-hour")


def test_price_needs_a_device(cli):
    cli("analyze", "llama-3-8b", "--price-per-hour", "2").assert_one_line_error("--device")


def test_what_if_energy_per_byte(cli):
    a = cli(*ANALYZE, "--format", "json").json["energy"]
    args = [x if x != "h100-sxm" else "h100-sxm@byte_energy=0.5" for x in ANALYZE]
    b = cli(*args, "--format", "json").json["energy"]
    assert b["step"]["dram_j"] == pytest.approx(0.5 * a["step"]["dram_j"])
    assert b["j_per_output_token"] < a["j_per_output_token"]


def test_parallel_energy(cli):
    r = cli("parallel", "llama-3-8b", "--mode", "infer", "--devices", "2", "--tp", "2",
            "--price-per-hour", "3", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    e = r.json["energy"]
    assert e["devices"] == 2 and e["j_per_output_token"] > 0
    assert e["prefill"]["j_per_prompt_token"] > 0
    assert e["usd_per_million_output_tokens"] > 0


def test_serve_energy(cli):
    r = cli("serve", "llama-3-8b", "--device", "h100-sxm", "--requests", "50",
            "--price-per-hour", "3", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    e = r.json["energy"]
    assert 0.01 < e["j_per_output_token"] < 5
    assert r.json["j_per_output_token"] == e["j_per_output_token"]  # beside ttft, tpot, ...
    assert e["j_per_request"] > e["j_per_output_token"]
    assert e["usd_per_million_output_tokens"] > 0
    cli("serve", "llama-3-8b", "--device", "h100-sxm", "--requests", "5",
        "--price-per-hour", "-1").assert_one_line_error("--price-per-hour")  # fmt: skip
