"""`memwall measure` as one call: measure the roofs, then save them without ever downgrading.

Why: a saved measurement is what `--device local` predicts with. A complete run replaces it;
an interrupted or partial run must not (it would lose the int8 peak or the GEMV bandwidth that
the previous record had), so it is saved beside it as `<name>-partial`, and said. A data
directory that cannot be written loses nothing either: the result is still returned (printed by
the CLI) with the reason it was not saved.
"""

from __future__ import annotations

from typing import Any

from memwall.hardware import check_save_name, device_from_measurement, save_measurement
from memwall.measure.roofs import Step, config, is_complete, is_usable, measure
from memwall.records.store import devices_dir

PARTIAL_SUFFIX = "-partial"


def _save(res: dict[str, Any], name: str | None) -> tuple[list[str], str]:
    """(paths saved, why not saved): complete results as `local` (+ name), partial ones as
    `local-partial` (+ `name-partial`), never over a complete record."""
    if not is_usable(res):
        return [], "measurement incomplete (no DRAM bandwidth or no peak): nothing saved"
    try:
        if is_complete(res):
            return [str(p) for p in save_measurement(res, name)], ""
        names = [f"local{PARTIAL_SUFFIX}"] + ([f"{name}{PARTIAL_SUFFIX}"] if name else [])
        return [str(p) for n in names for p in save_measurement(res, n, local=False)], ""
    except OSError as e:
        where = devices_dir()
        return [], f"not saved: cannot write {where} ({e.strerror or e})"


def measure_and_save(
    quick: bool = False, name: str | None = None, on_step: Step | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Measure this machine (`quick`: the coarse set) and save it as device `local` (and
    `name`). Returns the JSON payload of the command: the result, `saved` paths, `device`,
    `complete`, `save_error` (empty when saved) and the ridge points of a usable result."""
    n = check_save_name(name) if name is not None else None  # refuse a bad name before work
    res = measure(config(quick, device=device), on_step)
    saved, why = _save(res, n)
    complete = is_complete(res)
    payload: dict[str, Any] = {
        **res,
        "saved": saved,
        "device": (n or "local") + ("" if complete else PARTIAL_SUFFIX),
        "complete": complete,
        "save_error": why,
    }
    if is_usable(res):
        dev = device_from_measurement(res, n or "local")
        payload["ridge"] = {d: dev.ridge(d) for d in dev.peaks}
    if saved and not complete:
        payload["save_note"] = (
            "partial measurement saved as "
            f"{payload['device']!r}; the previous complete record (if any) is kept"
        )
    return payload
