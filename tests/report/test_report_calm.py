"""The report's machine check (`memwall.report.calm`): busy by load or by the speed probe,
a bounded wait that polls (a fake clock: nothing sleeps), the wait's bound from --wait,
$MEMWALL_REPORT_WAIT or --quick, and the warning's facts and command."""

from __future__ import annotations

import pytest

import memwall.report.calm as calm
from memwall.errors import MemwallError
from memwall.report import ReportOptions

QUIET = {"load_1min": 0.2, "others_busy_cores": 0.1, "probe": None, "probe_ratio": None}
LOADED = {"load_1min": 2.6, "others_busy_cores": 1.9, "probe": None, "probe_ratio": None}
SLOW = {**QUIET, "probe": {"compute": 1.6, "memory": 1.1}, "probe_ratio": 1.6}
LAGGING = {**QUIET, "load_1min": 2.2}  # others stopped; the 1-minute average still high


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def run_before(monkeypatch, looks: list[dict], bound: float) -> tuple[dict, int]:
    monkeypatch.setattr(calm.os, "cpu_count", lambda: 2)
    seq = iter(looks)
    monkeypatch.setattr(calm, "look", lambda cores, probe, sample_s=1.0: dict(next(seq)))
    clock = Clock()
    said: list[str] = []
    facts = calm.before(bound, lambda: None, said.append, clock.sleep, clock)
    return facts, len(said)


def test_a_quiet_machine_is_measured_at_once(monkeypatch):
    facts, waits = run_before(monkeypatch, [QUIET], 60)
    assert facts["busy_at_start"] == [] and facts["looks"] == 1 and waits == 0
    assert not facts["calmed"] and facts["waited_s"] == 0
    assert calm.after(facts, 0.1)["fair"]
    assert calm.warning(facts, "make report") == ""


def test_busy_machine_is_waited_for_until_it_calms(monkeypatch):
    facts, waits = run_before(monkeypatch, [LOADED, LOADED, LAGGING], 60)
    assert facts["calmed"] and facts["busy_at_start"] == [] and facts["looks"] == 3
    assert waits == 2 and facts["waited_s"] == pytest.approx(2 * calm.POLL_S)
    assert "load average 2.60 on 2 cores" in facts["first_busy"][0]
    assert calm.after(facts, 0.2)["fair"]  # calm when measured: no warning


def test_the_wait_is_bounded_then_it_measures_and_warns(monkeypatch):
    facts, waits = run_before(monkeypatch, [LOADED] * 100, 12)
    assert facts["looks"] == 3 and waits == 2 and facts["waited_s"] <= 12
    assert not facts["calmed"] and facts["busy_at_start"]
    calm.after(facts, 1.7)
    assert not facts["fair"] and len(facts["busy"]) == 2
    w = calm.warning(facts, "make report")
    for text in ("busy", "2.60 before", "after", "2 cores", "1.7 on average", "waited 10 s"):
        assert text in w, (text, w)
    assert w.endswith("Re-run `make report` on a quiet machine.")


def test_a_slow_probe_is_busy_even_when_the_load_is_low(monkeypatch):
    facts, _ = run_before(monkeypatch, [SLOW], 0)
    assert facts["busy_at_start"] == [
        "the speed probe ran 1.60x slower than when this machine was calibrated (limit 1.3x)"
    ]
    calm.after(facts, 0.0)
    assert "speed probe 1.60x the calibrated time" in calm.warning(facts, "x")


def test_others_busy_during_the_measurement_make_it_unfair(monkeypatch):
    facts, _ = run_before(monkeypatch, [QUIET], 0)
    calm.after(facts, 1.5)
    assert not facts["fair"] and "while it was measured" in facts["busy"][0]
    assert "not compared (no saved calibration yet)" in calm.warning(facts, "x")


def test_the_wait_bound(monkeypatch):
    monkeypatch.delenv(calm.ENV_WAIT, raising=False)
    assert calm.wait_bound(False, None) == calm.DEFAULT_WAIT_S == 60
    assert calm.wait_bound(True, None) == 0
    assert calm.wait_bound(True, 30) == 30  # --wait wins over --quick
    monkeypatch.setenv(calm.ENV_WAIT, "5")
    assert calm.wait_bound(False, None) == 5 and calm.wait_bound(True, None) == 5
    monkeypatch.setenv(calm.ENV_WAIT, "soon")
    with pytest.raises(MemwallError, match="MEMWALL_REPORT_WAIT must be a number"):
        calm.wait_bound(False, None)
    with pytest.raises(MemwallError, match="0 to 3600"):
        calm.wait_bound(False, -1)


def test_the_rerun_command():
    d = ReportOptions()
    assert calm.rerun_command(d, d) == "make report"
    q = ReportOptions(out="/tmp/r 1", quick=True, devices=("h100-sxm", "h100-sxm@bw=2"))
    assert calm.rerun_command(q, d) == (
        "memwall report --out '/tmp/r 1' --quick --devices h100-sxm,h100-sxm@bw=2"
    )


def test_no_measure_checks_nothing():
    from memwall.report import ReportContext

    ctx = ReportContext(ReportOptions(measure=False))
    calm.start(ctx, lambda: None, lambda s: None)
    assert ctx.machine["calm"] == {"checked": False, "why": "nothing measured (--no-measure)"}
    assert calm.finish(ctx) == ctx.machine["calm"]
