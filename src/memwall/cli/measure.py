"""`memwall measure`: this machine's empirical roofline, saved as a device."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Any

import typer

from memwall.api._measure import caption as _caption  # noqa: F401  (its old name, for tests)
from memwall.cli._common import (
    FormatOpt,
    app,
    binary,
    emit,
    fail_line,
    keep_note,
    rich_table,
    si,
    typed_options,
)
from memwall.cli._progress import progress_bar
from memwall.errors import MemwallError


def _fmt(v: Any) -> str:
    if v is None:
        return "unavailable"
    return si(v) if v >= 1 else si(v, "s")


@app.command("measure")
def measure_cmd(
    quick: Annotated[
        bool, typer.Option("--quick", help="Coarse and fast (under 30 s) instead of ~3 min.")
    ] = False,
    save: Annotated[
        str | None,
        typer.Option(help="Also save under this name (always saved as 'local')."),
    ] = None,
    collectives: Annotated[
        bool, typer.Option("--collectives", help="Time collectives on --world local processes.")
    ] = False,
    world: Annotated[int, typer.Option(help="Processes for --collectives.")] = 2,
    device: Annotated[
        str, typer.Option(help="Where to measure: cpu (default), cuda, cuda:N or mps.")
    ] = "cpu",
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Measure this machine's roofline: bandwidth per memory level, peak FLOP/s, overheads."""
    from memwall.api import measure

    world_asked = world if "--world" in typed_options() else None  # None: not typed
    if collectives:  # memwall parallel's measurement (torch.distributed), no bar
        result = measure(quick=quick, save=save, collectives=True, world=world_asked, device=device)
        return _render_collectives(result, fmt)
    keep_note("the previous saved measurement is kept")
    with ExitStack() as stack:  # the bar starts with the work: bad input is one line alone
        bars: list[Any] = []

        def step(text: str, units: float = 0.0) -> None:
            if not bars:
                bars.append(stack.enter_context(progress_bar(None, "measuring")))
            bars[0].step(text, units)

        result = measure(quick=quick, save=save, world=world_asked, device=device, progress=step)
    payload = result.payload
    cols = [
        ("quantity", "quantity", None),
        ("value", "value", _fmt),
        ("unit", "unit", None),
        ("how", "how (measured)", None),
    ]
    table = [rich_table(result.title, result.rows, cols, "\n".join(result.notes))]
    emit(fmt, payload, result.rows, lambda: table, result.columns)
    err = payload["save_error"]
    if payload["metadata"].get("interrupted"):
        kept = payload.get("save_note") or err or "nothing saved"
        keep_note(f"partial measurement printed above; {kept}")
        raise typer.Exit(130)
    if err and "incomplete" in err:
        raise MemwallError(err)
    if err:
        fail_line(f"{err}; the results are printed above")
        raise typer.Exit(1)


def _render_collectives(result: Any, fmt: Any) -> None:
    """`memwall measure --collectives`: the table, then exit 130 (interrupted) or one line
    (incomplete: a process stalled or died; nothing saved)."""
    cols = [
        ("kind", "collective", None),
        ("bytes", "message", binary),
        ("time", "time", lambda v: si(v, "s")),
        ("algbw", "alg bw", lambda v: si(v, "B/s")),
        ("busbw", "bus bw", lambda v: si(v, "B/s")),
    ]
    table = [rich_table(result.title, result.rows, cols, "\n".join(result.notes))]
    emit(fmt, result.payload, result.rows, lambda: table, result.columns)
    if result.payload["interrupted"]:
        raise typer.Exit(130)  # the CLI's one line: interrupted, nothing saved
    if not result.payload["complete"]:
        raise MemwallError("collectives measurement incomplete (a process stalled or died): "
                           "the rows above are partial; nothing saved")  # fmt: skip
