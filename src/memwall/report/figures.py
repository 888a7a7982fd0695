"""Plotly figures shared by several sections: the interactive roofline and common styling.

Every axis names its unit; every trace says whether it is measured, predicted or a spec sheet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from memwall.report.fmt import si

PALETTE = ("#2456a6", "#d1495b", "#00798c", "#edae49", "#66a182", "#8d6a9f", "#4f5d75")


def style(
    fig: go.Figure, title: str, x: str, y: str, logx: bool = False, logy: bool = False
) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 15}},
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        hovermode="closest",
        autosize=True,
    )
    fig.update_xaxes(title_text=x, **({"type": "log"} if logx else {}))  # else: auto (categories)
    fig.update_yaxes(title_text=y, **({"type": "log"} if logy else {}))
    return fig


def _point_rows(model: str, pred: Any) -> list[dict[str, Any]]:
    df = pred.ops
    rows = []
    for r in df.itertuples(index=False):
        if r.flops <= 0 or r.bytes <= 0:
            continue
        rows.append(
            {
                "model": model,
                "op": str(r.name),
                "dtype": str(r.dtype),
                "flops": float(r.flops),
                "bytes": float(r.bytes),
                "intensity": float(r.flops / r.bytes),
                "time": float(r.time),
                "bound": str(r.bound),
                "attainable_flops": float(r.attainable_flops),
            }
        )
    return rows


def roofline_figure(device: Any, points: list[tuple[str, Any, str, Any]]) -> tuple[go.Figure, list]:
    """Roofs of `device` and one marker per operation; hover shows the operation's numbers."""
    fig = go.Figure()
    data: list[dict[str, Any]] = []
    for i, (model, wl, prec, pred) in enumerate(points):
        rows = _point_rows(model, pred)
        data += [
            {**r, "workload": f"{wl.phase} b={wl.batch} L={wl.seq_len}", "precision": prec}
            for r in rows
        ]
        fig.add_trace(
            go.Scatter(
                x=[r["intensity"] for r in rows],
                y=[r["attainable_flops"] for r in rows],
                mode="markers",
                name=f"{model} ({wl.phase}, predicted)",
                marker={"size": 9, "color": PALETTE[i % len(PALETTE)], "opacity": 0.85},
                customdata=[
                    [
                        r["op"],
                        si(r["flops"], "FLOP"),
                        si(r["bytes"], "B"),
                        f"{r['intensity']:.3g}",
                        si(r["time"], "s"),
                        r["bound"],
                    ]
                    for r in rows
                ],
                hovertemplate=(
                    f"<b>{model}</b> %{{customdata[0]}}<br>FLOPs: %{{customdata[1]}}"
                    "<br>bytes: %{customdata[2]}<br>intensity: %{customdata[3]} FLOP/B"
                    "<br>predicted time: %{customdata[4]}<br>bound: %{customdata[5]}"
                    "<extra></extra>"
                ),
            )
        )
    xs = [d["intensity"] for d in data] or [1.0]
    lo, hi = min(xs) / 4, max(max(xs) * 4, 1e3)
    grid = np.logspace(np.log10(lo), np.log10(hi), 200)
    bw = device.mem_bandwidth
    for d, peak in device.peaks.items():
        if d not in ("fp32", "bf16", "fp16", "int8", "fp8"):
            continue
        fig.add_trace(
            go.Scatter(
                x=grid,
                y=np.minimum(peak, bw * grid),
                mode="lines",
                name=f"roof {d} ({si(peak, 'FLOP/s')}, {device.roof_origin})",
                line={"width": 1.5, "dash": "solid" if d == "bf16" else "dot"},
                hoverinfo="skip",
            )
        )
    style(
        fig,
        f"Roofline: {device.display_name}",
        "arithmetic intensity (FLOP/byte)",
        "attainable FLOP/s (predicted)",
        logx=True,
        logy=True,
    )
    return fig, data
