"""The step of a parallel plan, part by part: one stacked bar per layout (the one asked for, or
the fastest of a search), seconds per step as memwall predicts them, the MFU at each bar's end,
and the published runs of the same architecture beside it where there are any. Drawn from the
payload alone (`memwall parallel --format json` holds everything), so a saved answer can be
drawn again."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from memwall.plots.save import check_plot_path, save_figure

TOP = 8  # layouts of a search drawn
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c", "#ccb974", "#64b5cd", "#1b9e77", "#e7298a", "#66a61e")  # fmt: skip


def _bars(d: dict[str, Any]) -> list[dict[str, Any]]:
    """(label, breakdown, step, mfu) of each layout drawn, fastest on top."""
    plans = (d.get("search") or {}).get("ranked") or [
        {"layout": d["layout"], "micro_batch": d["micro_batch"], "step_time": d["step_time"],
         "mfu": d["mfu"], "breakdown": d["breakdown"]}
    ]  # fmt: skip
    return [
        {
            "label": f"{p['layout']['label']} (mb {p['micro_batch']})",
            "parts": {k: v for k, v in p["breakdown"].items() if v > 0},
            "step": p["step_time"],
            "mfu": p["mfu"],
        }
        for p in plans[:TOP]
    ]


def plot_step(d: dict[str, Any], path: str | Path) -> Path:
    """Write the figure of a `memwall parallel` payload to `path` (.png, .svg, .pdf)."""
    check_plot_path(path)
    bars = _bars(d)
    parts = list(dict.fromkeys(k for b in bars for k in b["parts"]))
    color = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(parts)}
    fig = Figure(figsize=(9, 1.6 + 0.45 * len(bars)), layout="constrained")
    ax = fig.add_subplot()
    named: set[str] = set()  # one legend entry per part
    for y, b in enumerate(reversed(bars)):
        left = 0.0
        for k in parts:
            w = b["parts"].get(k, 0.0)
            if w > 0:
                ax.barh([y], [w], left=left, color=color[k], label=None if k in named else k)
                named.add(k)
                left += w
        ax.text(b["step"], y, f"  MFU {100 * b['mfu']:.1f}%", va="center", fontsize=8)
    ax.set_yticks(range(len(bars)), [b["label"] for b in reversed(bars)], fontsize=8)
    ax.set_xlim(0, 1.18 * max(b["step"] for b in bars))
    label = f"seconds per step (predicted: {d.get('compute_model', 'memwall')})"
    ax.set_xlabel(textwrap.fill(label, 105), fontsize=8)
    title = (
        f"{d['model']} {d['mode']} on {d['devices']} x {d['device']}, batch {d['batch']}, seq "
        f"{d['seq_len']}, {d['precision']}"
        + (" (fastest layouts that fit)" if d.get("search") else "")
    )
    pub = d.get("published") or []
    if pub:
        title += "\n" + textwrap.fill(_published(pub[0]), 85)
    ax.set_title(title, fontsize=9)
    fig.legend(fontsize=7, loc="outside lower center", ncol=min(6, len(parts)), frameon=False)
    return save_figure(fig, path)


def _published(p: dict[str, Any]) -> str:
    """One published run beside the prediction: a training run's MFU, or an engine's speed."""
    err = f"({100 * p['error']:+.0f}%{'; a fit row, in sample' if p.get('fitted') else ''})"
    if "published" in p:  # training: a fraction of the dense peak
        return (
            f"published (measured): {p['id']} {p['metric'].upper()} {100 * p['published']:.1f}%;"
            f" memwall {100 * p['predicted']:.1f}% for that run {err}"
        )
    unit = "tok/s" if p["unit"] == "tokens/s" else "s"
    return (
        f"published (measured): #{p['id']} {p['metric']} {p['measured']:.4g} {unit}; memwall "
        f"{p['predicted']:.4g} for that run {err}"
    )
