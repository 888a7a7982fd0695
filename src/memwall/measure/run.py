"""Running a model for one workload and timing it: end to end, and per operation.

Phases (what is timed; setup such as building a KV cache is not):
- encode: one forward of a [batch, seq_len] input (BERT, no mask).
- prefill: one forward of [batch, seq_len] writing a fresh `DynamicCache` (logits for all
  positions, as transformers computes them).
- decode: one step of one token per sequence on a cache already holding seq_len tokens (the
  cache is filled with random K/V before each run, so every run sees the same context).
- generate: gen_len decode steps, each feeding back the argmax token; seq_len 0 is the
  paper's generation from no prompt (the first step reads a start token and an empty cache).

Timing: warm-up runs, then `repeats` runs with the garbage collector paused; median, quartiles,
min and max are reported (`memwall.measure.timing.Timing`), with threads, library versions and
the load average.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch
import transformers
from torch.profiler import ProfilerActivity, profile, schedule
from transformers import DynamicCache

from memwall.errors import MemwallError
from memwall.measure.allocator import steady_allocator
from memwall.measure.machine import cpu_model
from memwall.measure.models import LoadedModel
from memwall.measure.opmap import attribute, labels
from memwall.measure.timing import NOISY_IQR, Timing, TimingInterrupted
from memwall.spec import Workload
from memwall.trace.models import cache_argument
from memwall.version import __version__

MAX_PROFILED_STEPS = 64  # generate: per-op profiling samples this many decode steps at most


def auto_threads() -> tuple[int, str]:
    """(threads, why): every core but one, minus those other processes keep busy (1-minute
    load average, read before memwall starts working). Eager PyTorch with more threads than
    free cores stalls: a parallel region waits a scheduler tick for a preempted thread, which
    can make a 60 us op take 8 ms. One core is left for the OS and everything else, because
    any wake-up on a fully used machine preempts one of our threads (on this project's 2-core
    test machine, two threads doubled the prediction error: docs/prediction.md)."""
    cores = os.cpu_count() or 1
    if cores == 1:
        return 1, "1 of 1 cores (the only one)"
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = None
    spare = max(1, cores - 1)  # one core left for everything else
    if busy is None:
        return spare, f"{spare} of {cores} cores (one left for the OS; load average unavailable)"
    n = max(1, min(spare, int(math.floor(cores - busy + 0.5))))
    if n == spare:
        return n, (
            f"{n} of {cores} cores: one left for the OS and other processes (load average "
            f"{busy:.2f}). --threads N overrides"
        )
    return n, (
        f"{n} of {cores} cores: other processes keep about {busy:.1f} busy (load average); "
        "more threads than free cores stall eager PyTorch. --threads N overrides"
    )


THREADS_NOTE: dict[str, str] = {}  # the last thread choice's reason (said in outputs)


def _least_busy_cpus(n: int) -> list[int] | None:
    """The `n` CPUs this process may run on that other work keeps least busy (None where the
    OS cannot pin a process)."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if n >= len(allowed):
        return None  # every allowed CPU is used: nothing to choose
    busy = psutil.cpu_percent(interval=0.1, percpu=True)
    return sorted(sorted(allowed, key=lambda c: busy[c] if c < len(busy) else 0.0)[:n])


def _set_affinity(cpus: Any) -> None:
    """Every thread of this process (torch's pool included) on `cpus` (Linux: per thread)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile, or one we may not move


@contextmanager
def _pinned(cpus: list[int] | None) -> Iterator[None]:
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        _set_affinity(cpus)
    except OSError:  # containers may forbid it: run unpinned
        yield
        return
    try:
        yield
    finally:
        _set_affinity(before)


@contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run with `n` intra-op threads (None: `auto_threads()`), pinned where the OS allows to
    the `n` least busy CPUs (a thread the scheduler moves or shares stalls every eager
    parallel region), restoring the previous count and affinity after."""
    before = torch.get_num_threads()
    if n is None:
        n, why = auto_threads()
    else:
        if n < 1 or n > 4096:
            raise MemwallError(f"threads must be between 1 and 4096, got {n}")
        why = f"{n} (asked)"
    steady_allocator()  # every measured run: freed buffers reused, not page-faulted again
    cpus = _least_busy_cpus(n)
    if cpus:
        why += f"; pinned to CPU{'s' if len(cpus) > 1 else ''} {','.join(map(str, cpus))}"
    THREADS_NOTE["threads"] = why
    torch.set_num_threads(n)
    try:
        with _pinned(cpus):
            yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def environment() -> dict[str, Any]:
    """What the numbers depend on: CPU, threads, versions, load, date."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan,) * 3
    return {
        "cpu_model": cpu_model()[0],
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "threads_choice": THREADS_NOTE.get("threads", "torch default"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "memwall": __version__,
        "quantized_engine": torch.backends.quantized.engine,
        "allocator": steady_allocator(),
        "load_average_1min": load[0],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


class Runner:
    """One workload on one loaded model: `setup()` (untimed) then `run()` (timed)."""

    def __init__(self, lm: LoadedModel, workload: Workload, seed: int = 0) -> None:
        self.lm = lm
        self.wl = workload
        self.cache: Any = None
        self._state: dict[str, Any] = {}
        spec = lm.spec
        g = torch.Generator().manual_seed(seed)
        B, L = workload.batch, workload.seq_len
        vocab = spec.vocab_size
        self.act_dtype = torch.bfloat16 if lm.precision == "bf16" else torch.float32
        if workload.phase in ("encode", "prefill"):
            self._ids = torch.randint(0, vocab, (B, L), generator=g)
        else:
            start = getattr(lm.module.config, "bos_token_id", None)
            start = start if isinstance(start, int) and 0 <= start < vocab else 0
            self._ids = torch.full((B, 1), start, dtype=torch.long)
        self._cache_arg = cache_argument(lm.module)
        self._kv: list[tuple[Any, Any]] = []
        if workload.phase in ("decode", "generate") and L > 0:
            shape = (B, spec.n_kv_heads, L, spec.head_dim)
            for _ in range(spec.n_layers):
                k = torch.randn(shape, generator=g).to(self.act_dtype)
                v = torch.randn(shape, generator=g).to(self.act_dtype)
                self._kv.append((k, v))

    @property
    def tokens(self) -> int:
        """Tokens processed (prefill / encode) or generated (decode / generate) per run."""
        wl = self.wl
        if wl.phase in ("encode", "prefill"):
            return wl.batch * wl.seq_len
        if wl.phase == "decode":
            return wl.batch
        return wl.batch * wl.gen_len

    def _new_cache(self) -> Any:
        cache = DynamicCache(config=self.lm.module.config)
        for i, (k, v) in enumerate(self._kv):
            cache.update(k, v, i)
        return cache

    def setup(self) -> None:
        if self.wl.phase != "encode":
            self.cache = self._new_cache()

    def run(self, on_step: Callable[[], None] | None = None) -> None:
        """One timed unit of work; `on_step` is called after each decode step (profiling)."""
        m = self.lm.module
        ph = self.wl.phase
        if ph == "encode":
            m(input_ids=self._ids)
            return
        if ph in ("prefill", "decode"):
            m(input_ids=self._ids, **{self._cache_arg: self.cache}, use_cache=True)
            return
        ids = self._ids
        for _ in range(self.wl.gen_len):
            out = m(input_ids=ids, **{self._cache_arg: self.cache}, use_cache=True)
            ids = out.logits[:, -1:].argmax(-1)
            if on_step is not None:
                on_step()


def time_runs(
    runner: Runner,
    warmup: int = 1,
    repeats: int = 5,
    on_run: Callable[[int], None] | None = None,
    budget_s: float = 0.0,
    max_runs: int = 0,
) -> Timing:
    """Warm-up runs, then `repeats` timed runs (GC paused during each); then, while the runs'
    interquartile range exceeds NOISY_IQR of their median, one more run at a time until the
    timed runs total `budget_s` seconds or `max_runs` runs were made (0: 4 x repeats). A
    timing still that wide is reported `noisy`.

    Ctrl-C raises `TimingInterrupted` carrying the timed runs that finished."""
    times: list[float] = []
    cap = max(repeats, max_runs or 4 * repeats)
    gc.collect()  # once: a full collection of a process holding a transformers model is slow
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                _one_run(runner, i >= warmup, times)
                if on_run is not None:
                    on_run(i)
            while (
                len(times) < cap
                and sum(times) < budget_s
                and Timing(tuple(times), warmup).relative_iqr > NOISY_IQR
            ):
                _one_run(runner, True, times)
                if on_run is not None:
                    on_run(warmup + len(times) - 1)
    except KeyboardInterrupt:
        raise TimingInterrupted(_timing(times, warmup, repeats, budget_s), repeats) from None
    return _timing(times, warmup, repeats, budget_s)


def _timing(times: list[float], warmup: int, repeats: int, budget_s: float) -> Timing:
    return Timing(tuple(times), warmup, max(0, len(times) - repeats), budget_s)


def timed_run(runner: Runner) -> float:
    """Seconds of one run, set up first, the garbage collector paused (as `time_runs`)."""
    times: list[float] = []
    _one_run(runner, True, times)
    return times[0]


def _one_run(runner: Runner, keep: bool, times: list[float]) -> None:
    runner.setup()
    gc.collect(0)
    with gc_paused():
        t0 = time.perf_counter()
        runner.run()
        t = time.perf_counter() - t0
    if keep:
        times.append(t)


@dataclass
class OpProfile:
    """Per-op profiled seconds (op name -> s) for one run, and what was profiled."""

    times: dict[str, float]
    total: float  # profiled seconds of the model calls, scaled like `times`
    coverage: float
    framework: float
    wall: float  # profiled wall time of the whole run (scaled)
    sampled: str = ""  # how generate steps were sampled, if they were
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (kineto, torch.profiler's backend, logs every start and stop
    there from C++); Python exceptions still propagate and print after it is restored."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the garbage collector (restored after, also on errors)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def profile_ops(runner: Runner) -> OpProfile:
    """One run under torch.profiler with memwall's op ranges (see `memwall.measure.opmap`).

    Long generations profile every k-th decode step only (at most MAX_PROFILED_STEPS steps, a
    uniform sample over the contexts) and scale the times by k. The garbage collector is
    paused as in the timed runs (a full collection would be charged to `framework`).
    """
    runner.setup()
    gc.collect()
    family = runner.lm.spec.family
    steps = runner.wl.gen_len if runner.wl.phase == "generate" else 1
    k = max(1, math.ceil(steps / MAX_PROFILED_STEPS))
    acc: dict[str, float] = {}
    tot = [0.0, 0.0]
    with (
        torch.inference_mode(),
        quiet_stderr(),
        gc_paused(),
        labels(runner.lm.module, family, runner.cache) as rules,
    ):

        def ready(p) -> None:
            a = attribute(p.events(), rules)
            for name, t in a.times.items():
                acc[name] = acc.get(name, 0.0) + t
            tot[0] += a.total

        if k == 1:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                runner.run()
                tot[1] = time.perf_counter() - t0
            ready(prof)
        else:
            sched = schedule(wait=k - 1, warmup=0, active=1, repeat=0)
            with profile(
                activities=[ProfilerActivity.CPU], schedule=sched, on_trace_ready=ready
            ) as prof:
                t0 = time.perf_counter()
                runner.run(on_step=prof.step)
                tot[1] = time.perf_counter() - t0
    scale = float(k)
    times = {n: t * scale for n, t in acc.items()}
    total = tot[0] * scale
    fw = times.get("framework", 0.0)
    cov = (total - fw) / total if total > 0 else 0.0
    sampled = f"1 decode step in {k} profiled, times scaled by {k}" if k > 1 else ""
    return OpProfile(times, total, cov, fw, tot[1], sampled)
