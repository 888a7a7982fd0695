"""`memwall.analyze`: FLOPs, bytes and arithmetic intensity of every operation of a model, and
with a device its predicted time. `memwall analyze` parses its flags and calls this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memwall.api._common import (
    BATCH_DEFAULT,
    GEN_LEN_DEFAULT,
    PHASES,
    SEQ_LEN_DEFAULT,
    choice,
    default_phase,
    image_tokens,
    model_text,
    module_run,
    not_applicable,
    plain,
    si,
)
from memwall.api._energy import analyze_energy, needs_device
from memwall.api._result import Result
from memwall.errors import MemwallError

OP_COLUMNS = [
    "name", "kind", "layer", "count", "flops", "bytes", "intensity", "bytes_weight", "bytes_act",
    "bytes_kv", "bytes_read", "bytes_written", "dtype",
]  # fmt: skip
# a module's forward call: no layer groups, no KV cache
MODULE_OP_COLUMNS = [c for c in OP_COLUMNS if c not in ("layer", "bytes_kv")]
PRED_CSV_COLUMNS = (
    "t_compute", "t_memory", "t_launch", "t_overhead", "time", "time_low", "time_high", "bound",
)  # fmt: skip
TOTAL_KEYS = (
    "flops", "bytes", "intensity", "bytes_weight", "bytes_act", "bytes_kv", "bytes_written",
)  # fmt: skip
UNITS = {
    "flops": "FLOP (1 multiply-accumulate = 2 FLOPs)",
    "bytes": "byte",
    "intensity": "FLOP/byte",
}
CODE_NOTE = (
    "module:function is code you chose to run: memwall imports it and calls it (never from a "
    "config file)"
)


def analyze(
    model: str,
    phase: str | None = None,
    batch: int | None = None,
    seq_len: int | None = None,
    gen_len: int | None = None,
    precision: str = "fp32",
    group_size: int | None = None,
    quantize_head: bool = False,
    convention: str = "full",
    fused_attention: bool | None = None,
    mla: str | None = None,
    engine: str | None = None,
    device: str | None = None,
    plot: str | Path | None = None,
    image_size: int | None = None,
    launch: str | None = None,
    price_per_hour: float | None = None,
    accumulate: str | None = None,
) -> Result:
    """Per-operation FLOPs, bytes moved and arithmetic intensity (FLOPs/byte) of one workload
    of a model, counted in closed form or by tracing the real module; with `device`, each
    operation's predicted time on it (and with `plot`, the roofline drawn).

    Args:
        model: a preset name (bert-base, gpt2, llama-3-8b, ...), a path to an HF config.json,
            torchvision:NAME (e.g. torchvision:resnet50), or module:function: Python code you
            choose to run, returning (module, inputs) (never run from a config file).
        phase: encode, prefill, decode or generate. Default: encode for encoders, prefill
            for decoders.
        batch: sequences per step. Default 1 (None: not given; an entry point that declares
            no batch argument is then not refused).
        seq_len: tokens per sequence (encode/prefill), or context already cached
            (decode/generate; 0 = generate from no prompt, the paper's setting). Default 128
            (None: not given; a ViT or torchvision model refuses it when given).
        gen_len: tokens generated (generate only). Default 128.
        precision: fp32, bf16, fp16, int8, int4 or W/A/KV bits like 4/16/8 (ignored by
            convention paper: 8-bit). Default fp32.
        group_size: quantisation group size (one fp16 scale per group of integer weights).
            Default 128.
        quantize_head: integer formats: quantize the LM head and embeddings too (default
            False: 16-bit).
        convention: full (all the model executes; default) or paper (the paper's Figure 3
            accounting).
        fused_attention: True: attention as one fused kernel; False: score matmul, softmax,
            value matmul (L x L in memory). Default None: fused, unless transformers has no
            fused path for the model (Gemma 2, GPT-OSS); the output says which was counted.
        mla: multi-head latent attention (DeepSeek): absorbed (attention over the cached
            latents, as serving engines decode) or expanded (latents up-projected, as
            transformers runs it). Default: absorbed for decode/generate, expanded otherwise.
        engine: closed (closed-form formulas) or trace (run the real torch module, on the
            meta device for big models). Default: closed for presets and configs, trace for
            torchvision:NAME and module:function (which refuse closed).
        device: predict time on this device: a catalog name, 'local', a saved measurement,
            or a what-if NAME@KEY=FACTOR (keys bw, flops, mem, link; e.g. h100-sxm@bw=2).
            Catalog and what-if devices use the efficiency model (spec-sheet roofs x
            published efficiencies, with a range); measured devices their own roofline.
        plot: with device: write a roofline plot (.png or .svg) to this path.
        image_size: image side in pixels (torchvision:NAME, default 224; a ViT config: its
            own).
        launch: with a catalog device: graph (CUDA graphs / compiled runtime; default) or
            eager (one host launch per kernel).
        price_per_hour: with device: US dollars per device-hour; adds the predicted cost per
            million tokens to the energy block (joules per token, average power) that every
            prediction on a preset or config carries.
        accumulate: with a catalog device: what 16-bit matmuls accumulate in, fp32 (default;
            cuBLAS, PyTorch, TensorRT-LLM) or fp16 (llama.cpp on NVIDIA GPUs), which GeForce
            tensor cores run up to twice as fast (efficiency term acc16_rel).

    Returns a `Result`: `.to_dict()` is `memwall analyze ... --format json`; `.ops` the
    operation table (with predicted time columns when `device` is given); `.plot(path)` the
    roofline (with `device`). Bad input raises `MemwallError` (the CLI's one line).

    Example:
        >>> memwall.analyze("llama-3-8b", phase="decode", seq_len=4096, precision="bf16",
        ...                 device="h100-sxm")["prediction"]["totals"]["time"]
    """
    model = model_text(model)
    needs_device(price_per_hour, device)
    if phase is not None:
        phase = choice("--phase", phase, PHASES)
    convention = choice("--convention", convention, ("full", "paper"))
    if accumulate is not None:
        accumulate = choice("--accumulate", accumulate, ("fp32", "fp16"))
    if engine is not None:
        engine = choice("--engine", engine, ("closed", "trace"))
    if mla is not None:
        mla = choice("--mla", mla, ("absorbed", "expanded"))
    from memwall.sources import module_source

    src = module_source(model)
    if src is not None:  # torchvision:NAME or module:function: the trace engine
        given = {
            "engine": engine, "gen_len": gen_len, "mla": mla, "seq_len": seq_len,
            "group_size": group_size, "quantize_head": quantize_head or None, "launch": launch,
            "price_per_hour": price_per_hour, "accumulate": accumulate,
        }  # fmt: skip
        _check_module_flags(src, phase, convention, given)
        return _analyze_module(
            src, batch, seq_len, image_size, precision, fused_attention is not False, device, plot
        )  # fmt: skip
    return _analyze_config(
        model, phase, batch, seq_len, gen_len, precision, group_size, quantize_head, convention,
        fused_attention, mla, engine or "closed", device, plot, image_size, launch,
        price_per_hour, accumulate,
    )  # fmt: skip


def _analyze_config(
    model, phase, batch, seq_len, gen_len, precision, group_size, quantize_head, convention,
    fused, mla, engine, device, plot, image_size, launch, price_per_hour=None, accumulate=None,
) -> Result:  # fmt: skip
    from memwall.io import check_output_path
    from memwall.predict.prompt_attention import attention_work
    from memwall.spec import load_model_config, parse_precision

    spec, config = load_model_config(model)
    tokens = image_tokens(spec, seq_len, image_size)  # ViT: the tokens come from the image
    wl = _workload(spec, phase, batch, tokens, gen_len)
    prec = parse_precision(precision, 128 if group_size is None else group_size, quantize_head)
    if plot is not None and device is None:
        raise MemwallError("--plot needs --device (the roofline is drawn against a device)")
    if launch is not None and launch != "graph" and device is None:
        raise MemwallError("--launch needs --device (it sets how kernels reach that device)")
    if accumulate is not None and accumulate != "fp32" and device is None:
        raise MemwallError("--accumulate needs --device (it sets how that device's GEMMs run)")
    if mla is not None and not spec.is_mla:
        raise MemwallError(f"--mla applies to multi-head latent attention models; {spec.name} "
                           "has none")  # fmt: skip
    if plot is not None:
        check_output_path(plot, ("png", "svg"), "--plot file")  # folder, name, writable: first
    df = _count(spec, config, wl, prec, convention, engine, fused, mla)
    payload = _payload(spec, wl, prec, df, convention, engine)
    pred = plotter = None
    if device is not None:
        causal = attention_work(spec, wl.phase, wl.seq_len)
        pred, plotter = _predict(df, device, prec, launch or "graph", causal, accumulate or "fp32")
        payload["prediction"] = pred.to_dict()
        if convention == "full":  # the paper's 8-bit accounting is not what a device runs
            payload["energy"] = analyze_energy(df, pred, wl, prec, price_per_hour)
        elif price_per_hour is not None:
            raise MemwallError("--price-per-hour prices --convention full (what the device runs)")
    title = (
        f"{spec.name} {wl.phase} batch={wl.batch} seq_len={wl.seq_len}"
        + (f" gen_len={wl.gen_len}" if wl.phase == "generate" else "")
        + f" | convention={payload['convention']} precision={payload['precision']}"
        + f" engine={payload['engine']}"
    )
    notes = _caption(payload, pred, launch or "graph", accumulate or "fp32")
    if "energy" in payload:
        notes.append(payload["energy"]["caption"])
    if device is not None:  # real engines' measurements of this model, device and precision
        from memwall.parallel.beside import inference_beside, inference_line

        payload["published"] = inference_beside(model, device, prec.label)
        notes += [inference_line(payload["published"])] if payload["published"] else []
    return _finish(
        payload, df, pred, plotter, plot, OP_COLUMNS, title, notes, spec=spec, kv_cache=True
    )


def _finish(payload, df, pred, plotter, plot, columns, title, notes, **extra) -> Result:
    """Write the plot asked for, and wrap everything in the Result. `extra`: what the table
    renderer needs besides (`kv_cache`: whether the table has a KV-read column)."""
    if plot is not None and plotter is not None:
        plotter(Path(plot))
        payload["plot"] = str(plot)
    rows, cols = op_rows(df, pred, columns)
    return Result(
        command="analyze",
        payload=plain(payload),
        rows=rows,
        columns=cols,
        title=title,
        notes=notes,
        extra={"ops": df, "prediction": pred, "kv_cache": False, **extra},
        plotter=plotter,
    )


def op_rows(df: Any, pred: Any, columns: list[str]) -> tuple[list[dict], list[str]]:
    """The rows and columns of an operation table's CSV: with a prediction, each operation's
    predicted time (and range, bound) beside its counts; the times add up to the total."""
    if pred is None:
        return df.to_dict("records"), list(columns)
    ops = pred.ops
    return ops.to_dict("records"), [*columns, *(c for c in PRED_CSV_COLUMNS if c in ops.columns)]


def _workload(spec, phase: str | None, batch: int | None, seq_len: int, gen_len: int | None):
    from memwall.spec import Workload

    ph = phase if phase is not None else default_phase(spec.is_decoder)
    gl = GEN_LEN_DEFAULT if gen_len is None else gen_len
    if gl < 0 or (ph != "generate" and gl != GEN_LEN_DEFAULT):
        raise MemwallError(
            f"--gen-len {gl} is not accepted here: it applies to --phase generate "
            f"(the phase here is {ph}) and must be >= 1"
        )
    b = BATCH_DEFAULT if batch is None else batch
    return Workload(ph, b, seq_len, gl if ph == "generate" else 0)


def _count(spec, config, wl, prec, convention: str, engine: str, fused, mla: str | None):
    """The op table; `fused` and `mla` None: the library's defaults (`count.ops`)."""
    from memwall.count import MOE_ROUTING, op_table

    if engine == "closed":
        return op_table(spec, wl, prec, convention, fused, mla)
    if convention == "paper":
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


def _payload(spec, wl, prec, df, convention: str, engine: str) -> dict:
    from memwall.count import mla_note, totals
    from memwall.count.ops import attention_note
    from memwall.spec import positions_note

    tot = totals(df)
    full = convention == "full"
    a = df.attrs
    payload: dict = {
        "model": spec.name,
        "convention": convention,
        "engine": engine,
        "precision": a.get("precision", prec.label) if full else "8-bit (paper)",
        "fused_attention": bool(a.get("fused_attention")) and full,
        "workload": {
            "phase": wl.phase,
            "batch": wl.batch,
            "seq_len": wl.seq_len,
            "gen_len": wl.gen_len,
        },
        "params": spec.n_params(),
        "totals": {k: tot[k] for k in TOTAL_KEYS},
        "units": dict(UNITS),
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
            attention_note(spec, bool(a.get("fused_attention")), convention),
            a.get("moe_routing"),
        )
        payload["notes"] = [n for n in notes if n]
    if "coverage" in a:
        payload["coverage"] = a["coverage"]
    return payload


def _predict(
    df, device: str, prec, launch: str, causal: bool | float = False, accumulate: str = "fp32"
) -> tuple[Any, Any]:
    """The predictor for `device`: a measured device (`local`, a saved measurement) prices the
    ops on its own measured roofline; a catalog or what-if device on its spec-sheet roofs
    times published efficiencies (with a range). Returns the prediction and its plotter."""
    from memwall.hardware import get_device
    from memwall.predict.default import default_prediction

    dev = get_device(device)
    if dev.measured and launch != "graph":
        raise MemwallError(
            "--launch applies to catalog and what-if devices; a measured device uses its "
            "own measured per-op overhead"
        )
    if dev.measured and accumulate != "fp32":
        raise MemwallError(
            "--accumulate applies to catalog and what-if devices; a measured device uses its "
            "own measured matmul rate"
        )
    pred = default_prediction(df, dev, prec, launch, causal, accumulate)  # the report's too
    roofline = getattr(pred, "roofline", pred)
    return pred, _roofline_plotter(roofline, roofline.device)


def _roofline_plotter(pred, dev):
    def draw(path: Path) -> None:
        from memwall.plots.roofline import plot_roofline

        plot_roofline(pred, dev, path)

    return draw


def _caption(payload: dict, pred, launch: str, accumulate: str = "fp32") -> list[str]:
    """The lines under the table: totals, the payload's notes, the prediction and its basis."""
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
            caption += f"launch={launch}"
            caption += ", 16-bit GEMMs accumulate in fp16)" if accumulate == "fp16" else ")"
        else:
            caption += f"({pred.device.roof_origin} roofs)"
        caption += f"\n{pred.describe()}" if hasattr(pred, "describe") else ""
    return caption.split("\n")


def _check_module_flags(src, phase: str | None, convention: str, given: dict) -> None:
    """Flags a traced module has no use for, refused when given (never ignored)."""
    if phase is not None and phase != "encode":
        raise MemwallError(
            "a torchvision or module:function MODEL runs one forward call: leave out --phase "
            "(or use --phase encode)"
        )
    if convention != "full":
        raise MemwallError(
            "--convention paper is the closed form's accounting of Transformers; a module is "
            "counted as it executes (--convention full)"
        )
    if given["engine"] == "closed":
        raise MemwallError(
            f"--engine closed needs a config (a preset or config.json); {src.label} is "
            "traced: use --engine trace or leave --engine out"
        )

    def flags(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if given[n] is not None]

    not_applicable(flags("gen_len"), "a module runs one forward call (no generation)")
    not_applicable(flags("mla"), "a traced module runs its attention as its code is written")
    if src.kind == "torchvision":
        not_applicable(flags("seq_len"), "a torchvision model takes images (use --image-size)")
    not_applicable(
        flags("group_size", "quantize_head"),
        "a traced module runs fp32, bf16 or fp16 (integer formats are for presets and configs)",
    )
    not_applicable(
        flags("launch", "accumulate"),
        "a traced module is priced on the plain roofline of --device (no launches or efficiencies)",
    )
    not_applicable(flags("price_per_hour"), "energy and cost are predicted for presets and configs")


def _analyze_module(src, batch, seq_len, image_size, precision, fused, device, plot) -> Result:
    """One traced forward call of the module: per-kernel FLOPs and bytes."""
    from memwall.count import totals
    from memwall.io import check_output_path
    from memwall.spec import parse_precision

    if plot is not None and device is None:
        raise MemwallError("--plot needs --device (the roofline is drawn against a device)")
    if plot is not None:
        check_output_path(plot, ("png", "svg"), "--plot file")  # before any work
    prec = parse_precision(precision)
    from memwall.trace.table import trace_run

    given = {"batch": batch, "seq_len": seq_len, "image_size": image_size}
    asked = [k for k, v in given.items() if v is not None]
    b = BATCH_DEFAULT if batch is None else batch
    tokens = SEQ_LEN_DEFAULT if seq_len is None else seq_len  # offered to an entry point
    df = trace_run(module_run(src, b, image_size, tokens, prec, asked), fused=fused)
    tot = totals(df)
    a = df.attrs
    payload: dict[str, Any] = {
        "model": src.label,
        "convention": "full",
        "engine": "trace",
        "device_traced": a["device"],
        "precision": a["precision"],
        "workload": {
            "phase": "forward",
            "batch": b,
            "inputs": a["inputs"],
        },
        "params": a["params"],
        "totals": {k: tot[k] for k in ("flops", "bytes", "intensity", "bytes_weight")}
        | {k: tot[k] for k in ("bytes_act", "bytes_written")},
        "units": dict(UNITS),
        "coverage": a["coverage"],
        "counted": "traced (memwall.trace), not measured",
        "ops": [{k: r[k] for k in MODULE_OP_COLUMNS if k in r} for r in df.to_dict("records")],
    }
    if src.kind == "entry_point":
        payload["note"] = CODE_NOTE
    pred = plotter = None
    if device is not None:
        from memwall.hardware import get_device
        from memwall.predict import predict_roofline

        dev = get_device(device)
        pred = predict_roofline(df, dev)  # a module has no efficiency terms: the plain roofline
        plotter = _roofline_plotter(pred, dev)
        payload["prediction"] = pred.to_dict()
    uncovered = ", ".join(f"{op} x{n}" for op, n in a["coverage"].items()) or "none"
    notes = [
        f"total: {si(tot['flops'])}FLOP, {si(tot['bytes'], 'B')} moved, intensity "
        f"{tot['intensity']:.3g} FLOP/B (traced on {a['device']}, not measured; "
        f"1 MAC = 2 FLOPs); ops without a FLOP formula: {uncovered}"
    ]
    title = f"{src.label} forward, {a['inputs']} | precision={a['precision']} engine=trace"
    return _finish(payload, df, pred, plotter, plot, MODULE_OP_COLUMNS, title, notes)
