"""`memwall analyze` and `memwall memory` for MODELs that are Python code: `torchvision:NAME`
and `module:function` (see `memwall.sources`). Parse, call the trace engine, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memwall.cli._common import (
    OP_COLUMNS,
    binary,
    emit,
    op_columns,
    op_csv,
    refuse_options,
    rich_table,
    si,
    typed_options,
)
from memwall.errors import MemwallError
from memwall.io import check_output_path
from memwall.sources import ModuleSource
from memwall.spec import Precision, Workload, parse_precision

# a module's forward call: no layer groups, no KV cache
MODULE_OP_COLUMNS = [c for c in OP_COLUMNS if c not in ("layer", "bytes_kv")]
UNITS = {
    "flops": "FLOP (1 multiply-accumulate = 2 FLOPs)",
    "bytes": "byte",
    "intensity": "FLOP/byte",
}
CODE_NOTE = (
    "module:function is code you chose to run: memwall imports it and calls it (never from a "
    "config file)"
)


def _check_module_flags(phase, convention: str) -> None:
    if phase is not None and getattr(phase, "value", phase) != "encode":
        raise MemwallError(
            "a torchvision or module:function MODEL runs one forward call: leave out --phase "
            "(or use --phase encode)"
        )
    if convention != "full":
        raise MemwallError(
            "--convention paper is the closed form's accounting of Transformers; a module is "
            "counted as it executes (--convention full)"
        )


def _check_analyze_flags(source: ModuleSource) -> None:
    """`analyze` flags a traced module has no use for, refused when typed (never ignored)."""
    if typed_options().get("--engine") == "closed":
        raise MemwallError(
            f"--engine closed needs a config (a preset or config.json); {source.label} is "
            "traced: use --engine trace or leave --engine out"
        )
    refuse_options(["--gen-len"], "a module runs one forward call (no generation)")
    refuse_options(["--mla"], "a traced module runs its attention as its code is written")
    if source.kind == "torchvision":
        refuse_options(["--seq-len"], "a torchvision model takes images (use --image-size)")
    refuse_options(
        ["--group-size", "--quantize-head"],
        "a traced module runs fp32, bf16 or fp16 (integer formats are for presets and configs)",
    )
    refuse_options(
        ["--launch"], "a traced module is priced on the plain roofline of --device (no launches)"
    )


def _run(source: ModuleSource, batch: int, image_size, seq_len, precision: Precision):
    from memwall.trace.models import resolve_dtype
    from memwall.trace.sources import build_run

    Workload("encode", batch, max(seq_len or 1, 1))  # validates batch
    typed = typed_options()
    asked = [a for a in ("batch", "seq_len", "image_size") if "--" + a.replace("_", "-") in typed]
    return build_run(
        source, batch, image_size, seq_len, resolve_dtype(precision), "meta", asked
    )  # fmt: skip


def analyze_module(
    source: ModuleSource,
    phase,
    batch: int,
    seq_len: int | None,
    image_size: int | None,
    precision: str,
    convention: str,
    fused: bool,
    device: str | None,
    plot: Path | None,
    fmt,
) -> None:
    """One traced forward call of the module: per-kernel FLOPs and bytes."""
    from memwall.count import totals
    from memwall.trace.table import trace_run

    _check_module_flags(phase, convention)
    _check_analyze_flags(source)
    if plot is not None and device is None:
        raise MemwallError("--plot needs --device (the roofline is drawn against a device)")
    if plot is not None:
        check_output_path(plot, ("png", "svg"), "--plot file")  # before any work
    prec = parse_precision(precision)
    df = trace_run(_run(source, batch, image_size, seq_len, prec), fused=fused)
    tot = totals(df)
    a = df.attrs
    payload: dict[str, Any] = {
        "model": source.label,
        "convention": "full",
        "engine": "trace",
        "device_traced": a["device"],
        "precision": a["precision"],
        "workload": {"phase": "forward", "batch": batch, "inputs": a["inputs"]},
        "params": a["params"],
        "totals": {k: tot[k] for k in ("flops", "bytes", "intensity", "bytes_weight")}
        | {k: tot[k] for k in ("bytes_act", "bytes_written")},
        "units": UNITS,
        "coverage": a["coverage"],
        "counted": "traced (memwall.trace), not measured",
        "ops": [{k: r[k] for k in MODULE_OP_COLUMNS if k in r} for r in df.to_dict("records")],
    }
    if source.kind == "entry_point":
        payload["note"] = CODE_NOTE
    pred = None
    if device is not None:
        from memwall.hardware import get_device
        from memwall.predict import predict_roofline

        dev = get_device(device)
        pred = predict_roofline(df, dev)
        payload["prediction"] = pred.to_dict()
        if plot is not None:
            from memwall.plots.roofline import plot_roofline

            plot_roofline(pred, dev, plot)
            payload["plot"] = str(plot)

    def table():
        rows = df.to_dict("records") if pred is None else pred.ops.to_dict("records")
        cols = op_columns(kv_cache=False, predicted=pred is not None)
        uncovered = ", ".join(f"{op} x{n}" for op, n in a["coverage"].items()) or "none"
        cap = (
            f"total: {si(tot['flops'])}FLOP, {si(tot['bytes'], 'B')} moved, intensity "
            f"{tot['intensity']:.3g} FLOP/B (traced on {a['device']}, not measured; "
            f"1 MAC = 2 FLOPs); ops without a FLOP formula: {uncovered}"
        )
        title = f"{source.label} forward, {a['inputs']} | precision={a['precision']} engine=trace"
        return [rich_table(title, rows, cols, cap)]

    rows, cols = op_csv(df, pred, MODULE_OP_COLUMNS)
    emit(fmt, payload, rows, table, cols)


def memory_module(
    source: ModuleSource,
    mode: str,
    batch: int,
    seq_len: int | None,
    image_size: int | None,
    precision: str,
    optimizer: str,
    fmt,
) -> None:
    """Inference (traced activation peak) or training (autograd's saved tensors) memory."""
    from memwall.trace.table import trace_run
    from memwall.trace.training import module_inference_memory, module_training_memory

    prec = parse_precision(precision)
    run = _run(source, batch, image_size, seq_len, prec)
    if mode == "train":
        fp = module_training_memory(run, optimizer, prec)
        rows, total, detail = fp.rows(), fp.total, fp.to_dict()
    else:
        df = trace_run(run, cross_check=False)
        detail = module_inference_memory(run, df.attrs["peak_activation_bytes"])
        total = detail["total"]
        rows = [
            {"component": k, "bytes": detail[k], "note": ""}
            for k in ("weights", "buffers", "activations", "total")
        ]
        rows[2]["note"] = "traced peak, freed at last use (no_grad)"
    for r in rows:
        r["share"] = r["bytes"] / total if total else 0.0
    payload: dict[str, Any] = {
        "model": source.label,
        "mode": mode,
        "precision": prec.label,
        "predicted": "traced module on the meta device (memwall.trace), not measured",
        "workload": {"batch": batch, "inputs": run.inputs},
        "params": run.n_params,
        "footprint": detail,
        "breakdown": rows,
        "units": {"bytes": "byte"},
    }
    if source.kind == "entry_point":
        payload["note"] = CODE_NOTE

    def table():
        cols = [
            ("component", "component", None),
            ("bytes", "bytes", lambda v: binary(v)),
            ("share", "share", lambda v: f"{100 * v:.1f}%"),
            ("note", "note", None),
        ]
        title = f"{source.label} {mode} memory: {run.inputs}, {prec.label}" + (
            f", {optimizer}" if mode == "train" else ""
        )
        cap = "predicted from a traced step on the meta device (not measured)"
        return [rich_table(title, rows, cols, cap)]

    emit(fmt, payload, rows, table, ["component", "bytes", "share", "note"])
