"""The verdict first: for each model on each device, in plain words, whether its headline
workload is memory- or compute-bound, by how much, and what would help most, with the numbers."""

from __future__ import annotations

from typing import Any

from memwall.errors import MemwallError
from memwall.report import calm
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.fmt import num, pct, ratio, si
from memwall.report.sections.whatif import scaled
from memwall.report.workloads import describe, headline, model_spec, try_totals
from memwall.spec import parse_precision

REMEDIES = (
    "int4 weights",
    "int8 weights and KV cache",
    "8x the batch",
    "2x memory bandwidth",
    "2x FLOP/s",
)


def _remedy_times(spec: Any, wl: Any, prec: str, dev: Any) -> dict[str, float]:
    """Time per token (or per sequence for encoders) under each remedy."""
    per = wl.batch
    out = {}
    cands = {
        "int4 weights": (wl, parse_precision("4/16/16"), dev),
        "int8 weights and KV cache": (wl, parse_precision("8/16/8"), dev),
        "8x the batch": (wl.with_(batch=wl.batch * 8), prec, dev),
        "2x memory bandwidth": (wl, prec, scaled(dev, bandwidth=2.0)),
        "2x FLOP/s": (wl, prec, scaled(dev, flops=2.0)),
    }
    for name, (w, p, d) in cands.items():
        t = try_totals(spec, w, p, d)
        if t is not None:
            out[name] = t["time"] / w.batch * per
    return out


def judge(ctx: ReportContext, model: str, dname: str, dev: Any) -> dict[str, Any] | None:
    spec = model_spec(ctx, model)
    wl, prec = headline(ctx, model)
    t = try_totals(spec, wl, prec, dev)
    if t is None:
        return None
    try:
        ridge = dev.ridge(prec)
    except MemwallError:
        ridge = None
    bound = "memory" if t["t_memory"] >= t["t_compute"] else "compute"
    by = (
        (t["t_memory"] / t["t_compute"] if bound == "memory" else t["t_compute"] / t["t_memory"])
        if min(t["t_memory"], t["t_compute"]) > 0
        else None
    )
    remedies = _remedy_times(spec, wl, prec, dev)
    best = min(remedies, key=remedies.get) if remedies else None
    return {
        "model": model,
        "device": dname,
        "device_name": (dev.metadata or {}).get("cpu_model") or dev.display_name,
        "roofs": dev.roof_origin,
        "workload": describe(spec, wl),
        "precision": prec,
        "time": t["time"],
        "flops": t["flops"],
        "bytes": t["bytes"],
        "intensity": t["intensity"],
        "ridge": ridge,
        "bound": bound,
        "by": by,
        "frac_memory_bound": t["frac_memory_bound"],
        "frac_overhead": t["frac_overhead"],
        "remedies": remedies,
        "best": best,
        "best_speedup": t["time"] / remedies[best] if best else None,
    }


def sentence(v: dict[str, Any]) -> str:
    ridge = f"; the device needs {v['ridge']:.3g} FLOP/B to be compute-bound" if v["ridge"] else ""
    where = (
        f"this machine ({v['device_name']}, measured roofs)"
        if v["device"] == "local"
        else f"{v['device_name']} ({v['roofs']} roofs)"
    )
    s = (
        f"On {where}, {v['model']} ({v['workload']}, "
        f"{v['precision']}) is predicted to take {si(v['time'], 's')}: "
        f"{si(v['flops'], 'FLOP')} over {si(v['bytes'], 'B')}, {v['intensity']:.3g} FLOP/B"
        f"{ridge}. It is {v['bound']}-bound"
    )
    s += f" by {ratio(v['by'])}" if v["by"] else ""
    s += f" ({pct(v['frac_memory_bound'])} of the time in memory-bound operations"
    s += f", {pct(v['frac_overhead'])} in per-op overhead)." if v["frac_overhead"] else ")."
    if v["best"]:
        s += (
            f" What helps most: {v['best']} ({ratio(v['best_speedup'])} faster per token"
            f"{' of throughput' if v['best'] == '8x the batch' else ''})."
        )
    return s


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
        rows, paras = [], []
        for model in ctx.options.models:
            for dname, dev in ctx.devices.items():
                v = judge(ctx, model, dname, dev)
                if v is None:
                    res.notes.append(f"{model} on {dname}: no {headline(ctx, model)[1]} peak")
                    continue
                rows.append(v)
                paras.append((model, sentence(v)))
        if rows:
            res.text(summary(rows))
        res.table("The numbers behind the verdict (predicted by the roofline)", COLUMNS, rows)
        seen = set()
        for model, p in paras:
            res.text(p, heading="" if model in seen else model)
            seen.add(model)
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


def summary(rows: list[dict[str, Any]]) -> str:
    """One paragraph over every pair: how many are memory-bound, and how far decode is off."""
    mem = [r for r in rows if r["bound"] == "memory"]
    worst = max(mem, key=lambda r: r["by"] or 0) if mem else None
    s = (
        f"{len(mem)} of {len(rows)} model/device pairs are memory-bound in their headline "
        f"workload (encoders: a 512-token forward pass; decoders: one decode step at a "
        f"512-token context; batch 1, bf16)."
    )
    if worst:
        s += (
            f" The farthest from its compute roof is {worst['model']} on {worst['device']}: "
            f"{worst['intensity']:.3g} FLOP/B against a ridge of {num(worst['ridge'])} FLOP/B, "
            f"{ratio(worst['by'])} memory-bound; what helps most there: {worst['best']}."
        )
    return s


COLUMNS = [
    Column("model", "model"),
    Column("device", "device"),
    Column("time", "time", "seconds"),
    Column("intensity", "FLOP/B", "num"),
    Column("ridge", "ridge FLOP/B", "num"),
    Column("bound", "bound"),
    Column("by", "by", "ratio"),
    Column("best", "helps most"),
    Column("best_speedup", "speed-up", "ratio"),
]


SECTION = VerdictSection()
