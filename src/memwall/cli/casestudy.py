"""`memwall casestudy`: the paper's Figure 3 (BERT-Base, BERT-Large, GPT-2) on this machine."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from memwall.cli._common import FormatOpt, app, emit, fail_line, keep_note, rich_table, si
from memwall.cli._progress import progress_bar


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ratio(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}x"


def _spreads(row: dict[str, Any], precisions: Any) -> dict[str, str]:
    """Each precision's measured spread (IQR over median), flagged NOISY where it stayed wide."""
    out = {}
    for p in precisions:
        iqr = row.get(f"relative_iqr_{p}")
        flag = " NOISY" if row.get(f"noisy_{p}") else ""
        out[f"spread_{p}"] = "-" if iqr is None else _pct(iqr) + flag
    return out


def tables(result: Any) -> list[Any]:
    """The Rich table of a case study (`memwall.api.casestudy`'s Result), then the lines under
    it (`result.notes`: the caption first)."""
    case = result.extra["case"]
    caption, *lines = result.notes
    shown = [{**r, **_spreads(r, case.precisions)} for r in case.rows]
    cols: list[tuple[str, str, Any]] = [
        ("model", "model", None),
        ("length", "L", str),
        ("flops", "FLOPs", lambda v: si(v)),
        ("mops", "MOPs", lambda v: si(v, "B")),
        ("intensity", "FLOP/B", lambda v: f"{v:.3g}"),
    ]
    for p in case.precisions:
        cols += [
            (f"latency_{p}", f"{p} measured", lambda v: si(v, "s")),
            (f"normalized_{p}", f"{p} norm.", _ratio),
            (f"predicted_{p}", f"{p} predicted", lambda v: si(v, "s")),
            (f"error_{p}", f"{p} error", _pct),
            (f"spread_{p}", f"{p} spread", None),
        ]
    return [rich_table(result.title, shown, cols, caption=caption), Text("\n".join(lines))]


# Test hook: called with each measured row (tests inject a KeyboardInterrupt here).
ON_ROW = None


@app.command("casestudy")
def casestudy_cmd(
    full: Annotated[
        bool, typer.Option("--full", help="Measure every length (may take an hour on 2 cores).")
    ] = False,
    budget: Annotated[
        float, typer.Option(help="Seconds the default run may spend (predicted).")
    ] = 600.0,
    models: Annotated[
        str, typer.Option(help="Comma-separated models.")
    ] = "bert-base,bert-large,gpt2",
    lengths: Annotated[
        str, typer.Option(help="Comma-separated lengths.")
    ] = "128,256,512,1024,2048,4096",
    precisions: Annotated[
        str, typer.Option(help="Comma-separated: int8, fp32, bf16.")
    ] = "int8,fp32",
    repeats: Annotated[int, typer.Option(help="Timed runs of short rows (long rows: fewer).")] = 3,
    threads: Annotated[
        int | None,
        typer.Option(help="Intra-op threads (default: every free core but one, at least 1)."),
    ] = None,
    device: Annotated[
        str, typer.Option(help="Measured device for the plain roofline ('none' to skip).")
    ] = "local",
    reuse_calibration: Annotated[
        bool,
        typer.Option(
            "--reuse-calibration", help="Use the cached calibration instead of measuring it now."
        ),
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write the four-panel figure (.png/.svg).")
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """FLOPs, MOPs, intensity (counted) and latency (measured and predicted) of the case study."""
    from memwall.api import casestudy  # torch: only when run

    keep_note("the rows measured so far are printed")
    with ExitStack() as stack:  # the bar starts with the work: bad input is one line alone
        bars: list[Any] = []
        sized = {"total": 0.0}

        def on_progress(desc: str, advance: float, total: float) -> None:
            if not bars:
                bars.append(stack.enter_context(progress_bar(None, "case study")))
            bar = bars[0]
            bar.describe(desc)
            if total > 0 and sized["total"] != total:
                sized["total"] = total
                bar.resize(total)
            if advance:
                bar.advance(advance)

        result = casestudy(
            full=full,
            budget=budget,
            models=models,
            lengths=lengths,
            precisions=precisions,
            repeats=repeats,
            threads=threads,
            device=device,
            reuse_calibration=reuse_calibration,
            plot=plot,
            progress=on_progress,
            on_row=ON_ROW,
        )
    emit(fmt, result.payload, result.rows, lambda: tables(result), result.columns)
    plot_error = result.extra["plot_error"]
    if result.payload["interrupted"]:
        fail_line("interrupted: the rows measured so far are above", prefix="memwall: ")
        sys.exit(130)
    if plot_error:
        fail_line(plot_error)
        sys.exit(1)


__all__ = ["casestudy_cmd"]
