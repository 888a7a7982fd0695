"""The verdict first: the paper's thesis on this machine and the chosen accelerators in one
figure and three sentences (what is memory-bound, by how much, what helps most), then one
sentence per model; the numbers behind them folded in a table.

Every time here is the realistic prediction `memwall analyze MODEL --device D` gives by default
(`report.workloads.realistic`), with the spec-sheet roofline beside it as the bound it is."""

from __future__ import annotations

import math
from collections import Counter
from statistics import median
from typing import Any

import plotly.graph_objects as go

from memwall.errors import MemwallError
from memwall.report import calm
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.fmt import num, pct, ratio, si
from memwall.report.sections.whatif import scaled
from memwall.report.workloads import describe, headline, model_spec, try_realistic

REMEDIES = (
    "int4 weights",
    "int8 weights and KV cache",
    "8x the batch",
    "2x memory bandwidth",
    "2x FLOP/s",
)
PER_TOKEN = "8x the batch"  # the one remedy that buys throughput, not latency


def _remedy_times(spec: Any, wl: Any, prec: str, dev: Any) -> dict[str, float]:
    """Realistic time per token (or per sequence for encoders) under each remedy."""
    out = {}
    cands = {
        "int4 weights": (wl, "4/16/16", dev),
        "int8 weights and KV cache": (wl, "8/16/8", dev),
        PER_TOKEN: (wl.with_(batch=wl.batch * 8), prec, dev),
        "2x memory bandwidth": (wl, prec, scaled(dev, bandwidth=2.0)),
        "2x FLOP/s": (wl, prec, scaled(dev, flops=2.0)),
    }
    for name, (w, p, d) in cands.items():
        t = try_realistic(spec, w, p, d)
        if t is not None:
            out[name] = t["time"] / w.batch * wl.batch
    return out


def judge(ctx: ReportContext, model: str, dname: str, dev: Any) -> dict[str, Any] | None:
    """One model on one device: the realistic prediction, how memory-bound, what helps most."""
    spec = model_spec(ctx, model)
    wl, prec = headline(ctx, model)
    t = try_realistic(spec, wl, prec, dev)
    if t is None:
        return None
    try:
        ridge = dev.ridge(prec)
    except MemwallError:
        ridge = None
    bound = "memory" if t["t_memory"] >= t["t_compute"] else "compute"
    lo, hi = sorted((t["t_memory"], t["t_compute"]))
    remedies = _remedy_times(spec, wl, prec, dev)
    best = min(remedies, key=remedies.get) if remedies else None
    return {
        "model": model,
        "device": dname,
        "device_name": (dev.metadata or {}).get("cpu_model") or dev.display_name,
        "roofs": dev.roof_origin,
        "workload": describe(spec, wl),
        "phase": wl.phase,
        "batch": wl.batch,
        "seq_len": wl.seq_len,
        "decoder": spec.is_decoder,
        "precision": prec,
        **t,
        "over_bound": t["time"] / t["bound_time"] if t["bound_time"] else None,
        "ridge": ridge,
        "bound": bound,
        "by": hi / lo if lo > 0 else None,
        "remedies": remedies,
        "best": best,
        "best_speedup": t["time"] / remedies[best] if best else None,
    }


def _where(v: dict[str, Any]) -> str:
    return "this machine" if v["device"] == "local" else v["device"]


def lead_sentences(rows: list[dict[str, Any]]) -> list[str]:
    """The answer in three sentences: what is memory-bound, by how much, what helps most."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    n_dev = len({r["device"] for r in rows})
    mem = [r for r in rows if r["bound"] == "memory"]
    always = [m for m in models if all(r["bound"] == "memory" for r in rows if r["model"] == m)]
    never = [m for m in models if all(r["bound"] == "compute" for r in rows if r["model"] == m)]
    parts = []
    if always:
        parts.append(f"{_join(always)} on every device")
    mixed = [m for m in models if m not in always and m not in never]
    for m in mixed:
        on = [_where(r) for r in rows if r["model"] == m and r["bound"] == "memory"]
        parts.append(f"{m} on {_join(on)}")
    first = (
        f"Memory-bound in their headline workload: {'; '.join(parts) or 'none'} "
        f"({len(mem)} of {len(rows)} model/device pairs over {n_dev} devices)"
    )
    first += f"; compute-bound everywhere: {_join(never)}." if never else "."
    out = [first]
    if mem:
        w = max(mem, key=lambda r: r["by"] or 0)
        ridge = f" against a ridge of {num(w['ridge'])} FLOP/B" if w["ridge"] else ""
        over = (
            f", {ratio(w['over_bound'])} the spec-sheet bound of {si(w['bound_time'], 's')}"
            if w["over_bound"]
            else ""
        )
        out.append(
            f"Farthest from its compute roof: {w['model']} on {_where(w)} does "
            f"{w['intensity']:.3g} FLOP/B{ridge} ({ratio(w['by'])} memory-bound) and is "
            f"predicted to take {si(w['time'], 's')}{over}; {pct(w['share_memory'])} of that "
            f"time waits on memory and {pct(w['share_overhead'])} on kernel launches and "
            "per-operation overhead."
        )
    best = Counter(r["best"] for r in rows if r["best"])
    if best:
        (top, k), *rest = best.most_common()
        gains = [r["best_speedup"] for r in rows if r["best"] == top]
        per = "token of throughput" if top == PER_TOKEN else "token"
        s = (
            f"What helps most: {top} for {k} of {len(rows)} pairs (median "
            f"{ratio(median(gains))} faster per {per})"
        )
        if rest:
            s += "; " + ", ".join(f"{name} for {c}" for name, c in rest)
        out.append(s + ".")
    return out


def _join(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def model_sentence(model: str, rows: list[dict[str, Any]]) -> str:
    """One sentence per model over its devices: bound where, time range, best remedy."""
    r0 = rows[0]
    mem = [r for r in rows if r["bound"] == "memory"]
    fast = min(rows, key=lambda r: r["time"])
    slow = max(rows, key=lambda r: r["time"])
    kind = "memory" if len(mem) * 2 >= len(rows) else "compute"
    n_kind = len(mem) if kind == "memory" else len(rows) - len(mem)
    bys = [r["by"] for r in rows if r["by"] and r["bound"] == kind]  # how far, that way
    s = (
        f"{model} ({r0['workload']}, {r0['precision']}) does {r0['intensity']:.3g} FLOP/B and "
        f"is {kind}-bound on {n_kind} of {len(rows)} devices"
    )
    if bys:
        s += f" (by {ratio(min(bys))} to {ratio(max(bys))})"
    s += f"; predicted {si(fast['time'], 's')} on {_where(fast)}"
    if slow is not fast:
        s += f" to {si(slow['time'], 's')} on {_where(slow)}"
    best = Counter(r["best"] for r in rows if r["best"]).most_common(1)
    if best:
        gains = [r["best_speedup"] for r in rows if r["best"] == best[0][0]]
        s += f"; {best[0][0]} helps most ({ratio(min(gains))}-{ratio(max(gains))})"
    return s + "."


def heatmap(rows: list[dict[str, Any]]) -> go.Figure:
    """Models x devices, coloured by how far the roofs are from balance (log scale), with the
    realistic time written in each cell."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    devices = list(dict.fromkeys(r["device"] for r in rows))
    cell = {(r["model"], r["device"]): r for r in rows}
    z, text, hover = [], [], []
    for m in models:
        zr, tr, hr = [], [], []
        for d in devices:
            r = cell.get((m, d))
            if r is None or not r["by"]:
                zr.append(None), tr.append(""), hr.append(f"{m} on {d}: no prediction")
                continue
            sign = 1 if r["bound"] == "memory" else -1
            zr.append(max(-3.0, min(3.0, sign * math.log10(r["by"]))))
            tr.append(f"{si(r['time'], 's')}<br>{ratio(r['by'])} {r['bound']}")
            hr.append(
                f"{m} on {d}<br>predicted {si(r['time'], 's')} ({r['predictor']})"
                + (
                    f", range {si(r['time_low'], 's')}-{si(r['time_high'], 's')}"
                    if r.get("time_low")
                    else ""
                )
                + f"<br>spec-sheet bound {si(r['bound_time'], 's')}"
                + f"<br>{r['bound']}-bound by {ratio(r['by'])}; time: memory "
                + f"{pct(r['share_memory'])}, compute {pct(r['share_compute'])}, launches/"
                + f"overhead {pct(r['share_overhead'])}<br>helps most: {r['best']}"
            )
        z.append(zr), text.append(tr), hover.append(hr)
    ticks = [-2, -1, 0, 1, 2]
    labels = ["100x compute", "10x compute", "balanced", "10x memory", "100x memory"]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=devices,
            y=models,
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            zmin=-3,
            zmax=3,
            zmid=0,
            colorscale="RdBu_r",
            colorbar={
                "tickvals": ticks,
                "ticktext": labels,
                "title": {"text": "bound by", "side": "right"},
            },
            xgap=2,
            ygap=2,
        )
    )
    fig.update_layout(
        template="plotly_white",
        height=60 + 52 * len(models),
        margin={"l": 10, "r": 10, "t": 10, "b": 30},
        yaxis={"autorange": "reversed"},
    )
    return fig


class VerdictSection:
    name = "verdict"
    title = "The verdict"
    order = 10
    weight = 2.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        warnings = [w for w in (calm.finish(ctx).get("warning"), noisy_warning(ctx)) if w]
        for w in warnings:
            res.warn(w)
        rows = []
        for model in ctx.options.models:
            for dname, dev in ctx.devices.items():
                v = judge(ctx, model, dname, dev)
                if v is None:
                    res.notes.append(f"{model} on {dname}: no {headline(ctx, model)[1]} peak")
                    continue
                rows.append(v)
        if rows:
            for s in lead_sentences(rows):
                res.lead(s)
            res.figure(
                heatmap(rows),
                "Each model's headline workload (encoders: a 512-token forward pass; decoders: "
                "one decode step at a 512-token context; batch 1, bf16) on each device: colour "
                "is how far it is from the ridge (memory time / compute time at the roofs, log "
                "scale), the cell the predicted time (realistic: measured roofs for this "
                "machine, spec-sheet roofs x published efficiencies with launch gaps for "
                "accelerators, as `memwall analyze --device` gives by default).",
                "verdict",
                alt=" ".join(lead_sentences(rows)[:2]),
            )
            by_model: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_model.setdefault(r["model"], []).append(r)
            for model, rs in by_model.items():
                res.text(model_sentence(model, rs))
        res.table(
            "The numbers behind the verdict: realistic prediction (the default of `memwall "
            "analyze --device`), its range, and the spec-sheet roofline as the bound it is",
            COLUMNS,
            rows,
            folded=True,
        )
        res.data = {"verdicts": rows, "warnings": warnings, "machine": ctx.machine.get("calm")}
        return res


def noisy_warning(ctx: ReportContext) -> str:
    """What the verdict says when case-study rows or its calibration were noisy."""
    d = ctx.data("casestudy") or {}
    pe = d.get("prediction_error") or {}
    k, n = pe.get("noisy_excluded", 0), (pe.get("all_rows") or {}).get("n", 0)
    if not k:
        return ""
    cal = (
        " (its calibration was flagged noisy)" if (d.get("calibration") or {}).get("noisy") else ""
    )
    where = (
        "its median and worst prediction error are over the clean ones only"
        if k < n
        else "no clean prediction error can be given (the all-rows median is shown, labelled)"
    )
    return f"{k} of {n} case-study measurements are noisy{cal} and marked ⚠ there; {where}."


COLUMNS = [
    Column("model", "model"),
    Column("device", "device"),
    Column("time", "predicted", "seconds"),
    Column("time_low", "low", "seconds"),
    Column("time_high", "high", "seconds"),
    Column("bound_time", "spec-sheet bound", "seconds"),
    Column("intensity", "FLOP/B", "num"),
    Column("ridge", "ridge FLOP/B", "num"),
    Column("bound", "bound"),
    Column("by", "by", "ratio"),
    Column("share_overhead", "launch/overhead", "pct"),
    Column("best", "helps most"),
    Column("best_speedup", "speed-up", "ratio"),
]


SECTION = VerdictSection()
