"""A calibration measured while other work competes for the CPUs is flagged noisy, says so,
and is not cached as good (issue 11: a calibration that cannot be silently poisoned)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memwall.measure.calibration import Calibration, combine  # noqa: E402
from memwall.measure.run import time_runs  # noqa: E402
from memwall.measure.terms import QUICK  # noqa: E402
from memwall.measure.timing import Timing, median_ci  # noqa: E402
from memwall.predict.calterms import CalibrationRecord  # noqa: E402

SPIN = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"


def test_combine_keeps_medians_and_the_spread():
    value, spread = combine(
        [
            {"c": [[1, 10.0], [2, 20.0]], "d": 1.0},
            {"c": [[1, 12.0], [2, 20.0]], "d": 1.0},
            {"c": [[1, 14.0], [2, 20.0]], "d": 1.0},
        ]
    )
    assert value == {"c": [[1, 12.0], [2, 20.0]], "d": 1.0}
    # the curve's spread is its median point's: (4/12 + 0) / 2
    assert spread == pytest.approx((14 - 10) / 12 / 2)
    # one point upset in one round does not flag a whole curve; most points upset do
    one = [[[x, 10.0] for x in range(5)] for _ in range(3)]
    one[1][2][1] = 30.0
    assert combine(one)[1] == 0.0
    for p in range(3):
        one[2][p][1] = 20.0
    assert combine(one)[1] == pytest.approx(1.0)


@pytest.mark.slow
def test_calibration_under_load_is_flagged_noisy_and_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    busy = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(os.cpu_count() or 1)]
    try:
        cal = Calibration.load(QUICK)
        cal.ensure("fp32")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    st = cal.status()
    assert st["noisy"] is True and st["noise"], st
    assert st["others_busy_cores"] > 0.5 and st["saved"] is False
    assert cal.data["spread"] and cal.data["load"]["fp32"]["others_busy_cores"] > 0.5
    again = Calibration.load(QUICK)  # the noisy record on disk is not reused
    assert "linear" not in again.data and not again.data.get("noisy")


class _Uneven:
    """A stand-in runner whose runs alternate between 1 ms and 30 ms: a spread no number of
    runs narrows."""

    def __init__(self) -> None:
        self.i = 0

    def setup(self) -> None:
        pass

    def run(self) -> None:
        self.i += 1
        time.sleep(0.03 if self.i % 2 else 0.001)


def test_wide_spread_adds_runs_up_to_the_cap_and_stays_flagged():
    t = time_runs(_Uneven(), warmup=0, repeats=4, budget_s=60.0, max_runs=8)
    assert t.n == 8 and t.added == 4 and t.noisy
    d = t.to_dict()
    assert d["added_runs"] == 4 and d["noisy"] is True and d["settle_budget"] == 60.0


def test_no_budget_no_added_runs():
    t = time_runs(_Uneven(), warmup=0, repeats=4, budget_s=0.0)
    assert t.n == 4 and t.added == 0 and t.noisy


def test_median_confidence_interval_is_order_statistics():
    runs = tuple(float(x) for x in range(1, 21))
    assert median_ci(runs) == (6.0, 15.0)  # ranks 6 and 15 of 20 (binomial, 95.9%)
    assert median_ci((2.0, 1.0, 3.0)) == (1.0, 3.0)  # few runs: the extremes
    assert Timing(runs, 0).to_dict()["median_ci95"] == [6.0, 15.0]


def test_noisy_record_never_replaces_a_good_one_on_disk(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"good": True}))
    cal = Calibration({"noisy": True, "linear": {}}, QUICK, path)
    cal._save()
    assert json.loads(path.read_text()) == {"good": True}
    assert cal.status()["saved"] is False


def test_terms_measured_in_this_run_are_not_spot_checked_again(monkeypatch):
    """Only a record read from disk is spot-checked: one measured minutes ago in this process
    must not be thrown away because the machine got busier since."""
    cal = Calibration.load(QUICK, persist=False)
    cal.ensure("fp32")

    def no_spot(dtype):
        raise AssertionError("spot check of terms measured in this run")

    monkeypatch.setattr(cal, "speed", no_spot)
    cal.ensure("fp32")
    assert cal.status()["spot_check"] is None
    reread = Calibration(cal.data, QUICK)  # the same record, as if read from disk
    slow = {"compute": 1000.0, "memory": 1.0, "dispatch": 1.0}  # absurdly slow now
    monkeypatch.setattr(reread, "speed", lambda dtype: slow)
    reread.ensure("fp32")
    assert reread.status()["spot_check"]["agreed"] is False


def test_gemv_bandwidth_by_layer_size_and_older_records():
    """GEMV bandwidth is a curve by the weight bytes of one layer (log-log, clamped); a
    single number from an older record still reads."""
    rec = CalibrationRecord({"gemv_bandwidth": {"int8": [[1e6, 1e10], [1e8, 2e10]], "fp32": 5e9}})
    assert rec.gemv_bandwidth("int8", 1e6) == pytest.approx(1e10)
    assert rec.gemv_bandwidth("int8", 1e7) == pytest.approx(2**0.5 * 1e10)
    assert rec.gemv_bandwidth("int8", 1e9) == pytest.approx(2e10)
    assert rec.gemv_bandwidth("fp32", 1e7) == 5e9
    (term,) = [t for t in rec.terms("int8") if t.name == "gemv_bandwidth(int8)"]
    assert term.points == ((1e6, 1e10), (1e8, 2e10)) and term.value == 2e10


@pytest.mark.parametrize(
    ("cores", "load", "want"),
    [(2, 0.0, 1), (2, 0.35, 1), (8, 0.2, 7), (8, 3.0, 5), (1, 0.0, 1), (4, 9.0, 1)],
)
def test_auto_threads_leaves_a_core_for_everything_else(monkeypatch, cores, load, want):
    from memwall.measure import run

    monkeypatch.setattr(run.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(run.os, "getloadavg", lambda: (load, load, load))
    n, why = run.auto_threads()
    assert n == want and f"of {cores} cores" in why


class _LoadOf:
    """A stand-in LoadMonitor that reports `busy` cores kept busy by other processes."""

    def __init__(self, busy: float) -> None:
        self.others_busy_cores = busy

    def __enter__(self) -> _LoadOf:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def so_far(self) -> float:
        return self.others_busy_cores


def _scripted(monkeypatch, busy: float, values: list[float]) -> tuple[Calibration, list[float]]:
    """A calibration whose rounds time every term at the next of `values` (QUICK: 2 rounds)."""
    import memwall.measure.calibration as C

    monkeypatch.setattr(C, "LoadMonitor", lambda: _LoadOf(busy))
    cal = Calibration.load(QUICK, persist=False)
    left = list(values)

    def one_round(todo, dtype, act):
        v = left.pop(0)
        return {n: v for n, _ in todo}

    monkeypatch.setattr(cal, "_one_round", one_round)
    return cal, left


def test_rounds_that_disagree_on_a_quiet_machine_are_measured_again(monkeypatch):
    cal, left = _scripted(monkeypatch, 0.0, [1.0, 2.0, 1.0, 1.02])  # 67% apart, then 2%
    cal.ensure("fp32")
    assert left == [] and cal.data["linear"]["fp32"] == pytest.approx(1.01)
    st = cal.status()
    assert st["noisy"] is False and st["max_spread"] == pytest.approx(0.02 / 1.01)


def test_rounds_still_apart_when_measured_again_keep_the_calmer_set_and_flag(monkeypatch):
    cal, left = _scripted(monkeypatch, 0.0, [1.0, 2.0, 1.0, 4.0])
    cal.ensure("fp32")
    assert left == [] and cal.data["linear"]["fp32"] == pytest.approx(1.5)
    st = cal.status()
    assert st["noisy"] is True and st["max_spread"] == pytest.approx(1 / 1.5)
    assert "varied 67% between interleaved rounds" in st["noise"][0]


def test_rounds_apart_on_a_busy_machine_are_not_measured_again(monkeypatch):
    cal, left = _scripted(monkeypatch, 1.5, [1.0, 2.0, 1.0, 1.02])
    cal.ensure("fp32")
    assert left == [1.0, 1.02]  # other work, not a passing stall: flagged, not retried
    assert cal.status()["noisy"] is True and "other processes kept" in cal.status()["noise"][1]


def _cached_with_probe(monkeypatch, looks: list[dict[str, float]]) -> Calibration:
    """A record as if read from disk, whose speed probe reads `looks` in turn."""
    cal = Calibration.load(QUICK, persist=False)
    cal.ensure("fp32")
    reread = Calibration(cal.data, QUICK)
    seq = iter(looks)
    monkeypatch.setattr(reread, "speed", lambda dtype: next(seq))
    return reread


def test_a_machine_30_percent_slower_than_its_cached_calibration_is_remeasured(monkeypatch):
    slower = {"compute": 1.1, "memory": 1.3, "dispatch": 1.3}  # as measured on this VM, 2 h on
    cal = _cached_with_probe(monkeypatch, [slower] * 3)
    cal.ensure("fp32")
    spot = cal.status()["spot_check"]
    assert spot["agreed"] is False and spot["looks"] == 3 and spot["tolerance"] < 1.3


def test_one_slow_look_is_a_blip_not_a_change(monkeypatch):
    blip = {"compute": 1.0, "memory": 1.0, "dispatch": 1.4}
    same = {"compute": 1.02, "memory": 0.97, "dispatch": 1.05}
    cal = _cached_with_probe(monkeypatch, [blip, same])
    kept = cal.data["linear"]["fp32"]
    cal.ensure("fp32")
    spot = cal.status()["spot_check"]
    assert spot["agreed"] is True and spot["looks"] == 2 and spot["ratios"] == same
    assert cal.data["linear"]["fp32"] is kept  # not measured again
