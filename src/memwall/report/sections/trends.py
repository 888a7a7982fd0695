"""Trends: the paper's Figures 1 and 2 redrawn from the points decoded from its figures, the
paper's printed growth rates beside our fits (paper data and today's), and the widening gap."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import ratio
from memwall.trends import load_dataset, summarize

FIG1 = ("peak_flops", "dram_bw", "interconnect_bw")
FIG2 = ("transformer_params", "training_compute", "accelerator_memory")


def _figure(ds: Any, fits: dict[str, dict], series: tuple[str, ...], title: str) -> go.Figure:
    fig = go.Figure()
    pts = ds.points
    for i, s in enumerate(series):
        p = pts[pts["series"] == s]
        if p.empty:
            continue
        f = fits.get(s)
        label = f["display"] if f else s
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=p["year"],
                y=p["value"],
                mode="markers",
                name=f"{label} ({p['unit'].iloc[0]})",
                marker={"color": color, "size": 8},
                text=p["label"],
                hovertemplate="%{text}<br>%{x:.1f}: %{y:.3g}<extra></extra>",
            )
        )
        if f:
            xs = np.linspace(p["year"].min(), p["year"].max(), 20)
            ys = 10 ** (f["intercept_log10"] + f["slope_log10_per_year"] * xs)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"color": color, "dash": "dash"},
                    name=f"fit {ratio(f['growth_per_2yr'])}/2 yrs",
                    hoverinfo="skip",
                )
            )
    return style(fig, title, "year", "value (log scale; unit in legend)", logy=True)


def _rows(paper: dict, current: dict) -> list[dict[str, Any]]:
    now = {f["series"]: f for f in current["fits"]}
    rows = []
    for f in paper["fits"]:
        pr = f.get("printed") or {}
        c = now.get(f["series"])
        rows.append(
            {
                "series": f["display"],
                "key": f["series"],
                "n": f["n"],
                "printed": pr.get("per_2yr"),
                "fit_paper": f["growth_per_2yr"],
                "ci_low": f["growth_per_2yr_ci95"][0],
                "ci_high": f["growth_per_2yr_ci95"][1],
                "r2": f["r2"],
                "fit_current": c["growth_per_2yr"] if c else None,
                "n_current": c["n"] if c else None,
                "span_current": f"{c['first_date']}–{c['last_date']}" if c else "",
                "reproduced": bool(pr.get("fit_rounds_to_printed_per_2yr")),
            }
        )
    return rows


class TrendsSection:
    name = "trends"
    title = "Trends (Figures 1 and 2)"
    order = 60
    weight = 3.0

    def build(self, ctx: ReportContext) -> SectionResult:
        ctx.progress("fitting growth rates")
        paper_ds, cur_ds = load_dataset("paper"), load_dataset("current")
        paper, current = summarize(paper_ds), summarize(cur_ds)
        res = SectionResult(data={"paper": paper, "current": current})
        rows = _rows(paper, current)
        gap = paper["gap"]["peak_flops_vs_dram_bw"]
        gap_now = current["gap"].get("peak_flops_vs_dram_bw", {})
        res.text(
            f"On the paper's own points, peak compute grew {ratio(gap['numerator_per_2yr'])} every "
            f"two years and DRAM bandwidth {ratio(gap['denominator_per_2yr'])}: the gap between "
            f"them widens {ratio(gap['ratio_per_2yr'])} every two years "
            f"({ratio(gap['ratio_per_20yr'])} over 20 years). On today's catalog (flagship "
            f"accelerators since {gap_now.get('numerator_span', ['?'])[0]}) the fits give compute "
            f"{ratio(gap_now.get('numerator_per_2yr'))} and bandwidth "
            f"{ratio(gap_now.get('denominator_per_2yr'))} per two years; see the table for the "
            "confidence of each."
        )
        fits = {f["series"]: f for f in paper["fits"]}
        res.figure(
            _figure(paper_ds, fits, FIG1, "Figure 1 redrawn: hardware scaling"),
            "Paper's Figure 1 points (decoded from the authors' figure; normalised as "
            "printed) with our least-squares fit of log10(value) on the date.",
            "fig1",
            half=True,
        )
        res.figure(
            _figure(paper_ds, fits, FIG2, "Figure 2 redrawn: models vs memory"),
            "Paper's Figure 2 points: Transformer parameters (count), training compute "
            "(PFLOP), accelerator memory (plotted as GB/6, as the paper does); dashed: our "
            "fits.",
            "fig2",
            half=True,
        )
        res.table(
            "Growth per 2 years: printed in the paper, our fit on the paper's points "
            "(95% interval, R²), and the same fit on today's catalog and models",
            [
                Column("series", "series"),
                Column("printed", "paper printed", "ratio"),
                Column("fit_paper", "our fit (paper data)", "ratio"),
                Column("ci_low", "95% low", "ratio"),
                Column("ci_high", "95% high", "ratio"),
                Column("r2", "R²", "num"),
                Column("fit_current", "today's fit", "ratio"),
                Column("n_current", "points today", "int"),
                Column("span_current", "today's span"),
            ],
            rows,
        )
        ridge = current["gap"].get("ridge_point")
        if ridge:
            fig = go.Figure(
                go.Scatter(
                    x=[p["date"] for p in ridge["points"]],
                    y=[p["ridge"] for p in ridge["points"]],
                    mode="markers",
                    text=[p["label"] for p in ridge["points"]],
                    hovertemplate="%{text}<br>ridge %{y:.3g} FLOP/B<extra></extra>",
                    name="flagship accelerators (spec sheet)",
                )
            )
            style(
                fig,
                "Ridge point of flagship accelerators",
                "release date",
                "peak 16-bit FLOP/s / memory bandwidth (FLOP/byte)",
                logy=True,
            )
            res.figure(
                fig,
                "The widening gap, per device: the arithmetic intensity an operation "
                "needs to be compute-bound (spec sheets, dense 16-bit peak).",
                "ridge",
            )
        res.data["table"] = rows
        return res


SECTION = TrendsSection()
