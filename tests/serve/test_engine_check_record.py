"""The real-engine check record (what bench_serve saves for the report): written, read back,
and refused with one line when edited into nonsense."""

from __future__ import annotations

import json

import pytest

from engine_records import record
from memwall.errors import MemwallError
from memwall.records import engine_check
from memwall.records.store import engine_check_path


def test_saved_where_the_report_reads_it(data_dir):
    assert engine_check.load() is None  # none saved yet
    path = engine_check.save(record())
    assert path == engine_check_path() and path.is_relative_to(data_dir)
    back = engine_check.load()
    assert back.workloads[1].mix == "long" and back.machine.steadiness_before == 1.55
    assert back.summary.tpot_p50 == pytest.approx(0.06)


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda r: r.update(format="memwall-engine-check/0"), "format"),
        (lambda r: r["summary"].update(ttft_p50=-0.1), "summary.ttft_p50"),
        (lambda r: r["workloads"][0]["measured"].update(tpot_p50="5"), "measured.tpot_p50"),
        (lambda r: r["workloads"][0]["measured"].pop("e2e_p50"), "measured.e2e_p50"),
        (lambda r: r["machine"].update(steadiness_after=0.5), "steadiness_after"),
        (lambda r: r.update(workloads=[]), "workloads"),
        (lambda r: r.update(extra=1), "extra"),
    ],
)
def test_a_bad_record_is_one_line(data_dir, edit, where):
    bad = record()
    edit(bad)
    with pytest.raises(MemwallError, match=where):
        engine_check.save(bad)  # nothing half-valid is written
    assert not engine_check_path().exists()
    engine_check_path().parent.mkdir(parents=True)
    engine_check_path().write_text(json.dumps(bad))
    with pytest.raises(MemwallError, match="malformed") as e:
        engine_check.load()
    assert "\n" not in str(e.value)


def test_not_json_is_refused(data_dir):
    engine_check_path().parent.mkdir(parents=True)
    engine_check_path().write_text("{not json")
    with pytest.raises(MemwallError, match="not valid JSON"):
        engine_check.load()
