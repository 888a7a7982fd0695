"""How long `import memwall` and `memwall analyze` take from a cold interpreter, beside Python's
own start-up, against the targets of issue 22 (memwall as a library).

Median of 7 wall-clock runs each, all measured in this one run (the machine is shared: compare
the rows with each other, not with another day's numbers):
- `python -c pass`: the interpreter alone;
- `python -c "import memwall"`: the package, the library's front door (target: under 0.1 s,
  and no torch imported);
- `memwall analyze gpt2 --phase decode --seq-len 512`: the closed form end to end, table
  output (target: under 0.6 s);
- `memwall analyze llama-3-8b --phase decode --seq-len 4096 --format json`: a bigger model,
  JSON output (same target).
It also lists the heavy modules each imported (none of torch, transformers, scipy,
matplotlib is expected).

Run: .venv/bin/python benchmarks/bench_cli.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

REPEATS = 7
IMPORT_TARGET_S = 0.1
ANALYZE_TARGET_S = 0.6
GPT2 = ["analyze", "gpt2", "--phase", "decode", "--seq-len", "512"]
LLAMA = ["analyze", "llama-3-8b", "--phase", "decode", "--seq-len", "4096", "--format", "json"]
HEAVY = ("torch", "transformers", "scipy", "matplotlib")
# Runs the command (or only the import) in-process, then reports the heavy modules it loaded.
PROBE = (
    "import io, sys, contextlib\n"
    "import memwall\n"
    "argv = sys.argv[1:]\n"
    "if argv:\n"
    "    from memwall.cli import main\n"
    "    try:\n"
    "        with contextlib.redirect_stdout(io.StringIO()):\n"
    "            main(argv)\n"
    "    except SystemExit as e:\n"
    "        assert not e.code, e.code\n"
    f"sys.stderr.write(repr([m for m in {HEAVY!r} if m in sys.modules]))\n"
)


def median_of(argv: list[str], repeats: int = REPEATS) -> float:
    """Median wall time of `repeats` runs of argv (output discarded; a failure stops)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_imports(args: list[str]) -> str:
    """The heavy modules `import memwall` (no args) or `memwall ARGS` loads."""
    py = sys.executable
    probe = subprocess.run([py, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return probe.stderr.strip().splitlines()[-1]


def main() -> None:
    py = sys.executable
    names = {
        "pass": "python -c pass",
        "import": 'python -c "import memwall"',
        "gpt2": "memwall " + " ".join(GPT2),
        "llama": "memwall " + " ".join(LLAMA),
    }
    seconds = {
        names["pass"]: median_of([py, "-c", "pass"]),
        names["import"]: median_of([py, "-c", "import memwall"]),
        names["gpt2"]: median_of([py, "-m", "memwall", *GPT2]),
        names["llama"]: median_of([py, "-m", "memwall", *LLAMA]),
    }
    heavy = {names["import"]: heavy_imports([]), names["gpt2"]: heavy_imports(GPT2)}
    heavy[names["llama"]] = heavy_imports(LLAMA)
    base = seconds[names["pass"]]
    width = max(map(len, seconds))
    print(f"median of {REPEATS} wall-clock runs, seconds (this machine, this run)")
    for name, t in seconds.items():
        print(f"  {name:<{width}}  {t:6.3f} s  ({t / base:5.1f}x python -c pass)")
    targets = {
        names["import"]: IMPORT_TARGET_S,
        names["gpt2"]: ANALYZE_TARGET_S,
        names["llama"]: ANALYZE_TARGET_S,
    }
    met = {}
    for name, target in targets.items():
        t = seconds[name]
        met[name] = t < target and heavy[name] == "[]"
        verdict = "meets" if met[name] else "misses"
        print(f"{verdict} the {target} s target, no heavy module: {name} ({t:.3f} s; "
              f"heavy modules imported: {heavy[name]})")  # fmt: skip
    print(
        json.dumps({"median_of": REPEATS, "seconds": seconds, "heavy_imported": heavy, "met": met})
    )


if __name__ == "__main__":
    main()
