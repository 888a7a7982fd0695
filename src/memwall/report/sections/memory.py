"""Memory: the paper's Figure 4 beside memwall's predictions, what it takes to serve and to train
the chosen models on the chosen devices, and the checkpointing trade-off curve."""

from __future__ import annotations

from functools import cache
from typing import Any

import plotly.graph_objects as go

from memwall.errors import MemwallError
from memwall.memory import (
    claim_check,
    inference_memory,
    remat_curve,
    training_memory,
)
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import style
from memwall.report.fmt import nbytes, pct, ratio
from memwall.report.workloads import model_spec
from memwall.spec import Workload, parse_precision
from memwall.studies.figure4 import figure4_table

GiB = 2**30
SERVE_CONTEXT = 4096
SERVE_PRECISIONS = ("bf16", "int4")
TRAIN_SEQ = 2048
REMAT = {"batch": 8, "seq_len": 1024}


@cache
def _figure4_table() -> Any:
    """The paper's Figure 4 with memwall's predictions (traces real CV models: slow, constant)."""
    return figure4_table()


def serving_workload(spec: Any) -> Workload:
    if spec.is_decoder:
        return Workload("decode", 1, min(SERVE_CONTEXT, spec.max_positions - 1))
    return Workload("encode", 1, min(512, spec.max_positions))


def _fits(need: float, ctx: ReportContext) -> dict[str, bool | None]:
    return {n: (need <= d.mem_capacity if d.mem_capacity else None) for n, d in ctx.devices.items()}


def serving_rows(ctx: ReportContext) -> list[dict[str, Any]]:
    rows = []
    for m in ctx.options.models:
        spec = model_spec(ctx, m)
        wl = serving_workload(spec)
        for p in SERVE_PRECISIONS:
            fp = inference_memory(spec, wl, parse_precision(p))
            fits = _fits(fp.total, ctx)
            rows.append(
                {
                    "model": m,
                    "precision": fp.precision,
                    "workload": f"{wl.phase}, batch 1, {wl.seq_len} tokens",
                    "weights": fp.weights,
                    "kv_cache": fp.kv_cache,
                    "activations": fp.activations,
                    "total": fp.total,
                    "fits": ", ".join(k for k, v in fits.items() if v) or "none",
                    "fits_by_device": fits,
                }
            )
    return rows


def training_rows(ctx: ReportContext) -> list[dict[str, Any]]:
    rows = []
    for m in ctx.options.models:
        spec = model_spec(ctx, m)
        seq = min(TRAIN_SEQ, spec.max_positions)
        fp = training_memory(spec, 1, seq, parse_precision("bf16"), "adam")
        fits = _fits(fp.peak, ctx)
        rows.append(
            {
                "model": m,
                "seq_len": seq,
                "params": fp.n_params,
                "model_states": fp.model_states,
                "activations": fp.activations,
                "peak": fp.peak,
                "peak_over_weights": fp.peak / fp.weights,
                "fits": ", ".join(k for k, v in fits.items() if v) or "none",
                "fits_by_device": fits,
            }
        )
    return rows


def _figure4(df: Any) -> go.Figure:
    labels = [f"{r.model} ({r.year})" for r in df.itertuples()]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=df["paper_total_GB"], name="paper's total (GB, printed)"))
    fig.add_trace(
        go.Bar(
            x=labels, y=df["memwall_paper_total_GB"], name="memwall's prediction (GB, same parts)"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=df["accelerator_memory_GB"],
            mode="lines+markers",
            name="accelerator memory that year (GB, spec sheet)",
        )
    )
    style(fig, "", "", "GB (log scale)", logy=True)
    return fig.update_layout(  # the caption names it; the legend above, clear of the labels
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        margin={"t": 70, "b": 90},
    )


def _remat_figure(curve: Any, model: str) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=100 * curve["extra_compute"],
            y=curve["activation_memory"] / GiB,
            mode="markers+lines",
            text=curve["strategy"],
            hovertemplate="%{text}<br>+%{x:.1f}% compute<br>"
            "%{y:.3g} GiB activations<extra></extra>",
            name=f"{model} (predicted)",
        )
    )
    return style(
        fig,
        f"Checkpointing trade-off: {model}, batch {REMAT['batch']}, "
        f"{REMAT['seq_len']} tokens, bf16, Adam",
        "extra compute per step (%)",
        "activation memory (GiB, predicted)",
    )


class MemorySection:
    name = "memory"
    title = "Memory"
    order = 50
    weight = 3.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        ctx.progress("Figure 4 and footprints")
        f4 = self._figure4(res)
        self._remat(ctx, res)  # the two figures side by side, then the tables
        serve, train = serving_rows(ctx), training_rows(ctx)
        devs = ", ".join(ctx.devices)
        res.table(
            f"Serving footprint (predicted): weights, KV cache, peak activations; devices "
            f"it fits on (of {devs}; capacity from spec sheets or this machine)",
            [
                Column("model", "model"),
                Column("precision", "precision"),
                Column("workload", "workload"),
                Column("weights", "weights", "bytes"),
                Column("kv_cache", "KV cache", "bytes"),
                Column("activations", "activations", "bytes"),
                Column("total", "total", "bytes"),
                Column("fits", "fits on"),
            ],
            serve,
            folded=True,
        )
        res.table(
            "Training footprint (predicted): one sequence per step, bf16 with fp32 master "
            "weights, Adam, no checkpointing, one device",
            [
                Column("model", "model"),
                Column("seq_len", "tokens", "int"),
                Column("params", "parameters", "si"),
                Column("model_states", "weights+grads+optimizer", "bytes"),
                Column("activations", "activations", "bytes"),
                Column("peak", "peak", "bytes"),
                Column("peak_over_weights", "peak / bf16 weights", "ratio"),
                Column("fits", "fits on"),
            ],
            train,
            folded=True,
        )
        res.data.update(
            {
                "figure4": f4.to_dict(orient="records") if f4 is not None else None,
                "serving": serve,
                "training": train,
            }
        )
        return res

    def _figure4(self, res: SectionResult) -> Any:
        try:
            f4 = _figure4_table()
        except MemwallError as e:  # the CV rows are traced from torchvision models
            res.notes.append(f"Figure 4 not drawn: {e}")
            return None
        res.figure(
            _figure4(f4),
            "The paper's Figure 4 data (parameters + optimizer + "
            "activations, as printed) beside memwall's prediction for the models it has "
            "presets for, and the memory of the accelerator of that year.",
            "fig4",
            half=True,
        )
        return f4

    def _remat(self, ctx: ReportContext, res: SectionResult) -> None:
        model = next(
            (m for m in ctx.options.models if model_spec(ctx, m).is_decoder), ctx.options.models[0]
        )
        spec = model_spec(ctx, model)
        try:
            curve = remat_curve(spec, REMAT["batch"], min(REMAT["seq_len"], spec.max_positions))
        except MemwallError as e:
            res.notes.append(f"checkpointing curve skipped: {e}")
            return
        claim = claim_check(curve)
        best = claim["best_within_budget"]
        res.figure(
            _remat_figure(curve, model),
            "Each point a checkpointing strategy: activation "
            "memory kept for backward against the extra forward compute it costs.",
            "remat",
            half=True,
        )
        res.text(
            f"For {model}, the best strategy within +20% compute ({best['strategy']}) cuts "
            f"activation memory {ratio(best['reduction'])} for {pct(best['extra_compute'])} more "
            f"compute; the largest cut of any strategy is {ratio(claim['max_reduction'])}. "
            f"Peak memory without checkpointing: {nbytes(float(curve['peak'].iloc[0]))}."
        )
        res.data["remat"] = {
            "model": model,
            **REMAT,
            "curve": curve.to_dict(orient="records"),
            "claim": claim,
        }


SECTION = MemorySection()
