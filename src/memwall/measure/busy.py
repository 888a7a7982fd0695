"""Whether a roofline measurement competed with other work, and the load facts that say so.

Why: measured roofs are saved and reused (`--device local` for ever, `memwall report` for a
day), so roofs timed under load would poison every later prediction. The measurement records
its load; a busy one is flagged and never replaces a calm record (`measure.record`).

The judgement is on the cores other processes kept busy *during* the measurement (their CPU
time over the wall time, `LoadMonitor`). The 1-minute load averages before and after are
recorded but not judged: the one before lags a minute (a measurement just after another
would be judged busy by its predecessor) and the one after counts the measurement itself.

Threshold (`BUSY_SHARE`): others kept more than a quarter of the CPUs busy. Not half, as the
report's wait (`report.calm.LOAD_PER_CORE`): under contention the scheduler shares the CPUs by
runnable threads, so with the measurement's n threads and k other busy threads on n CPUs the
others show only k*n/(n+k) cores busy, which never exceeds n/2 for k <= n. A quarter flags
from k > n/3: one busy process on 2 CPUs (0.67 cores seen) is flagged, 2 on 8 (1.6) are not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from memwall.measure.machine import LoadMonitor, load_average

BUSY_SHARE = 0.25  # busy: others kept more than this share of the CPUs busy while measuring
BUSY_SUFFIX = "-busy"  # where a busy measurement is saved when a calm record is kept


def cpus() -> int:
    """CPUs this process may run on (those `LoadMonitor` counts)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_limit(cores: int) -> float:
    """Cores others may keep busy before a measurement on `cores` CPUs counts as busy."""
    return BUSY_SHARE * max(1, cores)


def busy_reasons(others_busy_cores: float | None, cores: int) -> list[str]:
    """Why a measurement was busy (empty: calm); None (not observed) is calm."""
    lim = busy_limit(cores)
    if others_busy_cores is None or others_busy_cores <= lim:
        return []
    return [
        f"other processes kept {others_busy_cores:.2f} of {cores} CPUs busy while it was "
        f"measured (limit {lim:.2g})"
    ]


def judge(before: float | None, after: float | None, others: float, cores: int) -> dict:
    """The load facts saved with a measurement: `load` and the `busy` flag with its reasons."""
    why = busy_reasons(others, cores)
    return {
        "load": {
            "load_1min_before": before,
            "load_1min_after": after,
            "others_busy_cores": others,
            "cpus": cores,
            "busy_limit_cores": busy_limit(cores),
        },
        "busy": bool(why),
        "busy_reasons": why,
    }


@contextmanager
def watch(meta: dict[str, Any]) -> Iterator[None]:
    """Record the machine's load around a block into `meta` (also when it is interrupted)."""
    before = load_average()
    mon = LoadMonitor().__enter__()
    try:
        yield
    finally:
        meta.update(judge(before, load_average(), mon.so_far(), cpus()))


def is_busy(result: Mapping[str, Any]) -> bool:
    """Whether a measurement (as measured or saved) was flagged busy."""
    return (result.get("metadata") or {}).get("busy") is True
