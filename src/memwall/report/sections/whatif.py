"""What if: decode of gpt2 and llama-3-8b on this machine and the chosen devices, predicted as
`memwall analyze --device` does by default, against batch size, weight and KV-cache precision,
grouped-query attention, and a device with twice the bandwidth or twice the FLOP/s: one figure
of small multiples with a model menu, the numbers folded below it."""

from __future__ import annotations

import dataclasses
from typing import Any

import plotly.graph_objects as go

from memwall.errors import MemwallError
from memwall.hardware import SCALE_KEYS, derive, get_device
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import si
from memwall.report.lib import decode_ridge_batch
from memwall.report.workloads import PRECISION, model_spec, try_realistic
from memwall.spec import Workload

MODELS = ("gpt2", "llama-3-8b")
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTEXT = 512
LONG_CONTEXT = 4096  # where the KV cache matters
LONG_BATCH = 16
PRECISIONS = {
    "W16 KV16": "16/16/16",
    "W8 KV16": "8/16/16",
    "W4 KV16": "4/16/16",
    "W4 KV8": "4/16/8",
    "W4 KV4": "4/16/4",
}


def whatif_models(ctx: ReportContext) -> list[str]:
    chosen = [m for m in ctx.options.models if m in MODELS]
    if chosen:
        return chosen
    return [m for m in ctx.options.models if model_spec(ctx, m).is_decoder][:2]


def scaled(device: Any, bandwidth: float = 1.0, flops: float = 1.0) -> Any:
    """The same device with its memory bandwidth or peaks scaled (memwall's what-if device).
    A what-if device (`h100-sxm@bw=2`) is scaled from its real device by the product of the
    factors (2x its bandwidth: `h100-sxm@bw=4`): `derive` scales real devices only."""
    scale = {k: v for k, v in (("bw", bandwidth), ("flops", flops)) if v != 1.0}
    if not device.is_derived:
        return derive(device, scale)
    both = {k: device.scale.get(k, 1.0) * scale.get(k, 1.0) for k in SCALE_KEYS}
    base = get_device(device.derived_from)
    both = {k: v for k, v in both.items() if v != 1.0}
    return derive(base, both) if both else base


def _ctx_len(spec: Any, want: int) -> int:
    return min(want, spec.max_positions - 1) if spec.max_positions else want


def batch_rows(ctx: ReportContext, model: str) -> list[dict[str, Any]]:
    spec = model_spec(ctx, model)
    L = _ctx_len(spec, CONTEXT)
    rows = []
    for dname, dev in ctx.devices.items():
        for b in BATCHES:
            t = try_realistic(spec, Workload("decode", b, L), PRECISION, dev)
            if t is None:
                continue
            rows.append(
                {
                    "model": model,
                    "device": dname,
                    "batch": b,
                    "context": L,
                    "time": t["time"],
                    "tokens_per_s": b / t["time"],
                    "bound": "compute" if t["t_compute"] >= t["t_memory"] else "memory",
                }
            )
    return rows


def ridge_rows(ctx: ReportContext, model: str) -> list[dict[str, Any]]:
    spec = model_spec(ctx, model)
    L = _ctx_len(spec, CONTEXT)
    rows = []
    for dname, dev in ctx.devices.items():
        try:
            b = decode_ridge_batch(spec, dev, PRECISION, L, max_batch=4096)
        except MemwallError:
            continue
        rows.append(
            {
                "model": model,
                "device": dname,
                "context": L,
                "ridge_batch": b,
                "compute_bound_from": f"batch {b}" if b else "never (batch ≤ 4096)",
            }
        )
    return rows


def precision_rows(ctx: ReportContext, model: str) -> list[dict[str, Any]]:
    spec = model_spec(ctx, model)
    wl = Workload("decode", LONG_BATCH, _ctx_len(spec, LONG_CONTEXT))
    rows = []
    for dname, dev in ctx.devices.items():
        for label, prec in PRECISIONS.items():
            t = try_realistic(spec, wl, prec, dev)
            if t is not None:
                rows.append(
                    {
                        "model": model,
                        "device": dname,
                        "precision": label,
                        "batch": wl.batch,
                        "context": wl.seq_len,
                        "time": t["time"],
                        "tokens_per_s": wl.batch / t["time"],
                        "bytes": t["bytes"],
                    }
                )
    return rows


def gqa_rows(ctx: ReportContext, model: str) -> list[dict[str, Any]]:
    spec = model_spec(ctx, model)
    wl = Workload("decode", LONG_BATCH, _ctx_len(spec, LONG_CONTEXT))
    groups = sorted({spec.n_heads, spec.n_kv_heads, max(spec.n_heads // 4, 1), 1}, reverse=True)
    rows = []
    for kv in groups:
        if spec.n_heads % kv:
            continue
        variant = dataclasses.replace(spec, n_kv_heads=kv)
        label = "MHA" if kv == spec.n_heads else ("MQA" if kv == 1 else f"GQA, {kv} KV heads")
        for dname, dev in ctx.devices.items():
            t = try_realistic(variant, wl, PRECISION, dev)
            if t is not None:
                rows.append(
                    {
                        "model": model,
                        "device": dname,
                        "attention": label,
                        "kv_heads": kv,
                        "as_built": kv == spec.n_kv_heads,
                        "batch": wl.batch,
                        "context": wl.seq_len,
                        "time": t["time"],
                        "tokens_per_s": wl.batch / t["time"],
                    }
                )
    return rows


def device_rows(ctx: ReportContext, model: str) -> list[dict[str, Any]]:
    spec = model_spec(ctx, model)
    L = _ctx_len(spec, CONTEXT)
    rows = []
    for dname, dev in ctx.devices.items():
        for b in (1, 64):
            wl = Workload("decode", b, L)
            base = try_realistic(spec, wl, PRECISION, dev)
            bw = try_realistic(spec, wl, PRECISION, scaled(dev, bandwidth=2.0))
            fl = try_realistic(spec, wl, PRECISION, scaled(dev, flops=2.0))
            if base and bw and fl:
                rows.append(
                    {
                        "model": model,
                        "device": dname,
                        "batch": b,
                        "context": L,
                        "time": base["time"],
                        "time_2x_bandwidth": bw["time"],
                        "time_2x_flops": fl["time"],
                        "speedup_2x_bandwidth": base["time"] / bw["time"],
                        "speedup_2x_flops": base["time"] / fl["time"],
                    }
                )
    return rows


KINDS = (  # (data key, subplot title, x key) of the three panels
    ("batch", "tokens/s vs batch", "batch"),
    ("precision", f"weight/KV bits (batch {LONG_BATCH}, long context)", "precision"),
    ("gqa", f"KV heads (batch {LONG_BATCH}, long context)", "attention"),
)


def whatif_figure(per_model: dict[str, dict[str, list[dict[str, Any]]]]) -> go.Figure:
    """Small multiples (batch, precision, KV heads) of one model at a time; a dropdown picks the
    model. One trace per device and panel; a device keeps its colour across panels."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=[k[1] for k in KINDS])
    devices = list(
        dict.fromkeys(r["device"] for d in per_model.values() for r in d["batch"] + d["gqa"])
    )
    vis: list[str] = []  # the model of each trace, in order
    for m, (model, data) in enumerate(per_model.items()):
        for col, (key, _, x) in enumerate(KINDS, start=1):
            for i, dname in enumerate(devices):
                rs = [r for r in data[key] if r["device"] == dname]
                if not rs:
                    continue
                kw = {
                    "x": [r[x] for r in rs],
                    "y": [r["tokens_per_s"] for r in rs],
                    "name": dname,
                    "legendgroup": dname,
                    "showlegend": col == 1,
                    "visible": m == 0,
                    "marker": {"color": PALETTE[i % len(PALETTE)]},
                    "customdata": [[si(r["time"], "s")] for r in rs],
                    "hovertemplate": f"{model} on {dname}<br>%{{x}}: %{{y:.3g}} tokens/s"
                    "<br>step %{customdata[0]}<extra></extra>",
                }
                trace = go.Scatter(mode="lines+markers", **kw) if key == "batch" else go.Bar(**kw)
                fig.add_trace(trace, row=1, col=col)
                vis.append(model)
    models = list(per_model)
    if len(models) > 1:
        fig.update_layout(
            updatemenus=[
                {
                    "buttons": [
                        {
                            "label": model,
                            "method": "update",
                            "args": [{"visible": [v == model for v in vis]}],
                        }
                        for model in models
                    ],
                    "x": 0.0,
                    "xanchor": "left",
                    "y": 1.28,
                    "yanchor": "top",
                    "direction": "down",
                }
            ]
        )
    style(fig, "", "", "")
    fig.update_layout(height=380, margin={"l": 60, "r": 10, "t": 80, "b": 60}, legend={"y": -0.25})
    fig.update_xaxes(type="log", row=1, col=1, title_text="batch (sequences)")
    fig.update_yaxes(type="log", title_text="tokens/s (predicted)", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=3)
    return fig


def _summary(model: str, ridge: list[dict], dev_rows: list[dict]) -> str:
    parts = []
    for r in ridge:
        b = r["ridge_batch"]
        parts.append(f"{r['device']} at batch {b}" if b else f"{r['device']} never (≤ 4096)")
    one = [r for r in dev_rows if r["batch"] == 1]
    bw = "; ".join(
        f"{r['device']} {r['speedup_2x_bandwidth']:.2f}x vs {r['speedup_2x_flops']:.2f}x"
        for r in one
    )
    return (
        f"{model} decode turns compute-bound (at the roofs) on {', '.join(parts) or '–'}. At "
        f"batch 1, twice the bandwidth vs twice the FLOP/s speeds a step up by: {bw or '–'}."
    )


T_COLS = [
    Column("model", "model"),
    Column("device", "device"),
    Column("time", "time / step", "seconds"),
    Column("tokens_per_s", "tokens/s", "si"),
]


class WhatIfSection:
    name = "whatif"
    title = "What if"
    order = 87
    weight = 4.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        per_model: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for model in whatif_models(ctx):
            ctx.progress(f"what if: {model}")
            per_model[model] = {
                "batch": batch_rows(ctx, model),
                "ridge": ridge_rows(ctx, model),
                "precision": precision_rows(ctx, model),
                "gqa": gqa_rows(ctx, model),
                "devices": device_rows(ctx, model),
            }
            res.data[model] = per_model[model]
        for model, d in per_model.items():
            res.text(_summary(model, d["ridge"], d["devices"]))
        if per_model:
            names = list(per_model)
            res.figure(
                whatif_figure(per_model),
                f"Decode of {', '.join(names)} (the menu picks the model): tokens/s against the "
                f"batch at a {CONTEXT}-token context; against weight bits (W) and KV-cache "
                "bits (KV), activations 16-bit; against the number of KV heads (MHA, GQA, "
                f"MQA). {PRECISION} unless said; predicted (realistic: the default of "
                "`memwall analyze --device`; 'local' on its measured roofs). Hover: step time.",
                "whatif",
                alt=" ".join(_summary(m, d["ridge"], d["devices"]) for m, d in per_model.items()),
            )
        every = {k: [r for d in per_model.values() for r in d[k]] for k in KIND_KEYS}
        res.table(
            "Smallest batch at which decode is compute-bound at the roofs",
            [
                Column("model", "model"),
                Column("device", "device"),
                Column("context", "context", "int"),
                Column("compute_bound_from", "compute-bound from"),
            ],
            every["ridge"],
            folded=True,
        )
        res.table(
            "Tokens/s against the batch (predicted)",
            [*T_COLS[:2], Column("batch", "batch", "int"), *T_COLS[2:]],
            every["batch"],
            folded=True,
        )
        res.table(
            f"Weight and KV-cache precision (batch {LONG_BATCH}, long context, predicted)",
            [Column("precision", "precision"), *T_COLS, Column("bytes", "bytes / step", "si", "B")],
            every["precision"],
            folded=True,
        )
        res.table(
            "Attention variants (KV heads; predicted)",
            [Column("attention", "attention"), *T_COLS],
            every["gqa"],
            folded=True,
        )
        res.table(
            "A device with 2x the bandwidth or 2x the FLOP/s (predicted)",
            [
                *T_COLS[:2],
                Column("batch", "batch", "int"),
                Column("time", "time / step", "seconds"),
                Column("speedup_2x_bandwidth", "2x bandwidth", "ratio"),
                Column("speedup_2x_flops", "2x FLOP/s", "ratio"),
            ],
            every["devices"],
            folded=True,
        )
        return res


KIND_KEYS = ("batch", "ridge", "precision", "gqa", "devices")


SECTION = WhatIfSection()
