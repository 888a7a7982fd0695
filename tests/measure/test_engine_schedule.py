"""guidellm's lost Poisson schedule is recognised (run_load then runs the workload again)."""

from __future__ import annotations

from memwall.measure.engine import schedule_lost


def report(*targets) -> dict:
    stats = [{"info": {"timings": {"targeted_start": t}}} for t in targets]
    return {"benchmarks": [{"requests": {"successful": stats, "errored": []}}]}


def test_a_schedule_that_starts_now_is_kept():
    assert not schedule_lost(report(1.8e9, 1.8e9 + 0.4, 1.8e9 + 0.9))
    assert not schedule_lost(report(None, 1.8e9))  # a request guidellm never timed
    assert not schedule_lost({"benchmarks": []})


def test_a_schedule_from_the_epoch_is_lost():
    # the arrival clock began at -1.0 s: targets are seconds after 1970, all overdue
    assert schedule_lost(report(-0.6, 0.3, 1.1))
    assert schedule_lost(report(1.8e9, 12.5))
