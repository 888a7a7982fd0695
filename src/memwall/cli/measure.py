"""`memwall measure`: this machine's empirical roofline, saved as a device."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from memwall.cli._common import FormatOpt, app, binary, emit, err_console, rich_table, si
from memwall.errors import MemwallError
from memwall.hardware import check_save_name, device_from_measurement, save_measurement


def result_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measured quantity: quantity, value (base units), unit, how it was measured."""
    notes = res.get("notes", {})
    rows = [
        {
            "quantity": "dram_bandwidth",
            "value": res.get("dram_bandwidth"),
            "unit": "bytes/s",
            "how": notes.get("dram_bandwidth", ""),
        }
    ]
    for d, v in (res.get("peak_flops") or {}).items():
        rows.append(
            {
                "quantity": f"peak_flops.{d}",
                "value": v,
                "unit": "OP/s" if d.startswith("int") else "FLOP/s",
                "how": notes.get(f"peak_{d}", ""),
            }
        )
    if not res.get("cache_levels"):
        rows.append(
            {
                "quantity": "cache levels",
                "value": None,
                "unit": "bytes/s",
                "how": "no plateau found in the read-bandwidth curve",
            }
        )
    for c in res.get("cache_levels") or []:
        rows.append(
            {
                "quantity": f"cache.{c['name']}",
                "value": c["bandwidth"],
                "unit": "bytes/s",
                "how": f"read plateau up to {binary(c['size'])}",
            }
        )
    rows.append(
        {
            "quantity": "gemv_bandwidth",
            "value": res.get("gemv_bandwidth"),
            "unit": "bytes/s",
            "how": notes.get("gemv_bandwidth", ""),
        }
    )
    rows.append(
        {
            "quantity": "op_overhead",
            "value": res.get("op_overhead"),
            "unit": "s",
            "how": "one eager torch op on a 1-element tensor",
        }
    )
    return rows


@app.command("measure")
def measure_cmd(
    quick: Annotated[
        bool, typer.Option("--quick", help="Coarse and fast (under 30 s) instead of ~3 min.")
    ] = False,
    save: Annotated[
        str | None,
        typer.Option(help="Also save under this name (always saved as 'local')."),
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Measure this machine's roofline: bandwidth per memory level, peak FLOP/s, overheads."""
    from memwall.measure import config, is_complete, measure

    name = check_save_name(save) if save is not None else None
    res = measure(config(quick), progress=True)
    meta = res["metadata"]
    saved: list[str] = []
    if is_complete(res):
        saved = [str(p) for p in save_measurement(res, name)]
    payload = {**res, "saved": saved, "device": name or "local"}
    if is_complete(res):
        dev = device_from_measurement(res, name or "local")
        payload["ridge"] = {d: dev.ridge(d) for d in dev.peaks}
    rows = result_rows(res)

    def table():
        cols = [
            ("quantity", "quantity", None),
            ("value", "value", lambda v: _fmt(v)),
            ("unit", "unit", None),
            ("how", "how (measured)", None),
        ]
        cap = (
            f"{meta['cpu_model']}, {meta['threads']} threads, torch {meta['torch']}, "
            f"{meta['date']} ({meta['mode']} mode). Best of repeated runs after warm-up."
        )
        if payload.get("ridge"):
            cap += "\nridge (FLOP/byte, peak / DRAM bandwidth): " + ", ".join(
                f"{d} {r:.3g}" for d, r in payload["ridge"].items()
            )
        if saved:
            cap += f"\nsaved as device {payload['device']!r}: " + ", ".join(saved)
        return [rich_table("memwall measure (measured on this machine)", rows, cols, cap)]

    emit(fmt, payload, rows, table, ["quantity", "value", "unit", "how"])
    if meta.get("interrupted"):
        err_console.print("[yellow]interrupted: partial measurement[/yellow]")
        if not saved:
            raise typer.Exit(130)
    if not is_complete(res):
        raise MemwallError("measurement incomplete (no DRAM bandwidth or no peak): nothing saved")


def _fmt(v: Any) -> str:
    if v is None:
        return "unavailable"
    return si(v) if v >= 1 else si(v, "s")
