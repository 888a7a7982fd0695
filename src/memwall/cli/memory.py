"""`memwall memory`: footprint to serve or train a model, what fits a device, the paper's Fig. 4."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from memwall.cli._common import FormatOpt, Phase, app, binary, emit, rich_table, si
from memwall.errors import MemwallError
from memwall.spec import Workload, load_model, parse_precision


class Mode(str, Enum):
    infer = "infer"
    train = "train"


class Impl(str, Enum):
    eager = "eager"
    fused = "fused"


BREAKDOWN_COLUMNS = ["component", "bytes", "share", "note"]
UNITS = {"bytes": "byte", "flops": "FLOP (1 multiply-accumulate = 2 FLOPs)"}


def _share(rows: list[dict], total: float) -> list[dict]:
    for r in rows:
        r["share"] = r["bytes"] / total if total else 0.0
    return rows


def _device_and_overhead(device: str | None, overhead_gib: float | None):
    from memwall.memory.fit import resolve_device
    from memwall.memory.training import framework_overhead

    dev = resolve_device(device) if device else None
    if overhead_gib is not None:
        if not 0 <= overhead_gib <= 1e6:
            raise MemwallError(f"--overhead-gib must be between 0 and 1e6, got {overhead_gib}")
        return dev, overhead_gib * 2**30, "given with --overhead-gib"
    if dev is None:
        return None, 0.0, "not counted (give --device or --overhead-gib)"
    nbytes, short, _source = framework_overhead(dev.kind)
    return dev, nbytes, f"assumed for a {dev.kind} ({short})"


def _positions_note(spec, tokens: int) -> str | None:
    """Learned position tables cap the length: say so (the memory is still defined)."""
    if spec.position == "learned" and tokens > spec.max_positions:
        return (
            f"{tokens:,} tokens exceed {spec.name}'s {spec.max_positions:,} learned positions: "
            "the model cannot run this length as is"
        )
    return None


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
        typer.Argument(help="Preset name (bert-base, gpt2, llama-3-70b, ...) or a config.json."),
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
    gen_len: Annotated[int, typer.Option("--gen-len", help="Tokens generated (generate).")] = 128,
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
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Memory to serve or train a model: weights, KV cache, gradients, optimizer state,
    activations; checkpointing, ZeRO and offload; fit on a device."""
    if plot is not None:
        from memwall.plots_memory import _target

        _target(plot)  # refuse a bad path before any work
    if paper_figure4:
        return _paper_figure4(plot, fmt)
    if model is None:
        raise MemwallError("give a MODEL (preset name or config.json), or --paper-figure4")
    spec = load_model(model)
    prec = parse_precision(precision)
    dev, overhead, overhead_src = _device_and_overhead(device, overhead_gib)
    fused = not unfused_attention
    if mode is Mode.train:
        if phase is not None:
            raise MemwallError("--phase is for --mode infer; training runs whole sequences")
        if tradeoff:
            return _tradeoff(
                spec, batch, seq_len, prec, optimizer, impl.value, fused, dropout, plot, fmt
            )
        return _train(
            spec,
            prec,
            optimizer,
            checkpointing,
            zero,
            devices,
            offload,
            not no_master,
            impl.value,
            fused,
            dropout,
            batch,
            seq_len,
            dev,
            overhead,
            overhead_src,
            plot,
            fmt,
        )
    if tradeoff:
        raise MemwallError("--tradeoff is for --mode train")
    for flag, val, default in (
        ("--optimizer", optimizer, "adam"),
        ("--checkpointing", checkpointing, "none"),
        ("--zero", zero, 0),
        ("--devices", devices, 1),
        ("--offload", offload, False),
    ):
        if val != default:
            raise MemwallError(f"{flag} is for --mode train")
    ph = phase.value if phase is not None else ("generate" if spec.is_decoder else "encode")
    wl = Workload(ph, batch, seq_len, gen_len if ph == "generate" else 0)
    return _infer(spec, wl, prec, fused, dev, overhead, overhead_src, plot, fmt)


def _infer(spec, wl, prec, fused, dev, overhead, overhead_src, plot, fmt) -> None:
    from memwall.memory.fit import check_fit
    from memwall.memory.inference import inference_memory, max_batch, max_context

    fp = inference_memory(spec, wl, prec, fused, overhead, overhead_src)
    rows = _share(fp.rows(), fp.total)
    payload: dict[str, Any] = {
        "model": spec.name,
        "mode": "infer",
        "precision": prec.label,
        "fused_attention": fused,
        "predicted": "closed form (memwall.memory), not measured",
        "workload": {
            "phase": wl.phase,
            "batch": wl.batch,
            "seq_len": wl.seq_len,
            "gen_len": wl.gen_len,
            "context": wl.total_context,
        },
        "params": spec.n_params(),
        "footprint": fp.to_dict(),
        "breakdown": rows,
        "units": UNITS,
    }
    note = _positions_note(spec, wl.total_context)
    if note:
        payload["note"] = note
    fit = None
    if dev is not None:
        fit = check_fit(fp.total, dev)
        payload["fit"] = fit.to_dict()
        payload["max_batch"] = max_batch(spec, wl, prec, fit.capacity, fused, overhead)
        payload["max_context"] = max_context(spec, wl.batch, prec, fit.capacity, fused, overhead)
        payload["max_positions"] = spec.max_positions
    if plot is not None:
        from memwall.plots_memory import plot_breakdown

        payload["plot"] = str(plot_breakdown(fp, plot, fit))

    def table():
        title = (
            f"{spec.name} inference memory: {wl.phase} batch={wl.batch} "
            f"seq_len={wl.seq_len}"
            + (f" gen_len={wl.gen_len}" if wl.gen_len else "")
            + f" | precision={prec.label} attention={'fused' if fused else 'unfused'}"
        )
        cap = "predicted by memwall's closed form (not measured); bytes per device"
        if note:
            cap += f"\nnote: {note}"
        if fit is not None:
            cap += (
                f"\n{fit.verdict}; capacity {binary(fit.capacity)} ({fit.origin}); largest "
                f"batch that fits: {payload['max_batch']}; longest context at batch "
                f"{wl.batch}: {payload['max_context']:,} tokens (model's positions: "
                f"{spec.max_positions:,})"
            )
        return [_breakdown_table(title, rows, cap)]

    emit(fmt, payload, rows, table, BREAKDOWN_COLUMNS)


def _train(
    spec,
    prec,
    optimizer,
    checkpointing,
    zero,
    devices,
    offload,
    master,
    impl,
    fused,
    dropout,
    batch,
    seq_len,
    dev,
    overhead,
    overhead_src,
    plot,
    fmt,
) -> None:
    from memwall.memory.fit import check_fit
    from memwall.memory.training import max_train_batch, training_memory

    Workload("prefill", batch, seq_len)  # validates batch and length
    kw = dict(
        precision=prec,
        optimizer=optimizer,
        checkpointing=checkpointing,
        zero=zero,
        devices=devices,
        offload=offload,
        master_weights=master,
        impl=impl,
        fused_attention=fused,
        dropout=dropout,
        overhead=overhead,
        overhead_source=overhead_src,
    )
    fp = training_memory(spec, batch, seq_len, **kw)
    rows = _share(fp.rows(), fp.peak)
    payload: dict[str, Any] = {
        "model": spec.name,
        "mode": "train",
        "precision": fp.precision,
        "predicted": "closed form (memwall.memory), not measured",
        "setup": {
            "optimizer": fp.optimizer,
            "checkpointing": fp.checkpointing,
            "zero": zero,
            "devices": devices,
            "offload": offload,
            "master_weights": master and prec.weight_bits < 32,
            "impl": impl,
            "fused_attention": fused,
            "dropout": dropout,
        },
        "workload": {
            "batch_per_device": batch,
            "global_batch": batch * devices,
            "seq_len": seq_len,
        },
        "params": fp.n_params,
        "per_device": fp.to_dict(),
        "breakdown": rows,
        "units": UNITS,
    }
    note = _positions_note(spec, seq_len)
    if note:
        payload["note"] = note
    fit = None
    if dev is not None:
        fit = check_fit(fp.peak, dev)
        payload["fit"] = fit.to_dict()
        payload["max_batch_per_device"] = max_train_batch(spec, seq_len, fit.capacity, **kw)
    if plot is not None:
        from memwall.plots_memory import plot_breakdown

        payload["plot"] = str(plot_breakdown(fp, plot, fit))

    def table():
        title = (
            f"{spec.name} training memory per device: batch {batch} x {seq_len}, "
            f"{fp.precision}, {fp.optimizer}, checkpointing {fp.checkpointing}, "
            f"ZeRO-{zero} over {devices}" + (", offload" if offload else "")
        )
        cap = (
            f"predicted by memwall's closed form (not measured), {impl} kernels, "
            f"{'fused' if fused else 'unfused'} attention; peak = largest total on the "
            f"step's timeline ({fp.peak_event}); step {si(fp.step_flops)}FLOP, "
            f"recompute +{100 * fp.recompute_overhead:.1f}%"
        )
        if fit is not None:
            cap += (
                f"\n{fit.verdict}; capacity {binary(fit.capacity)} ({fit.origin}); largest "
                f"micro-batch that fits: {payload['max_batch_per_device']}"
            )
        return [_breakdown_table(title, rows, cap)]

    emit(fmt, payload, rows, table, BREAKDOWN_COLUMNS)


def _tradeoff(spec, batch, seq_len, prec, optimizer, impl, fused, dropout, plot, fmt) -> None:
    from memwall.memory.remat import claim_check, remat_curve

    Workload("prefill", batch, seq_len)
    curve = remat_curve(spec, batch, seq_len, prec, optimizer, impl, fused, dropout)
    check = claim_check(curve)
    rows = curve.to_dict("records")
    payload = {
        "model": spec.name,
        "mode": "train",
        "precision": prec.label,
        "workload": {"batch": batch, "seq_len": seq_len},
        "impl": impl,
        "fused_attention": fused,
        "dropout": dropout,
        "predicted": "closed form (memwall.memory), not measured",
        "curve": rows,
        "paper_claim": check,
        "units": {
            "activation_memory": "byte",
            "recompute_flops": "FLOP",
            "extra_compute": "fraction of a step without recomputation",
        },
    }
    if plot is not None:
        from memwall.plots_memory import plot_remat

        payload["plot"] = str(plot_remat(curve, plot))

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
        title = (
            f"{spec.name} rematerialisation trade-off: batch {batch} x {seq_len}, "
            f"{prec.label}, {impl}, {'fused' if fused else 'unfused'} attention"
        )
        return [rich_table(title, rows, cols, cap)]

    emit(
        fmt,
        payload,
        rows,
        table,
        ["strategy", "activation_memory", "reduction", "extra_compute", "recompute_flops", "peak"],
    )


def _paper_figure4(plot, fmt) -> None:
    from memwall.memory.paper import figure4_table

    t = figure4_table()
    rows = t.to_dict("records")
    payload = {
        "figure": "Gholami et al., AI and Memory Wall, Fig. 4 (training memory)",
        "source": "the authors' README 'Memory Breakdown' table (amirgholami/ai_and_memory_wall "
        "@ a1f1d67), GB as printed; accelerators: memwall device catalog (spec sheets); "
        "memwall columns: predicted by the closed form, in 1e9 bytes",
        "rows": rows,
    }
    if plot is not None:
        from memwall.plots_memory import plot_paper_figure4

        payload["plot"] = str(plot_paper_figure4(plot, t))

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
            "GB; paper columns as printed (its totals have no gradients); memwall = "
            "predicted (closed form) for the rows it models; accelerators: spec sheets"
        )
        return [rich_table("Memory to train (paper's Fig. 4 data)", rows, cols, cap)]

    emit(fmt, payload, rows, table, list(t.columns))
