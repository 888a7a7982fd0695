"""How far memwall's predicted energy per token is from published measurements.

Prices every row of `memwall/data/published_energy.csv` (ML.ENERGY Leaderboard v3.0: vLLM on
H100 and B200 at batch sizes 8 to 512, measured with Zeus; the 2023 v1 leaderboard: Hugging Face
transformers at batch 1 on A100 and V100) with memwall's energy model over the realistic
predictor's step times, and prints measured beside predicted joules per output token for every
row, the median and worst |error| per role (fit rows chose the coefficients marked 'fit' in
data/energy.json; check rows chose nothing; holdout rows are B200, kept out of every choice),
per batch band and per device, and whether energy per token moves with the batch the way the
measurement does in every measured sweep. Target: median |error| under 20% over the fit and
check rows; no device is needed (a few seconds).

`--fit` redoes the choice of the two fitted coefficients of the nvidia-hopper class (static
power as a fraction of the TDP and energy per bf16 FLOP) on the fit rows alone: a grid over
both, every other coefficient fixed, minimising the median |log(predicted / measured)|. It
prints the best pair; data/energy.json holds the values it gave when they were chosen.
Run:
    .venv/bin/python benchmarks/bench_energy.py [--fit] [--role fit|check|holdout]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys

import pandas as pd

from memwall.energy import coefficients_for, parts
from memwall.energy.published import load_energy_rows
from memwall.hardware import get_device
from memwall.parallel.published_energy import EnergyComparison, compare, price_row

TARGET_MEDIAN = 0.20


def print_rows(t: pd.DataFrame) -> None:
    print(f"{'id':>3} {'series':<42} {'batch':>5} {'role':<7} {'measured J/tok':>14} "
          f"{'predicted':>10} {'range':>17} {'error':>7} | {'bytes':>5} {'comp':>5} "
          f"{'static':>6} | {'s/tok meas':>10} {'pred':>9}")  # fmt: skip
    for r in t.itertuples():
        print(
            f"{r.id:>3} {r.series[:42]:<42} {r.batch:>5} {r.role:<7} {r.measured:>14.4g} "
            f"{r.predicted:>10.4g} {f'{r.low:.3g}-{r.high:.3g}':>17} {r.error:+7.0%} | "
            f"{r.bytes_share:>5.0%} {r.compute_share:>5.0%} {r.static_share:>6.0%} | "
            f"{r.measured_s_per_token:>10.3g} {r.predicted_s_per_token:>9.3g}"
        )


def print_summary(c: EnergyComparison, col: str) -> None:
    s = c.by(col)
    print(f"\n{col:<16} {'rows':>4} {'median |err|':>12} {'worst |err|':>11} {'worst id':>8} "
          f"{'in range':>8}")  # fmt: skip
    for r in s.to_dict("records"):
        med, worst = r["median_abs_error"], r["worst_abs_error"]
        print(f"{str(r[col]):<16} {r['rows']:>4} {med:>12.1%} {worst:>11.1%} "
              f"{r['worst_row']:>8} {r['in_range']:>8.0%}")  # fmt: skip


def print_trend(c: EnergyComparison) -> bool:
    t = c.trend_check()
    print("\ntrend with batch size (sign of each step between consecutive measured batches):")
    for r in t.to_dict("records"):
        mark = "ok" if r["ok"] else "WRONG SIGN"
        print(f"  {r['series']:<45} batches {r['batches']:<28} {r['sign_agrees']}/{r['steps']} "
              f"{mark}")  # fmt: skip
    return bool(t["ok"].all())


def fit(rows) -> tuple[float, float, float]:
    """Grid search of (static fraction of TDP, pJ per bf16 FLOP) on the fit rows."""
    priced = [(r, price_row(r)) for r in rows if r.role == "fit"]
    if not priced:
        raise SystemExit("no fit rows")
    best = (math.inf, 0.0, 0.0)
    for s100 in range(20, 81, 2):
        for f100 in range(10, 201, 5):
            errs = []
            for r, e in priced:
                dev = get_device(r.device)
                c = coefficients_for(dev)
                base = c.j_per_flop["bf16"]
                c = dataclasses.replace(
                    c,
                    static_w=(c.tdp_w or 0.0) * s100 / 100,
                    j_per_flop={d: v / base * f100 * 1e-14 for d, v in c.j_per_flop.items()},
                )
                p = parts(e.work, e.time_s, c, e.devices).total_j
                errs.append(abs(math.log(p / r.j_per_output_token)))
            m = statistics.median(errs)
            if m < best[0]:
                best = (m, s100 / 100, f100 / 100)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", action="store_true", help="redo the fit of the hopper class")
    ap.add_argument("--role", choices=("fit", "check", "holdout"), help="only these rows")
    a = ap.parse_args(argv)
    rows = load_energy_rows()
    if a.fit:
        m, s, f = fit(rows)
        print(f"fit on {sum(r.role == 'fit' for r in rows)} rows: static {s:.2f} x TDP, "
              f"{f:.2f} pJ per bf16 FLOP (median |log error| {m:.3f})")  # fmt: skip
        return 0
    if a.role:
        rows = [r for r in rows if r.role == a.role]
    c = compare(rows)
    t = c.table
    print("Energy per output token: measured (published) vs predicted by memwall (J; the "
          "shares are of the predicted energy; s/tok = seconds per output token)\n")  # fmt: skip
    print_rows(t)
    for col in ("role", "batch_band", "device"):
        print_summary(c, col)
    trend_ok = print_trend(c)
    in_sample = t[t["role"] != "holdout"]
    med = statistics.median(in_sample["error"].abs()) if len(in_sample) else math.nan
    worst = in_sample["error"].abs().max() if len(in_sample) else math.nan
    print(f"\nfit + check rows: {len(in_sample)}, median |error| {med:.1%}, worst {worst:.1%} "
          f"(target: median under {TARGET_MEDIAN:.0%} over at least 20 rows); holdout (B200) "
          f"rows: {int((t['role'] == 'holdout').sum())}")  # fmt: skip
    print(f"trend sign right in every sweep: {'yes' if trend_ok else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
