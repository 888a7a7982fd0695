"""Beyond one device (memwall.parallel): a training step of GPT-2 XL split over 8 to 512
accelerators, its time divided into compute, memory, communication and the rest: the
interconnect wall the paper warns of, predicted (realistic: published kernel efficiencies,
links at NCCL bus bandwidth)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from memwall.parallel.wall import interconnect_wall
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import style
from memwall.report.fmt import pct

MODEL = "gpt2-xl"
COUNTS = (8, 32, 128, 512)
PARTS = ("compute", "memory", "communication", "other")


def _figure(rows: list[dict[str, Any]]) -> go.Figure:
    labels = [f"{r['device']} x{r['devices']}" for r in rows]
    fig = go.Figure()
    for part in PARTS:
        fig.add_trace(go.Bar(x=labels, y=[r[part] for r in rows], name=part))
    fig.update_layout(barmode="stack")
    return style(
        fig,
        f"{MODEL} training step over N devices (predicted)",
        "device x N",
        "seconds per step (global batch 512 x 1024 tokens)",
    )


class ParallelSection:
    name = "parallel"
    title = "Beyond one device"
    order = 75
    weight = 2.0

    def build(self, ctx: ReportContext) -> SectionResult:
        devs = [n for n, d in ctx.devices.items() if not d.measured and d.interconnect_bandwidth]
        res = SectionResult()
        if not devs:
            res.text("No chosen accelerator lists an interconnect; nothing to split.")
            return res
        ctx.progress(f"{MODEL} over {', '.join(devs)}")
        rows = interconnect_wall(MODEL, tuple(devs), COUNTS).to_dict(orient="records")
        res.figure(
            _figure(rows),
            "Per training step: compute- and memory-bound kernel time, "
            "exposed communication, pipeline bubbles and the rest, for the best "
            "standard layout at each N (memwall.parallel, predicted by its realistic model).",
            "parallel",
        )
        worst = max(rows, key=lambda r: r["communication_fraction"]) if rows else None
        if worst:
            res.text(
                f"At fixed global batch, splitting {MODEL} over more devices shrinks the "
                "compute per device while the collectives do not shrink as fast: on "
                f"{worst['device']} x{worst['devices']} communication is "
                f"{pct(worst['communication_fraction'])} of the step (MFU "
                f"{pct(worst['mfu'])})."
            )
        res.table(
            f"{MODEL} training step (predicted)",
            [
                Column("device", "device"),
                Column("devices", "N", "int"),
                Column("layout", "layout"),
                Column("step_time", "step", "seconds"),
                Column("communication_fraction", "communication", "pct"),
                Column("mfu", "MFU", "pct"),
            ],
            rows,
            folded=True,
        )
        res.data = {"model": MODEL, "rows": rows, "headline": self._headline(ctx, res)}
        return res

    def _headline(self, ctx: ReportContext, res: SectionResult) -> dict[str, Any] | None:
        """`memwall parallel llama-3-70b --mode train --devices 64 --device h100-sxm --search`:
        the realistic MFU of the best layout and what limits it."""
        if HEADLINE["device"] not in ctx.devices:
            return None
        ctx.progress("the headline layout")
        from memwall.api import parallel

        p = parallel(**HEADLINE).payload
        lo, hi = p["mfu_range"] if p.get("mfu_range") else (None, None)
        out = {
            **HEADLINE,
            "layout": p["layout"]["label"],
            "step_time": p["step_time"],
            "mfu": p["mfu"],
            "mfu_low": lo,
            "mfu_high": hi,
            "limits": p["limits"],
            "published": p.get("published") or [],
        }
        rng = f" (range {pct(lo)}-{pct(hi)})" if lo is not None else ""
        res.text(
            f"Training {HEADLINE['model']} on {HEADLINE['devices']} {HEADLINE['device']} GPUs "
            f"(bf16, the layout memwall's search picks: {out['layout']}) is predicted at "
            f"{p['step_time']:.3g} s per step and {pct(p['mfu'])} MFU{rng}; it is limited by "
            f"{p['limits']}."
        )
        if out["published"]:  # a real run of the same architecture, device and precision
            b = out["published"][0]
            res.text(
                f"Measured by others: {b['id']} ({b['gpus']} GPUs, {b['layout']}, seq "
                f"{b['seq_len']}) reached {pct(b['published'])} {b['metric'].upper()} "
                f"({b['source']}); memwall predicts {pct(b['predicted'])} for that run "
                f"({100 * b['error']:+.0f}%, both over the source's own FLOP count"
                + ("; that run is one of the rows the whole-step kernel rate was fitted on, so "
                   "this comparison is in sample" if b.get("fitted") else "; out of sample")
                + ")."
            )  # fmt: skip
        return out


HEADLINE = {
    "model": "llama-3-70b",
    "mode": "train",
    "devices": 64,
    "device": "h100-sxm",
    "search": True,
}


SECTION = ParallelSection()
