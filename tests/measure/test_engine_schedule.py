"""guidellm's Poisson schedule: started in order by memwall's launcher, and a lost one still
recognised (run_load then runs the workload again)."""

from __future__ import annotations

import os
import subprocess

import pytest

from memwall.measure.engine import guidellm_bin, schedule_lost
from memwall.measure.scripts import guidellm_command


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


# guidellm's own Python runs this against its Poisson strategy: the value of the arrival clock
# at the moment the workers' start event is set (guidellm 0.8.1 alone sets it at -1.0)
CLOCK_AT_WAKE = """
import importlib.util, multiprocessing, sys
spec = importlib.util.spec_from_file_location("launch", sys.argv[1])
launch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(launch)
assert launch.put_in_order()
from guidellm.scheduler.strategies import AsyncPoissonStrategy
strategy = AsyncPoissonStrategy(rate=4.0)
strategy.init_processes_timings(1, 4, multiprocessing.get_context("spawn"))
class Wake:
    def set(self):
        print(strategy._offset.value)
strategy._processes_init_event = Wake()
strategy.init_processes_start(1234.5)
"""


def test_the_launcher_moves_the_arrival_clock_before_it_wakes_the_workers():
    exe = guidellm_bin()
    if exe is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("make test installs guidellm, yet it is not found")
    if exe is None:
        pytest.skip("guidellm not installed")
    python, launcher = guidellm_command(exe)
    done = subprocess.run(
        [python, "-c", CLOCK_AT_WAKE, launcher], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) == 1234.5


def test_guidellm_is_started_by_its_own_python_through_the_launcher(tmp_path):
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.write_text("")
    script = tmp_path / "bin" / "guidellm"
    script.write_text(f"#!{python}\nimport sys\n")
    cmd = guidellm_command(str(script))
    assert cmd[0] == str(python) and cmd[1].endswith("guidellm_launch.py")
    other = tmp_path / "guidellm-wrapper"
    other.write_text('#!/bin/sh\nexec guidellm "$@"\n')
    assert guidellm_command(str(other)) == [str(other)]  # no Python named: run as it is
