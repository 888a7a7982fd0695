"""`memwall parallel`: a model split over N devices: per-device work, collectives, step time."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from memwall.cli._common import (
    FormatOpt,
    ModelArg,
    app,
    binary,
    emit,
    refuse_options,
    rich_table,
    si,
)
from memwall.count import MOE_ROUTING
from memwall.errors import MemwallError
from memwall.parallel.api import ParallelResult, parallel_analysis
from memwall.spec import load_model


class Mode(str, Enum):
    train = "train"
    infer = "infer"


class Ckpt(str, Enum):
    none = "none"
    selective = "selective"
    full = "full"


class Algo(str, Enum):
    auto = "auto"
    ring = "ring"
    tree = "tree"


def _opt_int(help_: str):
    return Annotated[int | None, typer.Option(help=help_)]


@app.command("parallel")
def parallel(
    model: ModelArg,
    mode: Annotated[Mode, typer.Option(help="train: one iteration; infer: prefill + decode.")] = (
        Mode.train
    ),
    device: Annotated[str, typer.Option(help="Catalog device, or local (measured).")] = "h100-sxm",
    devices: Annotated[int, typer.Option(help="Devices in all (N).")] = 8,
    tp: _opt_int("Tensor-parallel degree (default 1).") = None,
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
    precision: Annotated[str, typer.Option(help="bf16, fp16, fp32, ...")] = "bf16",
    do_search: Annotated[
        bool, typer.Option("--search", help="Rank every layout that fits by step time.")
    ] = False,
    no_overlap: Annotated[
        bool, typer.Option("--no-overlap", help="Do not hide gradient sync behind backward.")
    ] = False,
    algorithm: Annotated[Algo, typer.Option(help="Collective algorithm.")] = Algo.auto,
    efficiency: Annotated[
        bool,
        typer.Option(
            "--efficiency", help="Kernels at published efficiencies instead of the dense peak."
        ),
    ] = False,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Split MODEL over N devices: per-device memory and work, every collective, step time, MFU."""
    if do_search:
        refuse_options(SEARCHED, "--search chooses the layout (degrees, ZeRO, checkpointing, "
                       "interleaving, sequence parallelism) itself")  # fmt: skip
    if mode is Mode.infer:
        refuse_options(TRAIN_ONLY, "for --mode train only; inference has no backward pass, "
                       "gradients or optimizer state")  # fmt: skip
        if do_search:
            refuse_options(["--micro-batch"], "an inference --search runs batch / dp per replica")
    r = parallel_analysis(
        model, mode.value, device, devices, tp, pp, dp, ep, zero, sequence_parallel, interleave,
        checkpointing.value, batch, micro_batch, seq_len, precision, do_search, not no_overlap,
        algorithm.value, efficiency,
    )  # fmt: skip
    d = r.to_dict()
    if load_model(model).is_moe:  # step times read the experts each step's tokens touch
        d["moe_routing"] = MOE_ROUTING
    note = [f"note: {d['moe_routing']}"] if "moe_routing" in d else []
    emit(fmt, d, d["collectives"], lambda: [*_tables(r, d), *note])


# Flags that --search sets itself, and flags of training alone (refused when typed).
SEARCHED = (
    "--tp", "--pp", "--dp", "--ep", "--zero", "--checkpointing", "--interleave",
    "--sequence-parallel",
)  # fmt: skip
TRAIN_ONLY = ("--zero", "--checkpointing", "--no-overlap")


def _tables(r: ParallelResult, d: dict) -> list:
    p = r.plan
    head = (
        f"{d['model']} {d['mode']} on {d['devices']} x {d['device']}, {p.layout.label}, "
        f"batch {d['batch']} (micro-batch {d['micro_batch']}, {d['micro_batches']} per replica), "
        f"seq {d['seq_len']}, {d['precision']}"
    )
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
        + (f"; activations of {flight:g} micro-batches in flight" if flight else ""),
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
        d["collectives"],
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
    cross = d["communication_exceeds_compute_at"]
    summary = (
        f"tokens/s {si(d['tokens_per_s'])}; MFU {100 * d['mfu']:.1f}% of the dense peak "
        f"{si(d['peak_flops'], 'FLOP/s')} per device (predicted)"
    )
    if d["mode"] == "train":
        summary += "; exposed communication exceeds compute from " + (
            f"{cross} devices (more data parallelism, same batch)" if cross else "no device count "
            "the batch allows"
        )  # fmt: skip
    out = [head, step, summary, mem, coll]
    if r.search is not None:
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
    return out


def measure_collectives_cli(world: int, quick: bool, fmt) -> None:
    """`memwall measure --collectives`: time, fit, save (complete runs only), render."""
    from memwall.measure.collectives import measure_collectives_and_save

    res = measure_collectives_and_save(world, quick)
    rows = res["results"]

    def table():
        cols = [
            ("kind", "collective", None),
            ("bytes", "message", binary),
            ("time", "time", lambda v: si(v, "s")),
            ("algbw", "alg bw", lambda v: si(v, "B/s")),
            ("busbw", "bus bw", lambda v: si(v, "B/s")),
        ]
        fits = "; ".join(
            f"{k}: alpha {si(f['alpha'], 's')}, beta "
            + ("" if f.get("beta_resolved", True) else "at least ")
            + si(f["beta"], "B/s")
            for k, f in res["fit"].items()
        )
        skipped = "; ".join(f"{k} skipped ({why})" for k, why in res["skipped"].items())
        cap = (
            f"measured: {res['world']} local processes, {res['backend']}, torch {res['torch']}, "
            f"{res['date']}; bus bw = alg bw x nccl-tests factor.\nfit time = alpha + bus bytes"
            f" / beta: {fits}" + (f"\n{skipped}" if skipped else "")
            + (f"\nsaved: {res['saved']}" if res.get("saved") else "\nnot saved (incomplete)")
        )  # fmt: skip
        return [rich_table("memwall measure --collectives", rows, cols, cap)]

    emit(fmt, res, rows, table, ["kind", "bytes", "time", "algbw", "busbw"])
    if res["interrupted"]:
        raise typer.Exit(130)  # the CLI's one line: interrupted, nothing saved
    if not res["complete"]:
        raise MemwallError("collectives measurement incomplete (a process stalled or died): "
                           "the rows above are partial; nothing saved")  # fmt: skip
