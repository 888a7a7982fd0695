"""Roofs measured on a busy machine: flagged, never replacing a calm `local`, and re-measured by
the report instead of reused. The measurement is stubbed (fixed numbers, a chosen load) except
in one tiny real run whose load monitor is faked; nothing is timed or asserted on time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import memwall.measure.busy as busy
import memwall.measure.record as record
import memwall.report.sections.machine as machine
from memwall.cli.measure import _caption
from memwall.hardware import get_device, save_measurement
from memwall.report.base import ReportContext, ReportOptions

CALM_BW, BUSY_BW = 2.0e10, 0.9e10


def fake(bw: float, is_busy: bool, days_old: float = 0.0) -> dict[str, Any]:
    """A complete measurement as `roofs.measure` returns it, with its load facts."""
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_old)
    others = 1.5 if is_busy else 0.1
    return {
        "dram_bandwidth": bw,
        "peak_flops": {"fp32": 4.0e11, "int8": 1.6e12},
        "cache_levels": [],
        "op_overhead": 2.0e-6,
        "gemv_bandwidth": bw * 0.8,
        "notes": {},
        "metadata": {
            "cpu_model": "Test CPU",
            "threads": 2,
            "torch": "x",
            "mode": "quick",
            "date": when.isoformat(timespec="seconds"),
            "interrupted": False,
            "complete": True,
            **busy.judge(0.3, 2.1, others, 2),
        },
    }


def stub_measure(monkeypatch, result: dict[str, Any]) -> None:
    monkeypatch.setattr(record, "measure", lambda cfg, on_step=None: result)


def test_threshold_on_fake_numbers():
    assert busy.BUSY_SHARE == 0.25 and busy.busy_limit(2) == 0.5 and busy.busy_limit(0) == 0.25
    assert busy.busy_reasons(0.5, 2) == []  # at the limit: calm
    assert busy.busy_reasons(None, 2) == []  # not observed: calm
    # one busy process beside a 2-thread measurement on 2 CPUs gets 2/3 of a CPU: flagged
    (why,) = busy.busy_reasons(2 / 3, 2)
    assert "0.67 of 2 CPUs" in why and "limit 0.5" in why
    assert busy.busy_reasons(1.6, 8) == []  # 2 busy threads among 8 measured: calm
    assert busy.busy_reasons(2.1, 8)
    facts = busy.judge(1.2, 3.4, 1.0, 2)
    assert facts["busy"] is True and facts["load"]["load_1min_before"] == 1.2
    assert facts["load"]["load_1min_after"] == 3.4 and facts["load"]["busy_limit_cores"] == 0.5
    assert busy.judge(9.0, 9.0, 0.1, 2)["busy"] is False  # a high load average alone: calm


def test_measurement_records_its_load(monkeypatch):
    """A real tiny measurement with the load monitor faked: the facts land in metadata."""
    pytest.importorskip("torch")
    from memwall.measure import KiB, MiB, config, measure

    class Others:
        def __enter__(self):
            return self

        def so_far(self) -> float:
            return 1.7

    monkeypatch.setattr(busy, "LoadMonitor", Others)
    monkeypatch.setattr(busy, "load_average", lambda: 1.25)
    monkeypatch.setattr(busy, "cpus", lambda: 2)
    tiny = dict(
        curve_min=16 * KiB,
        curve_max=32 * KiB,
        curve_bytes_per_call=1 * MiB,
        dram_array_bytes=1 * MiB,
        gemm_sizes=(64,),
        gemm_dtypes=("fp32",),
        gemv_shape=(128, 256),
        overhead_calls=10,
        reps=1,
        min_time=0.0,
    )
    meta = measure(config(True, **tiny))["metadata"]
    assert meta["busy"] is True and meta["busy_reasons"]
    assert meta["load"] == {
        "load_1min_before": 1.25,
        "load_1min_after": 1.25,
        "others_busy_cores": 1.7,
        "cpus": 2,
        "busy_limit_cores": 0.5,
    }


def test_busy_run_does_not_replace_a_calm_local(data_dir, monkeypatch):
    stub_measure(monkeypatch, fake(CALM_BW, False))
    calm = record.measure_and_save(quick=True)
    assert calm["device"] == "local" and calm["busy"] is False and "save_note" not in calm
    stub_measure(monkeypatch, fake(BUSY_BW, True))
    out = record.measure_and_save(quick=True, name="box")
    # `local` is calm and kept; `box` had no calm record, so the busy run is saved there, flagged
    assert out["busy"] is True and out["device"] == "box"
    assert sorted(p.rsplit("/", 1)[-1] for p in out["saved"]) == ["box.json", "local-busy.json"]
    note = out["save_note"]
    assert "\n" not in note and "'local-busy'" in note and "keep using the calm 'local'" in note
    assert note in _caption(out)
    assert get_device("local").mem_bandwidth == CALM_BW
    assert get_device("local-busy").metadata["busy"] is True
    assert get_device("box").metadata["busy"] is True
    again = record.measure_and_save(quick=True, name="box")  # busy over busy: replaced
    assert again["device"] == "box" and get_device("box").mem_bandwidth == BUSY_BW
    stub_measure(monkeypatch, fake(CALM_BW * 1.1, False))
    record.measure_and_save(quick=True, name="box")  # a calm run replaces both
    assert get_device("local").mem_bandwidth == get_device("box").mem_bandwidth == CALM_BW * 1.1


def test_busy_first_run_is_saved_as_local_and_flagged(data_dir, monkeypatch):
    stub_measure(monkeypatch, fake(BUSY_BW, True))
    out = record.measure_and_save(quick=True)
    assert out["device"] == "local" and out["busy"] is True
    assert "flagged busy" in out["save_note"] and "no calm record" in out["save_note"]
    assert out["save_note"] in _caption(out)
    dev = get_device("local")
    assert dev.metadata["busy"] is True and dev.metadata["load"]["others_busy_cores"] == 1.5


def test_saved_busy_flag_must_be_a_bool(data_dir):
    m = fake(CALM_BW, False)
    m["metadata"]["busy"] = "no"  # hand-edited: would read as true
    with pytest.raises(Exception, match="metadata.busy: must be true or false"):
        save_measurement(m)


def _section(monkeypatch, new: dict[str, Any] | None) -> tuple[Any, dict, list]:
    """Build the report's machine section with `measure_machine` stubbed (None: must not run)."""
    calls: list[bool] = []

    def measure_machine(quick: bool) -> dict[str, Any]:
        assert new is not None, "measured although a calm saved record was fresh"
        calls.append(quick)
        return new

    monkeypatch.setattr(machine, "measure_machine", measure_machine)
    opts = ReportOptions(out="unused", quick=True, models=(), devices=("local",))
    ctx = ReportContext(options=opts)
    res = machine.SECTION.build(ctx)
    warnings = [b.text for b in res.blocks if getattr(b, "kind", "") == "warning"]
    return ctx, res.data, warnings + calls


def test_report_reuses_a_fresh_calm_record(data_dir, monkeypatch):
    save_measurement(fake(CALM_BW, False))
    ctx, data, extra = _section(monkeypatch, None)
    assert data["measurement"]["source"] == "saved measurement reused" and extra == []
    assert ctx.machine["busy"] is False and ctx.devices["local"].mem_bandwidth == CALM_BW


def test_report_remeasures_a_busy_saved_record(data_dir, monkeypatch):
    save_measurement(fake(BUSY_BW, True))  # fresh, but busy
    ctx, data, extra = _section(monkeypatch, fake(CALM_BW, False))
    facts = data["measurement"]
    assert extra == [True]  # measured again (quick), no warning: the new roofs are calm
    assert facts["source"] == "measured now" and "busy" in facts["remeasured"]
    assert ctx.machine["busy"] is False and ctx.devices["local"].mem_bandwidth == CALM_BW
    assert get_device("local").mem_bandwidth == CALM_BW  # the calm run replaced it


def test_report_busy_again_is_shown_flagged(data_dir, monkeypatch):
    save_measurement(fake(BUSY_BW, True))
    again = fake(BUSY_BW * 1.05, True)
    ctx, data, extra = _section(monkeypatch, again)
    (warning, quick) = extra
    assert quick is True and "measured while the machine was busy" in warning
    assert "0.5" in warning and "memwall measure" in warning
    assert data["measurement"]["busy"] is True and data["measurement"]["measured_now_busy"]
    assert get_device("local").mem_bandwidth == BUSY_BW * 1.05  # busy over busy


def test_report_keeps_an_old_calm_record_over_a_busy_new_one(data_dir, monkeypatch):
    save_measurement(fake(CALM_BW, False, days_old=2))  # too old to reuse
    ctx, data, extra = _section(monkeypatch, fake(BUSY_BW, True))
    facts = data["measurement"]
    assert extra == [True]  # measured; the calm record is shown, so no warning
    assert "calm measurement kept" in facts["source"] and facts["measured_now_busy"] is True
    assert ctx.devices["local"].mem_bandwidth == CALM_BW and facts["age_s"] > 86400
    assert get_device("local-busy").mem_bandwidth == BUSY_BW
