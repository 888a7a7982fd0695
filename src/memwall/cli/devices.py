"""`memwall devices`: the device catalog (spec sheets) and this machine's saved measurements."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from memwall.cli._common import FormatOpt, app, binary, emit, fail_line, rich_table, si
from memwall.errors import MemwallError
from memwall.hardware import (
    COLUMNS,
    Device,
    data_dir,
    filter_devices,
    load_catalog,
    load_saved,
    saved_names,
)


class Kind(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    tpu = "tpu"
    accelerator = "accelerator"


def _best16(d: Device) -> float | None:
    return max((d.peaks[k] for k in ("bf16", "fp16") if k in d.peaks), default=None)


def _best8(d: Device) -> float | None:
    return max((d.peaks[k] for k in ("fp8", "int8") if k in d.peaks), default=None)


def _saved_devices() -> tuple[list[Device], list[str]]:
    """The saved measurements that load, and why each of the others did not (one bad file
    must not hide the catalog)."""
    out, skipped = [], []
    for n in saved_names():
        try:
            out.append(load_saved(n))
        except MemwallError as e:
            skipped.append(str(e))
    return out, skipped


def _warn_skipped(skipped: list[str]) -> None:
    """One warning line however many saved files were skipped: the count and the first."""
    if len(skipped) == 1:
        fail_line(f"skipping {skipped[0]}", prefix="memwall: warning: ")
    elif skipped:
        fail_line(
            f"skipped {len(skipped)} malformed saved device files in {data_dir()} "
            f"(first: {skipped[0]})",
            prefix="memwall: warning: ",
        )


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
    saved, skipped = _saved_devices() if measured else ([], [])
    sel = filter_devices(load_catalog() + saved, kind.value if kind else None, vendor, since, name)
    _warn_skipped(skipped)  # after the filters: a refusal stays one line
    rows = [d.row() for d in sel]
    payload = {
        "count": len(sel),
        "units": {
            "peak_*": "FLOP/s (OP/s for int8/int4), dense",
            "mem_capacity": "bytes",
            "mem_bandwidth": "bytes/s",
            "interconnect_bandwidth": "bytes/s, both directions, per device",
            "llc_bytes": "bytes",
            "tdp_w": "W",
        },
        "devices": [d.to_dict() for d in sel],
    }

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
        trows = []
        for d in sel:
            top = max(d.peaks.values(), default=None)
            trows.append(
                {
                    **d.row(),
                    "fp32": d.peaks.get("fp32"),
                    "p16": _best16(d),
                    "p8": _best8(d),
                    "ridge": top / d.mem_bandwidth if top and d.mem_bandwidth else None,
                    "label": d.name + (" *" if d.measured else ""),
                    "year": str(d.released.year) if d.released else None,
                }
            )
        caption = (
            f"{len(sel)} devices; spec-sheet roofs, * = measured here. Peaks in FLOP/s (OP/s "
            "for int8), dense; ridge = highest peak / memory bandwidth (FLOP/byte); memory in "
            "GiB as vendors' GB. Sources per row: --format json or csv."
        )
        return [rich_table("memwall devices", trows, cols, caption)]

    emit(fmt, payload, rows, table, [*COLUMNS, "measured"])
