"""Checked against published runs: memwall's default prediction beside every published training
and inference measurement in its data files (`data/published_training.csv`,
`data/published_inference.csv`), the error of each, and where it came from. Nothing here is
measured by memwall: the measurements are other people's, the predictions are memwall's."""

from __future__ import annotations

from statistics import median
from typing import Any

import plotly.graph_objects as go

from memwall.parallel.published import predict_row, published_rows
from memwall.parallel.published_inference import compare, load_published
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import pct

TRAINING = "training MFU/HFU"
METRICS = {  # the bench's metric names, as a reader says them
    "decode_tok_s": "decode tokens/s",
    "prefill_tok_s": "prefill tokens/s",
    "throughput_tok_s": "serving throughput",
    "ttft_s": "time to first token",
    "latency_s": "batch latency",
    "matmul_time_s": "GEMM time",
}


def training_rows() -> list[dict[str, Any]]:
    src = {r["id"]: r for r in published_rows()}
    out = []
    for r in src.values():
        d = predict_row(r)
        out.append(
            {
                "id": d["id"],
                "kind": TRAINING,
                "device": d["device"],
                "what": f"{r.get('family', '')} x{r.get('gpus', '')} {d['metric']}",
                "unit": f"{d['metric'].upper()} (fraction of the dense peak)",
                "published": d["published"],
                "predicted": d["predicted"],
                "error": d["error"],
                "fitted": bool(d["fitted"]),
                "excluded": "",
                "source": r.get("source", ""),
            }
        )
    return out


def inference_rows() -> list[dict[str, Any]]:
    sources = {r.id: r.source for r in load_published()}
    out = []
    for r in compare().table.to_dict(orient="records"):
        out.append(
            {
                "id": str(r["id"]),
                "kind": METRICS.get(r["metric"], r["metric"]),
                "device": r["device"],
                "what": f"{r['model']} tp{r['tp']} batch {r['batch']} {r['precision']}",
                "unit": "tokens/s" if str(r["metric"]).endswith("tok_s") else "seconds",
                "published": r["measured"],
                "predicted": r["predicted"],
                "error": r["error"],
                "fitted": r["fitted"] == "yes",
                "excluded": r.get("excluded") or "",
                "source": sources.get(int(r["id"]), ""),
            }
        )
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst |error| over all rows and over the rows no value was chosen from; rows
    excluded (with their reason: published faster than physics allows) are not counted."""
    rows = [r for r in rows if not r["excluded"]]
    out = {}
    for name, rs in (("all", rows), ("out_of_sample", [r for r in rows if not r["fitted"]])):
        errs = [abs(r["error"]) for r in rs if r["error"] is not None]
        out[name] = {
            "n": len(errs),
            "median": median(errs) if errs else None,
            "worst": max(errs) if errs else None,
        }
    return out


def _figure(rows: list[dict[str, Any]]) -> go.Figure:
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fig = go.Figure()
    for fitted in (False, True):
        rs = [
            r
            for r in rows
            if r["fitted"] == fitted and r["error"] is not None and not r["excluded"]
        ]
        fig.add_trace(
            go.Box(
                x=[r["kind"] for r in rs],
                y=[100 * r["error"] for r in rs],
                name="chose a value (in sample)" if fitted else "out of sample",
                boxpoints="all",
                jitter=0.5,
                pointpos=0,
                fillcolor="rgba(0,0,0,0)",
                line={"width": 1},
                marker={"color": PALETTE[3 if fitted else 0], "size": 5},
                text=[f"{r['id']} {r['device']}: {r['what']}" for r in rs],
                hovertemplate="%{text}<br>error %{y:.1f}%<extra></extra>",
            )
        )
    style(fig, "", "", "error (%): predicted / published - 1")
    fig.update_xaxes(categoryorder="array", categoryarray=kinds)
    fig.update_layout(
        height=360,
        boxmode="overlay",
        margin={"t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )
    fig.add_hrect(y0=-10, y1=10, fillcolor="#66a182", opacity=0.12, line_width=0)
    return fig


class PublishedSection:
    name = "published"
    title = "Checked against published runs"
    order = 77
    weight = 2.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        ctx.progress("published training runs")
        train = training_rows()
        ctx.progress("published inference runs")
        infer = inference_rows()
        rows = train + infer
        s_train, s_infer = summary(train), summary(infer)
        n_out = sum(1 for r in infer if r["excluded"])
        res.text(
            f"memwall's default prediction against {len(train)} published training runs "
            f"(median |error| {pct(s_train['all']['median'])}, worst "
            f"{pct(s_train['all']['worst'])}) and {len(infer)} published inference "
            f"measurements (median {pct(s_infer['all']['median'])}, worst "
            f"{pct(s_infer['all']['worst'])} over {s_infer['all']['n']}; over the "
            f"{s_infer['out_of_sample']['n']} that chose "
            f"no value: {pct(s_infer['out_of_sample']['median'])}; {n_out} rows published faster "
            "than reading the weights once allows are shown but not counted). Each point is one "
            "row; hover for what it is; the shaded band is ±10%."
        )
        res.figure(
            _figure(rows),
            "Error of memwall's default (realistic) prediction against published measurements: "
            "training as model or hardware FLOPs utilisation, inference as tokens/s, seconds "
            "or GEMM time. Published numbers from their sources (folded table below); "
            "predictions by memwall; orange points chose a value in memwall's efficiency data.",
            "published",
            alt=f"Median error {pct(s_train['all']['median'])} on training runs and "
            f"{pct(s_infer['all']['median'])} on inference measurements.",
        )
        res.table(
            "Every published row: published, predicted, error and source",
            [
                Column("kind", "kind"),
                Column("id", "id"),
                Column("device", "device"),
                Column("what", "what"),
                Column("published", "published", "num"),
                Column("predicted", "predicted", "num"),
                Column("unit", "unit"),
                Column("error", "error", "pct"),
                Column("excluded", "not counted because"),
                Column("source", "source"),
            ],
            rows,
            folded=True,
        )
        res.data = {"rows": rows, "training": s_train, "inference": s_infer}
        return res


SECTION = PublishedSection()
