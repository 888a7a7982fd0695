"""Noisy case-study rows: which measured (row, precision) pairs cannot be trusted, the mark
every table and figure shows on them, and the error summary that keeps them apart.

A pair is noisy when its timed runs were flagged noisy (interquartile range over 10% of the
median after the runs added to narrow it), or when a term of the calibration behind its
prediction was flagged noisy (measured on a busy machine or with rounds that disagreed). A
calibration's reasons name the kernel dtype they concern ("linear/int8 varied 38%"): such a
reason marks the pairs whose prediction uses that dtype (int8 rows also run fp32 activations,
attention and pointwise work), and a reason that names none marks every pair. A small error inside a
wide but unflagged spread is not dropped: leaving out the rows that happen to land close would
bias the clean median upwards.
The summary's median and worst error are over the clean pairs; the count left out and the
median over every pair (labelled so) are given beside them.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from typing import Any

from memwall.report.fmt import pct

MARK = "⚠"
LEGEND = (
    f"{MARK} noisy: the timed runs were noisy (spread over 10% of the median), or a calibration "
    "term behind the prediction was noisy; noisy rows are shaded and left out of the summary's "
    "median and worst error"
)


DTYPES = ("int8", "fp32", "bf16", "fp16")
USES = {"int8": {"int8", "fp32"}}  # int8 rows: int8 matmuls, fp32 activations and attention


def concerns(reason: str, p: str) -> bool:
    """Whether a calibration's noise `reason` concerns predictions at precision `p` (a case
    study's column: "int8-dynamic", "fp32")."""
    named = {d for d in DTYPES if re.search(rf"(?<![a-z0-9]){d}(?![0-9])", reason)}
    dtype = next((d for d in DTYPES if p.startswith(d)), p)
    return not named or bool(named & USES.get(dtype, {dtype}))


Calibration = bool | Sequence[str]  # True: noisy as a whole; or its reasons (empty: clean)


def _calibration_reasons(cal: Calibration, p: str) -> list[str]:
    if isinstance(cal, bool):
        return ["noisy calibration"] if cal else []
    hits = [r for r in cal if concerns(r, p)]
    return [f"noisy calibration ({'; '.join(hits)})"] if hits else []


def reasons(row: dict[str, Any], p: str, calibration: Calibration) -> list[str]:
    """Why the measurement of `row` at precision `p` is noisy (empty: clean or not measured)."""
    if row.get(f"latency_{p}") is None:
        return []
    out = []
    if row.get(f"noisy_{p}"):
        out.append(f"noisy runs (spread {pct(row.get(f'relative_iqr_{p}'))})")
    return out + _calibration_reasons(calibration, p)


def mark_rows(
    rows: list[dict[str, Any]], precisions: tuple[str, ...], calibration: Calibration
) -> list[dict[str, Any]]:
    """Copies of `rows` with, per precision, `noise_{p}` (the reasons) and `mark_{p}` (the
    cell shown: MARK and the reasons, "clean", or None when not measured), and `noisy_row`."""
    out = []
    for r in rows:
        m = dict(r)
        for p in precisions:
            why = reasons(r, p, calibration)
            m[f"noise_{p}"] = why
            measured = r.get(f"latency_{p}") is not None
            m[f"mark_{p}"] = f"{MARK} " + "; ".join(why) if why else ("clean" if measured else None)
        m["noisy_row"] = any(m[f"noise_{p}"] for p in precisions)
        out.append(m)
    return out


def _stats(errs: list[float]) -> dict[str, Any]:
    return {
        "n": len(errs),
        "median": statistics.median(errs) if errs else None,
        "worst": max(errs) if errs else None,
    }


def error_summary(marked: list[dict[str, Any]], precisions: tuple[str, ...]) -> dict[str, Any]:
    """Prediction error over the clean pairs, over every pair (labelled), and how many noisy
    pairs the clean numbers leave out."""
    clean, every = [], []
    for r in marked:
        for p in precisions:
            e = r.get(f"error_{p}")
            if e is None:
                continue
            every.append(e)
            if not r.get(f"noise_{p}"):
                clean.append(e)
    return {
        "clean": _stats(clean),
        "all_rows": _stats(every),
        "noisy_excluded": len(every) - len(clean),
        "rule": LEGEND,
    }


def sentence(s: dict[str, Any]) -> str:
    """The summary in words: clean median and worst, what was left out, the all-rows median."""
    c, a, k = s["clean"], s["all_rows"], s["noisy_excluded"]
    if not a["n"]:
        return "No run was measured, so no prediction error is given."
    every = f"Over all {a['n']} runs, noisy ones included: median {pct(a['median'])}, worst "
    every += f"{pct(a['worst'])}."
    if not c["n"]:
        return f"All {a['n']} measured runs are noisy ({MARK}), so no clean error is given. {every}"
    head = (
        f"The calibrated roofline predicted the {c['n']} clean measured runs with a median "
        f"error of {pct(c['median'])} (worst {pct(c['worst'])})"
    )
    if not k:
        return head + "; none was noisy."
    return f"{head}; {k} noisy run{'s' if k != 1 else ''} ({MARK}) left out. {every}"
