"""`memwall casestudy`: the paper's Figure 3 (BERT-Base, BERT-Large, GPT-2) on this machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from memwall.cli._common import FormatOpt, app, emit, fail_line, keep_note, rich_table, si
from memwall.cli._progress import progress_bar
from memwall.errors import MemwallError

CSV_COLUMNS_BASE = ["model", "length", "flops", "mops", "intensity"]
_PER_PRECISION = [
    "latency_{p}",
    "latency_{p}_q1",
    "latency_{p}_q3",
    "runs_{p}",
    "relative_iqr_{p}",
    "noisy_{p}",
    "pass_difference_{p}",
    "normalized_{p}",
    "predicted_{p}",
    "error_{p}",
    "roofline_{p}",
]


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MemwallError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise MemwallError(f"--{what} is empty")
    return vals


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


def tables(case: Any) -> list[Any]:
    out: list[Any] = []
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
    out.append(
        rich_table(
            "AI and Memory Wall, Figure 3, on this machine (batch 1)",
            shown,
            cols,
            caption=(
                "FLOPs / MOPs / intensity: counted, paper convention (8-bit, closed form). "
                "Latency: measured median on this machine (random weights), normalised to "
                "BERT-Base at 128 per precision; predicted: calibrated roofline; "
                "error = |predicted - measured| / measured; spread = interquartile range of "
                "the timed runs over their median. BERT: encoder forward over L; "
                "GPT-2: L tokens generated from no prompt."
            ),
        )
    )
    d = case.to_dict()
    lines = []
    for p, r in d["gpt2_over_bert_base_at_128"].items():
        if r is not None:
            lines.append(
                f"GPT-2 (generate 128) / BERT-Base (encode 128), measured at {p}: {r:.3g}x"
            )
    pe = d["prediction_error"]
    if pe["n"]:
        lines.append(
            f"prediction error over {pe['n']} measured runs: median {_pct(pe['median'])}, "
            f"worst {_pct(pe['worst'])}"
        )
    lines += [f"note: {n}" for n in case.notes]
    c = case.calibration
    if c:
        busy = c.get("others_busy_cores")
        lines.append(
            f"calibration: {c['age_days'] * 24:.1f} h old, {c['rounds']} interleaved rounds, "
            f"largest spread {_pct(c.get('max_spread'))}, other processes "
            + (f"{busy:.1f} cores busy" if busy is not None else "not measured")
            + (", NOISY (not cached)" if c["noisy"] else "")
        )
    env = case.env
    if env:
        lines.append(
            f"environment: {env['cpu_model']}, {env['threads']} threads "
            f"({env.get('threads_choice', '')}), torch {env['torch']}, "
            f"transformers {env['transformers']}, load average {env['load_average_1min']:.2f}"
        )
    out.append(Text("\n".join(lines)))
    return out


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
    from memwall.plots.casestudy import FORMATS, plot_casestudy
    from memwall.plots.save import check_plot_path
    from memwall.studies.casestudy import casestudy_here  # torch: only when run

    model_list = [m.strip() for m in models.split(",") if m.strip()]
    if not model_list:
        raise MemwallError("--models is empty")
    length_list = _ints(lengths, "lengths")
    prec_list = [p.strip().lower() for p in precisions.split(",") if p.strip()]
    if plot is not None:
        check_plot_path(plot, FORMATS)  # before any work
    keep_note("the rows measured so far are printed")
    with progress_bar(None, "case study") as bar:
        sized = {"total": 0.0}

        def on_progress(desc: str, advance: float, total: float) -> None:
            bar.describe(desc)
            if total > 0 and sized["total"] != total:
                sized["total"] = total
                bar.resize(total)
            if advance:
                bar.advance(advance)

        case = casestudy_here(
            model_list,
            length_list,
            prec_list,
            full,
            budget,
            repeats,
            threads,
            None if device.lower() == "none" else device,
            reuse_calibration,
            ON_ROW,
            on_progress,
        )
    plot_error = ""
    if plot is not None:
        try:
            plot_casestudy(case, plot)
            case.notes.append(f"figure written to {plot}")
        except (MemwallError, OSError) as e:
            plot_error = f"figure not written to {plot}: {e}; the rows are printed above"
            case.notes.append(plot_error)
    csv_cols = CSV_COLUMNS_BASE + [c.format(p=p) for p in case.precisions for c in _PER_PRECISION]
    emit(fmt, case.to_dict(), case.rows, lambda: tables(case), csv_cols)
    if case.interrupted:
        fail_line("interrupted: the rows measured so far are above", prefix="memwall: ")
        sys.exit(130)
    if plot_error:
        fail_line(plot_error)
        sys.exit(1)


__all__ = ["casestudy_cmd"]
