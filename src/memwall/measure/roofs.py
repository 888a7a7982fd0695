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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.measure.busy import watch
from memwall.measure.levels import curve_sizes, find_cache_levels
from memwall.measure.machine import KiB, MiB, llc_size, machine_metadata
from memwall.measure.timing import MEASURE_DEVICES, best_time, device_sync, torch_or_error

GEMM_DTYPES = ("fp32", "bf16", "fp16", "int8", "fp64")


@dataclass(frozen=True)
class MeasureConfig:
    """Sizes and repetition rules; tests shrink them, `--quick` picks a coarse set."""

    mode: str = "default"
    device: str = "cpu"  # torch device the roofs are measured on: cpu, cuda[:N] or mps
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
        if self.device.split(":")[0] not in MEASURE_DEVICES:
            raise MemwallError(f"cannot measure on {self.device!r}; accepted: cpu, cuda, mps")
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


def triad_bandwidth(
    array_bytes: int, reps: int = 5, min_time: float = 0.2, device: str = "cpu"
) -> float:
    """STREAM triad a = b + s*c in float64 (float32 on MPS, which has no float64); bytes/s
    counted as 3 x element size per element."""
    torch = torch_or_error()
    dt = torch.float32 if device == "mps" else torch.float64
    size = 4 if device == "mps" else 8
    n = max(1, array_bytes // size)
    a = torch.empty(n, dtype=dt, device=device)
    b = torch.full((n,), 1.0, dtype=dt, device=device)
    c = torch.full((n,), 2.0, dtype=dt, device=device)
    t = best_time(lambda: torch.add(b, c, alpha=3.0, out=a), reps, min_time, device_sync(device))
    return 3 * size * n / t


def read_bandwidth(
    nbytes: int,
    bytes_per_call: int = 64 * MiB,
    reps: int = 5,
    min_time: float = 0.2,
    device: str = "cpu",
) -> float:
    """Read bandwidth of a working set of `nbytes`, re-read inside one call (see module doc)."""
    torch = torch_or_error()
    n = max(256, nbytes // 4)
    x = torch.rand(n, dtype=torch.float32, device=device)
    rows = max(2 * torch.get_num_threads(), bytes_per_call // (4 * n))
    view = x.as_strided((rows, n), (0, 1))
    out = torch.empty(rows, dtype=torch.float32, device=device)
    t = best_time(lambda: torch.sum(view, dim=1, out=out), reps, min_time, device_sync(device))
    return rows * n * 4 / t


def gemm_flops(
    dtype: str,
    sizes: Sequence[int],
    reps: int = 3,
    min_time: float = 0.1,
    budget_s: float = 8.0,
    on_size: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> tuple[float | None, int | None, str]:
    """Best GEMM rate (FLOP/s; OP/s for int8) over square sizes: (rate, best n, note).

    Every size is tried while the time spent stays within `budget_s` (the next size's cost is
    extrapolated as n^3 from the last one). Rate None when torch cannot run the dtype here.
    """
    torch = torch_or_error()
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
                a = torch.randint(-64, 64, (n, n), dtype=tdt, device=device)
                b = torch.randint(-64, 64, (n, n), dtype=tdt, device=device)
                mm = torch._int_mm  # int8 x int8 -> int32

                def f(a=a, b=b, mm=mm):
                    return mm(a, b)
            else:
                a = torch.rand(n, n, dtype=torch.float32, device=device).to(tdt)
                b = torch.rand(n, n, dtype=torch.float32, device=device).to(tdt)
                c = torch.empty(n, n, dtype=tdt, device=device)

                def f(a=a, b=b, c=c):
                    return torch.matmul(a, b, out=c)

            sync = device_sync(device) or (lambda: None)
            t0 = time.perf_counter()
            f()  # warm-up, and the probe of how long one run takes
            sync()
            one = time.perf_counter() - t0
        except (RuntimeError, AttributeError, NotImplementedError) as e:
            if best_n is None:
                return None, None, f"unavailable: {str(e).splitlines()[0][:120]}"
            break
        t0 = time.perf_counter()
        t = best_time(f, reps, min_time, device_sync(device))
        spent += one + time.perf_counter() - t0
        rate = 2.0 * n**3 / t
        if rate > best:
            best, best_n = rate, n
        if i + 1 < len(sizes):
            nxt = one * (sizes[i + 1] / n) ** 3 * (reps + 1)
            if spent + nxt > budget_s:
                break
    return best, best_n, f"square GEMM, best at n={best_n}"


def gemv_bandwidth(
    m: int, n: int, reps: int = 5, min_time: float = 0.2, device: str = "cpu"
) -> float:
    """torch.mv on an m x n float32 matrix: bytes/s counting matrix + vector + result."""
    torch = torch_or_error()
    a = torch.rand(m, n, dtype=torch.float32, device=device)
    x = torch.rand(n, dtype=torch.float32, device=device)
    y = torch.empty(m, dtype=torch.float32, device=device)
    t = best_time(lambda: torch.mv(a, x, out=y), reps, min_time, device_sync(device))
    return 4.0 * (m * n + n + m) / t


def op_overhead(calls: int = 2000, rounds: int = 5, device: str = "cpu") -> float:
    """Seconds per eager torch op on a 1-element tensor (best of `rounds` loops of `calls`);
    on an accelerator the loop ends with a sync, so this is the launch-bound rate."""
    torch = torch_or_error()
    a = torch.ones(1, device=device)
    out = torch.empty(1, device=device)
    add = torch.add
    sync = device_sync(device) or (lambda: None)
    best = math.inf
    for _ in range(rounds + 1):  # first round warms up
        t0 = time.perf_counter()
        for _ in range(calls):
            add(a, a, out=out)
        sync()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


Step = Callable[[str, float], None]  # progress: (description, units of work done)


def plan_steps(cfg: MeasureConfig) -> int:
    """Units of progress a measurement will report (for a progress bar's total)."""
    hi = cfg.curve_max or 8 * (llc_size() or 32 * MiB)
    return (
        3
        + len(cfg.gemm_dtypes) * len(cfg.gemm_sizes)
        + len(curve_sizes(cfg.curve_min, hi, cfg.curve_points_per_octave))
    )


def _gemm_roofs(cfg: MeasureConfig, result: dict, notes: dict, step: Step) -> None:
    for d in cfg.gemm_dtypes:
        seen = [0]

        def on_size(n: int, d: str = d, seen: list[int] = seen) -> None:
            step(f"GEMM {d} n={n}", 1 if seen[0] else 0)
            seen[0] += 1

        rate, _, note = gemm_flops(
            d, cfg.gemm_sizes, cfg.reps, cfg.min_time, cfg.gemm_budget_s, on_size, cfg.device
        )
        result["peak_flops"][d] = rate
        notes[f"peak_{d}"] = note
        step(f"GEMM {d}", len(cfg.gemm_sizes) - seen[0] + (1 if seen[0] else 0))


def _all_roofs(
    cfg: MeasureConfig, meta: dict, result: dict, notes: dict, curve: list, step: Step
) -> None:
    """Every roof, essential ones first (DRAM bandwidth, overhead, fp32 peak)."""
    llc = llc_size() or 32 * MiB
    array_bytes = cfg.dram_array_bytes or max(4 * llc, 64 * MiB)
    mem_total = meta["mem_total"] or 8 * 1024 * MiB
    array_bytes = int(min(array_bytes, mem_total // 8))
    sizes = curve_sizes(cfg.curve_min, cfg.curve_max or 8 * llc, cfg.curve_points_per_octave)
    step("DRAM triad", 0)
    dev = cfg.device
    result["dram_bandwidth"] = triad_bandwidth(array_bytes, max(cfg.reps, 5), cfg.min_time, dev)
    notes["dram_bandwidth"] = f"STREAM triad, float64, 3 arrays of {array_bytes / MiB:.0f} MiB"
    step("op overhead", 1)
    result["op_overhead"] = op_overhead(cfg.overhead_calls, device=dev)
    step("GEMM", 1)
    _gemm_roofs(cfg, result, notes, step)
    step("GEMV", 0)
    m, n = cfg.gemv_shape
    result["gemv_bandwidth"] = gemv_bandwidth(m, n, cfg.reps, cfg.min_time, dev)
    notes["gemv_bandwidth"] = f"torch.mv float32 {m}x{n}"
    step("bandwidth curve", 1)
    for s in sizes:
        bw = read_bandwidth(s, cfg.curve_bytes_per_call, cfg.reps, cfg.min_time, dev)
        curve.append({"size": float(s), "bandwidth": bw})
        step(f"bandwidth {s / KiB:.0f} KiB", 1)


def measure(cfg: MeasureConfig | None = None, on_step: Step | None = None) -> dict[str, Any]:
    """Measure this machine. Returns the JSON-able result (base units).

    Ctrl-C stops early and returns what was measured so far with metadata.interrupted = True
    (and metadata.complete = False); the essential roofs are measured first. metadata.load and
    metadata.busy say how busy the machine was meanwhile (`memwall.measure.busy`).
    """
    cfg = cfg or DEFAULT
    torch = torch_or_error()
    meta = machine_metadata(cfg.mode)
    meta.update(_device_metadata(torch, cfg.device))
    result: dict[str, Any] = {
        "dram_bandwidth": None,
        "peak_flops": {},
        "cache_levels": [],
        "op_overhead": None,
        "gemv_bandwidth": None,
    }
    notes: dict[str, str] = {}
    curve: list[dict[str, float]] = []
    meta["interrupted"] = False
    torch.manual_seed(0)
    try:
        with watch(meta):  # the load it competed with: metadata load, busy (measure.busy)
            _all_roofs(cfg, meta, result, notes, curve, on_step or (lambda desc, adv: None))
    except KeyboardInterrupt:
        meta["interrupted"] = True
    meta["complete"] = not meta["interrupted"]
    levels = find_cache_levels(curve, meta["reported_caches"]) if curve else []
    result["cache_levels"] = [c.to_dict() for c in levels]
    if cfg.mode != "quick":
        result["bandwidth_curve"] = curve
    result["notes"] = notes
    result["metadata"] = meta
    return result


def _device_metadata(torch: Any, device: str) -> dict[str, Any]:
    """Which device the roofs belong to (an accelerator's name and memory, when not the CPU)."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return {"device": device, "device_kind": "cpu"}
    out: dict[str, Any] = {"device": device, "device_kind": "gpu"}
    if kind == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(device_name=props.name, mem_total=int(props.total_memory))
    else:
        out["device_name"] = "Apple GPU (MPS)"
    return out


def is_usable(result: dict[str, Any]) -> bool:
    """Enough to act as a device: DRAM bandwidth and at least one peak."""
    return bool(result.get("dram_bandwidth")) and any(
        v for v in (result.get("peak_flops") or {}).values()
    )


def is_complete(result: dict[str, Any]) -> bool:
    """Every planned roof measured (not interrupted) and usable as a device."""
    meta = result.get("metadata") or {}
    return is_usable(result) and not meta.get("interrupted") and meta.get("complete", True)
