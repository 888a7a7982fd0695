"""memwall's DRAM bandwidth vs a C OpenMP STREAM triad compiled here, measured in one run.

    .venv/bin/python benchmarks/bench_bandwidth.py [--rounds 5] [--array-mib N]

Both run the triad a = b + s*c on float64 arrays of the same size (default: what
`memwall measure` uses, 4x the last-level cache per array) with the same thread count, and
count bytes the same way (3 x 8 per element). Rounds alternate C and memwall so that both see
the same background load; each keeps its best. Target: memwall / C >= 0.9.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def compile_triad(workdir: Path) -> Path | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    exe = workdir / "triad"
    base = [gcc, "-O3", "-fopenmp", str(HERE / "triad.c"), "-o", str(exe)]
    for extra in (["-march=native"], []):
        r = subprocess.run(base[:1] + extra + base[1:], capture_output=True, text=True)
        if r.returncode == 0:
            return exe
    sys.stderr.write(f"gcc failed: {r.stderr.strip()[:500]}\n")
    return None


def c_triad(exe: Path, n: int, times: int, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [str(exe), str(n), str(times)], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--times", type=int, default=10, help="triads per round (best is kept)")
    ap.add_argument("--array-mib", type=float, default=None, help="MiB per array")
    args = ap.parse_args()

    import torch

    from memwall.measure import MiB, llc_size, triad_bandwidth

    llc = llc_size() or 32 * MiB
    array_bytes = int(args.array_mib * MiB) if args.array_mib else max(4 * llc, 64 * MiB)
    n = array_bytes // 8
    threads = torch.get_num_threads()
    print(
        f"triad: 3 float64 arrays of {array_bytes / MiB:.0f} MiB (LLC {llc / MiB:.0f} MiB), "
        f"{threads} threads, {args.rounds} rounds x {args.times} runs, best kept"
    )
    with tempfile.TemporaryDirectory() as d:
        exe = compile_triad(Path(d))
        best_c = best_m = 0.0
        for r in range(args.rounds):
            m = triad_bandwidth(array_bytes, reps=args.times, min_time=0.0)
            best_m = max(best_m, m)
            line = f"round {r + 1}: memwall {m / 1e9:7.2f} GB/s"
            if exe is not None:
                c = c_triad(exe, n, args.times, threads)
                best_c = max(best_c, c)
                line += f"   C triad {c / 1e9:7.2f} GB/s"
            print(line, flush=True)
    print(f"memwall DRAM bandwidth (measured): {best_m / 1e9:.2f} GB/s")
    if exe is None:
        print("gcc not found: no C reference, ratio not computed")
        return
    ratio = best_m / best_c
    print(f"C OpenMP triad (gcc -O3 -fopenmp, measured): {best_c / 1e9:.2f} GB/s")
    print(
        f"ratio memwall / C = {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
