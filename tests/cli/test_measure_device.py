"""`memwall measure --device`: the roofline code path with the torch device as a parameter.

No accelerator is needed: the CPU runs the same path (device="cpu"), and an accelerator this
machine lacks is refused with one line before any work.
"""

from __future__ import annotations

import pytest

from memwall.errors import MemwallError
from memwall.hardware import device_from_measurement
from memwall.measure.machine import KiB, MiB
from memwall.measure.roofs import (
    MeasureConfig,
    config,
    gemm_flops,
    gemv_bandwidth,
    measure,
    op_overhead,
    read_bandwidth,
    triad_bandwidth,
)
from memwall.measure.timing import best_time, check_device, device_sync, torch_or_error

TINY = dict(
    curve_min=16 * KiB,
    curve_max=64 * KiB,
    curve_bytes_per_call=1 * MiB,
    dram_array_bytes=2 * MiB,
    gemm_sizes=(64,),
    gemm_dtypes=("fp32",),
    gemv_shape=(256, 512),
    overhead_calls=50,
    reps=1,
    min_time=0.0,
)


def test_check_device_accepts_cpu_and_refuses_what_is_not_here():
    torch = torch_or_error()
    assert check_device(" CPU ") == "cpu"
    for bad in ("tpu", "cuda:x", "mps:0", "gpu"):
        with pytest.raises(MemwallError, match="accepted") as e:
            check_device(bad)
        assert "\n" not in str(e.value)
    if torch.cuda.is_available():
        assert check_device("cuda") == "cuda"
    else:
        with pytest.raises(MemwallError, match="no CUDA device"):
            check_device("cuda")
    with pytest.raises(MemwallError, match="accepted"):
        MeasureConfig(device="tpu")


def test_every_roof_runs_with_the_device_as_a_parameter():
    assert device_sync("cpu") is None
    calls = []
    assert best_time(lambda: None, reps=3, min_time=0.0, sync=lambda: calls.append(1)) >= 0
    assert len(calls) >= 4  # warm-up and every timed run wait for the device
    assert triad_bandwidth(1 * MiB, 1, 0.0, device="cpu") > 0
    assert read_bandwidth(64 * KiB, 1 * MiB, 1, 0.0, device="cpu") > 0
    assert gemm_flops("fp32", (32, 64), 1, 0.0, device="cpu")[0] > 0
    assert gemv_bandwidth(128, 256, 1, 0.0, device="cpu") > 0
    assert op_overhead(50, 1, device="cpu") > 0


def test_measure_records_the_device_and_reads_back_as_one():
    res = measure(config(device="cpu", **TINY))
    meta = res["metadata"]
    assert meta["device"] == "cpu" and meta["device_kind"] == "cpu"
    dev = device_from_measurement(res, "x")
    assert dev.kind == "cpu" and dev.measured
    gpu = {**res, "metadata": {**meta, "device": "cuda", "device_kind": "gpu",
                               "device_name": "NVIDIA H200", "mem_total": 150e9}}  # fmt: skip
    g = device_from_measurement(gpu, "h200-here")
    assert g.kind == "gpu" and g.display_name == "NVIDIA H200 (measured)"
    assert g.mem_capacity == 150e9 and g.mem_type == "device memory"


def test_cli_refuses_a_device_it_cannot_use_in_one_line(cli, tmp_path):
    env = {"MEMWALL_DATA_DIR": str(tmp_path)}
    cli("measure", "--quick", "--device", "tpu", env=env).assert_one_line_error("accepted")
    torch = torch_or_error()
    if not torch.cuda.is_available():
        cli("measure", "--quick", "--device", "cuda", env=env).assert_one_line_error("no CUDA")
    r = cli("measure", "--collectives", "--device", "cuda", env=env)
    r.assert_one_line_error("--collectives")
    assert not (tmp_path / "devices").exists()  # nothing measured, nothing saved
