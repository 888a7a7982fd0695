"""What if: decode of gpt2 and llama-3-8b on this machine and the chosen devices, predicted by
the roofline, against batch size, weight and KV-cache precision, grouped-query attention, and a
device with twice the bandwidth or twice the FLOP/s."""

from __future__ import annotations

import dataclasses
from typing import Any

import plotly.graph_objects as go

from memwall.errors import MemwallError
from memwall.hardware import SCALE_KEYS, derive, get_device
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.lib import decode_ridge_batch
from memwall.report.workloads import PRECISION, model_spec, try_totals
from memwall.spec import Workload, parse_precision

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
            t = try_totals(spec, Workload("decode", b, L), PRECISION, dev)
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
            t = try_totals(spec, wl, parse_precision(prec), dev)
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
            t = try_totals(variant, wl, PRECISION, dev)
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
            base = try_totals(spec, wl, PRECISION, dev)
            bw = try_totals(spec, wl, PRECISION, scaled(dev, bandwidth=2.0))
            fl = try_totals(spec, wl, PRECISION, scaled(dev, flops=2.0))
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


def _batch_figure(model: str, rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for i, dname in enumerate(dict.fromkeys(r["device"] for r in rows)):
        rs = [r for r in rows if r["device"] == dname]
        fig.add_trace(
            go.Scatter(
                x=[r["batch"] for r in rs],
                y=[r["tokens_per_s"] for r in rs],
                mode="lines+markers",
                name=dname,
                line={"color": PALETTE[i % len(PALETTE)]},
                customdata=[[f"{r['time'] * 1e3:.3g} ms", r["bound"]] for r in rs],
                hovertemplate=f"{dname}<br>batch %{{x}}: %{{y:.3g}} tokens/s<br>step "
                "%{customdata[0]}, %{customdata[1]}-bound<extra></extra>",
            )
        )
    return style(
        fig,
        f"{model} decode: tokens/s vs batch ({PRECISION}, predicted)",
        "batch (sequences)",
        "tokens/s (predicted)",
        logx=True,
        logy=True,
    )


def _bar_figure(model: str, rows: list[dict[str, Any]], key: str, title: str) -> go.Figure:
    fig = go.Figure()
    for dname in dict.fromkeys(r["device"] for r in rows):
        rs = [r for r in rows if r["device"] == dname]
        fig.add_trace(go.Bar(x=[r[key] for r in rs], y=[r["tokens_per_s"] for r in rs], name=dname))
    return style(fig, f"{model}: {title}", key, "tokens/s (predicted, log)", logy=True)


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
        f"{model} decode turns compute-bound on {', '.join(parts) or '–'}. At batch 1, twice "
        f"the bandwidth vs twice the FLOP/s speeds a step up by: {bw or '–'}."
    )


class WhatIfSection:
    name = "whatif"
    title = "What if"
    order = 70
    weight = 4.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        t_cols = [
            Column("device", "device"),
            Column("time", "time / step", "seconds"),
            Column("tokens_per_s", "tokens/s", "si"),
        ]
        for model in whatif_models(ctx):
            ctx.progress(f"what if: {model}")
            batch, ridge = batch_rows(ctx, model), ridge_rows(ctx, model)
            prec, gqa, devs = (
                precision_rows(ctx, model),
                gqa_rows(ctx, model),
                device_rows(ctx, model),
            )
            res.text(_summary(model, ridge, devs), heading=model)
            res.figure(
                _batch_figure(model, batch),
                f"{model}: one decode step at a "
                f"{batch[0]['context'] if batch else CONTEXT}-token context, {PRECISION}, "
                "predicted by the roofline (spec-sheet roofs; 'local' measured). Hover: "
                "step time and bound.",
                f"whatif-batch-{model}",
            )
            res.table(
                f"{model}: smallest batch at which decode is compute-bound",
                [
                    Column("device", "device"),
                    Column("context", "context", "int"),
                    Column("compute_bound_from", "compute-bound from"),
                ],
                ridge,
            )
            res.figure(
                _bar_figure(model, prec, "precision", "weight and KV-cache precision"),
                f"Weight bits (W) and KV-cache bits (KV), activations 16-bit; batch "
                f"{LONG_BATCH}, long context; predicted.",
                f"whatif-precision-{model}",
            )
            res.table(
                f"{model}: precision (batch {LONG_BATCH}, long context, predicted)",
                [
                    Column("precision", "precision"),
                    *t_cols,
                    Column("bytes", "bytes / step", "si", "B"),
                ],
                prec,
            )
            res.figure(
                _bar_figure(model, gqa, "attention", "KV heads (grouped-query attention)"),
                f"The same model with more or fewer KV heads; batch {LONG_BATCH}, long "
                f"context, {PRECISION}; predicted.",
                f"whatif-gqa-{model}",
            )
            res.table(
                f"{model}: attention variants (KV heads)",
                [Column("attention", "attention"), *t_cols],
                gqa,
            )
            res.table(
                f"{model}: a device with 2x the bandwidth or 2x the FLOP/s (predicted)",
                [
                    Column("device", "device"),
                    Column("batch", "batch", "int"),
                    Column("time", "time / step", "seconds"),
                    Column("speedup_2x_bandwidth", "2x bandwidth", "ratio"),
                    Column("speedup_2x_flops", "2x FLOP/s", "ratio"),
                ],
                devs,
            )
            res.data[model] = {
                "batch": batch,
                "ridge": ridge,
                "precision": prec,
                "gqa": gqa,
                "devices": devs,
            }
        return res


SECTION = WhatIfSection()
