"""Roofline prediction: time = max of the roofs (+ overhead), bound flips at the ridge, plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import CacheLevel, Device, get_device
from memwall.plots.roofline import plot_roofline
from memwall.predict import decode_ridge_batch, decode_terms, predict_roofline
from memwall.spec import Workload, load_model

DEV = Device(
    name="toy",
    display_name="Toy device",
    vendor="test",
    kind="gpu",
    released=None,
    peaks={"fp32": 100e9, "bf16": 400e9},
    mem_bandwidth=10e9,
    source="test",
)
MEASURED = Device(
    name="toy-measured",
    display_name="Toy (measured)",
    vendor="",
    kind="cpu",
    released=None,
    peaks={"fp32": 100e9},
    mem_bandwidth=10e9,
    measured=True,
    cache_levels=(CacheLevel("L1", 32768, 200e9), CacheLevel("L2", 2**20, 60e9)),
    op_overhead=1e-6,
)

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


def ops(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["name", "kind", "count", "flops", "bytes", "dtype"])


@settings(max_examples=200, deadline=None)
@given(
    flops=st.floats(0, 1e15),
    nbytes=st.floats(0, 1e13),
    count=st.integers(1, 100),
    dtype=st.sampled_from(["fp32", "bf16"]),
)
def test_time_is_the_larger_roof(flops, nbytes, count, dtype):
    p = predict_roofline(ops([("op", "matmul", count, flops, nbytes, dtype)]), DEV)
    r = p.ops.iloc[0]
    tc, tm = flops / DEV.peak(dtype), nbytes / DEV.mem_bandwidth
    assert r["t_compute"] == pytest.approx(tc)
    assert r["t_memory"] == pytest.approx(tm)
    assert r["time"] == pytest.approx(max(tc, tm))
    assert r["t_overhead"] == 0  # catalog-like device: no overhead
    assert r["bound"] == ("compute" if flops > 0 and tc >= tm else "memory")
    assert r["attainable_flops"] <= DEV.peak(dtype) * (1 + 1e-12)
    assert p.totals["time"] == pytest.approx(r["time"])


def test_bound_flips_from_memory_to_compute_exactly_at_the_ridge():
    for dtype in ("fp32", "bf16"):
        ridge = DEV.peak(dtype) / DEV.mem_bandwidth
        intensities = np.geomspace(ridge / 100, ridge * 100, 41)
        rows = [(f"op{i}", "matmul", 1, x * 1e9, 1e9, dtype) for i, x in enumerate(intensities)]
        p = predict_roofline(ops(rows), DEV)
        bounds = list(p.ops["bound"])
        flip = bounds.index("compute")
        assert set(bounds[:flip]) == {"memory"} and set(bounds[flip:]) == {"compute"}
        assert intensities[flip - 1] < ridge <= intensities[flip] * (1 + 1e-9)
        assert p.ridge[dtype] == pytest.approx(ridge)
        # attainable = min(peak, I x bandwidth) on both sides of the ridge
        expect = np.minimum(DEV.peak(dtype), intensities * DEV.mem_bandwidth)
        assert np.allclose(p.ops["attainable_flops"], expect)


def test_overhead_is_per_op_instance_layers_times_steps():
    df = ops([("a", "matmul", 12, 1e6, 1e6, "fp32"), ("b", "norm", 1, 0.0, 1e3, "fp32")])
    df["steps"] = 16
    p = predict_roofline(df, MEASURED)
    assert list(p.ops["t_overhead"]) == pytest.approx([1e-6 * 12 * 16, 1e-6 * 16])
    roof = np.maximum(p.ops["t_compute"], p.ops["t_memory"])
    assert np.allclose(p.ops["time"], roof + p.ops["t_overhead"])
    q = predict_roofline(df, MEASURED, overhead=False)
    assert (q.ops["t_overhead"] == 0).all()
    assert p.totals["time"] - q.totals["time"] == pytest.approx(p.totals["t_overhead"])
    fr = p.totals
    assert fr["frac_compute_bound"] + fr["frac_memory_bound"] + fr["frac_overhead"] == (
        pytest.approx(1.0)
    )


def test_missing_count_and_steps_default_to_one():
    df = pd.DataFrame({"name": ["x"], "flops": [1e9], "bytes": [1e9], "dtype": ["fp32"]})
    p = predict_roofline(df, MEASURED)
    assert p.ops["t_overhead"].iloc[0] == pytest.approx(1e-6)


@pytest.mark.parametrize(
    "df,match",
    [
        (pd.DataFrame({"name": ["x"], "flops": [1.0], "dtype": ["fp32"]}), "bytes"),
        (ops([("x", "m", 1, -1.0, 1.0, "fp32")]), "flops"),
        (ops([("x", "m", 1, float("nan"), 1.0, "fp32")]), "flops"),
        (ops([("x", "m", 1, 1.0, 1.0, "int4")]), "no int4 peak"),
        (ops([("x", "m", 1, 1.0, 1.0, "fp7")]), "unknown dtype"),
        (ops([]), "empty"),
    ],
)
def test_bad_tables_raise_one_line(df, match):
    with pytest.raises(MemwallError, match=match) as e:
        predict_roofline(df, DEV)
    assert "\n" not in str(e.value)


def test_to_dict_is_json_and_names_the_roofs():
    p = predict_roofline(
        ops([("a", "matmul", 2, 1e9, 1e8, "bf16")]),
        MEASURED.__class__(
            **{
                **{f: getattr(DEV, f) for f in DEV.__dataclass_fields__},
            }
        ),
    )
    d = json.loads(json.dumps(p.to_dict()))
    assert d["device"] == "toy" and d["roof_origin"] == "spec sheet" and d["measured"] is False
    assert d["roofs"]["memory_bandwidth"] == 10e9
    assert d["roofs"]["peak_flops"] == {"bf16": 400e9}
    assert d["ops"][0]["bound"] == "memory"
    assert set(d["totals"]) >= {"time", "flops", "bytes", "intensity", "attainable_flops"}


def test_real_model_decode_is_memory_bound_and_prefill_matmuls_compute_bound():
    spec = load_model("llama-2-7b")
    h100 = get_device("h100-sxm")
    dec = predict_roofline(op_table(spec, Workload("decode", 1, 512), "bf16"), h100)
    assert (dec.ops["bound"] == "memory").all()
    assert dec.totals["frac_memory_bound"] == pytest.approx(1.0)
    # weights dominate batch-1 decode: time ~ bytes / bandwidth
    assert dec.totals["time"] == pytest.approx(dec.totals["bytes"] / 3.35e12, rel=1e-6)
    pre = predict_roofline(op_table(spec, Workload("prefill", 8, 2048), "bf16"), h100)
    mm = pre.ops[pre.ops["kind"] == "matmul"]
    assert (mm["bound"] == "compute").all()


def test_decode_ridge_batch_is_the_first_compute_bound_batch():
    for model, dev, prec in (("gpt2", DEV, "fp32"), ("llama-3-8b", get_device("h100-sxm"), "bf16")):
        spec = load_model(model)
        b = decode_ridge_batch(spec, dev, prec, context=64)
        assert b is not None and b > 1
        c, m = decode_terms(spec, dev, prec, 64, b)
        c0, m0 = decode_terms(spec, dev, prec, 64, b - 1)
        assert c >= m and c0 < m0
    # a faster compute roof needs a larger batch to leave the memory roof
    spec = load_model("gpt2")
    fast = Device(
        **{**{f: getattr(DEV, f) for f in DEV.__dataclass_fields__}, "peaks": {"fp32": 300e9}}
    )
    assert decode_ridge_batch(spec, fast, "fp32", 64) > decode_ridge_batch(spec, DEV, "fp32", 64)


def test_decode_ridge_batch_none_when_kv_reads_outgrow_flops():
    """Multi-head attention with a long context: KV bytes grow with the batch as fast as FLOPs."""
    spec = load_model("gpt2")
    slow_mem = Device(
        **{
            **{f: getattr(DEV, f) for f in DEV.__dataclass_fields__},
            "mem_bandwidth": 1e9,
            "peaks": {"fp32": 1e15},
        }
    )
    assert decode_ridge_batch(spec, slow_mem, "fp32", 1000, max_batch=4096) is None


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_plot_writes_png_and_svg(tmp_path, suffix, magic):
    spec = load_model("gpt2")
    df = op_table(spec, Workload("prefill", 1, 128), "fp32")
    out = tmp_path / f"roof{suffix}"
    plot_roofline(predict_roofline(df, MEASURED), MEASURED, out)
    data = out.read_bytes()
    assert magic in data[:400]
    if suffix == ".svg":
        text = data.decode()
        for label in ("L1", "L2", "DRAM", "fp32 peak", "measured", "qkv_proj", "FLOP/byte"):
            assert label in text, label
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left


def test_plot_from_a_table_and_bad_paths(tmp_path):
    df = ops(
        [("gemm", "matmul", 1, 1e12, 1e9, "bf16"), ("add", "elementwise", 1, 1e6, 1e7, "fp32")]
    )
    h100 = get_device("h100-sxm")
    out = plot_roofline(df, h100, tmp_path / "t.svg")
    assert "spec sheet" in out.read_text()
    with pytest.raises(MemwallError, match=".png or .svg"):
        plot_roofline(df, h100, tmp_path / "t.pdf")
    with pytest.raises(MemwallError, match="does not exist"):
        plot_roofline(df, h100, tmp_path / "nope" / "t.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.svg"]


def test_hardware_roofline_and_plot_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import memwall.hardware, memwall.predict, memwall.plots.roofline, memwall.measure\n"
        "from memwall.hardware import get_device\n"
        "print(get_device('tpu-v4').ridge('bf16'))\n"
        "try:\n"
        "    memwall.measure.triad_bandwidth(1 << 20)\n"
        "except memwall.errors.MemwallError as e:\n"
        "    print('needs torch' if 'torch' in str(e) else 'other')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ridge, msg = r.stdout.split()[:2]
    assert float(ridge) == pytest.approx(275e12 / 1200e9)
    assert msg == "needs"
