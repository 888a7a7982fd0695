"""The device catalog (sources, dates, plausible units) and saved measurements of this machine."""

from __future__ import annotations

import dataclasses
import json
import math
import re

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
    json_depth,
    load_catalog,
    normalize_dtype,
    parse_catalog,
    save_measurement,
)

CATALOG = load_catalog()


# ---------------------------------------------------------------- plausibility of units


def _year(d: Device) -> float:
    return d.released.year + (d.released.timetuple().tm_yday - 1) / 365.25


def implausible(d: Device) -> list[str]:
    """Reasons a row's numbers look like a unit slip (TFLOP/s typed as FLOP/s, GB as bytes...).

    Bands widen with the year: peaks from ~1e8 FLOP/s in 1996 growing at most ~1.8x/year;
    memory bandwidth from ~1e8.3 B/s growing at most ~1.32x/year. Lower edges grow slowly
    enough to admit consumer and edge parts (a base M3's 100 GB/s, a GeForce's 1/64-rate fp64).
    """
    out = []
    y = _year(d) - 1996
    for dt_, v in d.peaks.items():
        lo, hi = 10 ** (8 + 0.12 * y), 10 ** (10.5 + 0.25 * y)
        if not lo <= v <= hi:
            out.append(f"peak_{dt_}={v:.3g} outside [{lo:.2g}, {hi:.2g}] for {d.released}")
    if d.mem_bandwidth is not None:
        lo, hi = 10 ** (8.3 + 0.07 * y), 10 ** (10 + 0.12 * y)
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
    good = "x1,X,V,gpu,2020-01-01," + "1e12," * len(DTYPES) + "HBM,1e9,1e12,,,,,src,"
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
    # an unquoted comma in the notes shifts the row: refused, not silently cut
    with pytest.raises(MemwallError, match="more than the header"):
        parse_catalog(f"{header}\n{good}note, with a comma\n")


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


# ---------------------------------------------------------------- units per vendor, new rows

# Every vendor in the catalog prints device memory as "GB" but means binary gigabytes (DRAM and
# HBM come in power-of-two dies; nvidia-smi, rocm-smi and Apple's About This Mac agree).
VENDOR_MEMORY_UNIT = {
    "NVIDIA": 2**30,
    "AMD": 2**30,
    "Google": 2**30,
    "Intel": 2**30,
    "Apple": 2**30,
}
# The "GB" each datasheet prints (per GPU/chip), as cited in the row's source.
DATASHEET_GB = {
    "b200": 180,  # HGX B200: 1,440 GB per 8 GPUs
    "gb200": 186,  # GB200 NVL72: 13.4 TB per 72 GPUs
    "h100-sxm": 80,
    "h200-sxm": 141,
    "a100-sxm-80gb": 80,
    "mi300x": 192,
    "mi325x": 256,
    "mi355x": 288,
    "tpu-v5p": 95,
    "tpu-v7": 192,
    "gaudi3": 128,
    "rtx-3090": 24,
    "rtx-4090": 24,
    "rtx-5090": 32,
    "jetson-agx-orin-64gb": 64,
    "apple-m3-ultra": 512,
    "apple-m4-max": 128,
}


def test_each_vendor_memory_unit_and_datasheet_capacities():
    for name, gb in DATASHEET_GB.items():
        d = get_device(name)
        assert d.mem_capacity == gb * VENDOR_MEMORY_UNIT[d.vendor], name
    for d in CATALOG:
        if d.kind != "cpu" and d.mem_capacity and d.vendor in VENDOR_MEMORY_UNIT:
            gb = d.mem_capacity / VENDOR_MEMORY_UNIT[d.vendor]
            assert gb * 4 == int(gb * 4), (d.name, gb)  # a whole (or quarter) datasheet figure


def test_consumer_and_edge_devices_are_in_the_catalog():
    apple = [d for d in CATALOG if d.vendor == "Apple"]
    gens = {d.name.split("-")[1] for d in apple}
    assert gens == {"m1", "m2", "m3", "m4"}
    for d in apple:
        assert d.peak("fp16") == d.peak("fp32")  # Apple GPUs run fp16 at the fp32 rate
        assert "cores" in d.notes and "GPU" in d.display_name
    bw = {d.name: d.mem_bandwidth for d in apple}
    assert bw["apple-m1-ultra"] == 2 * bw["apple-m1-max"] == 4 * bw["apple-m1-pro"]
    assert bw["apple-m4-max"] > bw["apple-m3-max"] > bw["apple-m3-pro"]
    for n in ("rtx-3090", "rtx-4090", "rtx-5090", "jetson-agx-orin-64gb"):
        d = get_device(n)
        assert d.has_peak("fp16") and d.mem_bandwidth and d.mem_capacity, n


def test_low_precision_peaks_are_dense_and_ordered():
    assert get_device("b200").peak("fp4") == 2 * get_device("b200").peak("fp8")
    assert get_device("mi355x").peak("mxfp4") == 2 * get_device("mi355x").peak("fp8")
    assert get_device("rtx-5090").peak("nvfp4") == 4 * get_device("rtx-5090").peak("fp8")
    for n in ("h100-sxm", "h200-sxm", "mi300x", "mi325x", "tpu-v7"):
        assert get_device(n).has_peak("fp8") and not get_device(n).has_peak("fp4"), n
    for d in CATALOG:
        if "fp8" in d.peaks and "fp4" in d.peaks:
            assert d.peaks["fp8"] <= d.peaks["fp4"], d.name


# ---------------------------------------------------------------- hostile saved files


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested deeper"),
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_deep_or_odd_saved_files_are_one_clean_error(data_dir, text, needle):
    p = data_dir / "devices" / "deep.json"
    p.parent.mkdir(parents=True)
    p.write_text(text)
    with pytest.raises(MemwallError, match=needle) as e:
        get_device("deep")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("dram_bandwidth", "1e9", "dram_bandwidth"),  # a string is not a number
        ("dram_bandwidth", True, "dram_bandwidth"),  # nor is a bool
        ("dram_bandwidth", 0, "dram_bandwidth"),
        ("op_overhead", -1e-6, "op_overhead"),
        ("cache_levels", [{"size": 1, "bandwidth": "x"}], "cache_levels"),
        ("peak_flops", {"fp32": [1]}, "peak_flops"),
        ("peak_flops", {"fp12": 1e9}, "fp12"),
        ("format", "memwall-measurement/9", "format"),
    ],
)
def test_saved_files_are_validated_strictly(data_dir, field, value, needle):
    p = data_dir / "devices" / "odd.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({**fake_measurement(), field: value}))
    with pytest.raises(MemwallError, match="malformed") as e:
        get_device("odd")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_huge_saved_file_is_refused_before_parsing(data_dir):
    p = data_dir / "devices" / "big.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({**fake_measurement(), "metadata": {"pad": "x" * (5 << 20)}}))
    with pytest.raises(MemwallError, match="bytes"):
        get_device("big")


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth('"\\"[[["') == 0


# ---------------------------------------------------------------- what-if devices


def test_derived_device_scales_and_says_so():
    h = get_device("h100-sxm")
    d = get_device("H100-SXM@bw=2,flops=0.5")
    assert d.name == "h100-sxm@bw=2,flops=0.5" and d.is_derived and d.derived_from == "h100-sxm"
    assert d.memory_bandwidth() == 2 * h.memory_bandwidth()
    assert d.peak("bf16") == 0.5 * h.peak("bf16")
    assert d.mem_capacity == h.mem_capacity
    assert d.interconnect_bandwidth == h.interconnect_bandwidth
    assert "what-if" in d.display_name and "memory bandwidth x2" in d.display_name
    assert "what-if" in d.roof_origin and d.to_dict()["what_if"]["scale"] == {"bw": 2, "flops": 0.5}
    m = get_device("b200@mem=0.5,link=2")
    assert m.mem_capacity == get_device("b200").mem_capacity / 2
    assert m.interconnect_bandwidth == 2 * get_device("b200").interconnect_bandwidth
    assert get_device("h100-sxm@bw*2").name == "h100-sxm@bw=2"  # `*` reads as `=`


@pytest.mark.parametrize(
    "name,needle",
    [
        ("h100-sxm@bw=0", "positive finite"),
        ("h100-sxm@bw=-2", "positive finite"),
        ("h100-sxm@bw=nan", "positive finite"),
        ("h100-sxm@bw=inf", "positive finite"),
        ("h100-sxm@bw=1e400", "positive finite"),
        ("h100-sxm@bw=two", "positive finite"),
        ("h100-sxm@bandwith=2", "did you mean"),
        ("h100-sxm@bw=2,bw=3", "twice"),
        ("h100-sxm@", "needs a base"),
        ("@bw=2", "needs a base"),
        ("h100-sxm@bw=2@flops=2", "more than one"),
        ("h100@bw=2", "h100-sxm"),
    ],
)
def test_bad_derived_devices_are_one_line(name, needle):
    with pytest.raises(MemwallError, match=needle) as e:
        get_device(name)
    assert "\n" not in str(e.value)


def test_unknown_device_never_suggests_what_was_typed(data_dir):
    (data_dir / "devices").mkdir(parents=True)
    (data_dir / "devices" / "Bad Name.json").write_text(json.dumps(fake_measurement()))
    with pytest.raises(MemwallError) as e:
        get_device("Bad Name")
    assert "did you mean Bad Name" not in str(e.value)
    with pytest.raises(MemwallError, match="no bf16 peak"):
        get_device("gtx-580@bw=2").peak("bf16")


def test_apple_peaks_follow_from_the_core_counts_and_clocks_in_their_notes():
    """Each Apple row's peak = cores x 128 ALUs x 2 x clock, as its notes say (a typo in either
    the number or the notes fails here)."""
    for d in CATALOG:
        if d.vendor != "Apple":
            continue
        m = re.search(r"(\d+) cores x 128 FP32 ALUs x 2 \(FMA\) x (\d+) MHz", d.notes)
        assert m, d.name
        cores, mhz = int(m.group(1)), int(m.group(2))
        assert f"{cores}-core GPU" in d.display_name, d.name
        assert d.peak("fp32") == pytest.approx(cores * 128 * 2 * mhz * 1e6, rel=2e-3), d.name
