"""How far memwall's predicted latency is from the measured one, on the case study's rows.

Runs the case study (BERT-Base, BERT-Large, GPT-2; 8-bit and fp32; the lengths that fit the
budget, or all with --full), calibrating first, and prints for every measured run the measured
median, the calibrated prediction and the plain roofline's prediction (when this machine has
been measured with `memwall measure`), then the median and worst error of each.
Targets for the calibrated prediction: median error under 15%, worst under 40%.
Run:
    .venv/bin/python benchmarks/bench_prediction.py [--full] [--budget S] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

TARGET_MEDIAN = 0.15
TARGET_WORST = 0.40


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="measure every length (long)")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of predicted work")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the case study JSON here")
    args = ap.parse_args(argv)

    import torch

    from memwall.calibrate import Calibration
    from memwall.casestudy import run_casestudy
    from memwall.profile import local_device, threads

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with threads(args.threads) as n_threads:
        dev, dev_note = local_device("local")
        cal = Calibration.load(recalibrate=True)

        def progress(desc: str, adv: float, total: float) -> None:
            if desc.startswith(("calibrating", "building")) or adv:
                print(f"  [{time.perf_counter() - t0:6.0f} s] {desc}", file=sys.stderr)

        case = run_casestudy(
            full=args.full,
            budget_s=args.budget,
            repeats=args.repeats,
            cal=cal,
            device=dev,
            on_progress=progress,
        )
    load_after = os.getloadavg()[0]
    print(
        f"bench_prediction: {case.env.get('cpu_model')}, {n_threads} thread(s), torch "
        f"{torch.__version__}; load average {load_before:.2f} before, {load_after:.2f} after; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    head = f"{'model':<11} {'L':>5} {'prec':<5} {'measured':>10} {'predicted':>10} {'error':>7}"
    head += f" {'roofline':>10} {'error':>7}"
    print(head)
    cal_err: list[float] = []
    roof_err: list[float] = []
    for r in case.rows:
        for p in case.precisions:
            m = r.get(f"latency_{p}")
            if m is None:
                continue
            e = r[f"error_{p}"]
            cal_err.append(e)
            line = (
                f"{r['model']:<11} {r['length']:>5} {p:<5} {m:>9.4g}s "
                f"{r[f'predicted_{p}']:>9.4g}s {100 * e:>6.1f}%"
            )
            if r.get(f"roofline_{p}") is not None:
                re_ = r[f"roofline_error_{p}"]
                roof_err.append(re_)
                line += f" {r[f'roofline_{p}']:>9.4g}s {100 * re_:>6.1f}%"
            print(line)
    if not cal_err:
        print("nothing was measured")
        return 1

    def summary(name: str, errs: list[float]) -> str:
        return (
            f"{name}: median error {100 * statistics.median(errs):.1f}%, worst "
            f"{100 * max(errs):.1f}% over {len(errs)} measured runs"
        )

    print(summary("calibrated roofline", cal_err))
    print(
        f"  targets: median < {100 * TARGET_MEDIAN:.0f}% "
        f"({'met' if statistics.median(cal_err) < TARGET_MEDIAN else 'NOT met'}), "
        f"worst < {100 * TARGET_WORST:.0f}% "
        f"({'met' if max(cal_err) < TARGET_WORST else 'NOT met'})"
    )
    if roof_err:
        print(summary("plain roofline (memwall measure roofs, no calibration)", roof_err))
    elif dev_note:
        print(f"plain roofline: {dev_note}")
    for p, ratio in case.to_dict()["gpt2_over_bert_base_at_128"].items():
        if ratio is not None:
            print(f"GPT-2 generate 128 / BERT-Base encode 128, measured at {p}: {ratio:.3g}x")
    if case.skipped:
        lens = sorted({s["length"] for s in case.skipped})
        print(f"not measured (budget): lengths {lens}; --full measures them")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(case.to_dict(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
