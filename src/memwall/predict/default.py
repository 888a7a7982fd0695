"""The one prediction memwall gives by default for a device: a measured device (`local`, a saved
measurement) prices the ops on its own measured roofline; a catalog or what-if device on its
spec-sheet roofs times published efficiencies (with a range). `memwall analyze --device`, the
report and a notebook all call this, so the number a user gets without flags is the same
everywhere."""

from __future__ import annotations

from typing import Any

from memwall.hardware import Device
from memwall.precision import Precision
from memwall.predict.efficiency import EffPrediction, device_prediction
from memwall.predict.roofline import Prediction, predict_roofline


def default_prediction(
    ops: Any,
    device: Device,
    precision: Precision | None,
    launch: str = "graph",
    causal: bool | float = False,
    accumulate: str = "fp32",
) -> Prediction | EffPrediction:
    """The realistic prediction of `ops` on `device` (see the module docstring); `accumulate`:
    what 16-bit matmuls accumulate in on a catalog device (fp32, or fp16 as llama.cpp does)."""
    if device.measured:
        return predict_roofline(ops, device)
    return device_prediction(ops, device, precision, launch, causal, accumulate)


def shares(pred: Prediction | EffPrediction) -> dict[str, float]:
    """How the predicted time splits: memory-bound op time, compute-bound op time, and fixed
    per-kernel cost (launch gaps for a catalog device, measured per-op overhead for a measured
    one). Fractions of the total; they add to 1."""
    df = pred.ops
    over = df["t_launch"] if "t_launch" in df.columns else df.get("t_overhead")
    over_s = float(over.sum()) if over is not None else 0.0
    mem = df["t_memory"] >= df["t_compute"]
    t_mem = float(df["t_memory"][mem].sum())
    t_cmp = float(df["t_compute"][~mem].sum())
    total = t_mem + t_cmp + over_s
    if total <= 0:
        return {"memory": 0.0, "compute": 0.0, "overhead": 0.0}
    return {"memory": t_mem / total, "compute": t_cmp / total, "overhead": over_s / total}
