"""memwall's peak fp32 / bf16 FLOP/s vs the best torch.matmul over a sweep of shapes, one run.

    .venv/bin/python benchmarks/bench_gemm.py [--quick] [--budget 20]

For each dtype: memwall's own measurement (`memwall.measure.gemm_flops` with the default
`memwall measure` sizes), then a sweep of square and rectangular torch.matmul shapes, best of
repeated runs each, within a time budget per dtype. The two alternate for --rounds rounds so
both see the same background load; each keeps its best. Target: memwall / best >= 0.95.
"""

from __future__ import annotations

import argparse
import time

SQUARE = (48, 64, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048, 2560, 3072, 4096)
RECT = ((4096, 1024, 4096), (1024, 4096, 1024), (2048, 512, 2048), (512, 2048, 8192))


def sweep(dtype, budget_s: float, reps: int) -> tuple[float, tuple[int, int, int] | None]:
    import torch

    from memwall.measure import best_time

    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    shapes = [(n, n, n) for n in SQUARE] + list(RECT)
    shapes.sort(key=lambda s: s[0] * s[1] * s[2])
    best, best_shape, spent = 0.0, None, 0.0
    for m, k, n in shapes:
        a = torch.rand(m, k).to(tdt)
        b = torch.rand(k, n).to(tdt)
        c = torch.empty(m, n, dtype=tdt)
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        one = time.perf_counter() - t0
        if spent + one * (reps + 1) > budget_s:
            break
        t0 = time.perf_counter()
        t = best_time(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), reps, 0.2)
        spent += one + time.perf_counter() - t0
        rate = 2.0 * m * k * n / t
        if rate > best:
            best, best_shape = rate, (m, k, n)
    return best, best_shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="use `measure --quick` GEMM settings")
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per dtype for the sweep")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (best is kept)")
    args = ap.parse_args()

    import torch

    from memwall.measure import config, gemm_flops

    cfg = config(args.quick)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"memwall sizes {cfg.gemm_sizes}, budget {cfg.gemm_budget_s} s per dtype"
    )
    for dtype in ("fp32", "bf16"):
        mw = best = 0.0
        n_best, shape, note = None, None, ""
        for r in range(args.rounds):  # alternate, so both see the same background load
            rate, n, note = gemm_flops(
                dtype, cfg.gemm_sizes, cfg.reps, cfg.min_time, cfg.gemm_budget_s
            )
            if rate is not None and rate > mw:
                mw, n_best = rate, n
            b, sh = sweep(dtype, args.budget, 3)
            if b > best:
                best, shape = b, sh
            print(
                f"  {dtype} round {r + 1}: memwall {(rate or 0) / 1e9:.2f}, "
                f"sweep {b / 1e9:.2f} GFLOP/s",
                flush=True,
            )
        if not mw:
            print(f"{dtype}: memwall: {note}; best torch.matmul {best / 1e9:.2f} GFLOP/s")
            continue
        ratio = mw / best if best else float("nan")
        print(
            f"{dtype}: memwall peak (measured) {mw / 1e9:8.2f} GFLOP/s at n={n_best}; "
            f"best torch.matmul (measured) {best / 1e9:8.2f} GFLOP/s at (m,k,n)={shape}; "
            f"ratio {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})",
            flush=True,
        )


if __name__ == "__main__":
    main()
