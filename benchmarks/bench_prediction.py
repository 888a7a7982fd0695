"""How far memwall's predicted latency is from the measured one, on the case study's rows,
judged against how far the measurement moves between two runs of itself.

Runs the case study (BERT-Base, BERT-Large, GPT-2; 8-bit and fp32; the lengths that fit the
budget, or all with --full), calibrating first, and measures every row twice, interleaved
(every row once, then every row again, so a slow drift of the machine shows). For each row it
prints both measured medians, their run-to-run difference (the measurement's own noise
floor), the calibrated prediction, its error and the error beyond that noise floor; then the
median and worst error, the median noise floor, the thread count and the load. The plain
roofline's error is added when this machine has been measured with `memwall measure`.
Targets for the calibrated prediction: median error under 10%, worst under 25%.
Run:
    .venv/bin/python benchmarks/bench_prediction.py [--fresh] [--quick] [--full]
        [--budget S] [--threads N] [--repeats N] [--json FILE]
--fresh: a new, empty MEMWALL_DATA_DIR (a new user's first run: calibrates first; no
`memwall measure` roofs, so no plain roofline). --quick: BERT-Base and GPT-2 at 128 and 256
only (a smoke check of a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

TARGET_MEDIAN = 0.10
TARGET_WORST = 0.25
QUICK_MODELS = ("bert-base", "gpt2")
QUICK_LENGTHS = (128, 256)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="measure every length (long)")
    ap.add_argument("--quick", action="store_true", help="a few rows: a smoke check")
    ap.add_argument("--fresh", action="store_true", help="a new, empty MEMWALL_DATA_DIR")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of predicted work")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the case study JSON here")
    return ap.parse_args(argv)


def _rows(case) -> list[dict]:
    """One line per measured (row, precision): both passes, noise floor, prediction, errors."""
    out = []
    for r in case.rows:
        for p in case.precisions:
            m = r.get(f"latency_{p}")
            if m is None:
                continue
            passes = r.get(f"latency_{p}_passes") or [m]
            floor = r.get(f"pass_difference_{p}")
            out.append(
                {
                    "model": r["model"],
                    "length": r["length"],
                    "precision": p,
                    "passes": passes,
                    "measured": m,
                    "noise_floor": floor,
                    "spread": r.get(f"relative_iqr_{p}"),
                    "noisy": bool(r.get(f"noisy_{p}")),
                    "predicted": r[f"predicted_{p}"],
                    "error": r[f"error_{p}"],
                    "beyond_noise": max(0.0, r[f"error_{p}"] - (floor or 0.0)),
                    "roofline_error": r.get(f"roofline_error_{p}"),
                }
            )
    return out


def _print_rows(rows: list[dict]) -> None:
    head = (
        f"{'model':<10} {'L':>5} {'prec':<12} {'pass 1':>9} {'pass 2':>9} {'run-run':>7} "
        f"{'IQR':>6} {'predicted':>9} {'error':>7} {'beyond':>7} {'roofline':>8}"
    )
    print(head)
    for x in rows:
        p1 = x["passes"][0]
        p2 = x["passes"][1] if len(x["passes"]) > 1 else None
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        print(
            f"{x['model']:<10} {x['length']:>5} {x['precision']:<12} {p1:>8.4g}s "
            + (f"{p2:>8.4g}s" if p2 is not None else f"{'-':>9}")
            + f" {pct(x['noise_floor']):>7} {pct(x['spread']):>6} {x['predicted']:>8.4g}s "
            f"{pct(x['error']):>7} {pct(x['beyond_noise']):>7} {pct(x['roofline_error']):>8}"
            + ("  NOISY" if x["noisy"] else "")
        )


def _blocks(rows: list[dict], cal) -> list[str]:
    """'model precision xF' for every (model, precision) measured: the block term applied."""
    from memwall.measure.models import resolve
    from memwall.predict.calibrated import block_factor
    from memwall.predict.calterms import CalibrationRecord
    from memwall.studies.casestudy import workload_for

    out = []
    for model, prec in dict.fromkeys((x["model"], x["precision"]) for x in rows):
        spec, _ = resolve(model)
        phase = workload_for(spec, 128).phase
        try:
            f, _note = block_factor(spec, prec, CalibrationRecord(cal.data), phase, True)
        except KeyError:
            continue
        out.append(f"{model} {prec} {f:.2f}")
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _summary(
    rows: list[dict], n_threads: int, loads: tuple[float, float], cal: dict, blocks: list[str]
) -> None:
    errs = [x["error"] for x in rows]
    floors = [x["noise_floor"] for x in rows if x["noise_floor"] is not None]
    worst = max(rows, key=lambda x: x["error"])
    med, top = statistics.median(errs), max(errs)
    print(
        f"calibrated roofline: median error {100 * med:.1f}%, worst {100 * top:.1f}% "
        f"({worst['model']} L={worst['length']} {worst['precision']}) over {len(errs)} runs; "
        f"median noise floor (run-to-run) "
        + (f"{100 * statistics.median(floors):.1f}%" if floors else "-")
        + f"; worst error beyond noise {100 * max(x['beyond_noise'] for x in rows):.1f}%; "
        f"{sum(x['noisy'] for x in rows)} noisy measurement(s)"
    )
    print(
        f"  targets: median < {100 * TARGET_MEDIAN:.0f}% ({_met(med < TARGET_MEDIAN)}), "
        f"worst < {100 * TARGET_WORST:.0f}% ({_met(top < TARGET_WORST)}); "
        f"{n_threads} thread(s); load average {loads[0]:.2f} before, {loads[1]:.2f} after"
    )
    busy = cal.get("others_busy_cores")
    print(
        f"  calibration: {cal['age_days'] * 24:.2f} h old, {cal['rounds']} interleaved rounds, "
        f"largest spread {100 * (cal.get('max_spread') or 0):.0f}%, other processes "
        + (f"{busy:.1f} cores busy" if busy is not None else "not measured")
        + (", NOISY (not cached)" if cal["noisy"] else "")
    )
    roof = [x["roofline_error"] for x in rows if x["roofline_error"] is not None]
    if blocks:
        print("  block terms (per-layer rows priced x): " + ", ".join(blocks))
    if roof:
        print(
            f"plain roofline (memwall measure roofs, no calibration): median error "
            f"{100 * statistics.median(roof):.1f}%, worst {100 * max(roof):.1f}%"
        )


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.fresh:  # before memwall reads it: a new user's empty data directory
        os.environ["MEMWALL_DATA_DIR"] = tempfile.mkdtemp(prefix="memwall-bench-")

    import torch

    from memwall.measure.calibration import Calibration
    from memwall.measure.run import threads
    from memwall.studies.casestudy import LENGTHS, MODELS, run_casestudy
    from memwall.studies.profile import local_device

    models, lengths = (QUICK_MODELS, QUICK_LENGTHS) if args.quick else (MODELS, LENGTHS)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with threads(args.threads) as n_threads:
        dev, dev_note = local_device("local")
        cal = Calibration.load(recalibrate=True)

        def progress(desc: str, adv: float, total: float) -> None:
            if desc.startswith(("calibrating", "building", "cached")) or adv:
                print(f"  [{time.perf_counter() - t0:6.0f} s] {desc}", file=sys.stderr)

        case = run_casestudy(
            models,
            lengths,
            full=args.full or args.quick,
            budget_s=args.budget,
            repeats=args.repeats,
            cal=cal,
            device=dev,
            on_progress=progress,
            passes=2,
        )
    load_after = os.getloadavg()[0]
    print(
        f"bench_prediction: {case.env.get('cpu_model')}, {n_threads} thread(s) "
        f"({case.env.get('threads_choice')}), torch {torch.__version__}; "
        f"{time.perf_counter() - t0:.0f} s; data dir {os.environ.get('MEMWALL_DATA_DIR', '-')}"
    )
    rows = _rows(case)
    if not rows:
        print("nothing was measured")
        return 1
    _print_rows(rows)
    _summary(rows, n_threads, (load_before, load_after), case.calibration or {}, _blocks(rows, cal))
    if not rows[0]["roofline_error"] and dev_note:
        print(f"plain roofline: {dev_note}")
    for note in case.notes:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**case.to_dict(), "bench_rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
