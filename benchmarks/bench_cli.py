"""How long `memwall analyze` takes from a cold interpreter, beside Python's own start-up.

Best of 5 wall-clock runs each, all measured in this one run (the machine is shared: compare the
rows with each other, not with another day's numbers):
- `python -c pass`: the interpreter alone;
- `python -c "import memwall"`: the package;
- `memwall analyze llama-3-8b --phase decode --seq-len 4096 --format json`: the closed form end
  to end (target: under 0.6 s on the project's machine).
It also lists the heavy modules the command imported (none of torch, transformers, scipy,
matplotlib is expected).

Run: .venv/bin/python benchmarks/bench_cli.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

REPEATS = 5
TARGET_S = 0.6
ANALYZE = ["analyze", "llama-3-8b", "--phase", "decode", "--seq-len", "4096", "--format", "json"]
HEAVY = ("torch", "transformers", "scipy", "matplotlib")
# Runs the command in-process, then reports which heavy modules it loaded.
PROBE = (
    "import sys\n"
    "from memwall.cli import main\n"
    "try:\n"
    f"    main({ANALYZE!r})\n"
    "except SystemExit as e:\n"
    "    assert not e.code, e.code\n"
    f"sys.stderr.write(repr([m for m in {HEAVY!r} if m in sys.modules]))\n"
)


def best_of(argv: list[str], repeats: int = REPEATS) -> float:
    """Shortest wall time of `repeats` runs of argv (output discarded; a failure stops)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    py = sys.executable
    rows = {
        "python -c pass": best_of([py, "-c", "pass"]),
        'python -c "import memwall"': best_of([py, "-c", "import memwall"]),
        "memwall " + " ".join(ANALYZE): best_of([py, "-m", "memwall", *ANALYZE]),
    }
    probe = subprocess.run([py, "-c", PROBE], capture_output=True, text=True, check=True)
    heavy = probe.stderr.strip().splitlines()[-1]
    base = rows["python -c pass"]
    width = max(map(len, rows))
    print(f"best of {REPEATS} wall-clock runs, seconds (this machine, this run)")
    for name, t in rows.items():
        print(f"  {name:<{width}}  {t:6.3f} s  ({t / base:5.1f}x python -c pass)")
    cmd = rows["memwall " + " ".join(ANALYZE)]
    verdict = "meets" if cmd < TARGET_S else "misses"
    print(f"analyze {verdict} the {TARGET_S} s target ({cmd:.3f} s)")
    print(f"heavy modules imported by analyze: {heavy}")
    print(json.dumps({"best_of": REPEATS, "seconds": rows, "heavy_imported": heavy}))


if __name__ == "__main__":
    main()
