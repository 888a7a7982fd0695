"""Timing helpers shared by every measurement: best and mean time of a kernel, the summary
of repeated runs (median, quartiles, spread), and the one check of repeat/warm-up counts.

Why here: roofs, calibration terms and real-model runs all time code the same way; a single
home keeps their rules (warm-up first, lowest loop on a shared machine) identical.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memwall.errors import MemwallError

MAX_REPEATS = 10_000
NOISY_IQR = 0.10  # timed runs whose interquartile range exceeds this share of the median
MAX_WARMUP = 1000


def torch_or_error() -> Any:
    """torch, or one MemwallError line saying how to install it (imported lazily: the rest of
    memwall works without it)."""
    try:
        import torch
    except ImportError:
        raise MemwallError("measuring needs torch: pip install 'memory-wall[torch]'") from None
    return torch


def check_repeats(repeats: int, warmup: int, max_repeats: int = MAX_REPEATS) -> None:
    """Refuse repeat and warm-up counts outside 1..max_repeats and 0..MAX_WARMUP."""
    if not 1 <= repeats <= max_repeats:
        raise MemwallError(f"--repeats must be between 1 and {max_repeats}, got {repeats}")
    if not 0 <= warmup <= MAX_WARMUP:
        raise MemwallError(f"--warmup must be between 0 and {MAX_WARMUP}, got {warmup}")


def best_time(
    fn: Callable[[], Any],
    reps: int = 5,
    min_time: float = 0.2,
    sync: Callable[[], Any] | None = None,
) -> float:
    """Fastest of at least `reps` runs lasting at least `min_time` together, after a warm-up.
    `sync` waits for an accelerator to finish (its kernels run asynchronously)."""
    wait = sync or (lambda: None)
    fn()
    wait()
    best = math.inf
    n = 0
    start = time.perf_counter()
    while n < reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        wait()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best


MEASURE_DEVICES = ("cpu", "cuda", "mps")


def check_device(device: str) -> str:
    """'cpu', 'cuda', 'cuda:N' or 'mps' if torch can use it here; else one MemwallError line."""
    d = str(device).strip().lower()
    kind, _, index = d.partition(":")
    if kind not in MEASURE_DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise MemwallError(f"cannot measure on device {device!r}; accepted: cpu, cuda, cuda:N, mps")
    if kind == "cpu":
        return d
    torch = torch_or_error()
    if kind == "cuda" and not torch.cuda.is_available():
        raise MemwallError("no CUDA device visible to torch here; measure with --device cpu")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise MemwallError(f"no {d}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise MemwallError("no MPS (Apple GPU) device visible to torch; use --device cpu")
    return d


def device_sync(device: str) -> Callable[[], Any] | None:
    """The wait-for-completion call of a torch device (None on the CPU: it is synchronous)."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return None
    torch = torch_or_error()
    return torch.cuda.synchronize if kind == "cuda" else torch.mps.synchronize


def mean_time(
    fn: Callable[[], Any], reps: int = 5, min_time: float = 0.05, rounds: int = 3
) -> float:
    """Seconds per call: the lowest mean over `rounds` loops (after a warm-up call), each of
    at least `reps` calls and `min_time` / `rounds` seconds.

    A loop's *mean* (not a single fastest call) because a model run is thousands of such calls
    in a row; the lowest loop because on a shared machine a loop may be slowed by other work
    that a quiet run does not see.
    """
    fn()
    best = math.inf
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        while n < reps or (time.perf_counter() - start < min_time / rounds and n < 100_000):
            fn()
            n += 1
        best = min(best, (time.perf_counter() - start) / n)
    return best


class TimingInterrupted(KeyboardInterrupt):
    """Ctrl-C during timed runs, carrying the runs that finished (`timing`)."""

    def __init__(self, timing: Timing, planned: int) -> None:
        super().__init__(f"{timing.n} of {planned} timed runs finished")
        self.timing = timing
        self.planned = planned


def quantile(xs: tuple[float, ...] | list[float], q: float) -> float:
    """Linear-interpolated quantile of `xs` (q in 0..1)."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median_ci(xs: tuple[float, ...] | list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: the order statistics whose ranks
    the binomial(n, 1/2) distribution puts around it (no normality assumed: run times are
    skewed by preemption). With few runs it widens to the extremes."""
    from scipy.stats import binom  # heavy: imported only when a timing is summarised

    s = sorted(xs)
    n = len(s)
    lo = int(binom.ppf((1 - level) / 2, n, 0.5))  # runs below the interval's low end
    lo = max(0, min(lo - 1, n - 1))
    hi = max(lo, min(n - 1 - lo, n - 1))
    return s[lo], s[hi]


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed run, and their summary. `added`: runs added beyond those asked
    because the spread was wide (`memwall.measure.run.time_runs`); `budget_s`: the seconds of
    timed runs those additions could take."""

    runs: tuple[float, ...]
    warmup: int
    added: int = 0
    budget_s: float = 0.0

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def q1(self) -> float:
        return quantile(self.runs, 0.25)

    @property
    def q3(self) -> float:
        return quantile(self.runs, 0.75)

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def max(self) -> float:
        return max(self.runs)

    @property
    def relative_iqr(self) -> float:
        """Interquartile range over the median: how far apart typical runs are."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0

    @property
    def repeatability(self) -> float:
        """(max - min) / median: the most two runs of this measurement differed."""
        return (self.max - self.min) / self.median if self.median > 0 else 0.0

    @property
    def noisy(self) -> bool:
        """Typical runs differ by more than NOISY_IQR of the median."""
        return self.relative_iqr > NOISY_IQR

    def to_dict(self) -> dict[str, Any]:
        lo, hi = median_ci(self.runs)
        return {
            "median": self.median,
            "median_ci95": [lo, hi],
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.q3 - self.q1,
            "relative_iqr": self.relative_iqr,
            "repeatability": self.repeatability,
            "noisy": self.noisy,
            "min": self.min,
            "max": self.max,
            "noisy_limit": NOISY_IQR,
            "runs": self.n,
            "added_runs": self.added,
            "settle_budget": self.budget_s,
            "warmup": self.warmup,
            "all": list(self.runs),
        }
