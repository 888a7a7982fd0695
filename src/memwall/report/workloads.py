"""The workloads the report asks about, and the one way it predicts them (count + roofline).

Headline workload: decoders decode one token per sequence at a 512-token context, encoders
encode 512 tokens; batch 1, bf16, convention `full`. Every prediction is the roofline's
(memwall.predict): max(FLOPs / peak, bytes / bandwidth) per operation, plus the device's
measured per-op overhead (zero for spec-sheet devices).
"""

from __future__ import annotations

from typing import Any

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.report.base import ReportContext
from memwall.report.lib import predict
from memwall.spec import ModelSpec, Workload, load_model, spec_from_config

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
