"""The case study's four-panel figure (the paper's Figure 3 on this machine), PNG or SVG.

Panels: FLOPs, MOPs and arithmetic intensity (counted, paper convention, closed form) and the
measured latency normalised to BERT-Base at 128 (solid: the paper's 8-bit setting, dashed:
fp32; hollow markers on dotted lines: the calibrated prediction). Written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from memwall.plots.save import check_plot_path, save_figure

FORMATS = ("png", "svg")
_STYLE = {"int8": "-", "fp32": "--", "bf16": "-."}
_LABEL = {"int8": "8-bit (int8 dynamic)", "fp32": "fp32", "bf16": "bf16"}


def plot_casestudy(case: Any, path: str | Path) -> Path:
    """Draw `case` (a `memwall.studies.casestudy.CaseStudy`) to `path` (.png or .svg)."""
    out = check_plot_path(path, FORMATS)
    models = list(dict.fromkeys(r["model"] for r in case.rows))
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    panels = [
        ("flops", "FLOPs (counted)", "FLOP"),
        ("mops", "MOPs (counted)", "byte"),
        ("intensity", "Arithmetic intensity (counted)", "FLOP/byte"),
    ]
    for ax, (key, title, unit) in zip(axes.flat[:3], panels, strict=True):
        for m in models:
            rs = [r for r in case.rows if r["model"] == m]
            ax.plot([r["length"] for r in rs], [r[key] for r in rs], "o-", color=colors[m], label=m)
        ax.set_title(f"{title} [{unit}]")
        ax.set_yscale("log")
    ax = axes.flat[3]
    drawn = False
    for p in case.precisions:
        for m in models:
            rs = [r for r in case.rows if r["model"] == m and r.get(f"normalized_{p}") is not None]
            if not rs:
                continue
            drawn = True
            ax.plot(
                [r["length"] for r in rs],
                [r[f"normalized_{p}"] for r in rs],
                "o" + _STYLE.get(p, "-"),
                color=colors[m],
                label=f"{m}, {_LABEL.get(p, p)}",
            )
            ref = next(
                (r for r in case.rows if r["model"] == "bert-base" and r["length"] == 128), None
            )
            base = ref.get(f"latency_{p}") if ref else None
            if base:
                ax.plot(
                    [r["length"] for r in rs],
                    [r[f"predicted_{p}"] / base for r in rs],
                    marker="o",
                    markerfacecolor="none",
                    linestyle=":",
                    color=colors[m],
                    alpha=0.6,
                )
    ax.set_title("Latency normalised to BERT-Base at 128 (measured) [ratio]")
    ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes)
    for a in axes.flat:
        a.set_xscale("log", base=2)
        a.set_xlabel("sequence length (tokens)")
        a.grid(True, which="both", alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    lengths = sorted({r["length"] for r in case.rows})
    if lengths:
        for a in axes.flat:
            a.set_xlim(lengths[0] / 1.3, lengths[-1] * 1.3)
    cpu = case.env.get("cpu_model", "this machine")
    n = case.env.get("threads", "?")
    fig.suptitle(
        "AI and Memory Wall, Figure 3, on this machine\n"
        "counted: paper convention (8-bit, closed form), batch 1; latency: measured on "
        f"{cpu}, {n} thread{'s' if n != 1 else ''}, random weights "
        "(hollow dotted: calibrated prediction)",
        fontsize=9,
    )
    return save_figure(fig, out, FORMATS, dpi=120)
