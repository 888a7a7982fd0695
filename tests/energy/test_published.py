"""The published energy measurements: enough rows, each sourced; newer parts held out; the
comparison runs and the trend with batch size is judged per measured sweep."""

from __future__ import annotations

from importlib import resources

import pytest

from memwall.energy.published import load_energy_rows, parse_energy_rows
from memwall.errors import MemwallError
from memwall.parallel.published_energy import band, compare


def test_at_least_twenty_sourced_rows_on_h100_a100_and_older():
    rows = load_energy_rows()
    assert len([r for r in rows if r.role != "holdout"]) >= 20
    assert {r.device for r in rows} >= {"h100-sxm", "a100-sxm-40gb", "v100-sxm2-32gb", "b200"}
    for r in rows:
        assert "github.com" in r.source or "arxiv" in r.source.lower()
        assert r.assumed and r.software


def test_newer_parts_are_out_of_sample_and_fit_rows_are_marked():
    rows = load_energy_rows()
    assert all(r.role == "holdout" for r in rows if r.device == "b200")
    assert all(r.device != "b200" for r in rows if r.role != "holdout")
    assert any(r.role == "fit" for r in rows)


def test_comparison_on_a_sweep():
    rows = [r for r in load_energy_rows() if r.series.startswith("Llama-3.1-8B-Instruct on H100")]
    c = compare(rows)
    t = c.table
    assert len(t) == len(rows) >= 5
    assert (t["predicted"] > 0).all() and (t["low"] <= t["predicted"]).all()
    trend = c.trend_check()
    assert len(trend) == 1 and trend["ok"].all()  # energy per token falls with the batch
    assert set(c.by("batch_band")["batch_band"]) >= {"2-16", "all"}
    assert band(1) == "1" and band(512) == ">128"


def _csv(row_edit) -> str:
    text = resources.files("memwall.data").joinpath("published_energy.csv").read_text("utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    return "\n".join([lines[0], row_edit(lines[1])])


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda ln: ln.replace(",bf16,", ",bf17,", 1), "precision"),
        (lambda ln: ln.replace(",holdout,", ",maybe,", 1), "role"),
        (lambda ln: ln.replace(",0.3905,", ",-1,", 1), "j_per_output_token"),
    ],
)
def test_a_bad_row_is_one_line(edit, needle):
    with pytest.raises(MemwallError, match=needle):
        parse_energy_rows(_csv(edit))
