"""`memwall.api.measure`: this machine's empirical roofline (saved as a device), or the timing of
collectives between local processes (saved for `memwall parallel --device local`).

The command's policy lives here: which flags apply to which measurement (None: "not given",
the way the CLI passes a flag the user did not type), the device checked and the save name
checked before any work, where a result is saved (`measure.record`). torch is imported only
when a measurement runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memwall.api._common import binary, not_applicable, plain, si
from memwall.api._result import Result
from memwall.errors import MemwallError

WORLD_DEFAULT = 2
ROOF_COLUMNS = ["quantity", "value", "unit", "how"]
COLLECTIVE_COLUMNS = ["kind", "bytes", "time", "algbw", "busbw"]

Progress = Callable[[str, float], None]  # (description, units of work done)


def measure(
    quick: bool = False,
    save: str | None = None,
    collectives: bool = False,
    world: int | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Result:
    """Measure this machine's roofline: bandwidth per memory level, peak FLOP/s, overheads.

    Times DRAM and cache read bandwidth, peak FLOP/s per data type, GEMV bandwidth and the
    overhead of one eager op (best of repeated runs after warm-up) and saves the result as
    device `local` (and `save`): a complete run on a calm machine replaces it, a partial or
    busy one is saved beside it (`payload["save_note"]`). With `collectives`, times the
    collectives between `world` local processes instead (saved for `memwall parallel`). An
    interrupted run returns what it measured (`payload["metadata"]["interrupted"]`).

    Args:
        quick: coarse and fast (under 30 s) instead of ~3 min (default False).
        save: also save under this name (always saved as "local"; default None).
        collectives: time collectives on `world` local processes (default False).
        world: processes for `collectives` (default None: 2; refused without `collectives`).
        device: where to measure: cpu, cuda, cuda:N or mps (default "cpu").
        progress: called as progress(description, units_done) while it works (default None).

    Example:
        >>> r = memwall.api.measure(quick=True)
        >>> r.to_dict()["dram_bandwidth"]  # bytes/s
    """
    if collectives and device != "cpu":
        raise MemwallError("--device is for the roofline measurement, not --collectives")
    if collectives:  # memwall parallel's measurement (torch.distributed)
        not_applicable(
            ["--save"] if save is not None else [],
            "collectives are saved for 'local' (memwall parallel reads them)",
        )
        return _collectives(WORLD_DEFAULT if world is None else world, quick)
    not_applicable(
        ["--world"] if world is not None else [],
        "it is the process count of --collectives (add --collectives)",
    )
    from memwall.measure.record import measure_and_save  # torch: loaded only when measuring
    from memwall.measure.timing import check_device

    dev = check_device(device)  # before any work
    payload = measure_and_save(quick, save, progress, dev)
    return Result(
        command="measure",
        payload=plain(payload),
        rows=result_rows(payload),
        columns=ROOF_COLUMNS,
        title="memwall measure (measured on this machine)",
        notes=caption(payload).split("\n"),
    )


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


def caption(payload: dict[str, Any]) -> str:
    """What the roofline table says under it: machine, ridge points, where it was saved, and
    where a busy run went."""
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
    if payload.get("busy"):  # where a busy run went and which record predictions keep using
        why = "; ".join(meta.get("busy_reasons") or [])
        cap += "\n" + (payload.get("save_note") or f"machine busy while measured ({why})")
    return cap


def _collectives(world: int, quick: bool) -> Result:
    """`measure --collectives`: time, fit, save (complete runs only). An incomplete run is
    returned, not raised (`payload["complete"]`), so that its rows are not lost."""
    from memwall.measure.collectives import measure_collectives_and_save  # torch.distributed

    res = measure_collectives_and_save(world, quick)
    return Result(
        command="measure",
        payload=plain(res),
        rows=res["results"],
        columns=COLLECTIVE_COLUMNS,
        title="memwall measure --collectives",
        notes=collectives_caption(res).split("\n"),
    )


def collectives_caption(res: dict[str, Any]) -> str:
    """What the collectives table says under it: setup, the alpha-beta fits, what was skipped,
    whether it was saved."""
    fits = "; ".join(
        f"{k}: alpha {si(f['alpha'], 's')}, beta "
        + ("" if f.get("beta_resolved", True) else "at least ")
        + si(f["beta"], "B/s")
        for k, f in res["fit"].items()
    )
    skipped = "; ".join(f"{k} skipped ({why})" for k, why in res["skipped"].items())
    return (
        f"measured: {res['world']} local processes, {res['backend']}, torch {res['torch']}, "
        f"{res['date']}; bus bw = alg bw x nccl-tests factor.\nfit time = alpha + bus bytes"
        f" / beta: {fits}" + (f"\n{skipped}" if skipped else "")
        + (f"\nsaved: {res['saved']}" if res.get("saved") else "\nnot saved (incomplete)")
    )  # fmt: skip
