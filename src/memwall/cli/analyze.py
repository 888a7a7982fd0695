"""`memwall analyze`: FLOPs, bytes and arithmetic intensity of every operation of a model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from memwall.cli._common import (
    OP_COLUMNS,
    BatchOpt,
    FormatOpt,
    GenLenOpt,
    ModelArg,
    PhaseOpt,
    QuantizeHeadOpt,
    SeqLenOpt,
    app,
    default_phase,
    emit,
    image_tokens,
    op_columns,
    op_csv,
    rich_table,
    si,
)
from memwall.cli._sources import analyze_module
from memwall.count import MOE_ROUTING, mla_note, op_table, totals
from memwall.errors import MemwallError
from memwall.io import check_output_path
from memwall.sources import module_source
from memwall.spec import Workload, load_model_config, parse_precision, positions_note

GEN_LEN_DEFAULT = 128
TOTAL_KEYS = (
    "flops", "bytes", "intensity", "bytes_weight", "bytes_act", "bytes_kv", "bytes_written",
)  # fmt: skip


class Convention(str, Enum):
    full = "full"
    paper = "paper"


class Engine(str, Enum):
    closed = "closed"
    trace = "trace"


class MlaForm(str, Enum):
    absorbed = "absorbed"
    expanded = "expanded"


@app.command("analyze")
def analyze(
    model: ModelArg,
    phase: PhaseOpt = None,
    batch: BatchOpt = 1,
    seq_len: SeqLenOpt = 128,
    gen_len: GenLenOpt = 128,  # GEN_LEN_DEFAULT
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
    quantize_head: QuantizeHeadOpt = False,
    convention: Annotated[
        Convention,
        typer.Option(help="full: all the model executes; paper: the paper's Figure 3 accounting."),
    ] = Convention.full,
    fused_attention: Annotated[
        bool | None,
        typer.Option(
            "--fused-attention/--unfused-attention",
            help="Attention as one fused kernel, or as score matmul, softmax, value matmul "
            "(L x L in memory). Default: fused, unless transformers has no fused path for the "
            "model (Gemma 2, GPT-OSS); the output says which was counted.",
            show_default=False,
        ),
    ] = None,
    mla: Annotated[
        MlaForm | None,
        typer.Option(
            help="Multi-head latent attention (DeepSeek): absorbed (attention over the cached "
            "latents, as serving engines decode) or expanded (latents up-projected, as "
            "transformers runs it). Default: absorbed for decode/generate, expanded otherwise.",
            show_default=False,
        ),
    ] = None,
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
            help="Predict time on this device: a catalog name, 'local', a saved measurement, "
            "or a what-if NAME@KEY=FACTOR (keys bw, flops, mem, link; e.g. h100-sxm@bw=2)."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="With --device: write a roofline plot (.png or .svg).")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            help="Image side in pixels (torchvision:NAME, default 224; a ViT config: its own).",
        ),
    ] = None,
    launch: Annotated[
        str,
        typer.Option(
            help="With a catalog --device: graph (CUDA graphs / compiled runtime) or eager "
            "(one host launch per kernel)."
        ),
    ] = "graph",
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Per-operation FLOPs, bytes moved and arithmetic intensity (FLOPs/byte)."""
    src = module_source(model)
    if src is not None:  # torchvision:NAME or module:function: the trace engine
        return analyze_module(
            src, phase, batch, seq_len, image_size, precision, convention.value,
            fused_attention is not False, device, plot, fmt,
        )  # fmt: skip
    spec, config = load_model_config(model)
    seq_len = image_tokens(spec, seq_len, image_size)  # ViT: the tokens come from the image
    wl = _workload(spec, phase, batch, seq_len, gen_len)
    prec = parse_precision(precision, group_size, quantize_head)
    if plot is not None and device is None:
        raise MemwallError("--plot needs --device (the roofline is drawn against a device)")
    if launch != "graph" and device is None:
        raise MemwallError("--launch needs --device (it sets how kernels reach that device)")
    if mla is not None and not spec.is_mla:
        raise MemwallError(f"--mla applies to multi-head latent attention models; {spec.name} "
                           "has none")  # fmt: skip
    if plot is not None:
        check_output_path(plot, ("png", "svg"), "--plot file")  # folder, name, writable: first
    form = mla.value if mla is not None else None
    df = _count(spec, config, wl, prec, convention, engine, fused_attention, form)
    payload = _payload(spec, wl, prec, df, convention, engine)
    pred = None
    if device is not None:
        pred = _predict(df, device, prec, launch, plot, payload)

    def table():
        return [_table(spec, wl, df, payload, pred, launch)]

    rows, cols = op_csv(df, pred, OP_COLUMNS)  # with --device: each op's predicted time
    emit(fmt, payload, rows, table, cols)


def _workload(spec, phase, batch: int, seq_len: int, gen_len: int) -> Workload:
    ph = phase.value if phase is not None else default_phase(spec.is_decoder)
    if gen_len < 0 or (ph != "generate" and gen_len != GEN_LEN_DEFAULT):
        raise MemwallError(
            f"--gen-len {gen_len} is not accepted here: it applies to --phase generate "
            f"(the phase here is {ph}) and must be >= 1"
        )
    return Workload(ph, batch, seq_len, gen_len if ph == "generate" else 0)


def _count(
    spec, config, wl, prec, convention: Convention, engine: Engine, fused: bool | None,
    mla: str | None,
):  # fmt: skip
    """The op table; `fused` and `mla` None: the library's defaults (`count.ops`)."""
    if engine is Engine.closed:
        return op_table(spec, wl, prec, convention.value, fused, mla)
    if convention is Convention.paper:
        raise MemwallError(
            "--engine trace counts what the model executes: use --convention "
            "full (the paper convention is closed-form only)"
        )
    if mla == "absorbed":
        raise MemwallError(
            "--engine trace runs transformers' code, which expands multi-head latent attention: "
            "use --mla expanded, or --engine closed for the absorbed form"
        )
    from memwall.trace import trace_table

    df = trace_table(spec, wl, prec, fused=fused is not False, config=config)
    df.attrs["fused_attention"] = fused is not False  # the trace's kernel accounting
    df.attrs["mla_form"] = "expanded" if spec.is_mla else None
    if spec.is_moe and df.attrs.get("device") == "meta":  # trace.moe routes as count assumes
        df.attrs["moe_routing"] = MOE_ROUTING
    elif spec.is_moe:
        df.attrs["moe_routing"] = "the model's own router on random weights (this run's choices)"
    return df


def _payload(spec, wl, prec, df, convention: Convention, engine: Engine) -> dict:
    tot = totals(df)
    full = convention is Convention.full
    a = df.attrs
    payload: dict = {
        "model": spec.name,
        "convention": convention.value,
        "engine": engine.value,
        "precision": df.attrs.get("precision", prec.label) if full else "8-bit (paper)",
        "fused_attention": bool(a.get("fused_attention")) and full,
        "workload": {
            "phase": wl.phase,
            "batch": wl.batch,
            "seq_len": wl.seq_len,
            "gen_len": wl.gen_len,
        },
        "params": spec.n_params(),
        "totals": {k: tot[k] for k in TOTAL_KEYS},
        "units": {
            "flops": "FLOP (1 multiply-accumulate = 2 FLOPs)",
            "bytes": "byte",
            "intensity": "FLOP/byte",
        },
        "ops": [{k: r[k] for k in OP_COLUMNS if k in r} for r in df.to_dict("records")],
    }
    if a.get("mla_form"):
        payload["mla_form"] = a["mla_form"]
    if a.get("moe_routing"):
        payload["moe_routing"] = a["moe_routing"]
    if full:
        notes = (
            positions_note(spec, wl.total_context),
            prec.note,
            mla_note(a.get("mla_form")),
            a.get("moe_routing"),
        )
        payload["notes"] = [n for n in notes if n]
    if "coverage" in df.attrs:
        payload["coverage"] = df.attrs["coverage"]
    return payload


def _predict(df, device: str, prec, launch: str, plot: Path | None, payload: dict):
    from memwall.hardware import get_device
    from memwall.predict import predict_roofline
    from memwall.predict.efficiency import device_prediction

    dev = get_device(device)
    if dev.measured and launch != "graph":
        raise MemwallError(
            "--launch applies to catalog and what-if devices; a measured device uses its "
            "own measured per-op overhead"
        )
    if dev.measured:
        pred = predict_roofline(df, dev)
    else:  # catalog and what-if devices: spec-sheet roofs x published efficiencies
        pred = device_prediction(df, dev, prec, launch)
    payload["prediction"] = pred.to_dict()
    if plot is not None:
        from memwall.plots.roofline import plot_roofline

        plot_roofline(getattr(pred, "roofline", pred), dev, plot)
        payload["plot"] = str(plot)
    return pred


def _table(spec, wl, df, payload: dict, pred, launch: str):
    title = (
        f"{spec.name} {wl.phase} batch={wl.batch} seq_len={wl.seq_len}"
        + (f" gen_len={wl.gen_len}" if wl.phase == "generate" else "")
        + f" | convention={payload['convention']} precision={payload['precision']}"
        + f" engine={payload['engine']}"
    )
    rows = df.to_dict("records") if pred is None else pred.ops.to_dict("records")
    cols = op_columns(kv_cache=True, predicted=pred is not None)
    tot = payload["totals"]
    caption = (
        f"total: {si(tot['flops'])}FLOP, {si(tot['bytes'], 'B')} moved, intensity "
        f"{tot['intensity']:.3g} FLOP/B (counted, not measured; x = layers per row; "
        "1 MAC = 2 FLOPs)"
    )
    for n in payload.get("notes", []):
        caption += f"\nnote: {n}"
    if pred is not None:
        caption += f"\npredicted on {pred.device.display_name}: {si(pred.totals['time'], 's')} "
        if "time_low" in pred.totals:
            low, high = si(pred.totals["time_low"], "s"), si(pred.totals["time_high"], "s")
            caption += f"(range {low}-{high}; spec-sheet roofs x published efficiencies, "
            caption += f"launch={launch})"
        else:
            caption += f"({pred.device.roof_origin} roofs)"
        caption += f"\n{pred.describe()}" if hasattr(pred, "describe") else ""
    return rich_table(title, rows, cols, caption)
