"""The collectives record: what `memwall measure --collectives` writes (`memwall.measure.
collectives`) and `links_for("local")` reads (`memwall.parallel.links`).

A record holds, per collective kind, timed rows (bytes = the message: the all-reduce buffer,
the all-gather output, the reduce-scatter input, the all-to-all send buffer, the send/recv
message; busbw = algbw x the nccl-tests bus factor) and a fit time = alpha + bus bytes / beta.
`read_fits` is the one check that a record is usable: its format, world and every fit.

Pure: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from memwall.errors import MemwallError, suggest

COLLECTIVES_FORMAT = "memwall-collectives/1"
KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


def bus_factor(kind: str, n: int) -> float:
    """Bytes each rank sends per byte of message (the nccl-tests bus-bandwidth factor)."""
    if kind not in KINDS:
        raise MemwallError(f"unknown collective {kind!r}{suggest(kind, KINDS)}")
    if kind == "send_recv":
        return 1.0
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n if kind == "all_reduce" else (n - 1) / n


@dataclass(frozen=True)
class CollectiveFits:
    """A usable collectives record: its ranks, backend, date and (alpha s, beta bytes/s) fits
    by kind (all-reduce always among them)."""

    world: int
    backend: str
    date: str
    fitted: dict[str, tuple[float, float]]


def read_fits(obj: Any, where: str = "collectives measurement") -> CollectiveFits:
    """The fits of a collectives record; one `MemwallError` line saying what is wrong else."""
    if not isinstance(obj, dict) or obj.get("format") != COLLECTIVES_FORMAT:
        raise MemwallError(f"{where} is malformed: not a {COLLECTIVES_FORMAT} object")
    fits = obj.get("fit")
    if not isinstance(fits, dict) or "all_reduce" not in fits:
        raise MemwallError(f"{where} is malformed: no all_reduce fit")
    fitted: dict[str, tuple[float, float]] = {}
    for kind, f in fits.items():
        a, b = (f or {}).get("alpha"), (f or {}).get("beta")
        ok = all(isinstance(x, int | float) and math.isfinite(x) for x in (a, b))
        if not ok or a < 0 or b <= 0:
            raise MemwallError(f"{where} is malformed: fit of {kind} needs alpha >= 0, beta > 0")
        fitted[str(kind)] = (float(a), float(b))
    world = obj.get("world")
    if isinstance(world, bool) or not isinstance(world, int) or world < 2:
        raise MemwallError(f"{where} is malformed: world must be an integer >= 2")
    return CollectiveFits(world, str(obj.get("backend", "?")), str(obj.get("date", "?")), fitted)
