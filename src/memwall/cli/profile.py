"""`memwall profile`: run a real model, time it, and set the measurement beside the prediction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.text import Text

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
    err_console,
    rich_table,
    si,
)
from memwall.errors import MemwallError
from memwall.spec import Workload

OP_CSV = [
    "name",
    "kind",
    "predicted",
    "measured",
    "error",
    "share",
    "roofline_uncalibrated",
    "flops",
    "bytes",
    "term",
]


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


class Bar:
    """A Rich progress bar on stderr: advance by units of work, describe, resize."""

    def __init__(self, prog: Any, task: Any) -> None:
        self._prog, self._task = prog, task

    def advance(self, n: float = 1.0) -> None:
        self._prog.update(self._task, advance=n)

    def describe(self, text: str) -> None:
        self._prog.update(self._task, description=text)

    def resize(self, total: float) -> None:
        self._prog.update(self._task, total=total)


@contextmanager
def progress_bar(total: float | None, label: str) -> Iterator[Bar]:
    """A transient Rich bar on stderr (never on stdout, which carries the result)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as prog:
        yield Bar(prog, prog.add_task(label, total=total))


def summary_rows(res: Any) -> list[dict[str, Any]]:
    """Headline figures: measured, predicted (calibrated and plain roofline), tokens/s."""
    t = res.timing
    rows = [
        {
            "what": "measured latency (median)",
            "value": si(t.median, "s"),
            "detail": f"IQR {si(t.q1, 's')} .. {si(t.q3, 's')}, min {si(t.min, 's')}, "
            f"max {si(t.max, 's')}, {t.n} runs after {t.warmup} warm-up",
        },
        {
            "what": "predicted latency (calibrated)",
            "value": si(res.predicted_time, "s"),
            "detail": f"error {_pct(res.error)} (|predicted - measured| / measured)",
        },
    ]
    if res.baseline is not None:
        b = res.baseline
        rows.append(
            {
                "what": "predicted latency (plain roofline)",
                "value": si(b["time"], "s"),
                "detail": f"error {_pct(abs(b['time'] - t.median) / t.median)}; roofs of device "
                f"{b['device']!r} ({b['roof_origin']})",
            }
        )
    if res.tokens_per_s is not None:
        rows.append(
            {
                "what": "tokens/s (measured)",
                "value": f"{res.tokens_per_s:.4g}",
                "detail": f"{res.tokens} tokens per run",
            }
        )
    if res.op_profile is not None:
        p = res.op_profile
        rows.append(
            {
                "what": "per-op profile coverage",
                "value": _pct(p.coverage),
                "detail": f"of {si(p.total, 's')} profiled model time named; "
                f"framework (unnamed) {si(p.framework, 's')}",
            }
        )
    return rows


def terms_table(terms: Any) -> Any:
    """The calibration terms (curves on one line each)."""
    rows = [{"name": t.name, "value": t.display(), "unit": t.unit, "how": t.how} for t in terms]
    return rich_table(
        "calibration terms (measured on this machine)",
        rows,
        [
            ("name", "term", None),
            ("value", "value", None),
            ("unit", "unit", None),
            ("how", "how", None),
        ],
    )


def result_tables(res: Any) -> list[Any]:
    wl = res.workload
    title = (
        f"{res.model} {wl.phase} batch={wl.batch} seq_len={wl.seq_len}"
        + (f" gen_len={wl.gen_len}" if wl.phase == "generate" else "")
        + f" | precision={res.precision} | measured on this machine"
    )
    out = [
        rich_table(
            title,
            summary_rows(res),
            [("what", "", None), ("value", "value", str), ("detail", "", None)],
        )
    ]
    if res.ops:
        out.append(
            rich_table(
                "per operation: predicted (calibrated roofline) vs measured (torch.profiler)",
                res.ops,
                [
                    ("name", "op", None),
                    ("predicted", "predicted", lambda v: si(v, "s")),
                    ("measured", "measured", lambda v: si(v, "s")),
                    ("error", "error", _pct),
                    ("share", "share", _pct),
                    ("roofline_uncalibrated", "plain roofline", lambda v: si(v, "s")),
                    ("term", "bound by", None),
                ],
                caption="times summed over layers and steps; share = of profiled model time",
            )
        )
    if res.predicted is not None:
        out.append(terms_table(res.predicted.terms))
    env = res.env
    lines = [f"note: {n}" for n in res.notes]
    lines.append(
        f"environment: {env['cpu_model']}, {env['threads']} threads "
        f"({env.get('threads_choice', '')}), torch {env['torch']}, "
        f"transformers {env['transformers']}, load average {env['load_average_1min']:.2f}, "
        f"{env['date']}"
    )
    out.append(Text("\n".join(lines)))
    return out


@app.command("profile")
def profile_cmd(
    model: ModelArg,
    phase: PhaseOpt = None,
    batch: BatchOpt = 1,
    seq_len: SeqLenOpt = 128,
    gen_len: GenLenOpt = 128,
    precision: Annotated[
        str,
        typer.Option(help="fp32, bf16, or int8 (dynamic int8 Linear layers: the paper's setting)."),
    ] = "fp32",
    repeats: Annotated[int, typer.Option(help="Timed runs (median and spread reported).")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads (default: torch's, all cores).")
    ] = None,
    extend_positions: Annotated[
        bool,
        typer.Option(
            "--extend-positions",
            help="Enlarge a learned position table to run beyond the model's length.",
        ),
    ] = False,
    per_op: Annotated[
        bool, typer.Option("--per-op/--no-per-op", help="Profile one run per operation.")
    ] = True,
    device: Annotated[
        str,
        typer.Option(help="Measured device for the plain roofline ('none' to skip)."),
    ] = "local",
    recalibrate: Annotated[
        bool, typer.Option("--recalibrate", help="Measure the calibration terms again.")
    ] = False,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Measured latency beside predicted latency (calibrated roofline), per op and end to end."""
    from memwall.calibrate import Calibration
    from memwall.profile import (
        build,
        check_positions,
        check_precision,
        local_device,
        profile_loaded,
        resolve,
    )
    from memwall.profile import (
        threads as use_threads,
    )

    spec, cfg = resolve(model)
    ph = phase.value if phase is not None else default_phase(spec.is_decoder)
    wl = Workload(ph, batch, seq_len, gen_len if ph == "generate" else 0)
    prec = check_precision(precision, spec)
    positions, pos_note = check_positions(spec, wl, extend_positions)
    if not 1 <= repeats <= 10_000:
        raise MemwallError(f"--repeats must be between 1 and 10000, got {repeats}")
    if not 0 <= warmup <= 1000:
        raise MemwallError(f"--warmup must be between 0 and 1000, got {warmup}")
    dev, dev_note = local_device(None if device.lower() == "none" else device)
    with use_threads(threads), progress_bar(warmup + repeats, f"building {spec.name}") as bar:
        lm = build(spec, cfg, prec, positions, wl)
        bar.describe(f"timing {spec.name} {wl.phase} {prec}")
        cal = Calibration.load(recalibrate=recalibrate, on_measure=bar.describe)
        notes = [n for n in (pos_note, dev_note) if n]
        res = profile_loaded(
            lm, wl, repeats, warmup, per_op, cal, dev, notes, lambda _i: bar.advance()
        )
    emit(fmt, res.to_dict(), res.ops, lambda: result_tables(res), OP_CSV)
