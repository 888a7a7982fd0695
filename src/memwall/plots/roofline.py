"""Roofline plot: memory and compute ceilings of a device, operations as labelled points.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), so
it works headless and from threads. The file is written to a temporary name and renamed, so a
failed plot never leaves a half-written file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from memwall.errors import MemwallError
from memwall.hardware import DTYPES, Device
from memwall.plots.save import check_plot_path, save_figure
from memwall.predict.roofline import Prediction, predict_roofline

FORMATS = ("png", "svg")
_DTYPE_STYLE = {"fp64": ":", "fp32": "-", "tf32": "-.", "bf16": "--", "fp16": "--", "fp8": "-."}


def _bw_label(bw: float) -> str:
    for scale, unit in ((1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s")):
        if bw >= scale:
            return f"{bw / scale:.3g} {unit}"
    return f"{bw:.3g} B/s"


def _flops_label(f: float) -> str:
    for scale, unit in ((1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s")):
        if f >= scale:
            return f"{f / scale:.3g} {unit}"
    return f"{f:.3g} FLOP/s"


def _size_label(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _label_groups(pts: pd.DataFrame, max_labels: int) -> list[tuple[tuple[float, float], list]]:
    """Ops that land on (nearly) the same spot share one label, the slowest ops first."""
    groups: list[tuple[tuple[float, float], list]] = []
    for _, r in pts.sort_values("time", ascending=False).iterrows():
        x, y = float(r["intensity"]), float(r["attainable_flops"])
        for (gx, gy), names in groups:
            if abs(math.log10(x / gx)) < 0.1 and abs(math.log10(y / gy)) < 0.05:
                if str(r["name"]) not in names:
                    names.append(str(r["name"]))
                break
        else:
            if len(groups) < max_labels:
                groups.append(((x, y), [str(r["name"])]))
    return groups


def _draw_roofs(ax: Any, device: Device, mem_roofs: list, peaks: list, x: Any) -> None:
    """The memory roofs (main memory bold, cache levels thin) and one line per compute peak."""
    top = max(p for _, p in peaks)
    origin = device.roof_origin
    for i, (label, bw) in enumerate(mem_roofs):
        is_main = i == len(mem_roofs) - 1
        level = next((c for c in device.cache_levels if c.name == label), None)
        extra = f", <= {_size_label(level.size)}" if level else ""
        ax.plot(
            x,
            np.minimum(bw * x, top),
            color="tab:blue" if is_main else "tab:cyan",
            lw=2.0 if is_main else 1.2,
            alpha=1.0 if is_main else 0.8,
            label=f"{label}: {_bw_label(bw)}{extra} ({origin})",
        )
    for d, p in peaks:
        ax.axhline(
            p,
            color="tab:red" if d in ("fp32", "bf16", "fp16") else "tab:gray",
            ls=_DTYPE_STYLE.get(d, ":"),
            lw=1.2,
            label=f"{d} peak: {_flops_label(p)} ({origin})",
        )


def plot_roofline(
    prediction_or_ops: Prediction | pd.DataFrame,
    device: Device,
    path: str | os.PathLike[str],
    title: str | None = None,
    max_labels: int = 40,
) -> Path:
    """Write a log-log roofline of `device` with the operations as points to PNG or SVG."""
    path = check_plot_path(path, FORMATS)
    if isinstance(prediction_or_ops, Prediction):
        pred = prediction_or_ops
    elif isinstance(prediction_or_ops, pd.DataFrame):
        pred = predict_roofline(prediction_or_ops, device, overhead=False)
    else:
        raise MemwallError("plot_roofline needs a Prediction or an operation table")

    ops = pred.ops
    pts = ops[(ops["flops"] > 0) & (ops["bytes"] > 0)]
    mem_roofs = device.memory_roofs()
    peaks = [(d, device.peaks[d]) for d in DTYPES if d in device.peaks]
    if not mem_roofs or not peaks:
        raise MemwallError(f"device {device.name!r} lacks a memory or compute roof to plot")
    top = max(p for _, p in peaks)
    dram = mem_roofs[-1][1]
    ridges = [p / dram for _, p in peaks]
    xs = list(pts["intensity"]) + ridges
    x_lo = 10 ** math.floor(math.log10(max(min(xs) / 4, 1e-3)))
    x_hi = 10 ** math.ceil(math.log10(max(xs) * 4))
    y_hi = top * 3
    y_lo = min([dram * x_lo] + list(pts["attainable_flops"][pts["attainable_flops"] > 0])) / 3

    fig = Figure(figsize=(9, 6.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    origin = device.roof_origin
    _draw_roofs(ax, device, mem_roofs, peaks, np.logspace(math.log10(x_lo), math.log10(x_hi), 200))
    colors = np.where(pts["bound"] == "compute", "tab:red", "tab:blue")
    ax.scatter(
        pts["intensity"], pts["attainable_flops"], c=list(colors), s=28, zorder=3, edgecolors="k"
    )
    for (xi, yi), names in _label_groups(pts, max_labels):
        more = f" +{len(names) - 4}" if len(names) > 4 else ""
        ax.annotate(
            ", ".join(names[:4]) + more,
            (xi, yi),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(max(y_lo, 1.0), y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attainable performance (FLOP/s; OP/s for integer dtypes)")
    ax.set_title(
        title
        or f"Roofline of {device.display_name}; roofs: {origin}; points: ops "
        "(red compute-bound, blue memory-bound)",
        fontsize=9,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()

    return save_figure(fig, path, FORMATS)
