"""Integer search over a monotone yes/no question: the largest batch that fits, the smallest
batch that is compute-bound. One bisection for every such question (pure, no imports)."""

from __future__ import annotations

from collections.abc import Callable


def first_true(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Smallest n in [lo, hi] with pred(n), for a `pred` that is false and then true as n grows;
    None when it is false up to `hi`. Doubles from `lo` before bisecting, so a small answer
    costs few calls of a slow `pred`."""
    if lo > hi:
        return None
    if pred(lo):
        return lo
    below, n = lo, max(2 * lo, lo + 1)  # pred(below) is false
    while n < hi and not pred(n):
        below, n = n, 2 * n
    above = min(n, hi)
    if above == hi and not pred(hi):
        return None
    while above - below > 1:  # pred(below) false, pred(above) true
        mid = (below + above) // 2
        if pred(mid):
            above = mid
        else:
            below = mid
    return above


def largest(fits: Callable[[int], bool], hi: int) -> int:
    """Largest n in [1, hi] with fits(n), for a `fits` that is true and then false as n grows;
    0 when fits(1) is false."""
    first_bad = first_true(lambda n: not fits(n), 1, hi)
    return hi if first_bad is None else first_bad - 1
