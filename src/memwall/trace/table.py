"""The trace engine's operation table: same columns as `memwall.count.op_table`.

Rows are kernels grouped by module path with layer indices collapsed (`model.layers.*.mlp`),
so `count` is how many layers (or experts) a row stands for, and values are totals over them.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import pandas as pd
import torch

from memwall.count import COLUMNS
from memwall.errors import MemwallError
from memwall.spec import (
    ModelSpec,
    Precision,
    Workload,
    check_workload_fits,
    preset_config,
    preset_names,
    spec_from_config,
)
from memwall.trace.encdec import trace_encdec
from memwall.trace.fusion import Kernel, kernels
from memwall.trace.mode import Tracer, TraceResult
from memwall.trace.models import (
    build_model,
    dtype_name,
    max_context,
    resolve_device,
    resolve_dtype,
    trace_workload,
)
from memwall.trace.moe import ROUTING_NOTE
from memwall.trace.repeat import LayerPlan, sample_layers
from memwall.trace.sources import ModuleRun
from memwall.trace.versions import check_transformers, transformers_failures

_FLOAT_DTYPES = ("fp32", "bf16", "fp16", "fp64")
EXTRA_COLUMNS = ["module", "aten_ops", "bytes_eager", "kernels"]
_SUMMED = (
    "flops",
    "matmul_flops",
    "bytes_weight",
    "bytes_act",
    "bytes_kv",
    "bytes_written",
    "bytes_eager",
)
_LAYER_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)")


def collapse(path: str) -> str:
    """`model.layers.11.mlp` -> `model.layers.*.mlp`."""
    return _LAYER_INDEX.sub("*", path)


def _ops_text(c: Counter) -> str:
    return " ".join(op if n == 1 else f"{op}x{n}" for op, n in c.items())


def _row_name(k: Kernel, result: TraceResult) -> str:
    path = collapse(k.module) if k.module else result.root
    if k.kind in ("matmul", "conv", "embedding", "moe") and k.module in result.leaf_modules:
        return path
    return f"{path} [{k.label}]"


def rows_from_traces(
    traces: list[tuple[TraceResult, float]], fused: bool = True, layers: LayerPlan | None = None
) -> pd.DataFrame:
    """Rows (one per module path and kernel label) summed over weighted traces.

    `layers`: the traces ran a few layers of a deeper model (`memwall.trace.repeat`); each
    kernel counts as many times as the layers its own layer stands for (`count` too)."""
    acc: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for result, step_weight in traces:
        paths: dict[str, set[str]] = defaultdict(set)
        for k in kernels(result, fused=fused, layers=layers):
            weight = step_weight * k.weight
            name = _row_name(k, result)
            if name not in acc:
                order.append(name)
                acc[name] = {c: 0.0 for c in _SUMMED} | {
                    "name": name,
                    "kind": k.kind,
                    "module": collapse(k.module),
                    "dtype": k.dtype,
                    "aten": Counter(k.aten),
                    "kernels": 0.0,
                }
            row = acc[name]
            paths[name].add(k.module)
            row["flops"] += weight * k.flops
            row["matmul_flops"] += weight * k.matmul_flops
            row["bytes_weight"] += weight * k.bytes_weight
            row["bytes_act"] += weight * k.bytes_act
            row["bytes_kv"] += weight * k.bytes_kv
            row["bytes_written"] += weight * k.bytes_written
            row["bytes_eager"] += weight * k.bytes_eager
            row["kernels"] += weight
        for name, ps in paths.items():
            n = sum(layers.weight_of(p) for p in ps) if layers else len(ps)
            acc[name]["count"] = max(acc[name].get("count", 0), n)
    rows = []
    for name in order:
        r = acc[name]
        read = r["bytes_weight"] + r["bytes_act"] + r["bytes_kv"]
        total = read + r["bytes_written"]
        rows.append(
            {
                **{c: r[c] for c in _SUMMED},
                "name": name,
                "kind": r["kind"],
                "layer": "all" if "*" in r["module"] else "-",
                "count": int(r["count"]),
                "bytes_read": read,
                "bytes": total,
                "intensity": r["flops"] / total if total else 0.0,
                "dtype": r["dtype"],
                "module": r["module"],
                "aten_ops": _ops_text(r["aten"]),
                "kernels": r["kernels"],
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA_COLUMNS])


def _config_for(spec: ModelSpec, config: dict | None) -> dict:
    if config is not None:
        return config
    if spec.name in preset_names():
        return preset_config(spec.name)
    raise MemwallError(
        f"the trace engine needs the config of {spec.name!r}: it is not a preset, so pass its "
        "config dict (trace_config) or a path to its config.json"
    )


def trace_table(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision | None = None,
    device: str = "auto",
    fused: bool = True,
    config: dict | None = None,
    cross_check: bool = True,
    sample: bool = True,
) -> pd.DataFrame:
    """Run the model for `workload` under the counting mode and tabulate its kernels.

    `precision`: fp32 (default), bf16 or fp16. `device`: cpu runs real random weights; meta
    runs shapes only (no weight memory, for models of any size); auto picks meta above ~2 GB
    of weights or ~1e12 FLOPs of work. `fused`: count bytes per fused kernel (what the closed
    form assumes) or per eager op (`bytes_eager` is always given too). `config`: the raw HF
    config dict when the spec is not a bundled preset. `cross_check`: run torch's
    FlopCounterMode on the same calls and store its total in `df.attrs["flop_counter_flops"]`
    (None when layers were sampled). `sample`: on meta, trace one layer per distinct layer
    context and weight it by the layers it stands for (`memwall.trace.repeat`; exact, and
    `df.attrs["traced_layers"]` says which); False traces every layer.
    """
    check_workload_fits(spec, workload)
    max_context(spec, workload)
    cfg = _config_for(spec, config)
    dtype = resolve_dtype(precision)
    dev = resolve_device(spec, dtype, device, workload)
    check_transformers()
    with transformers_failures(spec.name):
        model = build_model(cfg, dtype, dev)
        sampled = sample and dev == "meta" and not spec.is_encoder_decoder
        plan = sample_layers(model) if sampled else None
        run = trace_encdec if spec.is_encoder_decoder else trace_workload
        check = cross_check and plan is None  # torch's counter sees only the layers traced
        steps = run(model, spec, workload, dtype, dev, cross_check=check)
    df = rows_from_traces([(s.result, s.weight) for s in steps], fused=fused, layers=plan)
    n_steps = workload.gen_len if workload.phase == "generate" else 1
    df["steps"] = n_steps
    coverage: Counter[str] = Counter()
    for s in steps:
        coverage.update(s.result.coverage)
    fc = [s.result.flop_counter_flops for s in steps]
    df.attrs.update(
        engine="trace",
        model=spec.name,
        convention="full",
        precision=dtype_name(dtype),
        device=dev,
        fused=fused,
        fused_attention=True,
        coverage=dict(coverage),
        traced_steps=[s.context for s in steps],
        traced_layers=(
            {"path": plan.path, "layers": list(plan.kept), "weights": list(plan.weights)}
            if plan
            else None
        ),
        aten_calls=sum(len(s.result.records) + s.result.view_calls for s in steps),
        flop_counter_flops=(
            sum(w * f for w, f in zip([s.weight for s in steps], fc, strict=True))
            if all(f is not None for f in fc)
            else None
        ),
        note="; ".join(
            part
            for part, used in (
                ("causal attention counted as the full square (as dense kernels compute it)", 1),
                (
                    "generate: first and last decode steps traced, summed by the trapezoid rule "
                    "(exact: each step's cost is affine in its context)",
                    len(steps) > 1,
                ),
                (ROUTING_NOTE, spec.is_moe and dev == "meta"),
                (plan.note() if plan else "", plan is not None),
            )
            if used
        ),
    )
    return df


def trace_config(
    config: dict,
    workload: Workload,
    precision: Precision | None = None,
    device: str = "auto",
    fused: bool = True,
    name: str = "custom",
) -> pd.DataFrame:
    """`trace_table` for a raw HF config dict (a config.json that is not a preset)."""
    spec = spec_from_config(config, name=name)
    return trace_table(spec, workload, precision, device, fused, config=config)


def trace_run(run: ModuleRun, fused: bool = True, cross_check: bool = True) -> pd.DataFrame:
    """The operation table of one forward call of any module (`memwall.trace.sources`).

    The module runs under no_grad on whatever device it was built on (meta for torchvision
    models: shapes only). `df.attrs` says what was traced; `coverage` lists every aten op that
    ran without a FLOP formula (its bytes are counted, its FLOPs are not: never a silent zero).
    """
    with torch.no_grad():
        tracer = Tracer(run.module, cross_check=cross_check)
        tracer.mark_inputs((run.args, run.kwargs))
        with tracer:
            out = run.forward()
        tracer.mark_outputs(out)
    res = tracer.result()
    df = rows_from_traces([(res, 1.0)], fused=fused)
    df["steps"] = 1
    device = next((p.device.type for p in run.module.parameters()), "cpu")
    df.attrs.update(
        engine="trace",
        model=run.name,
        convention="full",
        precision=next(iter(sorted({r.dtype for r in res.records} & set(_FLOAT_DTYPES))), "-"),
        device=device,
        fused=fused,
        coverage=dict(res.coverage),
        inputs=run.inputs,
        params=run.n_params,
        aten_calls=len(res.records) + res.view_calls,
        flop_counter_flops=res.flop_counter_flops,
        peak_activation_bytes=res.peak_activation_bytes(),
        note="one forward call (inference, no_grad)",
    )
    return df
