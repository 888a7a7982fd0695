"""`memwall measure` as one call: measure the roofs, then save them without ever downgrading.

Why: a saved measurement is what `--device local` predicts with. A complete run on a calm
machine replaces it. Two kinds of run must not:
- an interrupted or partial run (it would lose the int8 peak or the GEMV bandwidth that the
  previous record had) is saved beside it as `<name>-partial`;
- a busy run (other processes competed with it, `measure.busy`) is saved beside a calm record
  as `<name>-busy`; with no calm record to keep it is saved as `<name>`, flagged busy, so that
  every later use can say so (and `memwall report` measures again).
Either is said in `save_note`. A data directory that cannot be written loses nothing either:
the result is still returned (printed by the CLI) with the reason it was not saved.
"""

from __future__ import annotations

from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import (
    check_save_name,
    device_from_measurement,
    load_saved,
    save_measurement,
    saved_names,
)
from memwall.measure.busy import BUSY_SUFFIX, is_busy
from memwall.measure.roofs import Step, config, is_complete, is_usable, measure
from memwall.records.store import devices_dir

PARTIAL_SUFFIX = "-partial"


def calm_record(name: str) -> bool:
    """Whether a saved record `name` exists, loads, and was not measured busy."""
    if name not in saved_names():
        return False
    try:
        return not (load_saved(name).metadata or {}).get("busy")
    except MemwallError:
        return False  # unreadable: nothing worth keeping


def save_names(res: dict[str, Any], name: str | None) -> dict[str, str]:
    """Where each asked name (`local`, and `name`) is saved: partial runs as `-partial`, busy
    ones as `-busy` where a calm record of that name is kept, others under the name."""
    asked = ["local"] + ([name] if name and name != "local" else [])
    if not is_complete(res):
        return {n: n + PARTIAL_SUFFIX for n in asked}
    if is_busy(res):
        return {n: n + BUSY_SUFFIX if calm_record(n) else n for n in asked}
    return {n: n for n in asked}


def save_result(
    res: dict[str, Any], name: str | None = None
) -> tuple[dict[str, str], list[str], str]:
    """Save a usable measurement by the rules above: (asked -> saved-as names, paths saved, why
    not saved: empty when saved)."""
    if not is_usable(res):
        return {}, [], "measurement incomplete (no DRAM bandwidth or no peak): nothing saved"
    names = save_names(res, name)
    try:
        paths = [
            p
            for n in names.values()
            for p in save_measurement(res, None if n == "local" else n, local=n == "local")
        ]
    except OSError as e:
        return names, [], f"not saved: cannot write {devices_dir()} ({e.strerror or e})"
    except MemwallError as e:  # e.g. `name-partial` longer than a device name may be
        return names, [], f"not saved: {e}"
    return names, [str(p) for p in paths], ""


def _note(res: dict[str, Any], names: dict[str, str], device: str) -> str:
    """One line on where a partial or busy measurement went and which record predicts."""
    if not is_complete(res):
        return (
            f"partial measurement saved as {device!r}; the previous complete record (if any) "
            "is kept"
        )
    if not is_busy(res):
        return ""
    why = "; ".join(res["metadata"].get("busy_reasons") or ["busy"])
    kept = [n for n, s in names.items() if s != n]
    if kept:
        return (
            f"machine busy ({why}): saved as {', '.join(repr(names[n]) for n in kept)}; "
            f"predictions keep using the calm {', '.join(repr(n) for n in kept)} record"
        )
    return (
        f"machine busy ({why}): saved as {device!r} flagged busy (no calm record to keep); "
        "re-run `memwall measure` on a quiet machine to replace it"
    )


def measure_and_save(
    quick: bool = False, name: str | None = None, on_step: Step | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Measure this machine (`quick`: the coarse set) and save it as device `local` (and
    `name`). Returns the JSON payload of the command: the result, `saved` paths, `device` (the
    name saved as), `complete`, `busy`, `save_error` (empty when saved), `save_note` (a partial
    or busy run: where it went) and the ridge points of a usable result."""
    n = check_save_name(name) if name is not None else None  # refuse a bad name before work
    res = measure(config(quick, device=device), on_step)
    names, saved, why = save_result(res, n)
    complete = is_complete(res)
    asked = n or "local"
    suffix = PARTIAL_SUFFIX if not complete else ""
    payload: dict[str, Any] = {
        **res,
        "saved": saved,
        "device": names.get(asked, asked + suffix),
        "complete": complete,
        "busy": is_busy(res),
        "save_error": why,
    }
    if is_usable(res):
        dev = device_from_measurement(res, asked)
        payload["ridge"] = {d: dev.ridge(d) for d in dev.peaks}
    note = _note(res, names, payload["device"]) if saved else ""
    if note:
        payload["save_note"] = note
    return payload
