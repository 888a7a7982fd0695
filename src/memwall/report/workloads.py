"""The workloads the report asks about, and how it predicts them.

Headline workload: decoders decode one token per sequence at a 512-token context, encoders
encode 512 tokens; batch 1, bf16, convention `full`. `realistic` is the prediction `memwall
analyze --device` gives by default (`memwall.predict.default`: a measured device on its own
roofline, a catalog or what-if device on spec-sheet roofs x published efficiencies, with launch
gaps), with the spec-sheet roofline beside it as the bound it is. `totals` is the plain
roofline (max(FLOPs / peak, bytes / bandwidth) per operation plus a measured device's per-op
overhead), which the what-if tables use to isolate one change at a time.
"""

from __future__ import annotations

from typing import Any

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.predict.default import default_prediction, shares
from memwall.predict.prompt_attention import attention_work
from memwall.report.base import ReportContext
from memwall.report.lib import predict
from memwall.spec import ModelSpec, Workload, load_model, parse_precision, spec_from_config

CONTEXT = 512
PRECISION = "bf16"


def model_spec(ctx: ReportContext, name: str) -> ModelSpec:
    """A preset (or a path to a config.json), or the test-supplied config under that name."""
    specs = ctx.shared.setdefault("specs", {})
    if name not in specs:
        cfg = ctx.options.configs.get(name)
        specs[name] = spec_from_config(cfg, name=name) if cfg is not None else load_model(name)
    return specs[name]


def headline(ctx: ReportContext, model: str, batch: int = 1) -> tuple[Workload, str]:
    spec = model_spec(ctx, model)
    ctx_len = min(CONTEXT, spec.max_positions - 1) if spec.max_positions else CONTEXT
    if spec.is_decoder:
        return Workload("decode", batch, ctx_len), PRECISION
    return Workload("encode", batch, min(CONTEXT, spec.max_positions or CONTEXT)), PRECISION


def describe(spec: ModelSpec, wl: Workload) -> str:
    if wl.phase == "decode":
        return f"decode 1 token per sequence at a {wl.seq_len}-token context, batch {wl.batch}"
    return f"{wl.phase} {wl.seq_len} tokens, batch {wl.batch}"


def op_prediction(ctx: ReportContext, model: str, wl: Workload, precision: str, device: Any) -> Any:
    """memwall.predict.Prediction of `model` running `wl` on `device`."""
    spec = model_spec(ctx, model)
    return predict(op_table(spec, wl, precision, "full"), device)


def totals(spec: ModelSpec, wl: Workload, precision: Any, device: Any) -> dict[str, float]:
    """Predicted totals (time, flops, bytes, fractions) of one workload on one device."""
    return predict(op_table(spec, wl, precision, "full"), device).totals


def try_totals(spec: ModelSpec, wl: Workload, precision: Any, device: Any) -> dict | None:
    try:
        return totals(spec, wl, precision, device)
    except MemwallError:
        return None


def realistic(spec: ModelSpec, wl: Workload, precision: str, device: Any) -> dict[str, Any]:
    """The default (realistic) prediction of one workload on one device, as `memwall analyze
    MODEL --device D` gives it: time and its range, the split of that time (memory-bound ops,
    compute-bound ops, per-kernel launch or overhead), and the plain roofline's time (the
    spec-sheet bound; for a measured device its roofs without per-op overhead)."""
    prec = parse_precision(precision)
    ops = op_table(spec, wl, prec, "full")
    pred = default_prediction(ops, device, prec, causal=attention_work(spec, wl.phase, wl.seq_len))
    t = pred.totals
    bound = getattr(pred, "roofline", None)
    bound_time = (
        bound.totals["time"]
        if bound is not None
        else predict(ops, device, overhead=False).totals["time"]
    )
    sh = shares(pred)
    return {
        "time": t["time"],
        "time_low": t.get("time_low"),
        "time_high": t.get("time_high"),
        "bound_time": bound_time,
        "t_memory": t["t_memory"],
        "t_compute": t["t_compute"],
        "flops": t["flops"],
        "bytes": t["bytes"],
        "intensity": t["flops"] / t["bytes"] if t["bytes"] else None,
        "share_memory": sh["memory"],
        "share_compute": sh["compute"],
        "share_overhead": sh["overhead"],
        "predictor": "measured roofline" if device.measured else "efficiency model",
    }


def try_realistic(spec: ModelSpec, wl: Workload, precision: str, device: Any) -> dict | None:
    try:
        return realistic(spec, wl, precision, device)
    except MemwallError:
        return None
