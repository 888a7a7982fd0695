"""`memwall measure` end to end: saves a usable device, never downgrades a saved record, never
loses a measurement to an unwritable data directory."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import memwall.measure.roofs as mm  # noqa: E402
from memwall.hardware import get_device  # noqa: E402
from memwall.measure import KiB, MiB, config  # noqa: E402

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


@pytest.fixture
def tiny_quick(monkeypatch, tmp_path):
    """`--quick` measures the tiny set, into a throw-away data directory."""
    monkeypatch.setattr(mm, "QUICK", config(True, **TINY))
    return {"MEMWALL_DATA_DIR": str(tmp_path / "data")}


def test_cli_measure_saves_a_usable_device(cli, tiny_quick, monkeypatch):
    monkeypatch.setenv("MEMWALL_DATA_DIR", tiny_quick["MEMWALL_DATA_DIR"])
    r = cli("measure", "--quick", "--save", "tiny-box", "--format", "json")
    assert r.code == 0, r.err
    out = r.json
    assert out["device"] == "tiny-box" and len(out["saved"]) == 2 and out["complete"] is True
    assert set(out["ridge"]) >= {"fp32"}
    for name in ("local", "tiny-box"):
        d = get_device(name)
        assert d.measured and d.memory_bandwidth() == out["dram_bandwidth"]
    r = cli("devices", "--name", "tiny", "--format", "json")
    assert r.json["devices"][0]["measured"] is True


def _interrupt_at(monkeypatch, where: str) -> None:
    """Make the next measurement stop as Ctrl-C would, at one of its steps."""
    real = {"gemm_flops": mm.gemm_flops}

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    def ctrl_c_at_int8(dtype, *a, **k):
        if dtype == "int8":
            raise KeyboardInterrupt
        return real["gemm_flops"](dtype, *a, **k)

    if where == "int8 peak":
        monkeypatch.setattr(mm, "gemm_flops", ctrl_c_at_int8)
    else:
        monkeypatch.setattr(
            mm, {"GEMV": "gemv_bandwidth", "curve": "read_bandwidth"}[where], ctrl_c
        )


@pytest.mark.parametrize("where", ["int8 peak", "GEMV", "curve"])
def test_interrupted_rerun_keeps_the_complete_record(cli, tiny_quick, monkeypatch, where):
    """A complete run, then a re-run interrupted part way: `--device local` still predicts
    int8 with the complete record; the partial one is saved under another name, and said."""
    env = tiny_quick
    first = cli("measure", "--quick", "--format", "json", env=env)
    assert first.code == 0, first.err
    complete = first.json
    assert complete["peak_flops"]["int8"] and complete["gemv_bandwidth"]
    _interrupt_at(monkeypatch, where)
    again = cli("measure", "--quick", "--format", "json", env=env)
    assert again.code == 130, again.err
    partial = again.json
    assert partial["complete"] is False and partial["metadata"]["interrupted"] is True
    assert partial["device"] == "local-partial"
    assert all("local-partial" in p for p in partial["saved"])
    lines = again.err.strip().splitlines()
    assert len(lines) == 1 and "previous complete record" in lines[0], again.err
    a = cli("analyze", "gpt2", "--device", "local", "--precision", "int8", "-f", "json", env=env)
    assert a.code == 0, a.err
    roofs = a.json["prediction"]["roofs"]
    assert roofs["peak_flops"]["int8"] == complete["peak_flops"]["int8"]
    assert roofs["memory_bandwidth"] == complete["dram_bandwidth"]
    monkeypatch.setenv("MEMWALL_DATA_DIR", env["MEMWALL_DATA_DIR"])
    assert get_device("local-partial").measured  # the partial record is kept, by its name


def test_unwritable_data_directory_loses_no_measurement(cli, tiny_quick):
    env = {"MEMWALL_DATA_DIR": "/proc/memwall-cannot-write-here"}
    r = cli("measure", "--quick", "--format", "json", env=env)
    assert r.code == 1, r.err
    out = r.json  # the measurement is printed in full
    assert out["dram_bandwidth"] > 0 and out["peak_flops"]["fp32"] > 0 and out["saved"] == []
    assert (
        "not saved" in out["save_error"] and "/proc/memwall-cannot-write-here" in out["save_error"]
    )
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "not saved" in lines[0] and "printed" in lines[0], r.err
    assert "Traceback" not in r.err


def test_bad_save_name_refused_before_measuring(cli, tiny_quick, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("measured before checking --save")

    monkeypatch.setattr(mm, "triad_bandwidth", must_not_run)
    r = cli("measure", "--quick", "--save", "Bad Name!", env=tiny_quick)
    r.assert_one_line_error("bad device name")
