"""`memwall measure`: this machine's empirical roofline, saved as a device."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from memwall.cli._common import (
    FormatOpt,
    app,
    binary,
    emit,
    fail_line,
    keep_note,
    refuse_options,
    rich_table,
    si,
)
from memwall.cli._progress import progress_bar
from memwall.errors import MemwallError


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
        unit = "OP/s" if d.startswith("int") else "FLOP/s"
        rows.append(
            {
                "quantity": f"peak_flops.{d}",
                "value": v,
                "unit": unit,
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


def _caption(payload: dict[str, Any]) -> str:
    meta = payload["metadata"]
    cap = (
        f"{meta['cpu_model']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"{meta['date']} ({meta['mode']} mode). Best of repeated runs after warm-up."
    )
    if payload.get("ridge"):
        cap += "\nridge (FLOP/byte, peak / DRAM bandwidth): " + ", ".join(
            f"{d} {r:.3g}" for d, r in payload["ridge"].items()
        )
    if payload["saved"]:
        cap += f"\nsaved as device {payload['device']!r}: " + ", ".join(payload["saved"])
    return cap


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
    if collectives and device != "cpu":
        raise MemwallError("--device is for the roofline measurement, not --collectives")
    if collectives:  # memwall parallel's measurement (torch.distributed), rendered there
        refuse_options(
            ["--save"], "collectives are saved for 'local' (memwall parallel reads them)"
        )
        from memwall.cli.parallel import measure_collectives_cli

        return measure_collectives_cli(world, quick, fmt)
    refuse_options(["--world"], "it is the process count of --collectives (add --collectives)")
    from memwall.measure.record import measure_and_save  # torch: loaded only for this command
    from memwall.measure.timing import check_device

    dev = check_device(device)  # one line, exit 2, before any work

    keep_note("the previous saved measurement is kept")
    with progress_bar(None, "measuring") as bar:
        payload = measure_and_save(quick, save, bar.step, dev)
    rows = result_rows(payload)
    cols = [
        ("quantity", "quantity", None),
        ("value", "value", _fmt),
        ("unit", "unit", None),
        ("how", "how (measured)", None),
    ]
    table = [
        rich_table("memwall measure (measured on this machine)", rows, cols, _caption(payload))
    ]
    emit(fmt, payload, rows, lambda: table, ["quantity", "value", "unit", "how"])
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
