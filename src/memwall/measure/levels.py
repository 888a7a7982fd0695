"""Cache levels from a bandwidth curve: the plateaus, fastest first (pure, no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from memwall.hardware import CacheLevel


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
