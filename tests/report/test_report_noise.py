"""Which case-study rows are noisy (`memwall.report.noise`), and the error summary that keeps
them out of the median while stating how many it left out and the all-rows median."""

from __future__ import annotations

import pytest

from memwall.report import noise

P = "int8-dynamic"


def row(
    err: float | None, iqr: float = 0.02, noisy: bool = False, length: int = 128, p: str = P
) -> dict:
    if err is None:
        return {"model": "gpt2", "length": length, f"latency_{p}": None, f"error_{p}": None}
    return {
        "model": "gpt2",
        "length": length,
        f"latency_{p}": 0.1,
        f"error_{p}": err,
        f"relative_iqr_{p}": iqr,
        f"noisy_{p}": noisy,
    }


def test_reasons():
    assert noise.reasons(row(0.10), P, False) == []
    assert noise.reasons(row(0.10, iqr=0.3, noisy=True), P, False) == ["noisy runs (spread 30.0%)"]
    # a small error inside a wide, unflagged spread stays in (dropping it would bias the median)
    assert noise.reasons(row(0.01, iqr=0.05), P, False) == []
    assert noise.reasons(row(0.10), P, True) == ["noisy calibration"]
    assert noise.reasons(row(None), P, True) == []  # not measured: nothing to mark


def test_a_calibration_reason_marks_the_precisions_it_concerns():
    lin8 = ["linear/int8 varied 38% between interleaved rounds (limit 30%)"]
    fp32 = row(0.1, p="fp32")
    assert noise.reasons(fp32, "fp32", lin8) == []  # fp32 predictions use no int8 term
    assert noise.reasons(row(0.1), P, lin8) == [f"noisy calibration ({lin8[0]})"]
    sdpa = ["sdpa/fp32 varied 40% between interleaved rounds (limit 30%)"]
    assert noise.reasons(row(0.1), P, sdpa)  # int8 rows run fp32 attention
    busy = ["other processes kept 1.2 cores busy while calibrating"]
    assert noise.reasons(fp32, "fp32", busy) and noise.reasons(row(0.1), P, busy)
    assert noise.concerns("block term of gpt2 int8 varied 40% within its runs", P)
    assert not noise.concerns("block term of gpt2 int8 varied 40% within its runs", "fp32")


def test_marks_and_summary_keep_noisy_rows_apart():
    rows = [row(0.10), row(0.30, length=256), row(0.90, 0.4, True, 512), row(None, length=1024)]
    marked = noise.mark_rows(rows, (P,), False)
    assert [m[f"mark_{P}"] for m in marked] == [
        "clean",
        "clean",
        "⚠ noisy runs (spread 40.0%)",
        None,
    ]
    assert [m["noisy_row"] for m in marked] == [False, False, True, False]
    assert "noise_" + P not in rows[0]  # the case study's own rows are left as they were
    s = noise.error_summary(marked, (P,))
    assert s["clean"] == {"n": 2, "median": pytest.approx(0.2), "worst": pytest.approx(0.3)}
    assert s["all_rows"] == {"n": 3, "median": pytest.approx(0.3), "worst": pytest.approx(0.9)}
    assert s["noisy_excluded"] == 1
    text = noise.sentence(s)
    assert "2 clean measured runs with a median error of 20.0% (worst 30.0%)" in text
    assert "1 noisy run (⚠) left out" in text and "median 30.0%, worst 90.0%" in text


def test_a_noisy_calibration_leaves_no_clean_row():
    marked = noise.mark_rows([row(0.1), row(0.5, length=256)], (P,), True)
    s = noise.error_summary(marked, (P,))
    assert s["clean"]["n"] == 0 and s["clean"]["median"] is None and s["noisy_excluded"] == 2
    text = noise.sentence(s)
    assert text.startswith("All 2 measured runs are noisy") and "median 30.0%" in text


def test_nothing_noisy_and_nothing_measured():
    s = noise.error_summary(noise.mark_rows([row(0.1)], (P,), False), (P,))
    assert noise.sentence(s).endswith("(worst 10.0%); none was noisy.")
    empty = noise.error_summary(noise.mark_rows([row(None)], (P,), False), (P,))
    assert noise.sentence(empty) == "No run was measured, so no prediction error is given."
