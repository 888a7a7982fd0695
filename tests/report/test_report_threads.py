"""The report's case study runs under the thread policy of `memwall casestudy`: the same
function (`casestudy_here`), the thread count `measure.run.auto_threads` chooses (not torch's
default) and so the same calibration key. Nothing is measured: the case study is stopped
where it would start, after its threads and calibration are set."""

from __future__ import annotations

import pytest

from memwall.report import ReportContext, ReportOptions
from memwall.report.sections.casestudy import SECTION as CASESTUDY
from tiny_configs import REPORT_MODELS

torch = pytest.importorskip("torch")


class Stop(Exception):
    """Raised where the case study would start measuring."""


@pytest.fixture
def seen(monkeypatch, tmp_path):
    """Torch threads at 2 outside; the policy (spied) chooses 1; every case study records
    the threads it runs with and the calibration it was given, then stops."""
    import memwall.measure.run as run
    import memwall.studies.casestudy as cs
    from memwall.measure.calibration import machine_key

    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMWALL_CALIBRATION", "quick")
    monkeypatch.setattr(run, "auto_threads", lambda: (1, "1 (the policy, spied)"))
    got: list[dict] = []

    def stop(*args, cal=None, **kw):
        got.append(
            {
                "threads": torch.get_num_threads(),
                "choice": run.THREADS_NOTE.get("threads", ""),
                "key_threads": machine_key()["threads"],
                "path": cal.path,
                "config": cal.cfg.name,
            }
        )
        raise Stop

    monkeypatch.setattr(cs, "run_casestudy", stop)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield got
    torch.set_num_threads(before)


def _report_casestudy(quick: bool) -> None:
    opts = ReportOptions(
        quick=quick,
        models=("gpt2",),
        devices=("h100-sxm",),
        configs=REPORT_MODELS,
        casestudy_lengths=(16,),
    )
    with pytest.raises(Stop):
        CASESTUDY.build(ReportContext(opts))


def _cli_casestudy() -> None:
    from memwall.cli.casestudy import casestudy_cmd

    with pytest.raises(Stop):
        casestudy_cmd(models="bert-base", lengths="16", precisions="int8", device="none")


def test_report_casestudy_uses_the_casestudy_thread_count_and_calibration_key(seen):
    _report_casestudy(quick=False)
    _cli_casestudy()
    report, cli = seen
    assert report["threads"] == cli["threads"] == 1  # the policy's, not torch's 2
    assert report["key_threads"] == cli["key_threads"] == 1
    assert report["choice"].startswith("1 (the policy, spied)")
    assert report["path"] == cli["path"]  # one calibration record for both
    assert torch.get_num_threads() == 2  # restored after


def test_quick_report_keeps_the_thread_policy_with_its_one_round_calibration(seen):
    _report_casestudy(quick=True)
    _cli_casestudy()
    report, cli = seen
    assert report["threads"] == report["key_threads"] == cli["threads"] == 1
    assert report["config"] == f"{cli['config']}-1-round"
