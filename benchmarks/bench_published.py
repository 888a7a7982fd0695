"""How far memwall's predictions for hardware it cannot measure are from published measurements.

Prices every row of `memwall/data/published_inference.csv` (llama.cpp decode and prefill speeds on
NVIDIA, Apple and AMD GPUs; AMD kernel-tuning GEMM times) with the efficiency model, and prints
each measurement beside memwall's prediction and range, then the median and worst error per
device class, for all rows and for the rows no efficiency value was chosen from (out of sample).
Target: median absolute error under 20% per class. No device is needed; it takes a few seconds.
Run:
    .venv/bin/python benchmarks/bench_published.py [--csv FILE] [--class NAME]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from memwall.predict.published import Comparison, compare

TARGET_MEDIAN = 0.20


def _fmt(v: float, metric: str) -> str:
    return f"{v * 1e6:9.1f} us" if metric == "matmul_time_s" else f"{v:9.1f} t/s"


def print_rows(t: pd.DataFrame) -> None:
    print(f"{'id':>3} {'device':<24} {'model':<28} {'prec':<7} {'metric':<13} "
          f"{'measured':>12} {'predicted':>12} {'range':>25} {'error':>7} fit")  # fmt: skip
    for r in t.itertuples():
        rng = f"{_fmt(r.low, r.metric).strip()}-{_fmt(r.high, r.metric).strip()}"
        print(
            f"{r.id:>3} {r.device:<24} {r.model[:28]:<28} {r.precision:<7} {r.metric:<13} "
            f"{_fmt(r.measured, r.metric):>12} {_fmt(r.predicted, r.metric):>12} {rng:>25} "
            f"{r.error:+7.0%} {r.fitted}"
        )


def print_summary(c: Comparison, title: str) -> None:
    s = c.by_class()
    print(f"\n{title}")
    print(f"{'class':<13} {'rows':>4} {'median |err|':>13} {'worst |err|':>12} {'worst id':>9} "
          f"{'in range':>9}")  # fmt: skip
    for r in s.itertuples():
        flag = "" if r.median_abs_error < TARGET_MEDIAN else "  (over the 20% target)"
        print(
            f"{r.device_class:<13} {r.rows:>4} {r.median_abs_error:>13.0%} "
            f"{r.worst_abs_error:>12.0%} {r.worst_row:>9} {r.in_range:>9.0%}{flag}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", help="also write every row with its prediction to this CSV file")
    ap.add_argument("--class", dest="cls", help="only this device class (e.g. apple-gpu)")
    args = ap.parse_args(argv)
    c = compare()
    t = c.table if not args.cls else c.table[c.table["device_class"] == args.cls]
    if t.empty:
        print(f"no rows for class {args.cls!r}", file=sys.stderr)
        return 2
    c = Comparison(t.reset_index(drop=True))
    print(
        "published measurement vs memwall prediction (efficiency model, spec-sheet roofs); "
        "error = predicted / measured - 1; fit = row looked at when choosing efficiency values"
    )
    print_rows(c.table)
    print_summary(c, "all rows")
    out = c.table[c.table["fitted"] == "no"].reset_index(drop=True)
    if not out.empty:
        print_summary(Comparison(out), "out of sample (rows no efficiency value was chosen from)")
    dev = c.table.groupby("vendor")["device"].nunique()
    print(
        f"\n{len(c.table)} measurements on {c.table['device'].nunique()} devices from "
        f"{len(dev)} vendors ({', '.join(f'{v}: {n}' for v, n in dev.items())})"
    )
    if args.csv:
        c.table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
