"""Closed-form sweep speed: workload points per second, vectorised vs a per-point Python loop.

Both paths evaluate the same per-operation formulas (memwall.count); the loop calls them once per
point with plain numbers, the sweep once per operation on numpy arrays. Run:
    .venv/bin/python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import time

import numpy as np

from memwall.count import point_totals, sweep
from memwall.spec import load_model, parse_precision

TARGET = 1_000_000  # points per second


def main() -> None:
    spec = load_model("llama-3-8b")
    precs = [parse_precision(p) for p in ("fp32", "bf16", "int8", "int4", "4/16/8")]
    batches = np.arange(1, 129)  # 128
    seq_lens = np.unique(np.geomspace(1, 131072, 160).astype(int))  # ~150
    gen_lens = [1, 64, 256, 1024, 4096, 16384]  # 6
    n = len(batches) * len(seq_lens) * len(gen_lens) * len(precs)

    sweep(spec, "generate", batches[:2], seq_lens[:2], gen_lens[:1], precs)  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        grid = sweep(spec, "generate", batches, seq_lens, gen_lens, precs)
        best = min(best, time.perf_counter() - t0)
    assert len(grid) == n

    rng = np.random.default_rng(0)
    sample = grid.iloc[rng.choice(n, 2000, replace=False)]
    lookup = {p.label: p for p in precs}
    t0 = time.perf_counter()
    for r in sample.itertuples():
        f, b = point_totals(
            spec, "generate", int(r.batch), int(r.seq_len), int(r.gen_len), lookup[r.precision]
        )
    loop_s = (time.perf_counter() - t0) / len(sample)
    # the two paths agree on the sampled points
    last = sample.iloc[-1]
    assert abs(f - last.flops) <= 1e-9 * last.flops and abs(b - last.bytes) <= 1e-9 * last.bytes

    vec_pps = n / best
    loop_pps = 1 / loop_s
    print(
        f"model llama-3-8b, phase generate, {n:,} workload points "
        f"(batch x seq_len x gen_len x precision), closed form, convention full"
    )
    print(f"vectorised sweep : {best:.3f} s  -> {vec_pps:,.0f} points/s (best of 3)")
    print(
        f"per-point loop   : {loop_s * 1e6:.1f} us/point -> {loop_pps:,.0f} points/s "
        f"(2,000 sampled points, same formulas)"
    )
    print(f"speed-up         : {vec_pps / loop_pps:,.0f}x")
    print(f"target {TARGET:,} points/s: {'met' if vec_pps >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
