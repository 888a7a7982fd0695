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
min and max are reported, with threads, library versions and the load average.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from memwall.profile.models import LoadedModel
from memwall.spec import Workload

MAX_PROFILED_STEPS = 64  # generate: per-op profiling samples this many decode steps at most


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed run, and their summary."""

    runs: tuple[float, ...]
    warmup: int

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def q1(self) -> float:
        return _quantile(self.runs, 0.25)

    @property
    def q3(self) -> float:
        return _quantile(self.runs, 0.75)

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def max(self) -> float:
        return max(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "min": self.min,
            "max": self.max,
            "runs": self.n,
            "warmup": self.warmup,
            "all": list(self.runs),
        }


def _quantile(xs: tuple[float, ...], q: float) -> float:
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def auto_threads() -> tuple[int, str]:
    """(threads, why): all cores, minus those other processes keep busy (1-minute load
    average, read before memwall starts working). Eager PyTorch with more threads than free
    cores stalls: a parallel region waits a scheduler tick for a preempted thread, which can
    make a 60 us op take 8 ms."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return cores, f"all {cores} cores (load average unavailable)"
    n = max(1, min(cores, int(math.floor(cores - busy + 0.5))))
    if n == cores:
        return n, f"all {cores} cores (load average {busy:.2f})"
    return n, (
        f"{n} of {cores} cores: other processes keep about {busy:.1f} busy (load average); "
        "more threads than free cores stall eager PyTorch. --threads N overrides"
    )


THREADS_NOTE: dict[str, str] = {}  # the last thread choice's reason (said in outputs)


@contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run with `n` intra-op threads (None: `auto_threads()`), restoring the previous count."""
    import torch

    before = torch.get_num_threads()
    if n is None:
        n, why = auto_threads()
    else:
        if n < 1 or n > 4096:
            from memwall.errors import MemwallError

            raise MemwallError(f"threads must be between 1 and 4096, got {n}")
        why = f"{n} (asked)"
    THREADS_NOTE["threads"] = why
    torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def environment() -> dict[str, Any]:
    """What the numbers depend on: CPU, threads, versions, load, date."""
    import torch
    import transformers

    from memwall import __version__
    from memwall.measure import cpu_model

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
        "load_average_1min": load[0],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


class Runner:
    """One workload on one loaded model: `setup()` (untimed) then `run()` (timed)."""

    def __init__(self, lm: LoadedModel, workload: Workload, seed: int = 0) -> None:
        import torch

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
        from transformers import DynamicCache

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
            m(input_ids=self._ids, past_key_values=self.cache, use_cache=True)
            return
        ids = self._ids
        for _ in range(self.wl.gen_len):
            out = m(input_ids=ids, past_key_values=self.cache, use_cache=True)
            ids = out.logits[:, -1:].argmax(-1)
            if on_step is not None:
                on_step()


def time_runs(
    runner: Runner,
    warmup: int = 1,
    repeats: int = 5,
    on_run: Callable[[int], None] | None = None,
) -> Timing:
    """Warm-up runs, then `repeats` timed runs (GC paused during each)."""
    import torch

    times = []
    gc.collect()  # once: a full collection of a process holding a transformers model is slow
    with torch.inference_mode():
        for i in range(warmup + repeats):
            runner.setup()
            gc.collect(0)
            gc.disable()
            try:
                t0 = time.perf_counter()
                runner.run()
                t = time.perf_counter() - t0
            finally:
                gc.enable()
            if i >= warmup:
                times.append(t)
            if on_run is not None:
                on_run(i)
    return Timing(tuple(times), warmup)


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
    import sys

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


def profile_ops(runner: Runner) -> OpProfile:
    """One run under torch.profiler with memwall's op ranges (see `memwall.profile.opmap`).

    Long generations profile every k-th decode step only (at most MAX_PROFILED_STEPS steps, a
    uniform sample over the contexts) and scale the times by k.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from memwall.profile.opmap import attribute, labels

    runner.setup()
    family = runner.lm.spec.family
    steps = runner.wl.gen_len if runner.wl.phase == "generate" else 1
    k = max(1, math.ceil(steps / MAX_PROFILED_STEPS))
    acc: dict[str, float] = {}
    tot = [0.0, 0.0]
    with (
        torch.inference_mode(),
        quiet_stderr(),
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
