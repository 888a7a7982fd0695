"""`memwall analyze`: FLOPs, bytes and arithmetic intensity of every operation of a model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from memwall.cli._common import (
    BatchOpt,
    FormatOpt,
    GenLenOpt,
    ModelArg,
    PhaseOpt,
    SeqLenOpt,
    app,
    default_phase,
    emit,
    rich_table,
    si,
)
from memwall.count import op_table, totals
from memwall.errors import MemwallError
from memwall.spec import Workload, load_model_config, parse_precision


class Convention(str, Enum):
    full = "full"
    paper = "paper"


class Engine(str, Enum):
    closed = "closed"
    trace = "trace"


OP_COLUMNS = [
    "name",
    "kind",
    "layer",
    "count",
    "flops",
    "bytes",
    "intensity",
    "bytes_weight",
    "bytes_act",
    "bytes_kv",
    "bytes_read",
    "bytes_written",
    "dtype",
]


@app.command("analyze")
def analyze(
    model: ModelArg,
    phase: PhaseOpt = None,
    batch: BatchOpt = 1,
    seq_len: SeqLenOpt = 128,
    gen_len: GenLenOpt = 128,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, bf16, fp16, int8, int4 or W/A/KV bits "
            "like 4/16/8 (ignored by --convention paper: 8-bit)."
        ),
    ] = "fp32",
    group_size: Annotated[
        int,
        typer.Option(help="Quantisation group size (one fp16 scale per group of integer weights)."),
    ] = 128,
    convention: Annotated[
        Convention,
        typer.Option(help="full: all the model executes; paper: the paper's Figure 3 accounting."),
    ] = Convention.full,
    unfused_attention: Annotated[
        bool,
        typer.Option(
            "--unfused-attention",
            help="Count attention as score matmul, softmax, value matmul (L x L in memory).",
        ),
    ] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="closed: closed-form formulas; trace: run the "
            "real torch module (meta device for big models)."
        ),
    ] = Engine.closed,
    device: Annotated[
        str | None,
        typer.Option(
            help="Predict time on this device (catalog name, 'local', or a saved measurement)."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="With --device: write a roofline plot (.png or .svg).")
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Per-operation FLOPs, bytes moved and arithmetic intensity (FLOPs/byte)."""
    spec, config = load_model_config(model)
    ph = phase.value if phase is not None else default_phase(spec.is_decoder)
    wl = Workload(ph, batch, seq_len, gen_len if ph == "generate" else 0)
    prec = parse_precision(precision, group_size)
    if plot is not None and device is None:
        raise MemwallError("--plot needs --device (the roofline is drawn against a device)")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise MemwallError(f"--plot file must end in .png or .svg, got {plot.name!r}")
    fused = not unfused_attention
    if engine is Engine.closed:
        df = op_table(spec, wl, prec, convention.value, fused)
    else:
        if convention is Convention.paper:
            raise MemwallError(
                "--engine trace counts what the model executes: use --convention "
                "full (the paper convention is closed-form only)"
            )
        from memwall.trace import trace_table

        df = trace_table(spec, wl, prec, fused=fused, config=config)
    tot = totals(df)
    payload: dict = {
        "model": spec.name,
        "convention": convention.value,
        "engine": engine.value,
        "precision": df.attrs.get("precision", prec.label)
        if convention is Convention.full
        else "8-bit (paper)",
        "fused_attention": fused and convention is Convention.full,
        "workload": {
            "phase": wl.phase,
            "batch": wl.batch,
            "seq_len": wl.seq_len,
            "gen_len": wl.gen_len,
        },
        "params": spec.n_params(),
        "totals": {
            "flops": tot["flops"],
            "bytes": tot["bytes"],
            "intensity": tot["intensity"],
            "bytes_weight": tot["bytes_weight"],
            "bytes_act": tot["bytes_act"],
            "bytes_kv": tot["bytes_kv"],
            "bytes_written": tot["bytes_written"],
        },
        "units": {
            "flops": "FLOP (1 multiply-accumulate = 2 FLOPs)",
            "bytes": "byte",
            "intensity": "FLOP/byte",
        },
        "ops": [{k: r[k] for k in OP_COLUMNS if k in r} for r in df.to_dict("records")],
    }
    if "coverage" in df.attrs:
        payload["coverage"] = df.attrs["coverage"]
    pred = None
    if device is not None:
        from memwall.hardware import get_device
        from memwall.roofline import predict

        dev = get_device(device)
        pred = predict(df, dev)
        payload["prediction"] = pred.to_dict()
        if plot is not None:
            from memwall.plots_roofline import plot_roofline

            plot_roofline(pred, dev, plot)
            payload["plot"] = str(plot)

    def table():
        title = (
            f"{spec.name} {wl.phase} batch={wl.batch} seq_len={wl.seq_len}"
            + (f" gen_len={wl.gen_len}" if wl.phase == "generate" else "")
            + f" | convention={convention.value} precision={payload['precision']}"
            + f" engine={engine.value}"
        )
        rows = df.to_dict("records")
        cols = [
            ("name", "op", None),
            ("kind", "kind", None),
            ("count", "x", lambda v: str(int(v))),
            ("flops", "FLOPs", lambda v: si(v)),
            ("bytes", "bytes", lambda v: si(v, "B")),
            ("intensity", "FLOP/B", lambda v: f"{v:.3g}"),
            ("bytes_weight", "weights", lambda v: si(v, "B")),
            ("bytes_kv", "KV read", lambda v: si(v, "B")),
        ]
        if pred is not None:
            rows = pred.ops.to_dict("records")
            cols += [("time", "pred. time", lambda v: si(v, "s")), ("bound", "bound", None)]
        caption = (
            f"total: {si(tot['flops'])}FLOP, {si(tot['bytes'], 'B')} moved, intensity "
            f"{tot['intensity']:.3g} FLOP/B (counted, not measured; x = layers per row; "
            "1 MAC = 2 FLOPs)"
        )
        if pred is not None:
            caption += (
                f"\npredicted on {device}: {si(pred.totals['time'], 's')} "
                f"({'measured' if pred.to_dict().get('measured') else 'spec-sheet'} roofs)"
            )
        out = [rich_table(title, rows, cols, caption)]
        return out

    emit(fmt, payload, df.to_dict("records"), table, OP_COLUMNS)
