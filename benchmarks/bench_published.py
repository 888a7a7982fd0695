"""How far memwall's predictions for hardware it cannot measure are from published measurements.

Prices every row of `memwall/data/published_inference.csv` (llama.cpp decode and prefill speeds on
NVIDIA, Apple and AMD GPUs; TensorRT-LLM static-batch throughput and time to first token on A100,
H100 and H200; gpt-fast batch-1 decode on A100, alone and tensor-parallel; vLLM batch latency on
8 MI300X; AMD kernel-tuning GEMM times) twice: with the default model (efficiency model; rows over
tp > 1 GPUs through memwall.parallel.plan) and with the plain roofline (spec-sheet peaks, no
overheads). Prints each measurement beside both predictions, the default's range and both
errors, then the median and worst error of both per device class and per metric, for all rows
and for the rows no efficiency value was chosen from (out of sample; rows marked 'yes' in the
fit column were looked at when choosing a value). Rows the CSV marks excluded (a reason in its
`excluded` column: faster than reading the weights once per pass at the spec-sheet bandwidth)
are priced and printed apart, and left out of every summary. Target: median absolute error of
the default under 20% per class. No device is needed; it takes about fifteen seconds.
Run:
    .venv/bin/python benchmarks/bench_published.py [--csv FILE] [--class NAME] [--metric NAME]
    .venv/bin/python benchmarks/bench_published.py --fit

--fit chooses TensorRT-LLM 0.9's per-request context cost (efficiency.json serving_engines
tensorrt-llm-0.9 context_s) on its time-to-first-token rows marked fitted = yes alone (not
excluded): for each, the measured time less memwall's prediction without that cost; value =
their median, low/high = their quartiles. It prints them beside the data file's and stops.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from memwall.parallel.published_inference import Comparison, compare, fit_context_cost
from memwall.predict.efficiency_data import engine_term

TARGET_MEDIAN = 0.20


def _fmt(v: float, metric: str) -> str:
    if metric == "matmul_time_s":
        return f"{v * 1e6:.1f} us"
    if metric in ("ttft_s", "tpot_s"):
        return f"{v * 1e3:.2f} ms"
    if metric == "latency_s":
        return f"{v:.2f} s"
    return f"{v:.1f} t/s"


def print_rows(t: pd.DataFrame) -> None:
    print(f"{'id':>3} {'device':<23} {'model':<26} {'prec':<7} {'tp':>2} {'batch':>5} "
          f"{'metric':<16} {'measured':>12} {'predicted':>12} {'range':>23} {'error':>7} "
          f"{'roofline':>12} {'r.error':>7} fit")  # fmt: skip
    for r in t.itertuples():
        rng = "-" if r.low == r.high else f"{_fmt(r.low, r.metric)}-{_fmt(r.high, r.metric)}"
        print(
            f"{r.id:>3} {r.device[:23]:<23} {r.model[:26]:<26} {r.precision:<7} {r.tp:>2} "
            f"{r.batch:>5} {r.metric:<16} {_fmt(r.measured, r.metric):>12} "
            f"{_fmt(r.predicted, r.metric):>12} {rng:>23} {r.error:+7.0%} "
            f"{_fmt(r.roofline, r.metric):>12} {r.roofline_error:+7.0%} {r.fitted}"
        )


def _summary_table(s: pd.DataFrame, key: str, target: bool) -> None:
    print(f"{key:<16} {'rows':>4} | {'median |err|':>12} {'worst |err|':>11} {'worst id':>8} "
          f"{'in range':>8} | {'roofline median':>15} {'worst':>6} {'id':>4}")  # fmt: skip
    for r in s.to_dict("records"):
        flag = ""
        if target and r["median_abs_error"] >= TARGET_MEDIAN:
            flag = "  (over the 20% target)"
        rng = "-" if pd.isna(r["in_range"]) else f"{r['in_range']:.0%}"
        print(
            f"{r[key]:<16} {r['rows']:>4} | {r['median_abs_error']:>12.0%} "
            f"{r['worst_abs_error']:>11.0%} {r['worst_row']:>8} {rng:>8} | "
            f"{r['roofline_median_abs_error']:>15.0%} {r['roofline_worst_abs_error']:>6.0%} "
            f"{r['roofline_worst_row']:>4}{flag}"
        )


def print_summary(c: Comparison, title: str) -> None:
    print(f"\n{title}: default (efficiency) model | plain roofline")
    _summary_table(c.by_class(), "device_class", True)
    print()
    _summary_table(c.by_metric(), "metric", False)


def fit() -> None:
    gaps, (q1, med, q3) = fit_context_cost()
    for r, gap in gaps:
        print(f"{r.id:>4} {r.device:<14} {r.model:<14} tp {r.tp} prompt {r.seq_len:>5}: measured "
              f"{r.value * 1e3:7.2f} ms, kernels {(r.value - gap) * 1e3:7.2f} ms, "
              f"gap {gap * 1e3:+6.2f} ms")  # fmt: skip
    have = [engine_term("tensorrt-llm-0.9", "context_s", e) for e in ("value", "low", "high")]
    print(f"fit over {len(gaps)} rows: value {med * 1e3:.3f} ms (median), low {q1 * 1e3:.3f}, "
          f"high {q3 * 1e3:.3f} ms (quartiles); data/efficiency.json has "
          f"{have[0] * 1e3:.3f} ({have[1] * 1e3:.3f}-{have[2] * 1e3:.3f}) ms")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", help="also write every row with its prediction to this CSV file")
    ap.add_argument("--class", dest="cls", help="only this device class (e.g. apple-gpu)")
    ap.add_argument("--metric", help="only this metric (e.g. ttft_s)")
    ap.add_argument("--fit", action="store_true", help="choose TensorRT-LLM 0.9's context cost")
    args = ap.parse_args(argv)
    if args.fit:
        fit()
        return 0
    c = compare()
    t = c.table
    if args.cls:
        t = t[t["device_class"] == args.cls]
    if args.metric:
        t = t[t["metric"] == args.metric]
    if t.empty:
        print(f"no rows for class {args.cls!r} / metric {args.metric!r}", file=sys.stderr)
        return 2
    c = Comparison(t.reset_index(drop=True))
    print(
        "published measurement vs memwall prediction: the default (efficiency model, spec-sheet "
        "roofs x published efficiencies; tp > 1 through the parallel plan, no range) and the "
        "plain roofline; error = predicted / measured - 1; fit = yes: row looked at when "
        "choosing efficiency values (in sample)"
    )
    print_rows(c.included)
    if not c.excluded.empty:
        print(f"\nexcluded from the statistics ({len(c.excluded)} rows, the CSV's reasons):")
        print_rows(c.excluded)
        for r in c.excluded.itertuples():
            print(f"  {r.id}: {r.excluded}")
    print_summary(c, "all rows (excluded rows left out)")
    out = c.included[c.included["fitted"] == "no"].reset_index(drop=True)
    if not out.empty:
        print_summary(Comparison(out), "out of sample (rows no efficiency value was chosen from)")
    dev = c.table.groupby("vendor")["device"].nunique()
    print(
        f"\n{len(c.included)} measurements in the statistics ({len(c.excluded)} excluded) on "
        f"{c.table['device'].nunique()} devices from "
        f"{len(dev)} vendors ({', '.join(f'{v}: {n}' for v, n in dev.items())})"
    )
    if args.csv:
        c.table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
