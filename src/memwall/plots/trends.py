"""Trend figures: the paper's Figures 1 and 2 redrawn from its own points, and today's data.

Matplotlib is used through `Figure` + the Agg canvas only (no pyplot state, no display).
Every file is written to a temporary name in the target folder and renamed into place, so
an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from memwall.io import check_output_dir
from memwall.plots.save import save_figure
from memwall.trends.data import Dataset, load_current, load_dataset
from memwall.trends.fit import MIN_POINTS, Fit, fit_points, year_bounds
from memwall.trends.gap import project, projection_years, ridge_fit, ridge_table
from memwall.trends.summary import paper_printed

PAPER_SOURCE = (
    "Points: Gholami et al., AI and Memory Wall (IEEE Micro 2024), decoded from the authors' "
    "figures (github.com/amirgholami/ai_and_memory_wall @ e14c1ed). Lines: least squares of "
    "log10(value) on the date, fitted here."
)
CATALOG_SOURCE = (
    "Hardware: memwall devices catalog (spec sheets; dense 16-bit tensor peak = higher of "
    "bf16/fp16). Lines: least squares of log10(value) on the date."
)
_KW = {"dpi": 150, "bbox_inches": "tight"}
MARKERS = {"black": "o", "green": "s", "blue": "^", "red": "o", "orange": "D", "purple": "o"}


# ---------------------------------------------------------------- drawing helpers


def _fit_or_none(pts: pd.DataFrame, ds: Dataset, series: str, since, until) -> Fit | None:
    if len(pts) < MIN_POINTS or pts["year"].nunique() < 2:
        return None
    return fit_points(pts, dataset=ds.name, info=ds.info.get(series), since=since, until=until)


def _rate_label(display: str, fit: Fit | None, *, per20: bool = False) -> str:
    if fit is None:
        return f"{display} (fewer than {MIN_POINTS} points: no fit)"
    if per20:
        g20 = float(f"{fit.growth_per_20yr:.3g}")
        g20s = f"{g20:,.0f}" if g20 >= 1000 else f"{g20:.3g}"
        return f"{display}: {g20s}x / 20 yrs ({fit.growth_per_2yr:.2f}x / 2 yrs, n={fit.n})"
    return f"{display}: {fit.growth_per_2yr:.3g}x / 2 yrs (n={fit.n}, R²={fit.r2:.2f})"


def _draw(
    ax,
    pts: pd.DataFrame,
    fit: Fit | None,
    *,
    color: str,
    label: str,
    scale: float = 1.0,
    annotate: bool = True,
    marker: str | None = None,
) -> None:
    """Points (hollow where flagged as estimates) and the fitted line over their span."""
    m = marker or MARKERS.get(color, "o")
    y = pts["value"].to_numpy() / scale
    est = pts["estimate"].to_numpy(dtype=bool) if "estimate" in pts else np.zeros(len(pts), bool)
    ax.scatter(pts["year"][~est], y[~est], c=color, marker=m, s=28, zorder=3, label=label)
    if est.any():
        ax.scatter(
            pts["year"][est], y[est], facecolors="none", edgecolors=color, marker=m, s=28, zorder=3
        )
    if fit is not None:
        xs = np.linspace(fit.first_year, fit.last_year, 50)
        ax.plot(xs, [fit.predict(x) / scale for x in xs], color=color, lw=1.6, ls="--", zorder=2)
    if annotate:
        placed: list[tuple[float, float]] = []
        ly = np.log10(y)
        dx = max(float(np.ptp(pts["year"])), 1.0) * 0.03
        dy = max(float(np.ptp(ly)), 1.0) * 0.04
        for x, v, lv, text in zip(pts["year"], y, ly, pts["label"], strict=True):
            # skip a label that would sit on top of one already drawn (dense clusters)
            if text and not any(abs(x - px) < dx and abs(lv - py) < dy for px, py in placed):
                placed.append((x, lv))
                ax.annotate(
                    text,
                    (x, v),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=6.5,
                    color=color,
                    alpha=0.9,
                )


def _figure(width: float, height: float) -> Figure:
    """A constrained-layout figure keeping the bottom strip free for the source line."""
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    return fig


def _footnote(fig: Figure, text: str) -> None:
    fig.text(0.01, 0.012, text, fontsize=6.5, wrap=True, va="bottom")


def _finish(ax, ylabel: str, title: str, legend: str = "below") -> None:
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Year")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if legend == "below":
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    else:
        ax.legend(fontsize=7, loc=legend, framealpha=0.85)


# ---------------------------------------------------------------- the paper's figures


def paper_figure_1(since=None, until=None) -> Figure:
    """Fig. 1: peak hardware FLOPS vs DRAM and interconnect bandwidth, normalised."""
    ds = load_dataset("paper")
    lo, hi = year_bounds(since, until)
    printed = paper_printed()
    fig = _figure(9, 6.5)
    ax = fig.add_subplot()
    for s in ("peak_flops", "dram_bw", "interconnect_bw"):
        info = ds.info[s]
        pts = ds.select(s, lo, hi)
        fit = _fit_or_none(pts, ds, s, lo, hi)
        label = _rate_label(info.display, fit, per20=True)
        if s in printed:
            label += f"  [paper: {printed[s].text}]"
        _draw(ax, pts, fit, color=info.color, label=label)
    _finish(
        ax,
        "Scaling, normalised (R10000 / GDDR3 / PCIe 1.0a = 1)",
        "AI and Memory Wall, Fig. 1 redrawn: hardware FLOPS vs memory and interconnect bandwidth",
    )
    _footnote(fig, PAPER_SOURCE)
    return fig


def paper_figure_2(since=None, until=None) -> Figure:
    """Fig. 2: (a) parameters vs accelerator memory / 6, (b) training compute."""
    ds = load_dataset("paper")
    lo, hi = year_bounds(since, until)
    printed = paper_printed()
    fig = _figure(13, 6.5)
    ax_a, ax_b = fig.subplots(1, 2)

    def one(ax, s, scale, annotate=True):
        info = ds.info[s]
        pts = ds.select(s, lo, hi)
        if pts.empty:
            return
        fit = _fit_or_none(pts, ds, s, lo, hi) if info.default else None
        label = _rate_label(info.display, fit) if info.default else f"{info.display} (not fitted)"
        if s in printed and info.default:
            label += f"  [paper: {printed[s].text}]"
        _draw(ax, pts, fit, color=info.color, label=label, scale=scale, annotate=annotate)

    one(ax_a, "transformer_params", 1e9)
    one(ax_a, "accelerator_memory", 6e9)
    one(ax_a, "cv_params", 1e9)
    one(ax_a, "recsys_params", 1e9)
    _finish(
        ax_a,
        "Parameters (billions); accelerator memory as GB / 6",
        "(a) Transformer size vs AI accelerator memory / 6 bytes per parameter",
    )
    one(ax_b, "training_compute", 1e15)
    one(ax_b, "other_training_compute", 1e15)
    _finish(ax_b, "Training compute (PFLOPs)", "(b) Training compute of SOTA models")
    _footnote(fig, PAPER_SOURCE)
    return fig


def plot_paper_figures(outdir: str | Path, fmt: str = "png", since=None, until=None) -> list[Path]:
    """Write the paper's Figures 1 and 2 into `outdir`; returns the files written."""
    out = check_output_dir(outdir, "--plot")
    return [
        save_figure(paper_figure_1(since, until), out / f"paper_fig1_hardware.{fmt}", **_KW),
        save_figure(paper_figure_2(since, until), out / f"paper_fig2_models.{fmt}", **_KW),
    ]


# ---------------------------------------------------------------- today's data


def _normalised(pts: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Points divided by the earliest one (as the paper plots its hardware)."""
    base = float(pts.sort_values("year")["value"].iloc[0]) if len(pts) else 1.0
    return pts, base


def current_hardware_figure(ds: Dataset | None = None, since=None, until=None) -> Figure:
    ds = ds or load_current()
    lo, hi = year_bounds(since, until)
    paper = {
        s: fit_points(load_dataset("paper").select(s), info=load_dataset("paper").info[s])
        for s in ("peak_flops", "dram_bw", "interconnect_bw")
    }
    fig = _figure(9, 6.5)
    ax = fig.add_subplot()
    for s in ("peak_flops", "dram_bw", "interconnect_bw"):
        if s not in ds.series_names():
            continue
        info = ds.info[s]
        pts, base = _normalised(ds.select(s, lo, hi))
        if pts.empty:
            continue
        fit = _fit_or_none(pts, ds, s, lo, hi)
        label = _rate_label(info.display, fit) + f"  [paper fit: {paper[s].growth_per_2yr:.2f}x]"
        _draw(ax, pts, fit, color=info.color, label=label, scale=base, annotate=False)
    _finish(
        ax,
        "Scaling, normalised to each series' earliest device",
        "Accelerators in the devices catalog: 16-bit peak FLOP/s vs DRAM and interconnect BW",
    )
    _footnote(fig, CATALOG_SOURCE)
    return fig


def current_models_figure(ds: Dataset | None = None, since=None, until=None) -> Figure:
    ds = ds or load_current()
    lo, hi = year_bounds(since, until)
    fig = _figure(13, 6.5)
    ax_a, ax_b = fig.subplots(1, 2)
    for s, scale, ann in (
        ("transformer_params", 1e9, True),
        ("active_params", 1e9, False),
        ("accelerator_memory", 6e9, False),
    ):
        if s not in ds.series_names():
            continue
        pts = ds.select(s, lo, hi)
        if pts.empty:
            continue
        fit = _fit_or_none(pts, ds, s, lo, hi)
        _draw(
            ax_a,
            pts,
            fit,
            color=ds.info[s].color,
            label=_rate_label(ds.info[s].display, fit),
            scale=scale,
            annotate=ann,
        )
    _finish(
        ax_a,
        "Parameters (billions); accelerator memory as GB / 6",
        "(a) Language-model size vs accelerator memory / 6 (hollow: estimate)",
    )
    pts = ds.select("training_compute", lo, hi)
    if not pts.empty:
        fit = _fit_or_none(pts, ds, "training_compute", lo, hi)
        _draw(
            ax_b,
            pts,
            fit,
            color="red",
            label=_rate_label(ds.info["training_compute"].display, fit),
            scale=1e15,
        )
    _finish(ax_b, "Training compute (PFLOPs)", "(b) Training compute (hollow: estimate)")
    _footnote(
        fig,
        "Models: papers and model cards (src/memwall/data/trends/current_models.csv); "
        "hollow markers are estimates (6 x active parameters x tokens, or third-party). "
        + CATALOG_SOURCE,
    )
    return fig


def ridge_figure(catalog: pd.DataFrame | None = None, since=None, until=None) -> Figure:
    lo, hi = year_bounds(since, until)
    table = ridge_table(catalog, since=lo, until=hi)
    fig = _figure(9, 6.5)
    ax = fig.add_subplot()
    if table.empty:
        ax.text(0.5, 0.5, "no accelerators with 16-bit peak and bandwidth", ha="center")
        return fig
    # catalog short names keep a crowded chart legible; the table carries full names
    pts = pd.DataFrame({"year": table["year"], "value": table["ridge"], "label": table["name"]})
    fit = ridge_fit(table) if len(table) >= MIN_POINTS else None
    label = _rate_label("Ridge point of flagship accelerators", fit)
    _draw(ax, pts, fit, color="purple", label=label)
    if fit is not None:
        proj = project(fit, projection_years(fit))
        xs = np.linspace(fit.last_year, proj[-1]["year"] + 0.5, 30)
        ax.plot(xs, [fit.predict(x) for x in xs], color="purple", ls=":", lw=1.4)
        bands = [fit.band(x) for x in xs]
        ax.fill_between(
            xs,
            [b[0] for b in bands],
            [b[1] for b in bands],
            color="purple",
            alpha=0.12,
            label="projection (band: slope 95% interval)",
        )
        for p in proj:
            ax.annotate(
                f"{p['year']}: ~{p['value']:.0f} FLOP/B",
                (p["year"] + 0.5, p["value"]),
                xytext=(-4, -14),
                textcoords="offset points",
                fontsize=7,
                color="purple",
                ha="right",
            )
    _finish(
        ax,
        "FLOPs per byte of DRAM traffic to be compute-bound",
        "Ridge point = dense 16-bit peak FLOP/s / memory bandwidth (spec sheets)",
    )
    _footnote(fig, CATALOG_SOURCE)
    return fig


def plot_current_figures(
    outdir: str | Path, fmt: str = "png", since=None, until=None, *, catalog=None
) -> list[Path]:
    """Write today's hardware, model and ridge-point figures into `outdir`."""
    out = check_output_dir(outdir, "--plot")
    ds = load_current(catalog)
    return [
        save_figure(
            current_hardware_figure(ds, since, until), out / f"current_hardware.{fmt}", **_KW
        ),
        save_figure(current_models_figure(ds, since, until), out / f"current_models.{fmt}", **_KW),
        save_figure(ridge_figure(catalog, since, until), out / f"current_ridge_point.{fmt}", **_KW),
    ]


def series_figure(ds: Dataset, series: list[str], since=None, until=None) -> Figure:
    """Any series of any dataset, each normalised to its earliest point, with its fit."""
    lo, hi = year_bounds(since, until)
    colors = ["black", "green", "blue", "red", "orange", "purple", "gray", "brown"]
    fig = _figure(9, 6.5)
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        info = ds.series_info(s)
        pts, base = _normalised(ds.select(s, lo, hi))
        if pts.empty:
            continue
        fit = _fit_or_none(pts, ds, s, lo, hi)
        _draw(
            ax,
            pts,
            fit,
            color=colors[i % len(colors)],
            label=_rate_label(info.display, fit),
            scale=base,
            annotate=len(pts) <= 40,
            marker="o",
        )
    _finish(ax, "Normalised to each series' earliest point", f"Trends: {ds.name}")
    return fig


def plot_dataset(
    dataset: Dataset | str,
    outdir: str | Path,
    series: list[str] | None = None,
    since=None,
    until=None,
    fmt: str = "png",
) -> list[Path]:
    """What `memwall trends --plot DIR` writes for the chosen dataset."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if ds.name == "paper":
        return plot_paper_figures(outdir, fmt, since, until)
    if ds.name == "current":
        return plot_current_figures(outdir, fmt, since, until)
    out = check_output_dir(outdir, "--plot")
    names = series or ds.default_series()
    stem = Path(ds.name).stem or "trends"
    return [save_figure(series_figure(ds, names, since, until), out / f"{stem}.{fmt}", **_KW)]
