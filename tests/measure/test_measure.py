"""Measuring this machine: plateau detection on synthetic curves, and small real measurements.

No timing assertions: the machine is shared; benchmarks/ compare timings in one run.
"""

from __future__ import annotations

import json

import pytest

import memwall.measure.roofs as mm
from memwall.errors import MemwallError
from memwall.hardware import device_from_measurement
from memwall.measure import (
    KiB,
    MiB,
    best_time,
    config,
    curve_sizes,
    find_cache_levels,
    gemm_flops,
    is_complete,
    measure,
)

TINY = dict(
    curve_min=16 * KiB,
    curve_max=128 * KiB,
    curve_bytes_per_call=1 * MiB,
    dram_array_bytes=2 * MiB,
    gemm_sizes=(64, 128),
    gemm_dtypes=("fp32", "int8"),
    gemv_shape=(256, 512),
    overhead_calls=50,
    reps=1,
    min_time=0.0,
)


def synthetic_curve(levels, dram, per_octave=2, lo=16 * KiB, hi=512 * MiB, noise=()):
    """Bandwidth of a working set: the first level whose size holds it, else DRAM."""
    out = []
    for i, s in enumerate(curve_sizes(lo, hi, per_octave)):
        bw = next((b for size, b in levels if s <= size), dram)
        bw *= noise[i % len(noise)] if noise else 1.0
        out.append({"size": s, "bandwidth": bw})
    return out


def test_curve_sizes_are_geometric_and_cover_the_range():
    s = curve_sizes(16 * KiB, 64 * MiB, 2)
    assert s[0] == 16 * KiB and s[-1] == 64 * MiB
    assert all(b > a for a, b in zip(s, s[1:], strict=False))
    assert len(s) == 2 * 12 + 1
    assert all(x % 4096 == 0 for x in s)


def test_three_plateaus_are_found_with_sizes_and_bandwidths():
    levels = [(32 * KiB, 400e9), (512 * KiB, 200e9), (32 * MiB, 100e9)]
    got = find_cache_levels(synthetic_curve(levels, 20e9))
    assert [c.name for c in got] == ["L1", "L2", "L3"]
    assert [c.bandwidth for c in got] == [400e9, 200e9, 100e9]
    for c, (size, _) in zip(got, levels, strict=True):
        assert size / 1.5 <= c.size <= size


def test_plateaus_survive_noise_and_single_outliers():
    levels = [(64 * KiB, 300e9), (16 * MiB, 90e9)]
    noise = (1.0, 1.08, 0.93, 1.03, 0.97)
    curve = synthetic_curve(levels, 15e9, noise=noise)
    curve[3]["bandwidth"] *= 0.3  # one disturbed run inside the first plateau
    got = find_cache_levels(curve)
    assert len(got) == 2
    assert got[0].bandwidth == pytest.approx(300e9, rel=0.1)
    assert got[1].bandwidth == pytest.approx(90e9, rel=0.1)


def test_plateaus_named_after_reported_caches():
    levels = [(32 * KiB, 400e9), (32 * MiB, 100e9)]  # L2 not visible in this kernel
    reported = [
        {"level": 1, "size": 32 * KiB},
        {"level": 2, "size": 512 * KiB},
        {"level": 3, "size": 32 * MiB},
    ]
    got = find_cache_levels(synthetic_curve(levels, 20e9), reported)
    assert [c.name for c in got] == ["L1", "L3"]
    assert got[1].size >= 16 * MiB and got[1].bandwidth == 100e9
    # a plateau that ends early (a cache shared with other tenants) keeps its observed end
    odd = [(32 * KiB, 400e9), (512 * KiB, 200e9), (4 * MiB, 100e9)]
    got = find_cache_levels(synthetic_curve(odd, 20e9), reported)
    assert [c.name for c in got] == ["L1", "L2", "L3"]
    assert 2 * MiB < got[2].size <= 4 * MiB
    assert [c.bandwidth for c in got] == [400e9, 200e9, 100e9]


def test_reported_caches_with_noisy_real_shaped_curve():
    """The shape measured on a 2-core EPYC VM: L1 ~330, L2 ~200, L3 ~150 falling, DRAM ~15."""
    kib = [16, 24, 32, 44, 64, 92, 128, 180, 256, 364, 512, 724, 1024, 1448, 2048, 2896]
    kib += [4096, 5792, 8192, 11584, 16384, 23172, 32768, 46340, 65536, 131072, 262144]
    gbs = [318, 333, 334, 204, 201, 203, 202, 202, 148, 196, 177, 163, 159, 153, 153, 156]
    gbs += [156, 137, 137, 117, 117, 46, 15, 9, 14, 13, 19]
    curve = [{"size": k * KiB, "bandwidth": g * 1e9} for k, g in zip(kib, gbs, strict=True)]
    reported = [
        {"level": 1, "size": 32 * KiB},
        {"level": 2, "size": 512 * KiB},
        {"level": 3, "size": 32 * MiB},
    ]
    got = find_cache_levels(curve, reported)
    assert [c.name for c in got] == ["L1", "L2", "L3"]
    assert [round(c.bandwidth / 1e9) for c in got] == [333, 202, 153]


def test_flat_or_short_curves_have_no_cache_levels():
    assert find_cache_levels(synthetic_curve([], 20e9)) == []
    assert find_cache_levels([{"size": 1, "bandwidth": 1.0}]) == []


def test_best_time_keeps_the_fastest_run():
    calls = []
    times = iter([0.0, 5.0, 1.0, 3.0, 2.0] * 10)

    def fn():
        calls.append(next(times))

    assert best_time(fn, reps=4, min_time=0.0) >= 0
    assert len(calls) == 5  # warm-up + 4


def test_config_validates():
    with pytest.raises(MemwallError):
        config(gemm_dtypes=("fp12",))
    with pytest.raises(MemwallError):
        config(reps=0)
    assert config(True).mode == "quick" and config().mode == "default"


def test_small_real_measurement_has_the_contract_keys():
    res = measure(config(**TINY))
    json.dumps(res)
    assert res["dram_bandwidth"] > 0
    assert res["peak_flops"]["fp32"] > 0
    assert "int8" in res["peak_flops"]  # a rate or None (with a note) when torch cannot
    if res["peak_flops"]["int8"] is None:
        assert res["notes"]["peak_int8"].startswith("unavailable")
    assert res["op_overhead"] > 0 and res["gemv_bandwidth"] > 0
    assert isinstance(res["cache_levels"], list)
    assert len(res["bandwidth_curve"]) == len(curve_sizes(16 * KiB, 128 * KiB, 2))
    meta = res["metadata"]
    for k in ("cpu_model", "threads", "torch", "numpy", "date", "mem_total"):
        assert meta[k], k
    assert is_complete(res)
    dev = device_from_measurement(res, "here")
    assert dev.measured and dev.peak("fp32") == res["peak_flops"]["fp32"]
    quick = measure(config(True, **{k: v for k, v in TINY.items() if k != "gemm_dtypes"}))
    assert "bandwidth_curve" not in quick


def test_unavailable_dtype_is_reported_not_guessed(monkeypatch):
    import torch

    def boom(*a, **k):
        raise RuntimeError("_int_mm not implemented for CPU here")

    monkeypatch.setattr(torch, "_int_mm", boom)
    rate, n, note = gemm_flops("int8", (64,), reps=1, min_time=0)
    assert rate is None and n is None and note.startswith("unavailable")


def test_interrupt_keeps_what_was_measured(monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mm, "gemm_flops", interrupted)
    res = measure(config(**TINY))
    assert res["metadata"]["interrupted"] is True
    assert res["dram_bandwidth"] > 0 and res["op_overhead"] > 0
    assert res["gemv_bandwidth"] is None and not is_complete(res)
