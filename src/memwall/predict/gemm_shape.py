"""How much of a GPU's best matmul rate a GEMM of shape (M, K, N) reaches: tile and wave
quantisation, and a short inner dimension.

A GPU GEMM kernel cuts the M x N output into tiles (e.g. 128 x 256) and runs one tile per
compute unit (SM, CU) at a time. Two losses follow from the shape alone (NVIDIA, "Matrix
Multiplication Background User's Guide", Deep Learning Performance docs):
- tile quantisation: M or N not a multiple of the tile edge pads the last tile with idle work;
- wave quantisation: tiles are run in waves of one per unit, and the last wave is partly idle
  (tiles / (waves x units) of the machine does useful work).
Libraries pick among several tile shapes (smaller tiles waste less but reach a lower rate); the
kernel chosen here is the best of the tile options in `data/efficiency.json`, each with its
relative rate. A short K adds a fixed prologue/epilogue per tile: K / (K + k_half). When
there are fewer tiles than units, libraries split K across units (split-K, as cuBLAS and
CUTLASS do) down to slices of `SPLIT_K_MIN`, at a cost of `SPLIT_K_REL` for the extra reduction.

Small-M (matrix-vector-like) GEMMs are priced by the caller's M / (M + m_half) term instead;
below one tile of rows no row padding is charged here, so the two losses are not counted twice.

Tile and wave quantisation are steps in M: one row more than a full wave adds a nearly idle
wave (M = 1000 -> 1025 on a 132-SM part at N = 4096 drops the rate by a third). A GEMM run
once at one shape pays its step. A server in steady state does not run one shape: its step's
M (running decodes plus the prompt tokens admitted beside them) moves from step to step, so
what it pays is the average over those shapes. `m_spread` = s prices that average: M spread
evenly over [M (1 - s), M (1 + s)], the efficiency being total work over total time
(E[M] / E[M / eff(M)]), which keeps the trend with M and drops the saw-tooth.
"""

from __future__ import annotations

import numpy as np

SPLIT_K_MIN = 256  # shortest K slice a split-K kernel keeps
SPLIT_K_REL = 0.9  # rate of a split-K GEMM relative to an unsplit one (the partial sums' pass)
SPREAD_POINTS = 17  # shapes the M spread is averaged over (odd: the centre is one of them)


def shape_efficiency(
    m: np.ndarray,
    k: np.ndarray,
    n: np.ndarray,
    units: float | None,
    tiles: tuple[tuple[int, int, float], ...],
    k_half: float,
    m_spread: float = 0.0,
) -> np.ndarray:
    """Fraction (0, 1] of the best-shape matmul rate that GEMMs of shapes (m, k, n) reach on
    a device with `units` compute units; 1 where a shape is unknown (NaN) or units is None.
    `m_spread` in [0, 1): the average over M spread by that fraction either side (a server's
    steps, see the module docstring); 0: the one shape."""
    if not 0.0 <= m_spread < 1.0:
        raise ValueError(f"m_spread must be in [0, 1), got {m_spread!r}")
    if m_spread > 0:
        m = np.asarray(m, dtype=float)
        factors = np.linspace(1.0 - m_spread, 1.0 + m_spread, SPREAD_POINTS)
        time = sum(f / _one_shape((m * f, k, n), (units, tiles, k_half)) for f in factors)
        return factors.sum() / time
    return _one_shape((m, k, n), (units, tiles, k_half))


def _one_shape(shape: tuple, library: tuple) -> np.ndarray:
    """`shape_efficiency` of exactly the shapes (m, k, n) on (units, tiles, k_half)."""
    units, tiles, k_half = library
    m, k, n = (np.asarray(x, dtype=float) for x in shape)
    known = np.isfinite(m) & np.isfinite(k) & np.isfinite(n) & (m > 0) & (n > 0) & (k > 0)
    out = np.ones(np.broadcast(m, k, n).shape)
    if units is None or not known.any() or not tiles:
        return out
    mm, kk, nn = (np.where(known, x, 1.0) for x in (m, k, n))
    best = np.zeros_like(out)
    for tm, tn, rel in tiles:
        rows = np.ceil(mm / tm)
        cols = np.ceil(nn / tn)
        # rows below one tile are the small-M term's business: no padding charged for them
        pad_m = np.where(mm >= tm, mm / (rows * tm), 1.0)
        pad_n = nn / (cols * tn)
        count = rows * cols
        splits = np.maximum(1.0, np.minimum(np.floor(units / count), np.floor(kk / SPLIT_K_MIN)))
        work = count * splits
        wave = work / (np.ceil(work / units) * units) * np.where(splits > 1, SPLIT_K_REL, 1.0)
        best = np.maximum(best, rel * pad_m * pad_n * wave)
    k_term = kk / (kk + k_half)
    return np.where(known, best * k_term, 1.0)
