"""`memwall profile`: run a real model, time it, and set the measurement beside the prediction."""

from __future__ import annotations

from contextlib import ExitStack
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
    emit,
    keep_note,
    rich_table,
    si,
)
from memwall.cli._progress import progress_bar


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def summary_rows(res: Any) -> list[dict[str, Any]]:
    """Headline figures: measured, predicted (calibrated and plain roofline), tokens/s."""
    t = res.timing
    if not t.n:
        return [{"what": "measured latency", "value": "-", "detail": "no timed run finished"}]
    rows = [
        {
            "what": "measured latency (median)",
            "value": si(t.median, "s"),
            "detail": f"IQR {si(t.q1, 's')} .. {si(t.q3, 's')} ({_pct(t.relative_iqr)} of the "
            f"median), min {si(t.min, 's')}, max {si(t.max, 's')}, {t.n} runs after "
            f"{t.warmup} warm-up" + (f" ({t.added} added: wide spread)" if t.added else ""),
        },
        {
            "what": "repeatability",
            "value": "NOISY" if t.noisy else "ok",
            "detail": f"runs differ by up to {_pct(t.repeatability)} of the median; noisy when "
            f"the IQR exceeds {_pct(t.to_dict()['noisy_limit'])} of it",
        },
        {
            "what": "predicted latency (calibrated)",
            "value": si(res.predicted_time, "s"),
            "detail": f"error {_pct(res.error)} (|predicted - measured| / measured)",
        },
    ]
    if res.interrupted:
        rows.append(
            {
                "what": "interrupted",
                "value": f"{t.n} of {res.planned_runs}",
                "detail": "timed runs finished; nothing predicted",
            }
        )
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


def by_term_table(rows: list[dict[str, Any]]) -> Any:
    """Which calibration term carries the error (`memwall.studies.profile.term_rows`)."""
    return rich_table(
        "error by calibration term: predicted vs measured time of the ops each term prices",
        rows,
        [
            ("term", "term", None),
            ("predicted", "predicted", lambda v: si(v, "s")),
            ("predicted_share", "share of prediction", _pct),
            ("measured", "measured", lambda v: si(v, "s")),
            ("difference", "pred - meas", lambda v: si(v, "s")),
            ("share_of_error", "share of error", _pct),
        ],
        caption="an op's measured time is split between its kernel term and overhead in "
        "proportion to their predicted times",
    )


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


def result_tables(result: Any) -> list[Any]:
    """The Rich tables of a profile (`memwall.api.profile`'s Result): summary, per op, error by
    term, calibration terms, then the notes."""
    res = result.extra["profile"]
    out = [
        rich_table(
            result.title,
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
    if res.by_term:
        out.append(by_term_table(res.by_term))
    if res.predicted is not None:
        out.append(terms_table(res.predicted.terms))
    out.append(Text("\n".join(result.notes)))
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
        typer.Option(
            help="fp32, bf16, or int8-dynamic (also spelled int8: dynamic int8 Linear layers, "
            "the paper's setting)."
        ),
    ] = "fp32",
    repeats: Annotated[int, typer.Option(help="Timed runs (median and spread reported).")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(help="Intra-op threads (default: every free core but one, at least 1)."),
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
    budget: Annotated[
        float,
        typer.Option(
            help="Seconds of timed runs that may be added while their spread is wide "
            "(interquartile range over 10% of the median); 0: exactly --repeats runs."
        ),
    ] = 30.0,
    recalibrate: Annotated[
        bool, typer.Option("--recalibrate", help="Measure the calibration terms again.")
    ] = False,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Measured latency beside predicted latency (calibrated roofline), per op and end to end."""
    from memwall.api import profile  # torch: only when run

    with ExitStack() as stack:  # the bar starts with the work: bad input is one line alone
        bars: list[Any] = []

        def progress(text: str, runs: float) -> None:
            if not bars:
                bars.append(stack.enter_context(progress_bar(warmup + repeats, text)))
            bars[0].step(text, runs)

        result = profile(
            model,
            phase=phase.value if phase is not None else None,
            batch=batch,
            seq_len=seq_len,
            gen_len=gen_len,
            precision=precision,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            extend_positions=extend_positions,
            per_op=per_op,
            device=device,
            budget=budget,
            recalibrate=recalibrate,
            progress=progress,
        )
    res = result.extra["profile"]
    emit(fmt, result.payload, result.rows, lambda: result_tables(result), result.columns)
    if res.interrupted:
        keep_note(f"{res.timing.n} of {res.planned_runs} timed runs finished, printed above")
        raise typer.Exit(130)
