"""The C allocator setting every measurement runs under: freed memory kept for reuse.

glibc's malloc returns large freed blocks to the OS (mmap above a threshold that moves with
the process's history, heap trimming above another), so an eager model's fresh activation
buffers are page-faulted and zeroed again on some runs and not on others: on this machine a
BERT-Base forward at 256 tokens paid 9,000-13,000 page faults (about 10% of its time) in one
process and none in another, depending on what ran before. Fixing the two thresholds makes
runs repeatable and matches what PyTorch's caching allocators do on GPUs and what Intel's
CPU tuning guide gets with jemalloc or tcmalloc. `MEMWALL_ALLOCATOR=system` keeps glibc's
defaults (to measure them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV = "MEMWALL_ALLOCATOR"
M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap kept, never trimmed

_STATE: dict[str, str] = {}


def steady_allocator() -> str:
    """Set (once per process) glibc's thresholds so freed buffers up to 32 MiB are reused and
    the heap is not trimmed; return what the allocator is, for the outputs."""
    if "note" in _STATE:
        return _STATE["note"]
    if os.environ.get(ENV, "").strip().lower() == "system":
        note = f"system defaults ({ENV}=system)"
    else:
        note = _mallopt()
    _STATE["note"] = note
    return note


def _mallopt() -> str:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        fn = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        fn = None
    if fn is None:
        return "system defaults (no glibc mallopt here)"
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = fn(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and fn(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        return "system defaults (mallopt refused the thresholds)"
    return (
        "glibc with freed buffers reused (mmap threshold 32 MiB, heap never trimmed; "
        f"{ENV}=system for glibc's defaults)"
    )
