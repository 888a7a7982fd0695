"""`memwall devices` and saved devices through the CLI: filters, formats, bad input."""

from __future__ import annotations

import json

import pytest

from memwall.errors import suggest
from memwall.hardware import COLUMNS

# A saved measurement as `memwall measure` writes it (values: a small made-up CPU).
SAVED = {
    "format": "memwall-measurement/1",
    "dram_bandwidth": 20e9,
    "peak_flops": {"fp32": 150e9, "bf16": 2e9, "int8": None},
    "cache_levels": [{"name": "L1", "size": 32768, "bandwidth": 300e9}],
    "op_overhead": 2e-6,
    "gemv_bandwidth": 18e9,
    "metadata": {"cpu_model": "Test CPU", "date": "2025-01-02T03:04:05+00:00", "threads": 2},
}


def _data_dir(tmp_path, name: str, record: dict | str) -> dict[str, str]:
    p = tmp_path / "devices" / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(record if isinstance(record, str) else json.dumps(record))
    return {"MEMWALL_DATA_DIR": str(tmp_path)}


def test_cli_devices_json_and_filters(cli):
    r = cli("devices", "--kind", "tpu", "--since", "2020", "--format", "json", "--no-measured")
    assert r.code == 0, r.err
    out = r.json
    assert out["count"] == len(out["devices"]) >= 5
    assert all(d["kind"] == "tpu" and d["released"] >= "2020" for d in out["devices"])
    assert all(d["source"] for d in out["devices"])
    r = cli("devices", "--vendor", "amd", "--name", "mi3", "--format", "csv", "--no-measured")
    lines = r.out.strip().splitlines()
    assert lines[0].startswith(",".join(COLUMNS[:5]))
    assert len(lines) == 1 + 3  # mi300x, mi325x, mi355x


@pytest.mark.parametrize(
    "args,needle",
    [
        (("devices", "--vendor", "nvdia"), "NVIDIA"),
        (("devices", "--since", "20"), "--since"),
        (("devices", "--kind", "fpga"), "fpga"),
        (("analyze", "gpt2", "--device", "h100"), "h100-sxm"),
        (("analyze", "gpt2", "--device", "gtx-580", "--precision", "bf16"), "no bf16 peak"),
        (("measure", "--save", "a100-sxm-80gb"), "catalog"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(cli, args, needle, tmp_path):
    r = cli(*args, env={"MEMWALL_DATA_DIR": str(tmp_path)})
    assert r.code == 2, (r.out, r.err)
    assert needle in r.err
    assert "Traceback" not in r.err
    if args[0] != "devices" or "--kind" not in args:  # click's own usage errors span lines
        assert len(r.err.strip().splitlines()) == 1, r.err


def test_cli_malformed_saved_device_is_one_line_exit_2(cli, tmp_path):
    env = _data_dir(tmp_path, "mine", '{"dram_bandwidth": "lots"}')
    r = cli("analyze", "gpt2", "--device", "mine", env=env)
    assert r.code == 2
    assert "malformed" in r.err and len(r.err.strip().splitlines()) == 1


def test_cli_analyze_with_a_saved_device(cli, tmp_path):
    env = _data_dir(tmp_path, "local", SAVED)
    r = cli("analyze", "gpt2", "--device", "local", "--format", "json", env=env)
    assert r.code == 0, r.err
    pred = r.json["prediction"]
    assert pred["measured"] is True and pred["roof_origin"] == "measured"
    assert pred["roofs"]["op_overhead"] == 2e-6
    assert pred["totals"]["t_overhead"] > 0


def test_no_match_csv_still_prints_the_header(cli):
    r = cli("devices", "--name", "zzzz", "--format", "csv", "--no-measured")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [",".join([*COLUMNS, "measured"])]
    r = cli("devices", "--name", "zzzz", "--format", "json", "--no-measured")
    assert r.json["count"] == 0 and r.json["devices"] == []


def test_did_you_mean_never_repeats_what_was_typed():
    # a saved name "Bad Name" looked up as "bad name" used to suggest itself
    assert suggest("Bad Name", ["bad name", "h100-sxm"]) == ""
    assert suggest("bad name", ["Bad Name", "bad names"]) == " (did you mean bad names?)"
    assert suggest(" adamm ", ["adam", "adamm "]) == " (did you mean adam?)"


def test_devices_skips_bad_saved_files_with_one_warning_line(cli, tmp_path):
    _data_dir(tmp_path, "deep", "[" * 100_000 + "]" * 100_000)
    env = _data_dir(tmp_path, "bad", '{"dram_bandwidth": "lots"}')
    r = cli("devices", "--name", "h100-sxm", "--format", "csv", env=env)
    assert r.code == 0, r.err
    warnings = r.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("memwall: warning: skipped 2 malformed")
    assert r.out.splitlines()[1].startswith("h100-sxm,")
