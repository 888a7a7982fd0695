"""The case study: the paper's Figure 3 (BERT-Base, BERT-Large, GPT-2) measured on this machine,
with the calibrated prediction of every run and its error."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from memwall.report import calm, noise
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE
from memwall.report.fmt import ratio
from memwall.report.lib import casestudy

QUICK = {"lengths": (128, 256), "precisions": ("int8",), "repeats": 1, "budget_s": 60.0}
DEFAULT = {
    "lengths": (128, 256, 512, 1024, 2048, 4096),
    "precisions": ("int8", "fp32"),
    "repeats": 3,
    "budget_s": 180.0,  # the whole default report stays under 10 minutes
}


def plan(ctx: ReportContext) -> dict[str, Any]:
    p = dict(QUICK if ctx.options.quick else DEFAULT)
    if ctx.options.casestudy_lengths:
        p["lengths"] = tuple(ctx.options.casestudy_lengths)
    return p


def _noisy_points(fig: go.Figure, p: str, rows: list[dict[str, Any]], first: bool) -> None:
    """Panel (d)'s noisy measurements again, ringed, with the reasons on hover."""
    bad = [r for r in rows if r.get(f"noise_{p}") and r.get(f"normalized_{p}")]
    if not bad and not first:
        return
    fig.add_trace(
        go.Scatter(
            x=[r["length"] for r in bad],
            y=[r[f"normalized_{p}"] for r in bad],
            mode="markers",
            name=f"{noise.MARK} noisy (left out of the median)",
            legendgroup="noisy",
            showlegend=first,
            marker={"symbol": "circle-open", "size": 17, "color": "#9a3b00", "line": {"width": 2}},
            customdata=["; ".join(r[f"noise_{p}"]) for r in bad],
            hovertemplate="L=%{x}: %{y:.3g}<br>noisy: %{customdata}<extra></extra>",
        ),
        2,
        2,
    )


def _panels(case: Any, marked: list[dict[str, Any]]) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "(a) FLOPs (counted)",
            "(b) MOPs, bytes (counted)",
            "(c) intensity, FLOP/B (counted)",
            f"(d) latency ÷ BERT-Base at 128, {case.precisions[0]}",
        ),
    )
    p = case.precisions[0]
    for i, model in enumerate(dict.fromkeys(r["model"] for r in marked)):
        rows = [r for r in marked if r["model"] == model]
        xs = [r["length"] for r in rows]
        color = PALETTE[i % len(PALETTE)]
        for k, (key, pos) in enumerate(
            (("flops", (1, 1)), ("mops", (1, 2)), ("intensity", (2, 1)))
        ):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[r[key] for r in rows],
                    name=model,
                    legendgroup=model,
                    showlegend=k == 0,
                    line={"color": color},
                    mode="lines+markers",
                ),
                *pos,
            )
        ref = case.row("bert-base", 128)
        ref_lat = ref.get(f"latency_{p}") if ref else None
        meas = [(r["length"], r[f"normalized_{p}"]) for r in rows if r.get(f"normalized_{p}")]
        fig.add_trace(
            go.Scatter(
                x=[a for a, _ in meas],
                y=[b for _, b in meas],
                mode="markers",
                name=f"{model} measured",
                legendgroup=model,
                showlegend=False,
                marker={"color": color, "size": 9},
            ),
            2,
            2,
        )
        if ref_lat:
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[r[f"predicted_{p}"] / ref_lat for r in rows],
                    mode="lines",
                    line={"dash": "dash", "color": color},
                    name=f"{model} predicted",
                    legendgroup=model,
                    showlegend=False,
                ),
                2,
                2,
            )
        _noisy_points(fig, p, rows, first=i == 0)
    fig.update_xaxes(type="log", title_text="sequence length (tokens)")
    fig.update_yaxes(type="log")
    fig.update_layout(
        template="plotly_white",
        height=640,
        margin={"t": 60, "l": 50, "r": 10},
        legend={"orientation": "h", "y": -0.12},
    )
    return fig


def _table_columns(precisions: tuple[str, ...]) -> list[Column]:
    cols = [
        Column("model", "model"),
        Column("length", "L", "int"),
        Column("flops", "FLOPs", "flops"),
        Column("mops", "MOPs", "si", "B"),
        Column("intensity", "FLOP/B", "num"),
    ]
    for p in precisions:
        cols += [
            Column(f"latency_{p}", f"{p} measured", "seconds"),
            Column(f"predicted_{p}", f"{p} predicted", "seconds"),
            Column(f"error_{p}", f"{p} error", "pct"),
            Column(f"mark_{p}", f"{p} noise", "mark"),
        ]
    return cols


class CaseStudySection:
    name = "casestudy"
    title = "The case study (Figure 3)"
    order = 40
    weight = 40.0

    def build(self, ctx: ReportContext) -> SectionResult:
        p = plan(ctx)
        if not ctx.options.measure:
            res = SectionResult(data={"measured": False, "plan": p})
            res.text(
                "Not measured: this report was asked to time nothing (--no-measure). "
                "Run `memwall report` or `memwall casestudy` to measure Figure 3 here."
            )
            return res
        try:
            case = casestudy(
                quick=ctx.options.quick,
                models=ctx.options.casestudy_models,
                lengths=p["lengths"],
                precisions=p["precisions"],
                budget_s=p["budget_s"],
                repeats=p["repeats"],
                device="local" if "local" in ctx.devices else None,
                configs=ctx.options.configs or None,
                on_progress=lambda d, a, t: ctx.progress(d),
            )
        finally:
            calm.finish(ctx)  # the measuring is over: how busy the machine was meanwhile
        ctx.shared["casestudy"] = case
        return self._result(ctx, case, p)

    def _result(self, ctx: ReportContext, case: Any, p: dict[str, Any]) -> SectionResult:
        d = case.to_dict()
        cal = case.calibration or {}
        cal_noise = (list(cal.get("noise") or ()) or True) if cal.get("noisy") else ()
        marked = noise.mark_rows(case.rows, case.precisions, cal_noise)
        errors = noise.error_summary(marked, case.precisions)
        data = {**d, "rows": marked, "prediction_error": errors, "plan": p}
        res = SectionResult(data=data, complete=not case.interrupted)
        if case.interrupted:
            ctx.shared["interrupted"] = True
        ratios = "; ".join(
            f"{ratio(v)} at {k}"
            for k, v in d["gpt2_over_bert_base_at_128"].items()
            if v is not None
        )
        if cal.get("noisy"):  # said where the errors are shown, not only in the verdict
            res.warn(
                "The calibration these predictions are priced from was measured while the "
                f"machine was busy (flagged noisy), so every prediction error here is marked "
                f"{noise.MARK} and is not a clean measure of memwall's accuracy; re-run on a "
                "quiet machine."
            )
        n = (case.env or {}).get("threads", "?")
        threads = f"{n} thread{'' if n == 1 else 's'}"
        res.text(
            "BERT encodes a whole sequence at once (matrix-matrix work); GPT-2 generates one token "
            "at a time and re-reads every weight for each (matrix-vector work). Counted with the "
            "paper's convention (8-bit, no fusion) they do similar FLOPs but GPT-2 moves far more "
            f"bytes. Measured here ({threads}, chosen as `memwall casestudy` chooses them), "
            f"GPT-2 generating 128 tokens takes {ratios or '–'} the time of BERT-Base encoding "
            f"128 tokens. {noise.sentence(errors)}"
        )
        res.figure(
            _panels(case, marked),
            "Figure 3 on this machine, batch 1. (a)-(c): counted, paper "
            "convention (8-bit, closed form). (d): end-to-end latency normalised to "
            "BERT-Base at length 128 (same precision): markers measured (median), dashed "
            "lines the calibrated prediction; ringed: noisy measurements. BERT: encoder "
            f"forward over L tokens; GPT-2: L tokens generated from no prompt. {noise.LEGEND}.",
            "casestudy",
        )
        res.table(
            "Every case-study run: counted (paper convention), measured latency (median), "
            "calibrated prediction and error |predicted − measured| / measured. "
            f"{noise.LEGEND}.",
            _table_columns(case.precisions),
            marked,
            folded=True,
        )
        res.notes += [
            n.replace("run with --full", "run `memwall casestudy --full`") for n in case.notes
        ]
        return res


SECTION = CaseStudySection()
