"""The Pareto figure of a `pareto` result: footprint vs perplexity (and latency when measured)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def _front(xs: list[float], ys: list[float]) -> list[tuple[float, float]]:
    """The 2-D lower-left front of one panel (the red points are the front over all axes)."""
    out: list[tuple[float, float]] = []
    for x, y in sorted(zip(xs, ys, strict=True)):
        if not out or y < out[-1][1]:
            out.append((x, y))
    return out


def pareto_figure(result: dict[str, Any]) -> Figure:
    """Each method a point; the Pareto-optimal ones joined. Units and provenance in the labels."""
    rows = result["rows"]
    y_key = "perplexity" if "perplexity" in rows[0] else None
    panels = [("weights_real", "stored weights (MiB, measured)", 2**20)]
    if result.get("measured"):
        panels.append(("latency_measured", f"{result['phase']} latency (ms/token, measured)", 1e-3))
    fig = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    for i, (x_key, x_label, scale) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ys = [r[y_key] if y_key else r["speedup_predicted"] for r in rows]
        xs = [r[x_key] / scale for r in rows]
        ax.scatter(xs, ys, color=["C3" if r.get("pareto") else "C0" for r in rows])
        for x, y, r in zip(xs, ys, rows, strict=True):
            ax.annotate(r["method"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = _front(xs, ys)
        if len(front) > 1:
            ax.plot(
                *zip(*front, strict=True), color="C3", lw=0.8, alpha=0.6, drawstyle="steps-post"
            )
        ax.set_xlabel(x_label)
        ax.set_ylabel(
            "held-out perplexity per byte (measured)" if y_key else "predicted speed-up (count)"
        )
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{result['model']}: compression trade-offs, batch 1, context {result['context']}, "
        f"{result['threads']} thread(s); red = Pareto-optimal",
        fontsize=9,
    )
    return fig
