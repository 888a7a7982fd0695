"""The device catalog (sources, dates, plausible units) and saved measurements of this machine."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memwall.errors import MemwallError
from memwall.hardware import (
    COLUMNS,
    DTYPES,
    KINDS,
    Device,
    catalog_frame,
    check_save_name,
    get_device,
    load_catalog,
    normalize_dtype,
    parse_catalog,
    save_measurement,
)

CATALOG = load_catalog()


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memwall", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


# ---------------------------------------------------------------- plausibility of units


def _year(d: Device) -> float:
    return d.released.year + (d.released.timetuple().tm_yday - 1) / 365.25


def implausible(d: Device) -> list[str]:
    """Reasons a row's numbers look like a unit slip (TFLOP/s typed as FLOP/s, GB as bytes...).

    Bands widen with the year: peaks from ~1e8 FLOP/s in 1996 growing at most ~1.8x/year;
    memory bandwidth from ~1e8.3 B/s growing at most ~1.32x/year.
    """
    out = []
    y = _year(d) - 1996
    for dt_, v in d.peaks.items():
        lo, hi = 10 ** (8 + 0.15 * y), 10 ** (10.5 + 0.25 * y)
        if not lo <= v <= hi:
            out.append(f"peak_{dt_}={v:.3g} outside [{lo:.2g}, {hi:.2g}] for {d.released}")
    if d.mem_bandwidth is not None:
        lo, hi = 10 ** (8.3 + 0.1 * y), 10 ** (10 + 0.12 * y)
        if not lo <= d.mem_bandwidth <= hi:
            out.append(f"mem_bandwidth={d.mem_bandwidth:.3g} outside [{lo:.2g}, {hi:.2g}]")
    caps = {"cpu": (2**26, 2**44), "gpu": (2**28, 2**39), "tpu": (2**32, 2**39)}
    caps["accelerator"] = caps["tpu"]
    if d.mem_capacity is not None:
        lo, hi = caps[d.kind]
        if not lo <= d.mem_capacity <= hi:
            out.append(f"mem_capacity={d.mem_capacity:.3g} outside [{lo:.2g}, {hi:.2g}]")
    if d.interconnect_bandwidth is not None and not 1e8 <= d.interconnect_bandwidth <= 1e13:
        out.append(f"interconnect_bandwidth={d.interconnect_bandwidth:.3g} outside [1e8, 1e13]")
    if d.llc_bytes is not None and not 2**14 <= d.llc_bytes <= 2**30:
        out.append(f"llc_bytes={d.llc_bytes:.3g} outside [16 KiB, 1 GiB]")
    if d.tdp_w is not None and not 5 <= d.tdp_w <= 2000:
        out.append(f"tdp_w={d.tdp_w} outside [5, 2000]")
    # A device's ridge (FLOPs per byte) between 0.1 and 10^4 catches a peak/bandwidth mismatch.
    if d.mem_bandwidth and d.peaks:
        r = max(d.peaks.values()) / d.mem_bandwidth
        if not 0.1 <= r <= 1e4:
            out.append(f"ridge {r:.3g} FLOP/byte outside [0.1, 1e4]")
    return out


def test_catalog_loads_with_enough_devices_and_unique_slugs():
    assert len(CATALOG) >= 40
    names = [d.name for d in CATALOG]
    assert len(set(names)) == len(names)
    for n in names:
        assert n == n.lower() and " " not in n
    assert {d.kind for d in CATALOG} == set(KINDS)


def test_every_row_has_a_source_and_a_date_in_range():
    for d in CATALOG:
        assert len(d.source) >= 15, d.name
        assert d.released is not None, d.name
        assert 1990 <= d.released.year <= 2026, d.name
    assert sum(1997 <= d.released.year <= 2026 for d in CATALOG) >= 40
    assert min(d.released.year for d in CATALOG) <= 1998
    assert max(d.released.year for d in CATALOG) >= 2024


def test_every_row_has_a_roof_of_each_kind():
    for d in CATALOG:
        assert d.peaks, d.name
        assert d.mem_bandwidth or d.name == "r10000", d.name


def test_units_are_plausible_for_every_row():
    bad = {d.name: implausible(d) for d in CATALOG}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize(
    "field,scale",
    [("peaks", 1e-12), ("peaks", 1e-9), ("mem_bandwidth", 1e-9), ("mem_capacity", 2**-30)],
)
def test_plausibility_check_catches_unit_slips(field, scale):
    """A value typed in TFLOP/s, GFLOP/s, GB/s or GiB instead of base units is flagged."""
    for name in ("h100-sxm", "xeon-gold-6242", "tpu-v4", "gtx-580"):
        d = get_device(name)
        if field == "peaks":
            slip = dataclasses.replace(d, peaks={k: v * scale for k, v in d.peaks.items()})
        else:
            if getattr(d, field) is None:
                continue
            slip = dataclasses.replace(d, **{field: getattr(d, field) * scale})
        assert implausible(slip), (name, field)


def test_peaks_are_ordered_by_precision():
    """Narrower formats never run slower than wider ones on the same device."""
    for d in CATALOG:
        p = d.peaks
        if "fp64" in p and "fp32" in p:
            assert p["fp64"] <= p["fp32"], d.name
        for half in ("bf16", "fp16"):
            if "fp32" in p and half in p:
                assert p["fp32"] <= p[half], d.name
            if half in p and "fp8" in p:
                assert p[half] <= p["fp8"], d.name


def test_contract_names_and_the_papers_hardware_points():
    """Peaks of the devices labelled in the paper's Fig. 1 match the figure's values
    (the paper plots dense fp16/bf16 tensor peaks for accelerators, fp32 for the GTX 580)."""
    paper = {  # device: (dtype, value read off the paper's hardware figure)
        "gtx-580": ("fp32", 1581e9),
        "v100-pcie-16gb": ("fp16", 112e12),
        "tpu-v3": ("bf16", 123e12),
        "a100-sxm-40gb": ("bf16", 312e12),
        "tpu-v4": ("bf16", 275e12),
        "h100-sxm": ("bf16", 989.5e12),
    }
    for name, (dtype, v) in paper.items():
        assert get_device(name).peak(dtype) == pytest.approx(v, rel=0.002), name
    for n in (
        "a100-sxm-80gb",
        "v100-sxm2-32gb",
        "xeon-gold-6242",
        "epyc-9654",
        "b200",
        "gb200",
        "mi250x",
        "mi300x",
        "mi325x",
        "tpu-v2",
        "tpu-v5e",
        "tpu-v6e",
        "gaudi2",
        "gaudi3",
        "h200-sxm",
        "r10000",
        "pentium-ii-xeon",
        "itanium-2",
        "p100-sxm2",
    ):
        assert get_device(n).name == n


def test_catalog_frame_matches_the_loader():
    df = catalog_frame()
    assert len(df) == len(CATALOG)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert str(df["released"].dtype).startswith("datetime64")
    h = df.set_index("name").loc["h100-sxm"]
    assert h["peak_bf16"] == get_device("h100-sxm").peak("bf16")
    assert 2022 < h["year"] < 2023
    assert math.isnan(df.set_index("name").loc["gtx-580", "peak_bf16"])


def test_parse_catalog_rejects_broken_rows():
    header = ",".join(COLUMNS)
    good = "x1,X,V,gpu,2020-01-01," + "1e12," * 8 + "HBM,1e9,1e12,,,,,src,"
    assert parse_catalog(f"# comment\n{header}\n{good}\n")[0].peak("fp32") == 1e12
    with pytest.raises(MemwallError, match="duplicate"):
        parse_catalog(f"{header}\n{good}\n{good}\n")
    with pytest.raises(MemwallError, match="not a number"):
        parse_catalog(f"{header}\n{good.replace('1e9', '1 GB')}\n")
    with pytest.raises(MemwallError, match="kind"):
        parse_catalog(f"{header}\n{good.replace(',gpu,', ',fpga,')}\n")
    with pytest.raises(MemwallError, match="YYYY-MM-DD"):
        parse_catalog(f"{header}\n{good.replace('2020-01-01', '2020')}\n")
    with pytest.raises(MemwallError, match="lacks columns"):
        parse_catalog("name,kind\nx,gpu\n")


def test_get_device_resolves_and_suggests():
    assert get_device("H100-SXM ").name == "h100-sxm"
    with pytest.raises(MemwallError, match="h100-sxm") as e:
        get_device("h100")
    assert "\n" not in str(e.value)
    with pytest.raises(MemwallError, match="no bf16 peak"):
        get_device("gtx-580").peak("bf16")
    assert get_device("a100-sxm-80gb").peak("bfloat16") == 312e12


def test_normalize_dtype():
    assert normalize_dtype("torch.float16") == "fp16"
    assert normalize_dtype("BF16") == "bf16"
    assert set(DTYPES) == {normalize_dtype(d) for d in DTYPES}
    with pytest.raises(MemwallError, match="accepted"):
        normalize_dtype("fp12")


# ---------------------------------------------------------------- saved measurements


def fake_measurement(dram: float = 20e9) -> dict:
    return {
        "dram_bandwidth": dram,
        "peak_flops": {"fp32": 150e9, "bf16": 2e9, "int8": None},
        "cache_levels": [{"name": "L1", "size": 32768, "bandwidth": 300e9}],
        "op_overhead": 2e-6,
        "gemv_bandwidth": 18e9,
        "metadata": {"cpu_model": "Test CPU", "date": "2025-01-02T03:04:05+00:00", "threads": 2},
    }


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    return tmp_path


def test_saved_measurement_round_trip(data_dir):
    paths = save_measurement(fake_measurement(), "box-1")
    assert {p.name for p in paths} == {"local.json", "box-1.json"}
    for name in ("local", "box-1"):
        d = get_device(name)
        assert d.measured and d.roof_origin == "measured"
        assert d.memory_bandwidth() == 20e9
        assert d.peak("fp32") == 150e9 and not d.has_peak("int8")
        assert d.op_overhead == 2e-6
        assert d.memory_roofs() == [("L1", 300e9), ("DRAM", 20e9)]
    save_measurement(fake_measurement(dram=25e9))  # a newer measurement becomes `local`
    assert get_device("local").memory_bandwidth() == 25e9
    assert get_device("box-1").memory_bandwidth() == 20e9


def test_missing_and_malformed_saved_devices(data_dir):
    with pytest.raises(MemwallError, match="memwall measure"):
        get_device("local")
    bad = data_dir / "devices" / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(MemwallError, match="malformed") as e:
        get_device("broken")
    assert "\n" not in str(e.value) and "broken.json" in str(e.value)
    bad.write_text(json.dumps({**fake_measurement(), "dram_bandwidth": -1}))
    with pytest.raises(MemwallError, match="dram_bandwidth"):
        get_device("broken")
    bad.write_text(json.dumps({**fake_measurement(), "peak_flops": {"fp32": "fast"}}))
    with pytest.raises(MemwallError, match="peak_flops"):
        get_device("broken")


def test_save_names_are_checked(data_dir):
    with pytest.raises(MemwallError, match="catalog"):
        check_save_name("h100-sxm")
    with pytest.raises(MemwallError, match="bad device name"):
        check_save_name("../etc/passwd")
    with pytest.raises(MemwallError, match="malformed"):
        save_measurement({"dram_bandwidth": 1.0}, "x")
    assert not (data_dir / "devices" / "x.json").exists()


# ---------------------------------------------------------------- CLI


def test_cli_devices_json_and_filters():
    r = run("devices", "--kind", "tpu", "--since", "2020", "--format", "json", "--no-measured")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["count"] == len(out["devices"]) >= 5
    assert all(d["kind"] == "tpu" and d["released"] >= "2020" for d in out["devices"])
    assert all(d["source"] for d in out["devices"])
    r = run("devices", "--vendor", "amd", "--name", "mi3", "--format", "csv", "--no-measured")
    lines = r.stdout.strip().splitlines()
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
def test_cli_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    r = run(*args, env={"MEMWALL_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    if args[0] != "devices" or "--kind" not in args:  # click's own usage errors span lines
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_malformed_saved_device_is_one_line_exit_2(tmp_path):
    p = tmp_path / "devices" / "mine.json"
    p.parent.mkdir(parents=True)
    p.write_text('{"dram_bandwidth": "lots"}')
    r = run("analyze", "gpt2", "--device", "mine", env={"MEMWALL_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "malformed" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_analyze_with_a_saved_device(tmp_path):
    env = {"MEMWALL_DATA_DIR": str(tmp_path)}
    (tmp_path / "devices").mkdir()
    rec = {"format": "memwall-measurement/1", **fake_measurement()}
    Path(tmp_path / "devices" / "local.json").write_text(json.dumps(rec))
    r = run("analyze", "gpt2", "--device", "local", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout)["prediction"]
    assert pred["measured"] is True and pred["roof_origin"] == "measured"
    assert pred["roofs"]["op_overhead"] == 2e-6
    assert pred["totals"]["t_overhead"] > 0
