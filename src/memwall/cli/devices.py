"""`memwall devices`: the device catalog (spec sheets) and this machine's saved measurements.

Parses the flags, calls `memwall.api.devices` and renders its Result."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from memwall.cli._common import FormatOpt, app, binary, emit, fail_line, rich_table, si


class Kind(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    tpu = "tpu"
    accelerator = "accelerator"


@app.command("devices")
def devices(
    kind: Annotated[Kind | None, typer.Option(help="Only this kind of device.")] = None,
    vendor: Annotated[
        str | None, typer.Option(help="Only vendors containing this text (e.g. nvidia, amd).")
    ] = None,
    since: Annotated[
        int | None, typer.Option(help="Only devices released in or after this year.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Only names containing this text (e.g. h100).")
    ] = None,
    measured: Annotated[
        bool,
        typer.Option(
            "--measured/--no-measured",
            help="Include this machine's saved measurements (memwall measure).",
        ),
    ] = True,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """The device catalog: peaks per dtype, memory, interconnect, and a source for every row."""
    from memwall.api import devices as run

    result = run(kind.value if kind else None, vendor, since, name, measured)
    for line in result.extra["warnings"]:  # after the filters: a refusal stays one line
        fail_line(line, prefix="memwall: warning: ")

    def table():
        cols = [
            ("label", "name", None),
            ("year", "year", None),
            ("fp32", "fp32", lambda v: si(v)),
            ("p16", "bf16/fp16", lambda v: si(v)),
            ("p8", "fp8/int8", lambda v: si(v)),
            ("mem_bandwidth", "mem B/s", lambda v: si(v)),
            ("mem_capacity", "memory", binary),
            ("ridge", "ridge", lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.3g}"),
        ]
        rows = result.extra["table_rows"]
        return [rich_table(result.title, rows, cols, "\n".join(result.notes))]

    emit(fmt, result.payload, result.rows, table, result.columns)
