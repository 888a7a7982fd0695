"""`memwall.devices`: the device catalog (spec sheets) and this machine's saved measurements.
`memwall devices` parses its flags and calls this."""

from __future__ import annotations

from typing import Any

from memwall.api._common import choice, plain
from memwall.api._result import Result

KINDS = ("cpu", "gpu", "tpu", "accelerator")
UNITS = {
    "peak_*": "FLOP/s (OP/s for int8/int4), dense",
    "mem_capacity": "bytes",
    "mem_bandwidth": "bytes/s",
    "interconnect_bandwidth": "bytes/s, both directions, per device",
    "llc_bytes": "bytes",
    "tdp_w": "W",
}
CAPTION = (
    "devices; spec-sheet roofs, * = measured here. Peaks in FLOP/s (OP/s for int8), dense; "
    "ridge = highest peak / memory bandwidth (FLOP/byte); memory in GiB as vendors' GB. "
    "Sources per row: --format json or csv."
)


def devices(
    kind: str | None = None,
    vendor: str | None = None,
    since: int | None = None,
    name: str | None = None,
    measured: bool = True,
) -> Result:
    """The device catalog: peaks per dtype, memory, interconnect, and a source for every row;
    with `measured`, this machine's saved measurements (`memwall measure`) too.

    Args:
        kind: only this kind of device: cpu, gpu, tpu or accelerator. Default: all.
        vendor: only vendors containing this text (e.g. nvidia, amd). Default: all.
        since: only devices released in or after this year. Default: all.
        name: only names containing this text (e.g. h100). Default: all.
        measured: include this machine's saved measurements (default True). A saved file that
            does not load is skipped, never fatal: `result.extra["warnings"]` says which.

    Returns a `Result`: `.to_dict()` is `memwall devices ... --format json`; `.to_frame()`
    one row per device (the CSV); `.extra["devices"]` the `Device` objects.

    Example:
        >>> memwall.devices(name="h100").to_dict()["devices"][0]["mem_bandwidth"]
    """
    from memwall.hardware import COLUMNS, filter_devices, load_catalog

    if kind is not None:
        kind = choice("--kind", kind, KINDS)
    saved, skipped = _saved_devices() if measured else ([], [])
    sel = filter_devices(load_catalog() + saved, kind, vendor, since, name)
    payload = {
        "count": len(sel),
        "units": dict(UNITS),
        "devices": [d.to_dict() for d in sel],
    }
    return Result(
        command="devices",
        payload=plain(payload),
        rows=[d.row() for d in sel],
        columns=[*COLUMNS, "measured"],
        title="memwall devices",
        notes=[f"{len(sel)} {CAPTION}"],
        extra={
            "devices": sel,
            "table_rows": [_table_row(d) for d in sel],
            "warnings": _skipped_warning(skipped),
        },  # fmt: skip
    )


def _saved_devices() -> tuple[list[Any], list[str]]:
    """The saved measurements that load, and why each of the others did not (one bad file
    must not hide the catalog)."""
    from memwall.errors import MemwallError
    from memwall.hardware import load_saved, saved_names

    out, skipped = [], []
    for n in saved_names():
        try:
            out.append(load_saved(n))
        except MemwallError as e:
            skipped.append(str(e))
    return out, skipped


def _skipped_warning(skipped: list[str]) -> list[str]:
    """One warning however many saved files were skipped: the count and the first."""
    if len(skipped) == 1:
        return [f"skipping {skipped[0]}"]
    if skipped:
        from memwall.hardware import data_dir

        return [
            f"skipped {len(skipped)} malformed saved device files in {data_dir()} "
            f"(first: {skipped[0]})"
        ]
    return []


def _table_row(d: Any) -> dict[str, Any]:
    """What the table shows of a device: best 16- and 8-bit peaks, its ridge point."""
    top = max(d.peaks.values(), default=None)
    return {
        **d.row(),
        "fp32": d.peaks.get("fp32"),
        "p16": max((d.peaks[k] for k in ("bf16", "fp16") if k in d.peaks), default=None),
        "p8": max((d.peaks[k] for k in ("fp8", "int8") if k in d.peaks), default=None),
        "ridge": top / d.mem_bandwidth if top and d.mem_bandwidth else None,
        "label": d.name + (" *" if d.measured else ""),
        "year": str(d.released.year) if d.released else None,
    }
