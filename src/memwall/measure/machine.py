"""Facts about this machine that measurements record: CPU, caches, threads, versions, load."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy
import psutil

from memwall.measure.timing import torch_or_error
from memwall.version import __version__

KiB = 1024
MiB = 1024 * 1024


def reported_caches() -> list[dict[str, Any]]:
    """Data/unified caches the OS reports for cpu0 (Linux sysfs); [] elsewhere."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    out = []
    for d in sorted(base.glob("index*")):
        try:
            ctype = (d / "type").read_text().strip()
            if ctype == "Instruction":
                continue
            level = int((d / "level").read_text())
            size = _parse_size((d / "size").read_text().strip())
            shared = (d / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        out.append({"level": level, "type": ctype, "size": size, "shared_cpu_list": shared})
    return sorted(out, key=lambda c: c["level"])


def _parse_size(text: str) -> int:
    t = text.upper().removesuffix("B")
    mult = {"K": KiB, "M": MiB, "G": 1024 * MiB}.get(t[-1:], 1)
    return int(float(t.rstrip("KMG")) * mult)


def llc_size() -> int | None:
    caches = reported_caches()
    return max((c["size"] for c in caches), default=None)


def cpu_model() -> tuple[str, str]:
    """(model name, vendor) from /proc/cpuinfo, else platform.processor()."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), ""
    model = vendor = ""
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k = k.strip()
        if k == "model name" and not model:
            model = v.strip()
        elif k == "vendor_id" and not vendor:
            vendor = v.strip()
    return model or platform.processor() or platform.machine(), vendor


def machine_metadata(mode: str) -> dict[str, Any]:
    torch = torch_or_error()
    model, vendor = cpu_model()
    return {
        "cpu_model": model,
        "cpu_vendor": vendor,
        "threads": torch.get_num_threads(),
        "logical_cpus": os.cpu_count(),
        "mem_total": psutil.virtual_memory().total,
        "reported_caches": reported_caches(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memwall": __version__,
        "mode": mode,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS does not report it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class LoadMonitor:
    """How many cores other processes kept busy while a block ran, on the CPUs this process
    may use: their busy CPU time minus this process's own, over the wall time (the load a
    measurement competed with)."""

    def __enter__(self) -> LoadMonitor:
        self._proc = psutil.Process()
        self._cpus = _my_cpus()
        self._sys0 = self._cpu_busy()
        self._own0 = self._proc.cpu_times()
        self._t0 = time.perf_counter()
        self.others_busy_cores = 0.0
        return self

    def _cpu_busy(self) -> float:
        per = psutil.cpu_times(percpu=True)
        return sum(_busy(t) for i, t in enumerate(per) if self._cpus is None or i in self._cpus)

    def so_far(self) -> float:
        """The cores other processes have kept busy since the block began."""
        wall = time.perf_counter() - self._t0
        busy = self._cpu_busy() - self._sys0
        own1 = self._proc.cpu_times()
        own = (own1.user + own1.system) - (self._own0.user + self._own0.system)
        return max(0.0, busy - own) / wall if wall > 0 else 0.0

    def __exit__(self, *exc: Any) -> None:
        self.others_busy_cores = self.so_far()


def _my_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _busy(t: Any) -> float:
    """Seconds the CPUs spent on work (everything but idle and I/O wait)."""
    skip = ("idle", "iowait", "guest", "guest_nice")  # guest time is already in user
    return sum(v for k, v in t._asdict().items() if k not in skip)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def age_days(date: Any) -> float:
    """Days since an ISO date (inf when it cannot be read)."""
    try:
        then = dt.datetime.fromisoformat(str(date))
    except ValueError:
        return math.inf
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.timezone.utc)
    return (dt.datetime.now(dt.timezone.utc) - then).total_seconds() / 86400
