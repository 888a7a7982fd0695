"""What-if comparisons: one workload on a real device and on scaled versions of it.

The paper's closing question (give up compute for bandwidth?) as a table: each row names the
derived device with its factors, its predicted time and range (efficiency model), and the
speed-up over the real device, so a report or a user sees at once what a 2x-bandwidth chip
would buy for this workload, and how sure that is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from memwall.hardware import Device, derive
from memwall.precision import Precision
from memwall.predict.efficiency import predict_efficiency

DEFAULT_SCALES: tuple[Mapping[str, float], ...] = (
    {"bw": 2.0},
    {"flops": 2.0},
    {"bw": 2.0, "flops": 0.5},
    {"mem": 2.0},
)


def what_if_rows(
    ops: pd.DataFrame,
    base: Device,
    precision: Precision | None = None,
    scales: Sequence[Mapping[str, float]] = DEFAULT_SCALES,
    launch: str = "graph",
) -> list[dict[str, Any]]:
    """The real device first, then one row per scaling: name, display name, factors, predicted
    time with its low/high range (seconds), and speed-up over the real device."""
    ref = predict_efficiency(ops, base, precision, launch).totals
    rows = [_row(base, ref, ref)]
    for s in scales:
        dev = derive(base, dict(s))
        rows.append(_row(dev, predict_efficiency(ops, dev, precision, launch).totals, ref))
    return rows


def _row(dev: Device, t: Mapping[str, float], ref: Mapping[str, float]) -> dict[str, Any]:
    return {
        "device": dev.name,
        "display_name": dev.display_name,
        "what_if": dict(dev.scale),
        "time": t["time"],
        "time_low": t["time_low"],
        "time_high": t["time_high"],
        "speedup": ref["time"] / t["time"],
    }
