"""Time each stage of `memwall report --quick` (the acceptance asks for under 2 minutes).

    python benchmarks/bench_report.py            # a fresh data folder: measures this machine too
    python benchmarks/bench_report.py --reuse    # the user's data folder: reuses a saved
                                                 # measurement younger than a day
    python benchmarks/bench_report.py --full     # the default report (budget: 10 minutes)

Prints the seconds of every section, the total wall time and the load average around the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    reuse, full = "--reuse" in sys.argv, "--full" in sys.argv
    with tempfile.TemporaryDirectory(prefix="memwall-bench-report-") as tmp:
        env = dict(os.environ)
        if not reuse:
            env["MEMWALL_DATA_DIR"] = str(Path(tmp) / "data")
        cmd = [
            sys.executable,
            "-m",
            "memwall",
            "report",
            "--out",
            str(Path(tmp) / "out"),
            "--format",
            "json",
            *([] if full else ["--quick"]),
        ]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            return p.returncode
        res = json.loads(p.stdout)
        size = (Path(tmp) / "out" / "index.html").stat().st_size
    mode = "default" if full else "--quick"
    print(f"memwall report {mode} ({'reusing saved roofs' if reuse else 'fresh data folder'})")
    for s in res["stages"]:
        print(f"  {s['section']:<12} {s['seconds']:8.1f} s  {s['status']}")
    inside = sum(s["seconds"] for s in res["stages"])
    print(f"  {'sections':<12} {inside:8.1f} s")
    print(f"  {'wall':<12} {wall:8.1f} s  (start-up, rendering and writing: {wall - inside:.1f} s)")
    print(
        f"  index.html {size / 2**20:.2f} MiB; load average {load0:.2f} -> "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    limit = 600 if full else 120
    print(f"  under {limit} s: {'yes' if wall < limit else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
