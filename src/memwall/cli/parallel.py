"""`memwall parallel`: a model split over N devices: per-device work, collectives, step time.

Parses the flags, calls `memwall.api.parallel` (all policy: defaults, which flags apply) and
renders its Result as Rich tables, JSON or CSV."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from memwall.api._parallel import parallel as api_parallel
from memwall.api._result import Result
from memwall.cli._common import (
    PRICE_HELP,
    ConfigModelArg,
    FormatOpt,
    app,
    binary,
    emit,
    rich_table,
    si,
    typed_options,
)


class Mode(str, Enum):
    train = "train"
    infer = "infer"


class Ckpt(str, Enum):
    none = "none"
    selective = "selective"
    full = "full"


class Intra(str, Enum):
    switch = "switch"
    ring = "ring"


class Algo(str, Enum):
    auto = "auto"
    ring = "ring"
    tree = "tree"


def _opt_int(help_: str):
    return Annotated[int | None, typer.Option(help=help_)]


@app.command("parallel")
def parallel(
    model: ConfigModelArg,
    mode: Annotated[Mode, typer.Option(help="train: one iteration; infer: prefill + decode.")] = (
        Mode.train
    ),
    device: Annotated[
        str,
        typer.Option(
            help="Catalog device, or local (measured). What-ifs: DEV@nvlink=F (scale-up link "
            "inside a node x F), @net=F (scale-out network x F), @link=F (both), @clock=F "
            "(compute peaks x F), @power=W (power cap in watts), e.g. h100-sxm@power=500."
        ),
    ] = "h100-sxm",
    devices: Annotated[int, typer.Option(help="Devices in all (N).")] = 8,
    tp: _opt_int("Tensor-parallel degree (default 1).") = None,
    cp: _opt_int(
        "Context-parallel degree: ranks each sequence is split over (ring attention; train; "
        "N = tp x cp x pp x dp; default 1)."
    ) = None,
    pp: _opt_int("Pipeline stages (default 1).") = None,
    dp: _opt_int("Data-parallel degree (default N / (tp x pp)).") = None,
    ep: Annotated[int, typer.Option(help="Expert-parallel degree (MoE; divides dp).")] = 1,
    zero: Annotated[int, typer.Option(help="ZeRO stage 0-3 over data parallelism.")] = 0,
    sequence_parallel: Annotated[
        bool, typer.Option("--sequence-parallel", help="Megatron sequence parallelism.")
    ] = False,
    interleave: Annotated[int, typer.Option(help="Virtual stages per device (1F1B).")] = 1,
    checkpointing: Annotated[Ckpt, typer.Option(help="Activation recomputation.")] = Ckpt.none,
    batch: _opt_int("Global batch, sequences (default 8 x N train, 8 infer).") = None,
    micro_batch: _opt_int("Micro-batch per replica (default 1 train, batch/dp infer).") = None,
    seq_len: Annotated[
        int | None,
        typer.Option(
            "--seq-len",
            help="Tokens per sequence (infer: prompt / context). Default 2048, or what the "
            "model's learned positions allow.",
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="bf16, fp16, fp32, ...; fp8 (train): Transformer Engine mixed FP8, Linear "
            "GEMMs at the FP8 peak, the rest bf16."
        ),
    ] = "bf16",
    do_search: Annotated[
        bool, typer.Option("--search", help="Rank every layout that fits by step time.")
    ] = False,
    no_overlap: Annotated[
        bool, typer.Option("--no-overlap", help="Do not hide gradient sync behind backward.")
    ] = False,
    tp_overlap: Annotated[
        bool,
        typer.Option(
            "--tp-overlap",
            help="Overlap tensor-parallel communication with the GEMMs beside it (train), as "
            "Megatron's --tp-comm-overlap and NeMo's tp_comm_overlap do: each pass's "
            "collectives hide behind its matmuls, which run at the overlap rate meanwhile "
            "(a fraction, data/efficiency.json). Default: exposed.",
        ),
    ] = False,
    kernel_rate: Annotated[
        float | None,
        typer.Option(
            "--kernel-rate",
            metavar="FRACTION",
            help="Train: the rate, a fraction in (0, 1.5], at which a whole step's kernels run "
            "against the same kernels priced one by one. Default: the value fitted on "
            "published training runs (data/efficiency.json training_step; datacenter GPUs). "
            "Set it to what your own stack sustains.",
        ),
    ] = None,
    algorithm: Annotated[Algo, typer.Option(help="Collective algorithm.")] = Algo.auto,
    roofline: Annotated[
        bool,
        typer.Option(
            "--roofline",
            help="The plain roofline instead of the realistic default: kernels at the dense "
            "peak and datasheet bandwidth, links at line rate; an upper bound on speed.",
        ),
    ] = False,
    node_size: _opt_int(
        "Devices per node joined by the scale-up link, in devices (default: the catalog's)."
    ) = None,
    intra: Annotated[
        Intra | None,
        typer.Option(
            help="Inside a node: switch (NVSwitch: full bandwidth between any pair) or ring "
            "(point-to-point full mesh: ring collectives at one link's bandwidth, bytes/s = "
            "scale-up bandwidth / (node size - 1)). Default: the catalog's switch."
        ),
    ] = None,
    attention: Annotated[
        str | None,
        typer.Option(
            "--attention",
            metavar="KERNEL",
            help="Attention kernel family (data/efficiency.json): auto (default: in training "
            "what the frameworks run on the device, cuDNN on Hopper, FlashAttention-2 on "
            "Ampere), cudnn, fa3, fa2, triton (2022-23 Triton FlashAttention, llm-foundry), "
            "torch (unfused). A head dim between a kernel's builds runs as the next one "
            "(FlashAttention-2: 32, 64, 96, 128, 160, 192, 256; FlashAttention-3: 64, 96, 128, "
            "192, 256; triton: powers of two up to 128), the padding priced as lost work.",
        ),
    ] = None,
    price_per_hour: Annotated[
        float | None, typer.Option("--price-per-hour", metavar="USD", help=PRICE_HELP)
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a figure (.png, .svg, .pdf): the predicted step part by part, one bar "
            "per layout (the fastest eight with --search), in seconds, with the MFU."
        ),
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Split MODEL over N devices: per-device memory and work, every collective, step time, MFU."""
    typed = typed_options()  # flags typed, even at their defaults: --search or infer refuse them

    def given(flag: str, value):
        return value if flag in typed else None

    result = api_parallel(
        model, mode=mode.value, device=device, devices=devices, tp=tp, cp=cp, pp=pp, dp=dp,
        ep=given("--ep", ep), zero=given("--zero", zero),
        sequence_parallel=given("--sequence-parallel", sequence_parallel),
        interleave=given("--interleave", interleave),
        checkpointing=given("--checkpointing", checkpointing.value), batch=batch,
        micro_batch=micro_batch, seq_len=seq_len, precision=precision, search=do_search,
        no_overlap=given("--no-overlap", no_overlap),
        tp_overlap=given("--tp-overlap", tp_overlap), kernel_rate=kernel_rate,
        algorithm=algorithm.value,
        roofline=roofline, node_size=node_size, intra=intra.value if intra else None,
        attention=attention, price_per_hour=price_per_hour, plot=plot,
    )  # fmt: skip
    emit(fmt, result.payload, result.rows, lambda: _tables(result), result.columns)


def _tables(result: Result) -> list:
    """The title line, step time, summary, per-device memory, collectives, the ranked layouts
    of a search, and the notes."""
    d = result.payload
    skip = ("peak", "micro_batches_in_flight")
    mem_rows = [{"part": k, "bytes": v} for k, v in d["per_device"].items() if k not in skip]
    mem_rows.append({"part": "peak", "bytes": d["per_device"]["peak"]})
    cap = binary(d["capacity"]) if d["capacity"] else "unknown"
    flight = d["per_device"].get("micro_batches_in_flight")
    mem = rich_table(
        "Per device memory (predicted)",
        mem_rows,
        [("part", "part", None), ("bytes", "bytes", binary)],
        caption=f"capacity {cap}; fits: {d['fits']}"
        + (
            f"; activations of {flight:g} micro-batches in flight, as fused kernels keep them"
            "; peak: the largest moment of the step, not the sum"
            if flight
            else ""
        ),
    )
    steps = [{"part": k, "time": v, "share": v / d["step_time"]} for k, v in d["breakdown"].items()]
    steps.append({"part": "step", "time": d["step_time"], "share": 1.0})
    step = rich_table(
        "Step time (predicted, seconds)",
        [r for r in steps if r["time"] > 0],
        [
            ("part", "part", None),
            ("time", "time", lambda v: si(v, "s")),
            ("share", "share", lambda v: f"{100 * v:.1f}%"),
        ],  # fmt: skip
        caption=None,
    )
    coll = rich_table(
        "Collectives per step (one device)",
        result.rows,
        [
            ("kind", "kind", None),
            ("phase", "phase", None),
            ("group", "group", None),
            ("group_size", "n", str),
            ("bytes", "message", binary),
            ("calls", "calls", str),
            ("link", "link", None),
            ("algorithm", "algo", None),
            ("time", "time", lambda v: si(v, "s")),
            ("exposed", "exposed", str),
        ],  # fmt: skip
        caption="alpha-beta model; bytes per call (nccl-tests conventions)",
    )
    summary, *notes = result.notes
    out = [result.title, step, summary, mem, coll]
    if "search" in d:
        ranked = [
            {"layout": s["layout"]["label"], "mb": s["micro_batch"], "step": s["step_time"],
             "mfu": s["mfu"], "peak": s["peak_memory"]}
            for s in d["search"]["ranked"]
        ]  # fmt: skip
        out.append(
            rich_table(
                "Layouts that fit, fastest first",
                ranked,
                [
                    ("layout", "layout", None),
                    ("mb", "micro-batch", str),
                    ("step", "step", lambda v: si(v, "s")),
                    ("mfu", "MFU", lambda v: f"{100 * v:.1f}%"),
                    ("peak", "peak memory", binary),
                ],  # fmt: skip
                caption=d["search"]["explanation"],
            )
        )
    return [*out, *notes]
