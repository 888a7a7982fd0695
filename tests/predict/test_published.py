"""The published-measurements file stays well-formed, and every row can be priced."""

from __future__ import annotations

import math
from importlib import resources

import pytest

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.predict.published import compare, load_published, parse_published, predict_row

ROWS = load_published()


def csv_text() -> str:
    return resources.files("memwall.data").joinpath("published_inference.csv").read_text("utf-8")


def test_enough_rows_devices_and_vendors_each_with_a_source():
    assert len(ROWS) >= 40
    devices = {r.device for r in ROWS}
    vendors = {get_device(d).vendor for d in devices}
    assert len({get_device(d).derived_from or d for d in devices}) >= 8
    assert {"NVIDIA", "Apple", "AMD"} <= vendors
    for r in ROWS:
        assert "github.com" in r.source or "arxiv" in r.source.lower(), r.id
        assert r.software and r.unit == ("s" if r.metric == "matmul_time_s" else "tokens/s")
        if r.metric == "decode_tok_s":
            assert r.phase == "generate" and r.gen_len > 0 and r.seq_len == 0
        if r.metric == "prefill_tok_s":
            assert r.phase == "prefill" and r.seq_len > 0
        if r.metric == "matmul_time_s":
            assert r.model.startswith("gemm:") and r.launch == "kernel"
    assert {r.fitted for r in ROWS} == {"yes", "no"}  # in-sample rows are marked
    derived = [r for r in ROWS if "@" in r.device]
    assert derived and all("catalog row" in r.notes for r in derived)


@pytest.mark.parametrize(
    "old,new,needle",
    [
        (",decode_tok_s,120.6,", ",decode_tok_s,-1,", "greater than 0"),
        (",decode_tok_s,120.6,", ",decode_tok_s,nan,", "finite"),
        (
            ",4/16/16,32,yes,generate,1,0,128,decode_tok_s,120.6",
            ",4/17/16,32,yes,generate,1,0,128,decode_tok_s,120.6",
            "bits",
        ),
        (",eager,yes,", ",turbo,yes,", "eager"),
        (",decode_tok_s,120.6,tokens/s,", ",speed,120.6,tokens/s,", "decode_tok_s"),
    ],
)
def test_broken_rows_are_refused_with_their_id(old, new, needle):
    text = csv_text()
    assert old in text
    with pytest.raises(MemwallError, match=needle) as e:
        parse_published(text.replace(old, new, 1))
    assert "row '1'" in str(e.value)


def test_duplicate_ids_are_refused():
    lines = csv_text().rstrip("\n").splitlines()
    with pytest.raises(MemwallError, match="duplicate"):
        parse_published("\n".join([*lines, lines[-1]]))


def test_each_kind_of_row_is_priced_with_a_range():
    picks = {}
    for r in ROWS:
        picks.setdefault((r.metric, "@" in r.device), r)
    for r in picks.values():
        v, lo, hi = predict_row(r)
        assert math.isfinite(v) and 0 < lo <= v <= hi, r.id
        assert 0.2 < v / r.value < 5, r.id  # same order of magnitude as the measurement


def test_comparison_summarises_each_class():
    c = compare([r for r in ROWS if r.device in ("rtx-3090", "apple-m2-ultra")])
    s = c.by_class().set_index("device_class")
    assert set(s.index) == {"gddr-gpu", "apple-gpu", "all"}
    assert s.loc["all", "rows"] == len(c.table)
    assert s.loc["all", "worst_abs_error"] >= s.loc["all", "median_abs_error"] >= 0
