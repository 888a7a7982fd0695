"""Energy by hand: a single GEMM and a single decode step on a catalog device, the TDP cap,
and the what-if scale of energy per byte. Every expected number is worked out here from the
data file's coefficients (read as plain JSON), not through memwall.energy's code path."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd
import pytest

from memwall.count import op_table
from memwall.energy import Work, step_energy, work_from_ops
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.precision import parse_precision
from memwall.predict.efficiency import predict_efficiency
from memwall.spec import Workload, load_model

H100_TDP = 700.0  # W, NVIDIA H100 SXM5 datasheet (devices.csv)


def hopper() -> dict:
    raw = resources.files("memwall.data").joinpath("energy.json").read_text("utf-8")
    c = json.loads(raw)["classes"]["nvidia-hopper"]
    return {
        "flop": c["pj_per_flop_bf16"]["value"] * 1e-12,
        "dram": c["pj_per_byte"]["dram"]["value"] * 1e-12,
        "onchip": c["pj_per_byte"]["onchip"]["value"] * 1e-12,
        "static": c["static_tdp_fraction"]["value"] * H100_TDP,
    }


def test_single_gemm_on_h100_by_hand():
    m, n, k = 4096, 4096, 4096
    flops = 2.0 * m * n * k  # 1 MAC = 2 FLOPs
    nbytes = 2.0 * (m * k + k * n + m * n)  # bf16 A and B read once, C written once
    t = 5e-4  # s (275 TFLOP/s): the time is an input here, not under test
    ops = pd.DataFrame([{"name": "gemm", "flops": flops, "bytes": nbytes, "dtype": "bf16"}])
    dev = get_device("h100-sxm")
    e = step_energy(work_from_ops(ops, dev), t, dev)
    c = hopper()
    # 137.4 GFLOP x 1.00 pJ = 0.1374 J; 100.7 MB x (31 + 5) pJ = 3.62 mJ; 0.57 x 700 W = 399 W
    # x 0.5 ms = 0.1995 J: 0.3405 J in all, 681 W on average (under the 700 W TDP: not capped)
    expected = flops * c["flop"] + nbytes * (c["dram"] + c["onchip"]) + c["static"] * t
    assert e.total_j == pytest.approx(expected, rel=1e-12)
    assert e.total_j == pytest.approx(0.3405, abs=5e-4)
    assert e.value.compute_j == pytest.approx(flops * c["flop"])
    assert e.value.dram_j == pytest.approx(nbytes * c["dram"])
    assert not e.value.capped
    assert e.avg_power_w == pytest.approx(expected / t)
    assert e.low.total_j < e.total_j < e.high.total_j


def test_single_decode_step_of_llama_3_8b_on_h100_by_hand():
    spec, prec, dev = load_model("llama-3-8b"), parse_precision("bf16"), get_device("h100-sxm")
    ops = op_table(spec, Workload("decode", 1, 1024), prec)
    t = predict_efficiency(ops, dev, prec, spread=False).totals["time"]
    e = step_energy(work_from_ops(ops, dev, prec), t, dev)
    flops, nbytes = float(ops["flops"].sum()), float(ops["bytes"].sum())
    # by hand: every bf16 weight but the embedding table (one row gathered) is read once:
    # 2 B x (8.03e9 - 128256 x 4096) = 15.01 GB; the K/V cache, 2 x 32 layers x 8 heads x 128
    # x 1024 tokens x 2 B = 134 MB; about 2 FLOPs per weight read
    weights = 2.0 * (8.030e9 - 128256 * 4096)
    kv = 2 * 32 * 8 * 128 * 1024 * 2.0
    assert nbytes == pytest.approx(weights + kv, rel=0.01)
    assert flops == pytest.approx(weights, rel=0.05)
    c = hopper()
    expected = flops * c["flop"] + nbytes * (c["dram"] + c["onchip"]) + c["static"] * t
    assert e.total_j == pytest.approx(expected, rel=1e-12)
    # memory-bound: moving bytes costs far more than computing at batch 1
    assert e.value.bytes_j > 20 * e.value.compute_j
    assert 0.3 < e.total_j < 10.0  # joules per generated token at batch 1: a few J


def test_energy_is_capped_at_the_tdp_of_every_device():
    dev = get_device("h100-sxm")
    w = Work({"bf16": 1e18}, 1e12)  # far more than 700 W for a millisecond
    e = step_energy(w, 1e-3, dev, devices=4)
    assert e.value.capped
    assert e.total_j == pytest.approx(H100_TDP * 1e-3 * 4)
    assert e.avg_power_w == pytest.approx(4 * H100_TDP)


def test_what_if_energy_per_byte_scales_only_bytes():
    base, half = get_device("h100-sxm"), get_device("h100-sxm@byte_energy=0.5")
    w, t = Work({"bf16": 1e12}, 1e10, 1e8), 0.01
    a, b = step_energy(w, t, base), step_energy(w, t, half)
    assert b.value.bytes_j == pytest.approx(0.5 * a.value.bytes_j)
    assert b.value.compute_j == pytest.approx(a.value.compute_j)
    assert b.value.static_j == pytest.approx(a.value.static_j)
    assert b.to_dict()["byte_energy_scale"] == 0.5


def test_power_cap_what_if_lowers_the_ceiling():
    dev = get_device("h100-sxm@power=350")
    e = step_energy(Work({"bf16": 1e18}), 1e-3, dev)
    assert e.total_j == pytest.approx(350 * 1e-3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: step_energy(Work({"bf16": 1.0}), -1.0, get_device("h100-sxm")),
        lambda: step_energy(Work({"bf16": 1.0}), float("nan"), get_device("h100-sxm")),
        lambda: step_energy(Work({"bf16": 1.0}), 1.0, get_device("h100-sxm"), devices=0),
        lambda: Work({"bf16": -1.0}),
        lambda: Work({}, float("inf")),
        lambda: work_from_ops(pd.DataFrame([{"flops": 1.0}]), get_device("h100-sxm")),
        lambda: get_device("h100-sxm@byte_energy=0"),
        lambda: get_device("h100-sxm@byte_energy=abc"),
    ],
)
def test_bad_input_is_one_memwall_error(make):
    with pytest.raises(MemwallError):
        make()
