"""`memwall.devices` and `memwall devices` are one function: the same JSON and CSV, the same
one-line refusals; skipped saved files are said once, as data, not printed by the library."""

from __future__ import annotations

import csv
import io
import json

import pytest

import memwall
from memwall.errors import MemwallError

SAVED = {
    "format": "memwall-measurement/1",
    "dram_bandwidth": 20e9,
    "peak_flops": {"fp32": 150e9, "bf16": 2e9, "int8": None},
    "cache_levels": [{"name": "L1", "size": 32768, "bandwidth": 300e9}],
    "op_overhead": 2e-6,
    "gemv_bandwidth": 18e9,
    "metadata": {"cpu_model": "Test CPU", "date": "2025-01-02T03:04:05+00:00", "threads": 2},
}

SAME = [
    (dict(measured=False), ["--no-measured"]),
    (dict(kind="tpu", since=2020, measured=False),
     ["--kind", "tpu", "--since", "2020", "--no-measured"]),
    (dict(vendor="amd", name="mi3", measured=False),
     ["--vendor", "amd", "--name", "mi3", "--no-measured"]),
    (dict(name="no-such-device", measured=False), ["--name", "no-such-device", "--no-measured"]),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args", SAME, ids=[" ".join(a) for _, a in SAME])
def test_json_csv_and_html_equal_the_command_line(cli, kwargs, args):
    result = memwall.devices(**kwargs)
    assert result.to_dict() == cli("devices", *args, "--format", "json").json
    rows = list(csv.reader(io.StringIO(cli("devices", *args, "--format", "csv").out)))
    frame = result.to_frame()
    assert len(frame) == len(rows) - 1 == result["count"]
    if len(frame):
        assert list(frame.columns) == rows[0]
    assert "memwall devices" in result._repr_html_()


def test_saved_measurements_are_listed_and_bad_files_are_one_warning(cli, tmp_path, monkeypatch):
    d = tmp_path / "devices"
    d.mkdir()
    (d / "mybox.json").write_text(json.dumps(SAVED))
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    result = memwall.devices()
    assert "mybox" in {x["name"] for x in result["devices"]} and not result.extra["warnings"]
    (d / "odd.json").write_text(json.dumps({"dram_bandwidth": "1e9", "peak_flops": {}}))
    (d / "bad.json").write_text("{")
    result = memwall.devices()
    r = cli("devices", "--format", "json")
    assert r.json == result.to_dict()
    assert [f"memwall: warning: {w}" for w in result.extra["warnings"]] == r.err.splitlines()
    assert "skipped 2 malformed saved device files" in result.extra["warnings"][0]
    assert memwall.devices(measured=False)["count"] == result["count"] - 1


@pytest.mark.parametrize(
    "kwargs,args",
    [
        (dict(vendor="nvdia"), ["--vendor", "nvdia"]),
        (dict(since=20), ["--since", "20"]),
    ],
)
def test_bad_input_raises_the_cli_line(cli, kwargs, args):
    r = cli("devices", *args, "--no-measured")
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.devices(**kwargs, measured=False)
    assert r.err.strip() == f"memwall: error: {e.value}"


def test_kind_is_checked_like_the_cli_choice():
    with pytest.raises(MemwallError, match="--kind must be one of cpu, gpu, tpu, accelerator"):
        memwall.devices(kind="fpga")
