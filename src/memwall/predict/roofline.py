"""Roofline prediction: per-operation time, bound and attainable FLOP/s on a device.

Model (Williams, Waterman & Patterson, CACM 2009, plus a fixed launch cost):
    time(op) = max(flops / peak[op.dtype], bytes / memory_bandwidth) + overhead x instances
where `instances` = count (layers the row stands for) x steps (decode steps summed in the row).
The memory roof is main memory (DRAM/HBM): the op table counts the bytes each kernel moves to
and from memory, so cache reuse inside a kernel is already folded into those bytes. A measured
device carries its own per-op overhead; catalog devices have none (0 s), which makes the
prediction a lower bound wherever launch costs matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import DTYPES, Device, normalize_dtype
from memwall.search import first_true
from memwall.spec import MAX_BATCH, ModelSpec, Precision, Workload

REQUIRED = ("name", "flops", "bytes", "dtype")
OP_OUTPUT_COLUMNS = (
    "t_compute",
    "t_memory",
    "t_overhead",
    "time",
    "bound",
    "attainable_flops",
)


@dataclass(frozen=True)
class Prediction:
    """The op table with predicted times added, plus totals and the roofs that produced them."""

    ops: pd.DataFrame = field(hash=False, compare=False)
    totals: dict[str, float] = field(hash=False)
    ridge: dict[str, float] = field(hash=False)  # FLOPs/byte per dtype the device has
    device: Device
    overhead: bool
    memory_bandwidth: float  # the memory roof used, bytes/s
    peaks_used: dict[str, float] = field(hash=False)  # the compute roofs used, by dtype

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: device, roof origin, roofs used, totals and one record per op."""
        cols = [
            c
            for c in (
                "name",
                "kind",
                "dtype",
                "count",
                "steps",
                "flops",
                "bytes",
                "intensity",
                *OP_OUTPUT_COLUMNS,
            )
            if c in self.ops.columns
        ]
        ops = []
        for rec in self.ops[cols].to_dict(orient="records"):
            ops.append({k: plain_value(v) for k, v in rec.items()})
        return {
            "device": self.device.name,
            "display_name": self.device.display_name,
            "measured": self.device.measured,
            "roof_origin": self.device.roof_origin,
            "roofs": {
                "memory_bandwidth": self.memory_bandwidth,
                "peak_flops": dict(self.peaks_used),
                "op_overhead": self.device.op_overhead if self.overhead else 0.0,
            },
            "overhead": self.overhead,
            "ridge": dict(self.ridge),
            "totals": dict(self.totals),
            "ops": ops,
        }


def plain_value(v: Any) -> Any:
    """A JSON-ready scalar: numpy scalars unwrapped, non-finite floats as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def check_ops(ops: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(ops, pd.DataFrame):
        raise MemwallError("predict needs an operation table (pandas DataFrame from op_table)")
    missing = [c for c in REQUIRED if c not in ops.columns]
    if missing:
        raise MemwallError(
            f"operation table lacks columns {', '.join(missing)}; needs {', '.join(REQUIRED)}"
        )
    if ops.empty:
        raise MemwallError("operation table is empty: nothing to predict")
    df = ops.copy()
    df.attrs = {}  # the count's metadata stays on its table: pandas deep-copies attrs every op
    for c, default in (("count", 1), ("steps", 1)):
        if c not in df.columns:
            df[c] = default
    if "kind" not in df.columns:
        df["kind"] = ""
    for c in ("flops", "bytes", "count", "steps"):
        v = pd.to_numeric(df[c], errors="coerce").astype(float)
        if v.isna().any() or not np.isfinite(v).all() or (v < 0).any():
            raise MemwallError(f"operation table column {c!r} must hold finite numbers >= 0")
        df[c] = v
    df["dtype"] = [normalize_dtype(d) for d in df["dtype"]]
    return df


def predict_roofline(ops: pd.DataFrame, device: Device, overhead: bool = True) -> Prediction:
    """Predicted time of each op on `device`: the larger roof plus per-instance overhead.

    Raises MemwallError when the device has no peak for an op's dtype or no memory bandwidth.
    """
    df = check_ops(ops)
    bw = device.memory_bandwidth()
    peaks = {d: device.peak(d) for d in dict.fromkeys(df["dtype"])}
    peak = df["dtype"].map(peaks).astype(float)
    df["t_compute"] = df["flops"] / peak
    df["t_memory"] = df["bytes"] / bw
    per_op = device.op_overhead if overhead else 0.0
    df["t_overhead"] = per_op * df["count"] * df["steps"]
    roof = np.maximum(df["t_compute"], df["t_memory"])
    df["time"] = roof + df["t_overhead"]
    df["bound"] = np.where(
        (df["t_compute"] >= df["t_memory"]) & (df["flops"] > 0), "compute", "memory"
    )
    # Roofline attainable rate: min(peak, intensity x bandwidth) = flops / max(roofs).
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.minimum(df["flops"] / roof, peak)  # the cap only absorbs float rounding
        df["attainable_flops"] = np.where(roof > 0, rate, 0.0)
    if "intensity" not in df.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            df["intensity"] = np.where(df["bytes"] > 0, df["flops"] / df["bytes"], 0.0)

    t = float(df["time"].sum())
    flops = float(df["flops"].sum())
    nbytes = float(df["bytes"].sum())
    t_cb = float(roof[df["bound"] == "compute"].sum())
    t_mb = float(roof[df["bound"] == "memory"].sum())
    t_ov = float(df["t_overhead"].sum())
    totals = {
        "time": t,
        "flops": flops,
        "bytes": nbytes,
        "intensity": flops / nbytes if nbytes else 0.0,
        "attainable_flops": flops / t if t > 0 else 0.0,
        "t_compute": float(df["t_compute"].sum()),
        "t_memory": float(df["t_memory"].sum()),
        "t_overhead": t_ov,
        "time_compute_bound": t_cb,
        "time_memory_bound": t_mb,
        "frac_compute_bound": t_cb / t if t > 0 else 0.0,
        "frac_memory_bound": t_mb / t if t > 0 else 0.0,
        "frac_overhead": t_ov / t if t > 0 else 0.0,
        "ops_compute_bound": int((df["bound"] == "compute").sum()),
        "ops_memory_bound": int((df["bound"] == "memory").sum()),
    }
    ridge = {d: device.peaks[d] / bw for d in DTYPES if d in device.peaks}
    return Prediction(
        ops=df,
        totals=totals,
        ridge=ridge,
        device=device,
        overhead=overhead,
        memory_bandwidth=bw,
        peaks_used=peaks,
    )


def decode_terms(
    spec: ModelSpec,
    device: Device,
    precision: Precision | str | None,
    context: int,
    batch: int,
    convention: str = "full",
) -> tuple[float, float]:
    """(compute term, memory term) in seconds of one decode step at `batch` and `context`."""
    df = op_table(spec, Workload("decode", batch, context), precision, convention)
    p = predict_roofline(df, device, overhead=False)
    return p.totals["t_compute"], p.totals["t_memory"]


def decode_ridge_batch(
    spec: ModelSpec,
    device: Device,
    precision: Precision | str | None = None,
    context: int = 128,
    convention: str = "full",
    max_batch: int | None = None,
) -> int | None:
    """Smallest batch at which one decode step's total compute term reaches its memory term.

    Both terms are (near-)affine in the batch, so the crossing is found by bisection
    (`memwall.search`). None when even `max_batch` stays memory-bound (e.g. long contexts,
    where KV-cache reads grow with the batch as fast as the FLOPs do).
    """
    hi = int(max_batch or MAX_BATCH)
    if hi < 1:
        raise MemwallError(f"max_batch must be >= 1, got {hi}")

    def compute_bound(b: int) -> bool:
        c, m = decode_terms(spec, device, precision, context, b, convention)
        return c >= m

    return first_true(compute_bound, 1, hi)
