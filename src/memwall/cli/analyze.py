"""`memwall analyze`: FLOPs, bytes and arithmetic intensity of every operation of a model.

Parses the flags, calls `memwall.api.analyze` (all policy: defaults, refusals, the predictor)
and renders its Result as a Rich table, JSON or CSV."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from memwall.cli._common import (
    PRICE_HELP,
    BatchOpt,
    FormatOpt,
    GenLenOpt,
    ModelArg,
    PhaseOpt,
    QuantizeHeadOpt,
    SeqLenOpt,
    app,
    emit,
    op_columns,
    rich_table,
    typed_options,
)


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
    price_per_hour: Annotated[
        float | None,
        typer.Option(
            "--price-per-hour",
            metavar="USD",
            help="With --device: " + PRICE_HELP,
        ),
    ] = None,
    accumulate: Annotated[
        str,
        typer.Option(
            help="With a catalog --device: what 16-bit GEMMs accumulate in, fp32 (cuBLAS, "
            "PyTorch) or fp16 (llama.cpp on NVIDIA; GeForce runs it up to 2x faster)."
        ),
    ] = "fp32",
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Per-operation FLOPs, bytes moved and arithmetic intensity (FLOPs/byte)."""
    from memwall.api import analyze as run

    typed = typed_options()  # flags the user did not type are None: the library's "not given"
    result = run(
        model,
        phase=phase.value if phase is not None else None,
        batch=batch if "--batch" in typed else None,
        seq_len=seq_len if "--seq-len" in typed else None,
        gen_len=gen_len if "--gen-len" in typed else None,
        precision=precision,
        group_size=group_size if "--group-size" in typed else None,
        quantize_head=quantize_head,
        convention=convention.value,
        fused_attention=fused_attention,
        mla=mla.value if mla is not None else None,
        engine=engine.value if "--engine" in typed else None,
        device=device,
        plot=plot,
        image_size=image_size,
        launch=launch if "--launch" in typed else None,
        price_per_hour=price_per_hour,
        accumulate=accumulate if "--accumulate" in typed else None,
    )
    pred = result.extra["prediction"]

    def table():
        cols = op_columns(kv_cache=result.extra["kv_cache"], predicted=pred is not None)
        return [rich_table(result.title, result.rows, cols, "\n".join(result.notes))]

    emit(fmt, result.payload, result.rows, table, result.columns)
