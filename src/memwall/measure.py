"""The empirical roofline of this machine: bandwidth per memory level, peak FLOP/s, overheads.

Method (STREAM and ERT discipline): every kernel is run once to warm up, then repeated until
both a minimum count and a minimum time are reached, and the best (fastest) run is kept: on a
shared machine the best run is the one least disturbed. Threads: torch's intra-op pool (all
cores unless the user limits it).

- DRAM bandwidth: STREAM triad `a = b + s*c` in float64 with preallocated `out=` arrays, each
  array at least 4x the last-level cache; bytes counted as STREAM does (3 x 8 bytes per element,
  no write-allocate traffic).
- Bandwidth curve (cache levels): a read kernel whose working set is one buffer of W bytes,
  re-read R times inside one call (a stride-0 view summed row by row), so a call lasts long
  enough for dispatch cost not to matter even at 16 KiB. Every thread reads the same buffer,
  so private caches each hold a copy: the plateau of a private level ends at its per-core size.
  Plateaus are found in the curve (`find_cache_levels`); where the OS reports its caches, their
  sizes set the window each plateau is looked for in and its name.
- Peak FLOP/s per dtype: square GEMMs of growing size (torch.matmul; torch._int_mm for int8),
  2 x n^3 FLOPs, the best rate over sizes. Small sizes are included on purpose: where torch has
  no blocked kernel for a dtype (bf16/fp16/int8 on CPUs without native support) the rate
  falls as matrices outgrow the caches, and the roof is what torch attains at its best.
- GEMV bandwidth: torch.mv on a matrix far larger than the caches (the decode case).
- Op overhead: the time of one eager torch op on a 1-element tensor.

torch is imported lazily: the rest of memwall works without it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import CacheLevel

KiB = 1024
MiB = 1024 * 1024
GEMM_DTYPES = ("fp32", "bf16", "fp16", "int8", "fp64")


@dataclass(frozen=True)
class MeasureConfig:
    """Sizes and repetition rules; tests shrink them, `--quick` picks a coarse set."""

    mode: str = "default"
    curve_min: int = 16 * KiB  # smallest working set of the curve, bytes
    curve_max: int | None = None  # largest; None = 8x the last-level cache
    curve_points_per_octave: int = 2
    curve_bytes_per_call: int = 512 * MiB  # bytes read per timed call (R x W)
    dram_array_bytes: int | None = None  # per triad array; None = max(4 x LLC, 64 MiB)
    gemm_sizes: tuple[int, ...] = (
        64,
        96,
        128,
        192,
        256,
        384,
        512,
        768,
        1024,
        1536,
        2048,
        3072,
        4096,
    )
    gemm_dtypes: tuple[str, ...] = GEMM_DTYPES
    gemm_budget_s: float = 8.0  # per dtype: stop growing sizes past this
    gemv_shape: tuple[int, int] = (8192, 8192)
    overhead_calls: int = 2000
    reps: int = 5
    min_time: float = 0.4  # seconds per timed measurement (long: catches quiet moments)

    def __post_init__(self) -> None:
        if self.curve_min < 1024:
            raise MemwallError("curve_min must be at least 1 KiB")
        if self.curve_max is not None and self.curve_max < self.curve_min:
            raise MemwallError("curve_max must be >= curve_min")
        if self.reps < 1 or self.min_time < 0:
            raise MemwallError("reps must be >= 1 and min_time >= 0")
        if not self.gemm_sizes or min(self.gemm_sizes) < 16:
            raise MemwallError("gemm_sizes must be non-empty and >= 16")
        for d in self.gemm_dtypes:
            if d not in GEMM_DTYPES:
                raise MemwallError(
                    f"cannot measure dtype {d!r}; accepted: {', '.join(GEMM_DTYPES)}"
                )


QUICK = MeasureConfig(
    mode="quick",
    curve_points_per_octave=1,
    curve_bytes_per_call=128 * MiB,
    gemm_sizes=(64, 128, 256, 512, 1024, 2048),
    gemm_dtypes=("fp32", "bf16", "fp16", "int8"),
    gemm_budget_s=2.0,
    gemv_shape=(4096, 8192),
    overhead_calls=500,
    reps=3,
    min_time=0.08,
)
DEFAULT = MeasureConfig()


def config(quick: bool = False, **overrides: Any) -> MeasureConfig:
    return replace(QUICK if quick else DEFAULT, **overrides)


# ---------------------------------------------------------------- timing


def best_time(fn: Callable[[], Any], reps: int = 5, min_time: float = 0.2) -> float:
    """Fastest of at least `reps` runs lasting at least `min_time` together, after a warm-up."""
    fn()
    best = math.inf
    n = 0
    start = time.perf_counter()
    while n < reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best


def _torch():
    try:
        import torch
    except ImportError:
        raise MemwallError("measuring needs torch: pip install 'memory-wall[torch]'") from None
    return torch


# ---------------------------------------------------------------- machine facts


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
    import numpy
    import psutil

    torch = _torch()
    model, vendor = cpu_model()
    from memwall import __version__

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


# ---------------------------------------------------------------- kernels


def triad_bandwidth(array_bytes: int, reps: int = 5, min_time: float = 0.2) -> float:
    """STREAM triad a = b + s*c in float64; bytes/s counted as 3 x 8 bytes per element."""
    torch = _torch()
    n = max(1, array_bytes // 8)
    a = torch.empty(n, dtype=torch.float64)
    b = torch.full((n,), 1.0, dtype=torch.float64)
    c = torch.full((n,), 2.0, dtype=torch.float64)
    t = best_time(lambda: torch.add(b, c, alpha=3.0, out=a), reps, min_time)
    return 3 * 8 * n / t


def read_bandwidth(
    nbytes: int, bytes_per_call: int = 64 * MiB, reps: int = 5, min_time: float = 0.2
) -> float:
    """Read bandwidth of a working set of `nbytes`, re-read inside one call (see module doc)."""
    torch = _torch()
    n = max(256, nbytes // 4)
    x = torch.rand(n, dtype=torch.float32)
    rows = max(2 * torch.get_num_threads(), bytes_per_call // (4 * n))
    view = x.as_strided((rows, n), (0, 1))
    out = torch.empty(rows, dtype=torch.float32)
    t = best_time(lambda: torch.sum(view, dim=1, out=out), reps, min_time)
    return rows * n * 4 / t


def curve_sizes(lo: int, hi: int, per_octave: int) -> list[int]:
    """Working-set sizes from lo to hi, geometric, rounded to 4 KiB multiples above 4 KiB."""
    k = max(1, per_octave)
    n = max(1, round(math.log2(hi / lo) * k))
    sizes = []
    for i in range(n + 1):
        s = lo * 2 ** (i / k)
        s = int(round(s / 4096) * 4096) if s >= 4096 else int(s)
        if not sizes or s > sizes[-1]:
            sizes.append(s)
    return sizes


def gemm_flops(
    dtype: str,
    sizes: Sequence[int],
    reps: int = 3,
    min_time: float = 0.1,
    budget_s: float = 8.0,
    on_size: Callable[[int], None] | None = None,
) -> tuple[float | None, int | None, str]:
    """Best GEMM rate (FLOP/s; OP/s for int8) over square sizes: (rate, best n, note).

    Every size is tried while the time spent stays within `budget_s` (the next size's cost is
    extrapolated as n^3 from the last one). Rate None when torch cannot run the dtype here.
    """
    torch = _torch()
    tdt = {
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
        "fp64": torch.float64,
        "int8": torch.int8,
    }[dtype]
    best, best_n = 0.0, None
    spent = 0.0
    sizes = sorted(sizes)
    for i, n in enumerate(sizes):
        if on_size:
            on_size(n)
        try:
            if dtype == "int8":
                a = torch.randint(-64, 64, (n, n), dtype=tdt)
                b = torch.randint(-64, 64, (n, n), dtype=tdt)
                mm = torch._int_mm  # int8 x int8 -> int32

                def f(a=a, b=b, mm=mm):
                    return mm(a, b)
            else:
                a = torch.rand(n, n, dtype=torch.float32).to(tdt)
                b = torch.rand(n, n, dtype=torch.float32).to(tdt)
                c = torch.empty(n, n, dtype=tdt)

                def f(a=a, b=b, c=c):
                    return torch.matmul(a, b, out=c)

            t0 = time.perf_counter()
            f()  # warm-up, and the probe of how long one run takes
            one = time.perf_counter() - t0
        except (RuntimeError, AttributeError, NotImplementedError) as e:
            if best_n is None:
                return None, None, f"unavailable: {str(e).splitlines()[0][:120]}"
            break
        t0 = time.perf_counter()
        t = best_time(f, reps, min_time)
        spent += one + time.perf_counter() - t0
        rate = 2.0 * n**3 / t
        if rate > best:
            best, best_n = rate, n
        if i + 1 < len(sizes):
            nxt = one * (sizes[i + 1] / n) ** 3 * (reps + 1)
            if spent + nxt > budget_s:
                break
    return best, best_n, f"square GEMM, best at n={best_n}"


def gemv_bandwidth(m: int, n: int, reps: int = 5, min_time: float = 0.2) -> float:
    """torch.mv on an m x n float32 matrix: bytes/s counting matrix + vector + result."""
    torch = _torch()
    a = torch.rand(m, n, dtype=torch.float32)
    x = torch.rand(n, dtype=torch.float32)
    y = torch.empty(m, dtype=torch.float32)
    t = best_time(lambda: torch.mv(a, x, out=y), reps, min_time)
    return 4.0 * (m * n + n + m) / t


def op_overhead(calls: int = 2000, rounds: int = 5) -> float:
    """Seconds per eager torch op on a 1-element tensor (best of `rounds` loops of `calls`)."""
    torch = _torch()
    a = torch.ones(1)
    out = torch.empty(1)
    add = torch.add
    best = math.inf
    for _ in range(rounds + 1):  # first round warms up
        t0 = time.perf_counter()
        for _ in range(calls):
            add(a, a, out=out)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


# ---------------------------------------------------------------- plateaus


def _median(xs: Sequence[float]) -> float:
    ys = sorted(xs)
    return ys[len(ys) // 2]


def _segments(pts: list[tuple[float, float]], drop: float) -> list[list[tuple[float, float]]]:
    """Split a curve where bandwidth falls below `drop` x the running segment's median."""
    bws = [b for _, b in pts]
    smooth = [_median(bws[max(0, i - 1) : i + 2]) for i in range(len(bws))]
    segments: list[list[tuple[float, float]]] = [[(pts[0][0], smooth[0])]]
    for (size, _), bw in zip(pts[1:], smooth[1:], strict=True):
        seg = segments[-1]
        if bw < drop * _median([b for _, b in seg]):
            segments.append([(size, bw)])
        else:
            seg.append((size, bw))
    merged: list[list[tuple[float, float]]] = []
    carry: list[tuple[float, float]] = []
    for seg in segments:  # single points are transitions: they join the next plateau
        seg = carry + seg if len(seg) >= 2 else seg
        if len(seg) < 2:
            carry = seg
            continue
        carry = []
        merged.append(seg)
    if carry and merged:
        merged[-1].extend(carry)
    return merged


def find_cache_levels(
    curve: Sequence[dict[str, float]],
    reported: Sequence[dict[str, Any]] | None = None,
    drop: float = 0.75,
) -> list[CacheLevel]:
    """Plateaus of a bandwidth curve, fastest first, main memory excluded.

    Without `reported` caches: the curve is split where bandwidth falls below `drop` x the
    running plateau's median; every plateau but the last (main memory) is a level L1, L2...
    With the caches the OS reports: each cache's window of working sets (from 1.4x the
    previous cache to 0.8x its own size, away from the transitions) holds its plateau; the
    level's bandwidth is the window's median and its size the largest working set still
    within 0.8x of that median. Windows no faster than 1.25x main memory are not levels, and
    neighbours within 10% of each other are one plateau (named after the larger cache).
    """
    pts = sorted((float(p["size"]), float(p["bandwidth"])) for p in curve)
    if len(pts) < 3:
        return []
    segs = _segments(pts, drop)
    caches = sorted((c for c in (reported or []) if c.get("size", 0) > 0), key=lambda c: c["size"])
    if not caches:
        return [
            CacheLevel(f"L{i + 1}", max(s for s, _ in seg), _median([b for _, b in seg]))
            for i, seg in enumerate(segs[:-1])
        ]
    beyond = [b for s, b in pts if s > 2 * caches[-1]["size"]]
    dram = _median(beyond) if beyond else 0.0
    levels: list[CacheLevel] = []
    prev = 0.0
    for c in caches:
        lo, hi = 1.4 * prev, 0.8 * c["size"] if prev else float(c["size"])
        prev = float(c["size"])
        win = [(s, b) for s, b in pts if lo < s <= hi]
        if not win:
            continue
        med = _median([b for _, b in win])
        if med < 1.25 * dram:
            continue
        size = max(s for s, b in win if b >= 0.8 * med)
        level = CacheLevel(f"L{c['level']}", size, med)
        if levels and level.bandwidth >= 0.9 * levels[-1].bandwidth:
            last = levels.pop()  # same plateau seen through two windows
            level = CacheLevel(level.name, max(size, last.size), _median([med, last.bandwidth]))
        levels.append(level)
    return levels


# ---------------------------------------------------------------- the whole measurement


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[str, float], None]]:
    if not show:
        yield lambda desc, adv: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task("measuring", total=total)

        def step(desc: str, adv: float) -> None:
            prog.update(task, description=desc, advance=adv)

        yield step


def measure(cfg: MeasureConfig | None = None, progress: bool = False) -> dict[str, Any]:
    """Measure this machine. Returns the JSON-able result (base units).

    Ctrl-C stops early and returns what was measured so far with metadata.interrupted = True;
    the essential roofs (DRAM bandwidth, fp32 peak, overhead) are measured first.
    """
    cfg = cfg or DEFAULT
    torch = _torch()
    meta = machine_metadata(cfg.mode)
    llc = llc_size() or 32 * MiB
    array_bytes = cfg.dram_array_bytes or max(4 * llc, 64 * MiB)
    mem_total = meta["mem_total"] or 8 * 1024 * MiB
    array_bytes = int(min(array_bytes, mem_total // 8))
    hi = cfg.curve_max or 8 * llc
    sizes = curve_sizes(cfg.curve_min, hi, cfg.curve_points_per_octave)
    result: dict[str, Any] = {
        "dram_bandwidth": None,
        "peak_flops": {},
        "cache_levels": [],
        "op_overhead": None,
        "gemv_bandwidth": None,
    }
    notes: dict[str, str] = {}
    curve: list[dict[str, float]] = []
    steps = 3 + len(cfg.gemm_dtypes) * len(cfg.gemm_sizes) + len(sizes)
    meta["interrupted"] = False
    torch.manual_seed(0)
    with _progress(progress, steps) as step:
        try:
            step("DRAM triad", 0)
            result["dram_bandwidth"] = triad_bandwidth(array_bytes, max(cfg.reps, 5), cfg.min_time)
            notes["dram_bandwidth"] = (
                f"STREAM triad, float64, 3 arrays of {array_bytes / MiB:.0f} MiB"
            )
            step("op overhead", 1)
            result["op_overhead"] = op_overhead(cfg.overhead_calls)
            step("GEMM", 1)
            for d in cfg.gemm_dtypes:
                seen = [0]

                def on_size(n: int, d: str = d, seen: list[int] = seen) -> None:
                    step(f"GEMM {d} n={n}", 1 if seen[0] else 0)
                    seen[0] += 1

                rate, n_best, note = gemm_flops(
                    d, cfg.gemm_sizes, cfg.reps, cfg.min_time, cfg.gemm_budget_s, on_size
                )
                result["peak_flops"][d] = rate
                notes[f"peak_{d}"] = note
                step(f"GEMM {d}", len(cfg.gemm_sizes) - seen[0] + (1 if seen[0] else 0))
            step("GEMV", 0)
            m, n = cfg.gemv_shape
            result["gemv_bandwidth"] = gemv_bandwidth(m, n, cfg.reps, cfg.min_time)
            notes["gemv_bandwidth"] = f"torch.mv float32 {m}x{n}"
            step("bandwidth curve", 1)
            for s in sizes:
                bw = read_bandwidth(s, cfg.curve_bytes_per_call, cfg.reps, cfg.min_time)
                curve.append({"size": float(s), "bandwidth": bw})
                step(f"bandwidth {s / KiB:.0f} KiB", 1)
        except KeyboardInterrupt:
            meta["interrupted"] = True
    levels = find_cache_levels(curve, meta["reported_caches"]) if curve else []
    result["cache_levels"] = [c.to_dict() for c in levels]
    if cfg.mode != "quick":
        result["bandwidth_curve"] = curve
    result["notes"] = notes
    result["metadata"] = meta
    return result


def is_complete(result: dict[str, Any]) -> bool:
    """Enough to act as a device: DRAM bandwidth and at least one peak."""
    return bool(result.get("dram_bandwidth")) and any(
        v for v in (result.get("peak_flops") or {}).values()
    )
