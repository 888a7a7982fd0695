"""`memwall memory`: footprint to serve or train a model, what fits a device, the paper's Fig. 4."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from memwall.cli._common import (
    FormatOpt,
    Phase,
    QuantizeHeadOpt,
    app,
    binary,
    emit,
    image_tokens,
    rich_table,
    si,
)
from memwall.cli._sources import memory_module
from memwall.errors import MemwallError
from memwall.memory.fit import resolve_device
from memwall.memory.report import (
    MemoryReport,
    TrainSetup,
    framework_overhead_for,
    infer_report,
    infer_workload,
    tradeoff_report,
    train_report,
)
from memwall.sources import module_source
from memwall.spec import Workload, load_model, parse_precision
from memwall.studies.figure4 import figure4_report


class Mode(str, Enum):
    infer = "infer"
    train = "train"


class Impl(str, Enum):
    eager = "eager"
    fused = "fused"


def _breakdown_table(title: str, rows: list[dict], caption: str):
    cols = [
        ("component", "component", None),
        ("bytes", "per device", lambda v: binary(v)),
        ("share", "share", lambda v: f"{100 * v:.1f}%"),
        ("note", "note", None),
    ]
    return rich_table(title, rows, cols, caption)


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
    if plot is not None:
        _plots().check_plot_path(plot)  # refuse a bad path before any work
    given = _given_flags(locals())
    if paper_figure4:
        fixed = given - {"--paper-figure4", "--plot", "--format"}
        _refuse(fixed, "--paper-figure4 shows the paper's fixed table")
        if model is not None:
            raise MemwallError("--paper-figure4 takes no MODEL (it shows the paper's own models)")
        return _render_figure4(figure4_report(), plot, fmt)
    if model is None:
        raise MemwallError("give a MODEL (preset name or config.json), or --paper-figure4")
    src = module_source(model)
    if src is not None:  # torchvision:NAME or module:function: a traced module
        _refuse(given - MODULE_FLAGS, "a module's memory is traced (see --help)")
        if src.kind == "torchvision":
            _refuse(given & {"--seq-len"}, "a torchvision model takes images: use --image-size")
        return memory_module(
            src, mode.value, batch, seq_len, image_size, precision, optimizer, fmt
        )  # fmt: skip
    spec = load_model(model)
    seq_len = image_tokens(spec, seq_len, image_size)  # ViT: the tokens come from the image
    prec = parse_precision(precision, quantize_head=quantize_head)
    dev = resolve_device(device) if device is not None else None
    overhead = framework_overhead_for(dev, overhead_gib)
    setup = TrainSetup(
        prec, optimizer, checkpointing, zero, devices, offload, not no_master, impl.value,
        not unfused_attention, dropout,
    )  # fmt: skip
    if mode is Mode.train:
        _refuse(given & INFER_ONLY, "training runs whole sequences of --seq-len tokens")
        _refuse(given & {"--quantize-head"}, "training keeps 16- or 32-bit weights")
        if tradeoff:
            _refuse(given & NOT_TRADEOFF, "--tradeoff compares every checkpointing strategy")
            return _render_tradeoff(tradeoff_report(spec, batch, seq_len, setup), spec, plot, fmt)
        rep = train_report(spec, batch, seq_len, setup, dev, overhead)
        return _render_train(rep, spec, setup, plot, fmt)
    _refuse(given & TRAIN_ONLY, "it is for --mode train")
    wl = infer_workload(spec, phase.value if phase else None, batch, seq_len, gen_len)
    rep = infer_report(spec, wl, prec, False if unfused_attention else None, dev, overhead)
    return _render_infer(rep, spec, wl, prec, plot, fmt)


def _plots() -> Any:
    """The memory figures, imported only when one is asked for (matplotlib is slow to load)."""
    from memwall.plots import memory

    return memory


# Flags that apply to one mode only (the rest apply everywhere).
MODULE_FLAGS = {
    "--mode", "--batch", "--seq-len", "--image-size", "--precision", "--optimizer", "--format",
}  # fmt: skip
TRAIN_ONLY = {
    "--optimizer", "--checkpointing", "--zero", "--devices", "--offload", "--no-master",
    "--impl", "--dropout", "--tradeoff",
}  # fmt: skip
INFER_ONLY = {"--phase", "--gen-len"}
NOT_TRADEOFF = {
    "--checkpointing", "--zero", "--devices", "--offload", "--no-master", "--device",
    "--overhead-gib",
}  # fmt: skip


def _given_flags(args: dict[str, Any]) -> set[str]:
    """The flags whose value differs from its default in `memory`'s signature (what the user
    typed, in effect), by their command-line names."""
    params = inspect.signature(memory).parameters
    return {
        "--format" if name == "fmt" else "--" + name.replace("_", "-")
        for name, p in params.items()
        if name != "model" and args[name] != p.default
    }


def _refuse(flags: set[str], why: str) -> None:
    if flags:
        names = ", ".join(sorted(flags))
        raise MemwallError(f"{names} {'does' if len(flags) == 1 else 'do'} not apply here: {why}")


def _notes_caption(rep: MemoryReport) -> str:
    return "".join(f"\nnote: {n}" for n in rep.notes)


def _render_infer(rep: MemoryReport, spec, wl: Workload, prec, plot, fmt) -> None:
    fp, fit, payload = rep.footprint, rep.fit, rep.payload
    if plot is not None:
        payload["plot"] = str(_plots().plot_breakdown(fp, plot, fit))

    def table():
        title = (
            f"{spec.name} inference memory: {wl.phase} batch={wl.batch} "
            f"seq_len={wl.seq_len}"
            + (f" gen_len={wl.gen_len}" if wl.gen_len else "")
            + f" | precision={prec.label} attention="
            + ("fused" if payload["fused_attention"] else "unfused")
        )
        cap = "predicted by memwall's closed form (not measured); bytes per device"
        cap += _notes_caption(rep)
        if fit is not None:
            cap += (
                f"\n{fit.verdict}; capacity {binary(fit.capacity)} ({fit.origin}); largest "
                f"batch that fits: {payload['max_batch']}; longest context at batch "
                f"{wl.batch}: {payload['max_context']:,} tokens (model's positions: "
                f"{spec.max_positions:,})"
            )
        return [_breakdown_table(title, rep.rows, cap)]

    emit(fmt, payload, rep.rows, table, rep.columns)


def _render_train(rep: MemoryReport, spec, setup: TrainSetup, plot, fmt) -> None:
    fp, fit, payload = rep.footprint, rep.fit, rep.payload
    if plot is not None:
        payload["plot"] = str(_plots().plot_breakdown(fp, plot, fit))

    def table():
        title = (
            f"{spec.name} training memory per device: batch {fp.batch} x {fp.seq_len}, "
            f"{fp.precision}, {fp.optimizer}, checkpointing {fp.checkpointing}, "
            f"ZeRO-{fp.zero} over {fp.devices}" + (", offload" if fp.offload else "")
        )
        cap = (
            f"predicted by memwall's closed form (not measured), {fp.impl} kernels, "
            f"{'fused' if fp.fused_attention else 'unfused'} attention; peak = largest total on "
            f"the step's timeline ({fp.peak_event}); step {si(fp.step_flops)}FLOP, "
            f"recompute +{100 * fp.recompute_overhead:.1f}%; optimizer state excludes the "
            "master weights (own row)"
        )
        cap += _notes_caption(rep)
        if fit is not None:
            cap += (
                f"\n{fit.verdict}; capacity {binary(fit.capacity)} ({fit.origin}); largest "
                f"micro-batch that fits: {payload['max_batch_per_device']}"
            )
        return [_breakdown_table(title, rep.rows, cap)]

    emit(fmt, payload, rep.rows, table, rep.columns)


def _render_tradeoff(rep: MemoryReport, spec, plot, fmt) -> None:
    payload, check = rep.payload, rep.extra["claim"]
    if plot is not None:
        payload["plot"] = str(_plots().plot_remat(rep.footprint, plot))

    def table():
        cols = [
            ("strategy", "checkpointing", None),
            ("activation_memory", "activation memory", lambda v: binary(v)),
            ("reduction", "less than none", lambda v: f"{v:.2f}x"),
            ("extra_compute", "extra compute", lambda v: f"+{100 * v:.1f}%"),
            ("peak", "peak / device", lambda v: binary(v)),
        ]
        b = check["best_within_budget"]
        c = check["cheapest_reaching_reduction"]
        cap = (
            f"paper: 5x less activation memory for ~20% more compute -> "
            f"{'holds' if check['holds'] else 'does not hold'} here: best within +20% is "
            f"{b['strategy']} ({b['reduction']:.2f}x, +{100 * b['extra_compute']:.1f}%)"
        )
        if c:
            cap += f"; 5x first reached by {c['strategy']} at +{100 * c['extra_compute']:.1f}%"
        cap += "\npredicted (closed form); compute = forward + backward (3x forward)"
        cap += _notes_caption(rep)
        wl = payload["workload"]
        title = (
            f"{spec.name} rematerialisation trade-off: batch {wl['batch']} x {wl['seq_len']}, "
            f"{payload['precision']}, {payload['impl']}, "
            f"{'fused' if payload['fused_attention'] else 'unfused'} attention"
        )
        return [rich_table(title, rep.rows, cols, cap)]

    emit(fmt, payload, rep.rows, table, rep.columns)


def _render_figure4(rep: MemoryReport, plot, fmt) -> None:
    payload = rep.payload
    if plot is not None:
        payload["plot"] = str(_plots().plot_paper_figure4(plot, rep.footprint))

    def gb(v):
        return "-" if v != v else f"{v:.2f}"  # NaN -> '-'

    def table():
        cols = [
            ("year", "year", str),
            ("model", "model", None),
            ("paper_params_GB", "params", gb),
            ("paper_optimizer_GB", "optimizer", gb),
            ("paper_activations_GB", "activations", gb),
            ("paper_total_GB", "total", gb),
            ("memwall_params_GB", "memwall params", gb),
            ("memwall_optimizer_GB", "memwall opt.", gb),
            ("memwall_activations_GB", "memwall act.", gb),
            ("memwall_gradients_GB", "memwall grads", gb),
            ("accelerator_memory_GB", "accelerator GB", gb),
            ("accelerator", "largest accelerator of the year", None),
        ]
        cap = (
            "GB = 2^30 bytes (the paper's unit); paper columns as printed (its totals have no "
            "gradients); memwall = predicted (closed form or traced module) for every row; "
            "accelerators: spec sheets"
        )
        return [rich_table("Memory to train (paper's Fig. 4 data)", rep.rows, cols, cap)]

    emit(fmt, payload, rep.rows, table, rep.columns)
