"""`memwall.api.measure(...)` is `memwall measure ...`: the same JSON, CSV, caption, saving and
refusals. The roofline measurement is stubbed as tests/test_busy_roofs.py stubs it (fixed
numbers returned by `record.measure`) and, for progress, run on the tiny set of
tests/cli/test_cli_measure.py; collectives are stubbed with fixed rows. Nothing is timed."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

pytest.importorskip("torch")

import memwall.api  # noqa: E402
import memwall.measure.record as record  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402


def fake(bw: float = 2.0e10, interrupted: bool = False) -> dict[str, Any]:
    """A measurement as `roofs.measure` returns it (complete unless interrupted)."""
    return {
        "dram_bandwidth": bw,
        "peak_flops": {"fp32": 4.0e11, "int8": None if interrupted else 1.6e12},
        "cache_levels": [{"name": "L1", "size": 32768, "bandwidth": 1e11}],
        "op_overhead": 2.0e-6,
        "gemv_bandwidth": None if interrupted else bw * 0.8,
        "notes": {"dram_bandwidth": "triad"},
        "metadata": {
            "cpu_model": "Test CPU",
            "threads": 2,
            "torch": "x",
            "mode": "quick",
            "date": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).isoformat(),
            "interrupted": interrupted,
            "complete": not interrupted,
        },
    }


def stub_measure(monkeypatch, result: dict[str, Any]) -> None:
    monkeypatch.setattr(record, "measure", lambda cfg, on_step=None: json.loads(json.dumps(result)))


@pytest.mark.parametrize(
    "args, kw",
    [
        (["--quick"], {"quick": True}),
        (["--save", "tiny-box"], {"save": "tiny-box"}),
    ],
)
def test_json_csv_and_caption_equal_the_cli(cli, data_dir, monkeypatch, args, kw):
    stub_measure(monkeypatch, fake())
    r = cli("measure", *args, "--format", "json")
    assert r.code == 0, r.err
    res = memwall.api.measure(**kw)
    assert json.loads(r.out) == res.to_dict()  # saved again, to the same paths
    assert res.command == "measure" and res["saved"] and res["complete"] is True
    csv = cli("measure", *args, "--format", "csv")
    header, *lines = csv.out.splitlines()
    frame = res.to_frame()
    assert list(frame.columns) == header.split(",") and len(frame) == len(lines) == 6
    table = cli("measure", *args)
    assert table.code == 0 and res.title in table.out
    assert any(n.startswith("saved as device") for n in res.notes)
    assert res.notes[0].split(",")[0] in table.out
    assert res.title in res._repr_html_()


def test_interrupted_measurement_is_returned_and_the_cli_exits_130(cli, data_dir, monkeypatch):
    stub_measure(monkeypatch, fake(interrupted=True))
    r = cli("measure", "--quick", "--format", "json")
    assert r.code == 130 and "partial measurement printed above" in r.err
    res = memwall.api.measure(quick=True)
    assert json.loads(r.out) == res.to_dict()
    assert res["device"] == "local-partial" and res["metadata"]["interrupted"] is True


def test_unwritable_data_directory_is_returned_and_the_cli_exits_1(cli, monkeypatch):
    monkeypatch.setenv("MEMWALL_DATA_DIR", "/proc/memwall-cannot-write-here")
    stub_measure(monkeypatch, fake())
    r = cli("measure", "--format", "json")
    assert r.code == 1 and "not saved" in r.err
    res = memwall.api.measure()
    assert json.loads(r.out) == res.to_dict() and res["saved"] == []
    assert "not saved" in res["save_error"]


def test_progress_gets_each_step_of_a_real_tiny_measurement(data_dir, monkeypatch):
    """The tiny set of tests/cli/test_cli_measure.py, measured for real (no time asserted)."""
    import memwall.measure.roofs as mm
    from memwall.measure import KiB, MiB, config

    tiny = dict(
        curve_min=16 * KiB, curve_max=128 * KiB, curve_bytes_per_call=1 * MiB,
        dram_array_bytes=2 * MiB, gemm_sizes=(64, 128), gemm_dtypes=("fp32", "int8"),
        gemv_shape=(256, 512), overhead_calls=50, reps=1, min_time=0.0,
    )  # fmt: skip
    monkeypatch.setattr(mm, "QUICK", config(True, **tiny))
    said: list[tuple[str, float]] = []
    res = memwall.api.measure(quick=True, progress=lambda text, n=0.0: said.append((text, n)))
    assert said and all(isinstance(text, str) for text, _ in said)
    assert res["dram_bandwidth"] > 0 and len(res.to_frame()) == len(res.rows)


@pytest.fixture
def collectives(monkeypatch):
    """`measure_collectives_and_save` stubbed: fixed rows for the world it is given; what it
    was given is recorded. `state["complete"] = False` makes the next run a stalled one."""
    import memwall.measure.collectives as coll

    state: dict[str, Any] = {"complete": True, "worlds": []}

    def measured(world: int = 2, quick: bool = False) -> dict[str, Any]:
        state["worlds"].append(world)
        rows = [
            {"kind": "all_reduce", "bytes": b, "bus_bytes": b, "time": 1e-5 + b / 2e9,
             "algbw": b / (1e-5 + b / 2e9), "busbw": b / (1e-5 + b / 2e9)}
            for b in (1e3, 1e5, 1e6)
        ]  # fmt: skip
        res = coll.assemble(rows, {"all_to_all": "gloo"}, world, "gloo", (1e3,), True, False)
        res["date"], res["torch"] = "2025-01-01T00:00:00+00:00", "x"
        res["complete"] = state["complete"]
        res["saved"] = "/data/collectives/local.json" if state["complete"] else None
        return res

    monkeypatch.setattr(coll, "measure_collectives_and_save", measured)
    return state


def test_collectives_equal_the_cli_with_the_same_world(cli, collectives):
    r = cli("measure", "--collectives", "--format", "json")
    assert r.code == 0, r.err
    res = memwall.api.measure(collectives=True)
    assert json.loads(r.out) == res.to_dict() and res.title == "memwall measure --collectives"
    r4 = cli("measure", "--collectives", "--world", "4", "--format", "json")
    assert json.loads(r4.out) == memwall.api.measure(collectives=True, world=4).to_dict()
    assert collectives["worlds"] == [2, 2, 4, 4]  # not typed: 2, in both
    csv = cli("measure", "--collectives", "--format", "csv")
    header, *lines = csv.out.splitlines()
    assert list(res.to_frame().columns) == header.split(",") and len(lines) == 3
    table = cli("measure", "--collectives")
    assert res.title in table.out and "saved: /data/collectives/local.json" in table.out


def test_incomplete_collectives_are_returned_and_the_cli_says_one_line(cli, collectives):
    collectives["complete"] = False
    res = memwall.api.measure(collectives=True)
    assert res["complete"] is False and res.notes[-1] == "not saved (incomplete)"
    r = cli("measure", "--collectives", "--format", "json")
    assert r.code == 2 and "collectives measurement incomplete" in r.err
    assert json.loads(r.out) == res.to_dict()


BAD = [
    (["--world", "4"], {"world": 4}),
    (["--quick", "--world", "2"], {"quick": True, "world": 2}),
    (["--collectives", "--save", "mine"], {"collectives": True, "save": "mine"}),
    (["--collectives", "--device", "cuda"], {"collectives": True, "device": "cuda"}),
    (["--collectives", "--world", "1"], {"collectives": True, "world": 1}),
    (["--device", "tpu"], {"device": "tpu"}),
    (["--save", "Bad Name!"], {"save": "Bad Name!"}),
]


@pytest.mark.parametrize("args, kw", BAD)
def test_bad_input_is_the_same_one_line(cli, data_dir, monkeypatch, args, kw):
    def must_not_run(*a, **k):
        raise AssertionError("measured before checking the input")

    monkeypatch.setattr(record, "measure", must_not_run)
    r = cli("measure", *args)
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.api.measure(**kw)
    assert r.err == f"memwall: error: {e.value}\n"
    assert not data_dir.exists()  # nothing measured or saved
