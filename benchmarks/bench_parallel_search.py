"""How long `memwall parallel llama-3-70b --mode train --devices 64 --device h100-sxm --search`
takes (issue 23 asks for under 3 s), and what it answers.

    .venv/bin/python benchmarks/bench_parallel_search.py [--repeat 3]

Each run is a fresh process (imports, data files and caches cold, as a user gets it); prints
every wall time, the median and the spread, and the load average so a busy machine shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CMD = ["-m", "memwall", "parallel", "llama-3-70b", "--mode", "train", "--devices", "64",
       "--device", "h100-sxm", "--search", "--format", "json"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, *CMD], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
    d = json.loads(out.stdout)
    print("runs (s): " + ", ".join(f"{t:.2f}" for t in times))
    med = statistics.median(times)
    print(f"median {med:.2f} s, min {min(times):.2f} s, max {max(times):.2f} s;"
          f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"answer: {d['layout']['label']}, MFU {100 * d['mfu']:.1f}% "
          f"(range {100 * d['mfu_range'][0]:.0f}-{100 * d['mfu_range'][1]:.0f}%), "
          f"{len(d['search']['ranked'])} layouts listed; limited by {d['limits']}")  # fmt: skip


if __name__ == "__main__":
    main()
