"""Hostile input at the library level: what-if factors and saved values at the float limits,
compress on a machine too small, torchvision models at image sizes they cannot take, errors of
a user's entry point, trend CSVs near the float limits. Each is one MemwallError line naming
what is wrong and what is accepted, or the right number."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from memwall.errors import MemwallError
from memwall.hardware import device_from_measurement, get_device
from memwall.hardware.derived import MAX_FACTOR, MIN_FACTOR, parse_derived

# ---------------------------------------------------------------- what-if factors


@pytest.mark.parametrize("factor", ["5e-324", "1e-7", "0", "1e7", "1e308", "inf", "nan"])
def test_what_if_factor_outside_its_range_is_refused(factor):
    with pytest.raises(MemwallError, match=r"from 1e-06 to 1e\+06") as e:
        parse_derived(f"h100-sxm@flops={factor}")
    assert "\n" not in str(e.value) and f"flops={factor!r}" in str(e.value)


def test_what_if_factor_at_its_bounds_gives_finite_times():
    from memwall.count import op_table
    from memwall.predict import predict_roofline
    from memwall.spec import Workload, load_model, parse_precision

    ops = op_table(load_model("gpt2"), Workload("prefill", 1, 128), parse_precision("fp32"))
    for key in ("bw", "flops", "mem", "link"):
        for f in (MIN_FACTOR, MAX_FACTOR):
            pred = predict_roofline(ops, get_device(f"h100-sxm@{key}={f:g}"))
            times = [v for k, v in pred.to_dict()["totals"].items() if k.startswith("t")]
            assert times and all(isinstance(t, float) and math.isfinite(t) for t in times), key


# ---------------------------------------------------------------- saved device values

SAVED = {
    "dram_bandwidth": 20e9,
    "peak_flops": {"fp32": 150e9, "int8": None},
    "cache_levels": [{"name": "L1", "size": 32768, "bandwidth": 300e9}],
    "op_overhead": 2e-6,
    "gemv_bandwidth": 18e9,
    "metadata": {"cpu_model": "Test CPU", "mem_total": 16 << 30, "threads": 2},
}


@pytest.mark.parametrize(
    "change,field",
    [
        ({"dram_bandwidth": 1e-300}, "dram_bandwidth"),
        ({"dram_bandwidth": 1e300}, "dram_bandwidth"),
        ({"gemv_bandwidth": 1e-3}, "gemv_bandwidth"),
        ({"peak_flops": {"fp32": 1e-300}}, "peak_flops.fp32"),
        ({"peak_flops": {"fp32": 1e30}}, "peak_flops.fp32"),
        ({"op_overhead": 1e300}, "op_overhead"),
        ({"cache_levels": [{"size": 1e300, "bandwidth": 1e9}]}, "cache_levels.0.size"),
        ({"cache_levels": [{"size": 4096, "bandwidth": 1e-300}]}, "cache_levels.0.bandwidth"),
        ({"metadata": {"mem_total": 1e300}}, "metadata.mem_total"),
        ({"metadata": {"mem_total": 1}}, "metadata.mem_total"),
    ],
)
def test_saved_value_outside_a_physical_range_is_malformed(change, field):
    with pytest.raises(MemwallError, match="malformed") as e:
        device_from_measurement({**SAVED, **change}, "odd")
    msg = str(e.value)
    assert f"{field}: must be from " in msg and "\n" not in msg, msg


def test_saved_values_in_range_keep_their_metadata():
    d = device_from_measurement(SAVED, "box")
    assert d.mem_capacity == 16 << 30 and d.memory_bandwidth() == 20e9
    assert d.metadata["cpu_model"] == "Test CPU" and d.ridge("fp32") == 7.5
    no_cap = device_from_measurement({**SAVED, "metadata": {"mem_total": None}}, "box")
    assert no_cap.mem_capacity is None


# ---------------------------------------------------------------- compress memory check


def test_compress_refuses_a_model_bigger_than_memory_before_building(monkeypatch):
    pytest.importorskip("torch")
    import importlib

    fp = importlib.import_module("memwall.compress.footprint")
    run_mod = importlib.import_module("memwall.compress.run")  # `compress.run` is the function
    monkeypatch.setattr(fp, "available_bytes", lambda: 2e9)

    def never(*a, **k):
        raise AssertionError("weights built despite the memory check")

    monkeypatch.setattr(run_mod, "load_subject", never)
    with pytest.raises(MemwallError, match="available") as e:
        run_mod.run("gpt2-xl", ["int8"])
    msg = str(e.value)
    assert "gpt2-xl" in msg and "1.56 G parameters" in msg and "2e+09 bytes" in msg
    assert "\n" not in msg


def test_compress_footprint_counts_the_model_and_its_largest_copy():
    pytest.importorskip("torch")
    from memwall.compress.footprint import needed_bytes
    from memwall.compress.methods import Method, parse_method
    from memwall.spec import Workload, load_model

    spec, wl = load_model("gpt2"), Workload("decode", 1, 128)
    fp32 = needed_bytes(spec, [Method("fp32")], wl)
    both = needed_bytes(spec, [Method("fp32"), parse_method("prune-unstructured:0.5")], wl)
    assert fp32 >= 4 * spec.n_params() and both >= 21 * spec.n_params() > fp32


def test_available_bytes_respects_an_address_space_limit(monkeypatch):
    pytest.importorskip("torch")
    resource = pytest.importorskip("resource")
    import psutil

    from memwall.compress.footprint import available_bytes

    used = psutil.Process().memory_info().vms
    monkeypatch.setattr(resource, "getrlimit", lambda what: (used + 10**9, resource.RLIM_INFINITY))
    assert available_bytes() <= 10**9 + 1e6


# ---------------------------------------------------------------- torchvision image sizes


@pytest.mark.parametrize(
    "name,size,needles",
    [
        ("vit_b_16", 100, ["multiple of its patch size 16", "--image-size 100"]),
        ("vit_h_14", 100, ["multiple of its patch size 14"]),
        ("inception_v3", 32, ["32x32", "at least", "75x75"]),
        ("alexnet", 16, ["16x16", "63x63"]),
        ("maxvit_t", 100, ["100x100", "partition size"]),
    ],
)
def test_torchvision_at_an_image_size_it_cannot_take_is_one_line(name, size, needles):
    pytest.importorskip("torch")  # torchvision: through memwall (see sources)
    from memwall.trace.sources import torchvision_run
    from memwall.trace.table import trace_run

    with pytest.raises(MemwallError) as e:
        trace_run(torchvision_run(name, 1, size), cross_check=False)
    msg = str(e.value)
    assert "\n" not in msg and f"torchvision:{name}" in msg
    for n in needles:
        assert n.replace("at least", "minimum") in msg, msg


def test_regnet_builds_on_the_meta_device():
    """RegNet's builder computes its widths with torch: a meta default device broke it."""
    pytest.importorskip("torch")  # torchvision: through memwall (see sources)
    from memwall.trace.sources import torchvision_run

    run = torchvision_run("regnet_x_400mf", 1, 224)
    assert run.n_params == 5_495_976  # torchvision's documented count
    assert {p.device.type for p in run.module.parameters()} == {"meta"}


# ---------------------------------------------------------------- entry-point errors

ENTRY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Bad(nn.Module):
        def forward(self, x):
            raise ValueError("bad in forward")

    def value():
        raise ValueError("bad")

    def recursion():
        return recursion()

    def memory():
        raise MemoryError()

    def typeerr(batch):
        return batch + "x"

    def fwd():
        return Bad(), torch.zeros(1, 4)

    def ask():
        import typer

        raise typer.Abort()  # what typer.prompt raises on an exhausted stdin
    """
)


@pytest.fixture
def entry_mod(tmp_path, monkeypatch):
    """A module `hl_lib_entry` with failing entry points on sys.path."""
    (tmp_path / "hl_lib_entry.py").write_text(ENTRY)
    (tmp_path / "hl_lib_syntax.py").write_text("def build(:\n    pass\n")
    (tmp_path / "hl_lib_raises.py").write_text("raise RuntimeError('at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hl_lib_entry"


@pytest.mark.parametrize(
    "target,needle",
    [
        ("hl_lib_entry:value", "hl_lib_entry:value raised ValueError: bad"),
        ("hl_lib_entry:recursion", "raised RecursionError"),
        ("hl_lib_entry:memory", "hl_lib_entry:memory raised MemoryError"),
        ("hl_lib_entry:typeerr", "raised TypeError"),
        ("hl_lib_syntax:build", "(importing hl_lib_syntax) raised SyntaxError"),
        ("hl_lib_raises:build", "(importing hl_lib_raises) raised RuntimeError: at import"),
        ("hl_lib_entry:fwd", "hl_lib_entry:fwd's module forward raised ValueError"),
        ("hl_lib_entry:ask", "hl_lib_entry:ask raised Abort"),
    ],
)
def test_entry_point_errors_are_one_line_naming_the_code(entry_mod, target, needle):
    pytest.importorskip("torch")
    from memwall.trace.sources import entry_point_run
    from memwall.trace.table import trace_run

    with pytest.raises(MemwallError) as e:
        trace_run(entry_point_run(target))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_foreign_code_keeps_interrupts_and_memwall_bugs():
    pytest.importorskip("torch")
    from memwall.trace.foreign import foreign_code
    from memwall.trace.versions import _satisfies

    with pytest.raises(KeyboardInterrupt), foreign_code("x:y"):
        raise KeyboardInterrupt
    with pytest.raises(MemwallError, match=r"x:y called sys.exit\(3\)"), foreign_code("x:y"):
        raise SystemExit(3)
    with pytest.raises(ValueError, match="unsupported version bound"), foreign_code("x:y"):
        _satisfies("1.0", "==1")  # a plain error raised inside memwall: a bug of ours, kept


# ---------------------------------------------------------------- trend CSVs


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            "date,value\n2000,1e308\n2001,1e307\n2002,1e306\n",
            "'1e308' of series 'value' on data row 1 is out",
        ),
        (
            "date,value\n2000,1\n2001,1e-320\n2002,3\n",
            "'1e-320' of series 'value' on data row 2 is out",
        ),
        (
            "date,value\n2000,1\n2001,2\n2002,1e400\n",
            "'1e400' of series 'value' on data row 3 is not",
        ),
        (
            "date,a,b\n2000,1,1\n2001,2,-3\n2002,4,4\n",
            "'-3' of series 'b' on data row 2 is not pos",
        ),
    ],
)
def test_trend_csv_value_a_log_fit_cannot_take_names_its_row(tmp_path, text, needle):
    from memwall.trends import fit_all

    p = tmp_path / "mine.csv"
    p.write_text(text)
    with pytest.raises(MemwallError, match="from 1e-100 to 1e\\+100") as e:
        fit_all(str(p))
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        "date,value\n2000-01-01,1e-90\n2000-01-02,1\n2000-01-03,1e90\n",  # too steep
        "date,value\n2000,1\n2000.5,100\n2001,1\n",  # an interval too wide to report
    ],
)
def test_trend_fit_too_steep_to_report_is_refused_not_overflowed(tmp_path, text):
    from memwall.trends import fit_all

    p = tmp_path / "mine.csv"
    p.write_text(text)
    with pytest.raises(MemwallError, match="reported up to 100000x a year"):
        fit_all(str(p))


def test_trend_fit_helpers_refuse_values_near_the_float_limits():
    from memwall.trends.fit import loglinear

    with pytest.raises(MemwallError, match="from 1e-100"):
        loglinear([2000, 2001, 2002], [1e300, 1e301, 1e302])
    assert loglinear([2000, 2001, 2002], [1, 10, 100])["slope"] == pytest.approx(1.0)


def test_trend_csv_with_a_byte_order_mark(tmp_path):
    from memwall.trends import fit_all

    p = tmp_path / "bom.csv"
    p.write_text("date,value\n2000,1\n2002,4\n2004,16\n", encoding="utf-8-sig")
    (f,) = fit_all(str(p))
    assert f.series == "value" and f.growth_per_2yr == pytest.approx(4.0)


def test_saved_json_range_error_reads_as_json_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    p = tmp_path / "devices" / "tiny.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({**SAVED, "dram_bandwidth": 1e-300}))
    with pytest.raises(MemwallError, match="dram_bandwidth: must be from 1e\\+06 to 1e\\+16"):
        get_device("tiny")
