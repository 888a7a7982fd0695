"""The report's check against published runs: the same rows, errors and exclusions as the
benchmarks (`bench_parallel.py`, `bench_published.py`) and a source beside every row."""

from __future__ import annotations

import statistics

import pytest

from memwall.parallel.published import published_rows
from memwall.parallel.published_inference import compare
from memwall.report import ReportContext, ReportOptions
from memwall.report.sections.published import SECTION

pytestmark = pytest.mark.slow  # prices every published row (about 10 s)


@pytest.fixture(scope="module")
def built():
    return SECTION.build(ReportContext(ReportOptions(models=("gpt2",), devices=("h100-sxm",))))


def test_the_summary_is_the_benchmarks(built):
    d = built.data
    inc = compare().included
    assert d["inference"]["all"]["n"] == len(inc)
    assert d["inference"]["all"]["median"] == pytest.approx(statistics.median(inc["error"].abs()))
    oos = inc[inc["fitted"] == "no"]
    assert d["inference"]["out_of_sample"]["n"] == len(oos)
    assert d["training"]["all"]["n"] == len(published_rows())


def test_every_row_has_its_source_and_excluded_rows_say_why(built):
    rows = built.data["rows"]
    assert all(len(r["source"]) > 10 for r in rows)
    excluded = [r for r in rows if r["excluded"]]
    assert len(excluded) == len(compare().excluded) > 0
    figure = next(b for b in built.blocks if getattr(b, "key", "") == "published")
    shown = sum(len(t.y) for t in figure.figure.data)
    assert shown == len(rows) - len(excluded)  # excluded rows are listed, not plotted
