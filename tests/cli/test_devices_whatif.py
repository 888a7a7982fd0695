"""CLI: catalog, saved and what-if devices through `analyze`, `memory` and `devices`."""

from __future__ import annotations

import json

import pytest

from memwall.hardware import load_catalog

CONSUMER = [d.name for d in load_catalog() if d.vendor == "Apple" or d.name.startswith("rtx-")]
ACCEPT = (
    "analyze", "llama-2-7b", "--phase", "generate", "--seq-len", "0", "--gen-len", "128",
    "--precision", "4/16/16", "--group-size", "32", "--format", "json", "--device",
)  # fmt: skip

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", CONSUMER)
def test_acceptance_command_on_every_apple_and_geforce_device(cli, name):
    r = cli(*ACCEPT, name)
    assert r.code == 0, r.err
    p = r.json["prediction"]
    assert p["device"] == name and p["measured"] is False
    t = p["totals"]
    assert t["time_low"] <= t["time"] <= t["time_high"] and t["time"] > t["roofline_time"]
    terms = {e["name"]: e for e in p["efficiency_terms"]}
    assert {"bw_frac", "mm_frac", "launch_graph", "dq_bw_4"} <= set(terms)
    assert all(e["value"] > 0 and e["source"] and e["origin"] for e in terms.values())


def test_what_if_device_is_named_with_its_factors_in_analyze_and_memory(cli):
    r = cli(*ACCEPT, "h100-sxm@bw=2")
    assert r.code == 0, r.err
    p = r.json["prediction"]
    assert p["device"] == "h100-sxm@bw=2" and "what-if" in p["display_name"]
    assert p["what_if"] == {"derived_from": "h100-sxm", "scale": {"bw": 2.0}}
    assert p["roofs"]["memory_bandwidth"] == 2 * 3.35e12
    real = cli(*ACCEPT, "h100-sxm").json["prediction"]["totals"]["time"]
    assert p["totals"]["time"] < real
    t = cli("analyze", "llama-2-7b", "--device", "h100-sxm@bw*2", "--precision", "bf16")
    assert t.code == 0 and "what-if: memory bandwidth x2" in " ".join(t.out.split())
    m = cli("memory", "llama-3-8b", "--mode", "infer", "--device", "h100-sxm@mem=0.5")
    assert m.code == 0, m.err
    assert "what-if: memory capacity x0.5" in " ".join(m.out.split())


@pytest.mark.parametrize(
    "device,precision,needle",
    [
        ("h100-sxm@bw=0", "bf16", "positive finite"),
        ("h100-sxm@bw=nan", "bf16", "positive finite"),
        ("h100-sxm@speed=2", "bf16", "unknown scale"),
        ("h100@bw=2", "bf16", "h100-sxm"),
        ("rtx-9090", "bf16", "unknown device"),
        ("apple-m2", "int8", "no int8 peak"),
        ("gtx-580@bw=2", "bf16", "no bf16 peak"),
    ],
)
def test_bad_devices_are_one_line_exit_2(cli, device, precision, needle):
    r = cli("analyze", "gpt2", "--device", device, "--precision", precision)
    r.assert_one_line_error(needle)
    m = cli("memory", "gpt2", "--device", device)
    if "peak" not in needle:  # memory needs no peak
        m.assert_one_line_error(needle)


def test_hostile_saved_files_are_skipped_by_devices_and_refused_by_analyze(cli, tmp_path):
    d = tmp_path / "devices"
    d.mkdir()
    (d / "local.json").write_text("[" * 200_000 + "]" * 200_000)
    (d / "odd.json").write_text(json.dumps({"dram_bandwidth": "1e9", "peak_flops": {}}))
    env = {"MEMWALL_DATA_DIR": str(tmp_path)}
    r = cli("devices", "--format", "json", env=env)
    assert r.code == 0, r.err
    assert r.json["count"] == len(load_catalog())
    warnings = r.err.strip().splitlines()
    assert len(warnings) == 1 and "skipped 2 malformed saved device files" in warnings[0]
    cli("analyze", "gpt2", "--device", "local", env=env).assert_one_line_error("nested deeper")
    cli("analyze", "gpt2", "--device", "odd", env=env).assert_one_line_error("dram_bandwidth")


def test_what_if_device_in_parallel_scales_the_links(cli):
    args = ("parallel", "llama-3-8b", "--mode", "infer", "--devices", "8", "--tp", "8")
    base = cli(*args, "--device", "h100-sxm", "--format", "json")
    fast = cli(*args, "--device", "h100-sxm@link=4", "--format", "json")
    assert base.code == 0 and fast.code == 0, (base.err, fast.err)
    assert fast.json["device"] == "h100-sxm@link=4"
    assert fast.json["step_time"] < base.json["step_time"]


def test_launch_switch(cli):
    args = ("analyze", "gpt2", "--phase", "decode", "--precision", "fp16", "--format", "json")
    graph = cli(*args, "--device", "h100-sxm").json["prediction"]
    eager = cli(*args, "--device", "h100-sxm", "--launch", "eager").json["prediction"]
    assert graph["launch"] == "graph" and eager["launch"] == "eager"
    assert eager["totals"]["time"] > graph["totals"]["time"]
    cli(*args, "--device", "h100-sxm", "--launch", "warp").assert_one_line_error("launch mode")
    cli(*args, "--launch", "eager").assert_one_line_error("--launch needs --device")


def test_devices_lists_the_consumer_rows_with_sources(cli):
    r = cli("devices", "--vendor", "apple", "--format", "json", "--no-measured")
    assert r.code == 0, r.err
    names = {d["name"] for d in r.json["devices"]}
    assert {"apple-m1", "apple-m2-ultra", "apple-m3-ultra", "apple-m4-max"} <= names
    assert all(d["source"] and d["peaks"]["fp16"] for d in r.json["devices"])
    csv = cli("devices", "--name", "rtx-", "--format", "csv", "--no-measured").out.splitlines()
    assert "peak_fp4" in csv[0] and len(csv) >= 1 + 4  # 2070, 3080, 3090, 4090, 5090
