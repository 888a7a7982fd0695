"""`memwall memory`: footprint to serve or train a model, what fits a device, the paper's Fig. 4.

Parses the flags, calls `memwall.api.memory` (all policy: defaults, which flags apply, the
figure) and renders its Result as a Rich table, JSON or CSV."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from memwall.api._memory import memory as api_memory
from memwall.api._result import Result
from memwall.cli._common import (
    FormatOpt,
    Phase,
    QuantizeHeadOpt,
    app,
    binary,
    emit,
    rich_table,
    typed_options,
)


class Mode(str, Enum):
    infer = "infer"
    train = "train"


class Impl(str, Enum):
    eager = "eager"
    fused = "fused"


@app.command("memory")
def memory(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Preset name (bert-base, gpt2, llama-3-70b, ...), a config.json, "
            "torchvision:NAME or module:function (Python code you choose to run)."
        ),
    ] = None,
    mode: Annotated[Mode, typer.Option(help="infer: serving; train: one training step.")] = (
        Mode.infer
    ),
    optimizer: Annotated[
        str, typer.Option(help="sgd, momentum, adam, adamw or adahessian (train).")
    ] = "adam",
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, bf16, fp16, int8, int4 or W/A/KV bits. Training with 16-bit weights is "
            "mixed precision with fp32 master weights and optimizer state."
        ),
    ] = "bf16",
    quantize_head: QuantizeHeadOpt = False,
    checkpointing: Annotated[
        str,
        typer.Option(help="none, full, every:K, sqrt, layers:M or selective (train)."),
    ] = "none",
    zero: Annotated[int, typer.Option(help="ZeRO stage 0-3 (train).")] = 0,
    devices: Annotated[int, typer.Option(help="Data-parallel devices (train, ZeRO).")] = 1,
    device: Annotated[
        str | None, typer.Option(help="Check the fit on this device (catalog name, e.g. h100-sxm).")
    ] = None,
    offload: Annotated[
        bool, typer.Option("--offload", help="Optimizer state and step on the host (train).")
    ] = False,
    no_master: Annotated[
        bool,
        typer.Option("--no-master", help="16-bit training without fp32 master weights (train)."),
    ] = False,
    impl: Annotated[
        Impl,
        typer.Option(help="eager: PyTorch eager as transformers runs it; fused: minimal kernels."),
    ] = Impl.eager,
    unfused_attention: Annotated[
        bool,
        typer.Option("--unfused-attention", help="Attention keeps its L x L score matrices."),
    ] = False,
    dropout: Annotated[float, typer.Option(help="Dropout probability (train; masks kept).")] = 0.0,
    phase: Annotated[
        Phase | None,
        typer.Option(help="Inference phase; default generate for decoders, encode for encoders."),
    ] = None,
    batch: Annotated[int, typer.Option(help="Sequences (per device when training).")] = 1,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per sequence / prompt.")] = 512,
    gen_len: Annotated[
        int | None, typer.Option("--gen-len", help="Tokens generated (generate; default 128).")
    ] = None,
    overhead_gib: Annotated[
        float | None,
        typer.Option(
            "--overhead-gib",
            help="Framework overhead per device in GiB (default: an "
            "assumption for the device's kind, stated in the output).",
        ),
    ] = None,
    tradeoff: Annotated[
        bool,
        typer.Option("--tradeoff", help="Train: the rematerialisation curve over strategies."),
    ] = False,
    paper_figure4: Annotated[
        bool,
        typer.Option("--paper-figure4", help="The paper's training-memory table (Fig. 4)."),
    ] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a figure (.png, .svg, .pdf).")] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Image side in pixels (torchvision:NAME; default 224)."),
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Memory to serve or train a model: weights, KV cache, gradients, optimizer state,
    activations; checkpointing, ZeRO and offload; fit on a device."""
    typed = typed_options()  # --batch / --seq-len typed: an entry point or a ViT may refuse them
    result = api_memory(
        model, mode=mode.value, optimizer=optimizer, precision=precision,
        quantize_head=quantize_head, checkpointing=checkpointing, zero=zero, devices=devices,
        device=device, offload=offload, no_master=no_master, impl=impl.value,
        unfused_attention=unfused_attention, dropout=dropout,
        phase=phase.value if phase else None,
        batch=batch if "--batch" in typed else None,
        seq_len=seq_len if "--seq-len" in typed else None,
        gen_len=gen_len, overhead_gib=overhead_gib, tradeoff=tradeoff,
        paper_figure4=paper_figure4, plot=plot, image_size=image_size,
    )  # fmt: skip
    emit(fmt, result.payload, result.rows, lambda: [_table(result)], result.columns)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _gb(v: float) -> str:
    return "-" if v != v else f"{v:.2f}"  # NaN -> '-'


# The table's columns for each kind of answer: (key, header, formatter).
_BREAKDOWN = [
    ("component", "component", None),
    ("bytes", "per device", binary),
    ("share", "share", _pct),
    ("note", "note", None),
]
COLUMNS = {
    "infer": _BREAKDOWN,
    "train": _BREAKDOWN,
    "module": [("component", "component", None), ("bytes", "bytes", binary), *_BREAKDOWN[2:]],
    "tradeoff": [
        ("strategy", "checkpointing", None),
        ("activation_memory", "activation memory", binary),
        ("reduction", "less than none", lambda v: f"{v:.2f}x"),
        ("extra_compute", "extra compute", lambda v: f"+{100 * v:.1f}%"),
        ("peak", "peak / device", binary),
    ],
    "figure4": [
        ("year", "year", str),
        ("model", "model", None),
        ("paper_params_GB", "params", _gb),
        ("paper_optimizer_GB", "optimizer", _gb),
        ("paper_activations_GB", "activations", _gb),
        ("paper_total_GB", "total", _gb),
        ("memwall_params_GB", "memwall params", _gb),
        ("memwall_optimizer_GB", "memwall opt.", _gb),
        ("memwall_activations_GB", "memwall act.", _gb),
        ("memwall_gradients_GB", "memwall grads", _gb),
        ("accelerator_memory_GB", "accelerator GB", _gb),
        ("accelerator", "largest accelerator of the year", None),
    ],
}


def _table(result: Result):
    """The Rich table of a memory Result: its title, rows and notes as the caption."""
    cols = COLUMNS[result.extra["kind"]]
    return rich_table(result.title, result.rows, cols, "\n".join(result.notes))
