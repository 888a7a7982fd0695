"""The requests a simulated server receives: when each arrives, how long its prompt is and how
many tokens it asks for.

Arrivals follow vLLM's `benchmark_serving.py`: the first request at t = 0, then gaps drawn from
a gamma distribution of shape `burstiness` and mean 1 / rate (burstiness 1 is a Poisson
process; below 1 burstier, above 1 more regular); rate inf sends every request at t = 0 (its
default). A closed loop (`concurrency`) keeps at most N requests in flight: a request is sent
when its arrival time has come and a slot is free, and its latencies count from then, as the
benchmark's semaphore does. Lengths are fixed (`128`), uniform over a range (`64:256`, both
ends included) or read from a CSV file with columns input_len and output_len.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memwall.errors import MemwallError

MAX_REQUESTS = 1_000_000
MAX_CSV_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Lengths:
    """A length distribution: fixed (lo == hi) or uniform over lo..hi (integers)."""

    lo: int
    hi: int

    @property
    def label(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}:{self.hi}"

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.lo == self.hi:
            return np.full(n, self.lo, dtype=np.int64)
        return rng.integers(self.lo, self.hi + 1, size=n, dtype=np.int64)


def parse_lengths(flag: str, text: str | int, minimum: int = 1) -> Lengths:
    """`128` or `64:256` (a uniform range, ends included) -> Lengths; one line if malformed."""
    s = str(text).strip()
    parts = s.split(":")
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        lo, hi = (int(parts[0]), int(parts[-1]))
    except ValueError:
        raise MemwallError(
            f"{flag} must be a token count like 128 or a range like 64:256, got {s!r}"
        ) from None
    if lo < minimum or hi < lo:
        raise MemwallError(
            f"{flag} {s}: lengths must be integers >= {minimum} (a range LOW:HIGH with LOW <= HIGH)"
        )
    return Lengths(lo, hi)


def read_lengths_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(input lengths, output lengths) from a CSV with a header naming input_len and
    output_len (other columns ignored); every value an integer >= 1."""
    p = Path(path)
    if not p.is_file():
        raise MemwallError(f"--lengths file {p} does not exist (a CSV: input_len,output_len)")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise MemwallError(f"--lengths file {p} is over {MAX_CSV_BYTES // 2**20} MiB")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MemwallError(f"--lengths file {p} is unreadable: {e.__class__.__name__}") from None
    if not rows or not {"input_len", "output_len"} <= set(rows[0]):
        raise MemwallError(
            f"--lengths file {p} needs a header with input_len and output_len and one row per "
            "request"
        )
    if len(rows) > MAX_REQUESTS:
        raise MemwallError(f"--lengths file {p} has over {MAX_REQUESTS:,} rows")
    out = []
    for col in ("input_len", "output_len"):
        try:
            v = np.array([int(str(r[col]).strip()) for r in rows], dtype=np.int64)
        except (TypeError, ValueError):
            raise MemwallError(f"--lengths file {p}: column {col} must hold integers") from None
        if (v < 1).any():
            raise MemwallError(f"--lengths file {p}: column {col} must hold integers >= 1")
        out.append(v)
    return out[0], out[1]


def check_rate(rate: float) -> float:
    """A positive request rate (inf: all at t = 0); NaN, 0 and negatives refused."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise MemwallError(
            f"--rate must be a number of requests per second, got {rate!r}"
        ) from None
    if math.isnan(r) or r <= 0:
        raise MemwallError(
            f"--rate must be > 0 requests per second (inf: every request at t = 0), got {rate!r}"
        )
    return r


def arrival_times(n: int, rate: float, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Send times of `n` requests: 0, then gamma gaps of mean 1/rate (vLLM's benchmark)."""
    if math.isinf(rate):
        return np.zeros(n)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=max(n - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])


@dataclass(frozen=True)
class Requests:
    """What the simulation is given: per request its arrival time and lengths (numpy arrays),
    and the concurrency cap of a closed loop (0: open loop)."""

    arrival: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    concurrency: int = 0

    def __len__(self) -> int:
        return len(self.arrival)


def generate(
    n: int,
    rate: float,
    burstiness: float,
    input_len: Lengths | np.ndarray,
    output_len: Lengths | np.ndarray,
    seed: int,
    concurrency: int = 0,
) -> Requests:
    """The request stream: lengths drawn first, then arrivals, from one seeded generator."""
    rng = np.random.default_rng(seed)
    ins = input_len.draw(rng, n) if isinstance(input_len, Lengths) else np.asarray(input_len)[:n]
    outs = (
        output_len.draw(rng, n) if isinstance(output_len, Lengths) else np.asarray(output_len)[:n]
    )
    return Requests(arrival_times(n, rate, burstiness, rng), ins, outs, concurrency)
