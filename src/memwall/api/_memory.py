"""`memwall.api.memory`: the memory to serve or train a model, what fits a device, the paper's
Figure 4. `memwall memory` parses its flags, calls this and renders the `Result`.

Which flags apply where is decided here, as the CLI always decided it: a flag counts as given
when its value differs from the command's default (None for `batch` and `seq_len` means not
given: a ViT refuses a given `seq_len` even at 512, an entry point a `batch` it does not
declare), so the library and the command line refuse exactly the same input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from memwall.api._analyze import CODE_NOTE
from memwall.api._common import (
    binary,
    choice,
    image_tokens,
    model_text,
    module_run,
    not_applicable,
    plain,
    si,
)
from memwall.api._result import Result
from memwall.errors import MemwallError

MODES = ("infer", "train")
IMPLS = ("eager", "fused")
PHASES = ("encode", "prefill", "decode", "generate")
BATCH = 1  # the command's default batch (sequences; per device when training)
SEQ_LEN = 512  # the command's default tokens per sequence / prompt
MODULE_COLUMNS = ["component", "bytes", "share", "note"]

# The flags that apply to one kind of question only (the rest apply everywhere).
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
# Each keyword's default on the command line (a flag differing from it counts as given).
CLI_DEFAULTS: dict[str, Any] = {
    "mode": "infer", "optimizer": "adam", "precision": "bf16", "quantize_head": False,
    "checkpointing": "none", "zero": 0, "devices": 1, "device": None, "offload": False,
    "no_master": False, "impl": "eager", "unfused_attention": False, "dropout": 0.0,
    "phase": None, "batch": BATCH, "seq_len": SEQ_LEN, "gen_len": None, "overhead_gib": None,
    "tradeoff": False, "paper_figure4": False, "plot": None, "image_size": None,
}  # fmt: skip


def memory(
    model: str | None = None,
    *,
    mode: str = "infer",
    optimizer: str = "adam",
    precision: str = "bf16",
    quantize_head: bool = False,
    checkpointing: str = "none",
    zero: int = 0,
    devices: int = 1,
    device: str | None = None,
    offload: bool = False,
    no_master: bool = False,
    impl: str = "eager",
    unfused_attention: bool = False,
    dropout: float = 0.0,
    phase: str | None = None,
    batch: int | None = None,
    seq_len: int | None = None,
    gen_len: int | None = None,
    overhead_gib: float | None = None,
    tradeoff: bool = False,
    paper_figure4: bool = False,
    plot: str | Path | None = None,
    image_size: int | None = None,
) -> Result:
    """Memory to serve or train a model: weights, KV cache, gradients, optimizer state,
    activations; checkpointing, ZeRO and offload; the fit on a device (largest batch, longest
    context). Predicted in closed form for presets and configs, from a traced step on the meta
    device for torchvision:NAME and module:function; never measured.

    Args:
        model: a preset name (bert-base, gpt2, llama-3-70b, ...), a config.json,
            torchvision:NAME or module:function (Python code you choose to run). None only
            with `paper_figure4`.
        mode: infer (serving; default) or train (one training step).
        optimizer: sgd, momentum, adam (default), adamw or adahessian (train).
        precision: fp32, bf16 (default), fp16, int8, int4 or W/A/KV bits. Training with 16-bit
            weights is mixed precision with fp32 master weights and optimizer state.
        quantize_head: integer formats: quantize the LM head and embeddings too (default
            False: 16-bit; inference only).
        checkpointing: none (default), full, every:K, sqrt, layers:M or selective (train).
        zero: ZeRO stage 0 (default) to 3 (train).
        devices: data-parallel devices (train, ZeRO; default 1).
        device: check the fit on this device (catalog name, e.g. h100-sxm; default none).
        offload: optimizer state and step on the host (train; default False).
        no_master: 16-bit training without fp32 master weights (train; default False).
        impl: eager (PyTorch eager as transformers runs it; default) or fused (minimal
            kernels) (train).
        unfused_attention: attention keeps its L x L score matrices (default False).
        dropout: dropout probability, masks kept (train; default 0.0).
        phase: inference phase: encode, prefill, decode or generate; default generate for
            decoders, encode for encoders.
        batch: sequences (per device when training); default 1 (None: not given, so an entry
            point that declares no batch argument is not refused).
        seq_len: tokens per sequence / prompt; default 512 (None: not given; a ViT, which
            takes its tokens from the image, and a torchvision model refuse it when given).
        gen_len: tokens generated (generate; default 128).
        overhead_gib: framework overhead per device in GiB (default: an assumption for the
            device's kind, stated in the output).
        tradeoff: train: the rematerialisation curve over checkpointing strategies.
        paper_figure4: the paper's training-memory table (Fig. 4); takes no model.
        plot: write the figure (.png, .svg, .pdf) to this path, and name it in the payload.
        image_size: image side in pixels (torchvision:NAME, default 224; a ViT config: its
            own).

    Returns a `Result`: `.to_dict()` is `memwall memory ... --format json`, `.to_frame()` the
    breakdown (or the curve, or the Fig. 4 table), `.plot(path)` the figure (not for traced
    modules). Bad input, and a flag that does not apply, raise `MemwallError` (the CLI's line).

    Example:
        >>> r = memwall.api.memory("llama-3-8b", mode="infer", batch=16)
        >>> r.to_dict()["footprint"]["kv_cache"]
    """
    args = dict(locals())
    mode = choice("--mode", mode, MODES)
    impl = choice("--impl", impl, IMPLS)
    if phase is not None:
        phase = choice("--phase", phase, PHASES)
    if plot is not None:
        from memwall.plots.save import check_plot_path

        check_plot_path(plot)  # a bad path is refused before any work
        plot = Path(plot)
    given = _given({**args, "mode": mode, "impl": impl, "phase": phase})
    if paper_figure4:
        fixed = given - {"--paper-figure4", "--plot"}
        _refuse(fixed, "--paper-figure4 shows the paper's fixed table")
        if model is not None:
            raise MemwallError("--paper-figure4 takes no MODEL (it shows the paper's own models)")
        return _figure4(plot)
    if model is None:
        raise MemwallError("give a MODEL (preset name or config.json), or --paper-figure4")
    from memwall.sources import module_source

    model = model_text(model)
    src = module_source(model)
    if src is not None:  # torchvision:NAME or module:function: a traced module
        _refuse(given - MODULE_FLAGS, "a module's memory is traced (see --help)")
        if src.kind == "torchvision":
            _refuse(given & {"--seq-len"}, "a torchvision model takes images: use --image-size")
        return _module(src, mode, batch, seq_len, image_size, precision, optimizer)
    return _config(model, given, args | {"mode": mode, "impl": impl, "phase": phase, "plot": plot})


def _given(args: dict[str, Any]) -> set[str]:
    """The flags set to something other than the command's default, by their CLI names."""
    return {
        "--" + k.replace("_", "-")
        for k, default in CLI_DEFAULTS.items()
        if args[k] is not None and args[k] != default
    }


def _refuse(flags: set[str], why: str) -> None:
    """One line naming the flags (sorted, as the command always named them) and why."""
    not_applicable(sorted(flags), why)


def _config(model: str, given: set[str], a: dict[str, Any]) -> Result:
    """A preset or config.json, in closed form: serving, training or the trade-off curve."""
    from memwall.memory.fit import resolve_device
    from memwall.memory.report import (
        TrainSetup,
        framework_overhead_for,
        infer_report,
        infer_workload,
        tradeoff_report,
        train_report,
    )
    from memwall.spec import load_model, parse_precision

    spec = load_model(model)
    seq_len = image_tokens(spec, a["seq_len"], a["image_size"], SEQ_LEN)  # ViT: the image's
    batch = BATCH if a["batch"] is None else a["batch"]
    prec = parse_precision(a["precision"], quantize_head=a["quantize_head"])
    dev = resolve_device(a["device"]) if a["device"] is not None else None
    overhead = framework_overhead_for(dev, a["overhead_gib"])
    setup = TrainSetup(
        prec, a["optimizer"], a["checkpointing"], a["zero"], a["devices"], a["offload"],
        not a["no_master"], a["impl"], not a["unfused_attention"], a["dropout"],
    )  # fmt: skip
    plot = a["plot"]
    if a["mode"] == "train":
        _refuse(given & INFER_ONLY, "training runs whole sequences of --seq-len tokens")
        _refuse(given & {"--quantize-head"}, "training keeps 16- or 32-bit weights")
        if a["tradeoff"]:
            _refuse(given & NOT_TRADEOFF, "--tradeoff compares every checkpointing strategy")
            return _tradeoff(tradeoff_report(spec, batch, seq_len, setup), spec, plot)
        rep = train_report(spec, batch, seq_len, setup, dev, overhead)
        if setup.impl == "eager":  # what the fused kernels of Megatron-Core, torchtitan keep
            alt = train_report(spec, batch, seq_len, replace(setup, impl="fused"), dev, overhead)
            rep.payload["fused_kernels"] = {
                "activations": alt.footprint.activations, "peak": alt.footprint.peak,
            }  # fmt: skip
        return _train(rep, spec, plot)
    _refuse(given & TRAIN_ONLY, "it is for --mode train")
    wl = infer_workload(spec, a["phase"], batch, seq_len, a["gen_len"])
    fused = False if a["unfused_attention"] else None
    return _infer(infer_report(spec, wl, prec, fused, dev, overhead), spec, wl, prec, plot)


def _breakdown_plotter(rep: Any):
    def draw(path: Path) -> Path:
        from memwall.plots.memory import plot_breakdown

        return plot_breakdown(rep.footprint, path, rep.fit)

    return draw


def _result(rep: Any, kind: str, title: str, notes: list[str], plotter, plot, **extra) -> Result:
    """Draw the figure asked for (named in the payload, as the CLI always did), and wrap."""
    payload = rep.payload
    if plot is not None and plotter is not None:
        payload["plot"] = str(plotter(plot))
    return Result(
        command="memory",
        payload=plain(payload),
        rows=rep.rows,
        columns=list(rep.columns),
        title=title,
        notes=notes,
        extra={"kind": kind, "report": rep, **extra},
        plotter=plotter,
    )


def _infer(rep: Any, spec: Any, wl: Any, prec: Any, plot: Path | None) -> Result:
    fit, payload = rep.fit, rep.payload
    title = (
        f"{spec.name} inference memory: {wl.phase} batch={wl.batch} seq_len={wl.seq_len}"
        + (f" gen_len={wl.gen_len}" if wl.gen_len else "")
        + f" | precision={prec.label} attention="
        + ("fused" if payload["fused_attention"] else "unfused")
    )
    notes = ["predicted by memwall's closed form (not measured); bytes per device"]
    notes += [f"note: {n}" for n in rep.notes]
    if fit is not None:
        notes.append(
            f"{fit.verdict}; capacity {binary(fit.capacity)} ({fit.origin}); largest "
            f"batch that fits: {payload['max_batch']}; longest context at batch "
            f"{wl.batch}: {payload['max_context']:,} tokens (model's positions: "
            f"{spec.max_positions:,})"
        )
    return _result(rep, "infer", title, notes, _breakdown_plotter(rep), plot, spec=spec)


def _train(rep: Any, spec: Any, plot: Path | None) -> Result:
    fp, fit, payload = rep.footprint, rep.fit, rep.payload
    title = (
        f"{spec.name} training memory per device: batch {fp.batch} x {fp.seq_len}, "
        f"{fp.precision}, {fp.optimizer}, checkpointing {fp.checkpointing}, "
        f"ZeRO-{fp.zero} over {fp.devices}" + (", offload" if fp.offload else "")
    )
    notes = [
        f"predicted by memwall's closed form (not measured), {fp.impl} kernels, "
        f"{'fused' if fp.fused_attention else 'unfused'} attention; peak = largest total on "
        f"the step's timeline ({fp.peak_event}); step {si(fp.step_flops)}FLOP, "
        f"recompute +{100 * fp.recompute_overhead:.1f}%; optimizer state excludes the "
        "master weights (own row)"
    ]
    notes += [f"note: {n}" for n in rep.notes]
    if "fused_kernels" in payload:
        alt = payload["fused_kernels"]
        notes.append(
            f"with fused kernels (--impl fused: fused norms and gated MLP, as Megatron-Core, "
            f"torchtitan and memwall parallel count them): activations "
            f"{binary(alt['activations'])}, peak {binary(alt['peak'])}"
        )
    if fit is not None:
        notes.append(
            f"{fit.verdict}; capacity {binary(fit.capacity)} ({fit.origin}); largest "
            f"micro-batch that fits: {payload['max_batch_per_device']}"
        )
    return _result(rep, "train", title, notes, _breakdown_plotter(rep), plot, spec=spec)


def _tradeoff(rep: Any, spec: Any, plot: Path | None) -> Result:
    payload, check = rep.payload, rep.extra["claim"]
    b, c = check["best_within_budget"], check["cheapest_reaching_reduction"]
    first = (
        f"paper: 5x less activation memory for ~20% more compute -> "
        f"{'holds' if check['holds'] else 'does not hold'} here: best within +20% is "
        f"{b['strategy']} ({b['reduction']:.2f}x, +{100 * b['extra_compute']:.1f}%)"
    )
    if c:
        first += f"; 5x first reached by {c['strategy']} at +{100 * c['extra_compute']:.1f}%"
    notes = [first, "predicted (closed form); compute = forward + backward (3x forward)"]
    notes += [f"note: {n}" for n in rep.notes]
    wl = payload["workload"]
    title = (
        f"{spec.name} rematerialisation trade-off: batch {wl['batch']} x {wl['seq_len']}, "
        f"{payload['precision']}, {payload['impl']}, "
        f"{'fused' if payload['fused_attention'] else 'unfused'} attention"
    )

    def draw(path: Path) -> Path:
        from memwall.plots.memory import plot_remat

        return plot_remat(rep.footprint, path)

    return _result(rep, "tradeoff", title, notes, draw, plot, spec=spec)


def _figure4(plot: Path | None) -> Result:
    from memwall.studies.figure4 import figure4_report

    rep = figure4_report()
    notes = [
        "GB = 2^30 bytes (the paper's unit); paper columns as printed (its totals have no "
        "gradients); memwall = predicted (closed form or traced module) for every row; "
        "accelerators: spec sheets"
    ]

    def draw(path: Path) -> Path:
        from memwall.plots.memory import plot_paper_figure4

        return plot_paper_figure4(path, rep.footprint)

    title = "Memory to train (paper's Fig. 4 data)"
    return _result(rep, "figure4", title, notes, draw, plot)


def _module(src, mode: str, batch, seq_len, image_size, precision: str, optimizer: str) -> Result:
    """Inference (traced activation peak) or training (autograd's saved tensors) memory of a
    torchvision:NAME or module:function MODEL, traced on the meta device."""
    from memwall.spec import parse_precision
    from memwall.trace.table import trace_run
    from memwall.trace.training import module_inference_memory, module_training_memory

    prec = parse_precision(precision)
    asked = [k for k, v in (("batch", batch), ("seq_len", seq_len), ("image_size", image_size))
             if v is not None]  # fmt: skip
    batch = BATCH if batch is None else batch
    run = module_run(src, batch, image_size, SEQ_LEN if seq_len is None else seq_len, prec, asked)
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
        "model": src.label,
        "mode": mode,
        "precision": prec.label,
        "predicted": "traced module on the meta device (memwall.trace), not measured",
        "workload": {"batch": batch, "inputs": run.inputs},
        "params": run.n_params,
        "footprint": detail,
        "breakdown": rows,
        "units": {"bytes": "byte"},
    }
    if src.kind == "entry_point":
        payload["note"] = CODE_NOTE
    title = f"{src.label} {mode} memory: {run.inputs}, {prec.label}" + (
        f", {optimizer}" if mode == "train" else ""
    )
    return Result(
        command="memory",
        payload=plain(payload),
        rows=rows,
        columns=list(MODULE_COLUMNS),
        title=title,
        notes=["predicted from a traced step on the meta device (not measured)"],
        extra={"kind": "module", "run": run},
    )
