"""Training memory: memwall's prediction against measured peaks, and what checkpointing costs.

1. Prediction error for the measured configurations: small BERT, GPT-2, Llama and OPT models
   (random weights, CPU, fp32), SGD / momentum / Adam, with and without checkpointing, SDPA and
   eager attention, with and without dropout. Measured = peak resident memory of two training
   steps in a fresh subprocess, minus its size before the model was built (see
   memwall.memory.measured for the method).
2. A 12-layer BERT-Base at length 512: the measured memory ratio and extra step time of full
   checkpointing (transformers' gradient_checkpointing_enable) beside the predicted ones.

Runs on demand and takes a few minutes (one thread, so timings are stable on a shared machine):
    .venv/bin/python benchmarks/bench_memory.py [--quick]
Progress goes to stderr; Ctrl-C prints what was measured so far.
"""

from __future__ import annotations

import argparse
import sys

from rich.progress import Progress

from memwall.memory.measured import (
    Run,
    bert_config,
    compare,
    gpt2_config,
    llama_config,
    measure,
    opt_config,
)
from memwall.spec import preset_config

MIB = 2.0**20


def configurations(quick: bool) -> list[list[Run]]:
    """Groups of runs; each group is measured in one fresh subprocess."""
    b, g = bert_config(), gpt2_config()
    groups = [
        [
            Run(name, cfg, 4, 256, opt, ck)
            for name, cfg in (("bert", b), ("gpt2", g))
            for opt in ("sgd", "adam")
            for ck in (False, True)
        ]
    ]
    if not quick:
        groups.append(
            [
                Run(f"{name}-eager", cfg, 8, 256, "adam", ck, "eager")
                for name, cfg in (("bert", b), ("gpt2", g))
                for ck in (False, True)
            ]
        )
        groups.append(
            [
                Run(name, cfg, 8, 256, opt, ck, attn)
                for name, cfg in (("llama", llama_config()), ("opt", opt_config()))
                for opt, ck, attn in (("adam", False, "sdpa"), ("momentum", True, "eager"))
            ]
        )
        groups.append(
            [
                Run(f"{name}-dropout", cfg, 4, 256, "adam", False, "eager", dropout=0.1)
                for name, cfg in (("bert", b), ("gpt2", g))
            ]
        )
    return groups


def bert_base_runs(batch: int) -> list[Run]:
    cfg = {k: v for k, v in preset_config("bert-base").items() if not k.startswith("_")}
    return [Run("bert-base", cfg, batch, 512, "adam", ck) for ck in (False, True)]


def print_rows(rows: list[dict]) -> None:
    head = (
        f"{'run':15s} {'optim':8s} {'ckpt':5s} {'attn':6s} {'measured':>10s} {'predicted':>10s} "
        f"{'error':>7s}  {'fwd+bwd meas':>12s} {'pred':>9s} {'error':>7s}  peak at"
    )
    print(head)
    for r in rows:
        print(
            f"{r['run']:15s} {r['optimizer']:8s} {r['checkpointing']:5s} {r['attention']:6s} "
            f"{r['measured_peak'] / MIB:8.1f}Mi {r['predicted_peak'] / MIB:8.1f}Mi "
            f"{100 * r['error']:+6.1f}%  {r['measured_fb_peak'] / MIB:10.1f}Mi "
            f"{r['predicted_fb_peak'] / MIB:7.1f}Mi "
            f"{100 * (r['predicted_fb_peak'] / r['measured_fb_peak'] - 1):+6.1f}%  "
            f"{r['peak_event']}"
        )
    if rows:
        worst = max(abs(r["error"]) for r in rows)
        mean = sum(abs(r["error"]) for r in rows) / len(rows)
        print(
            f"-> {len(rows)} configurations: mean |error| {100 * mean:.1f}%, "
            f"worst {100 * worst:.1f}% (acceptance: 15%)"
        )


def print_bert_base(rows: list[dict], runs: list[Run]) -> None:
    none, full = rows
    fp_none, fp_full = (r.predict() for r in runs)
    print(f"\nBERT-Base (12 layers), batch {runs[0].batch} x 512, fp32, Adam, SDPA attention")
    print(f"{'':34s} {'measured':>10s} {'predicted':>10s}")
    print(
        f"{'peak, no checkpointing':34s} {none['measured_peak'] / MIB:8.0f}Mi "
        f"{none['predicted_peak'] / MIB:8.0f}Mi"
    )
    print(
        f"{'peak, full checkpointing':34s} {full['measured_peak'] / MIB:8.0f}Mi "
        f"{full['predicted_peak'] / MIB:8.0f}Mi"
    )
    print(
        f"{'peak ratio none / full':34s} {none['measured_peak'] / full['measured_peak']:9.2f}x "
        f"{none['predicted_peak'] / full['predicted_peak']:9.2f}x"
    )
    for key, label in (("fb_peak", "forward+backward memory"),):
        m0, m1 = none[f"measured_{key}"], full[f"measured_{key}"]
        p0, p1 = none[f"predicted_{key}"], full[f"predicted_{key}"]
        print(f"{label + ', none':34s} {m0 / MIB:8.0f}Mi {p0 / MIB:8.0f}Mi")
        print(f"{label + ', full':34s} {m1 / MIB:8.0f}Mi {p1 / MIB:8.0f}Mi")
        print(f"{label + ' ratio':34s} {m0 / m1:9.2f}x {p0 / p1:9.2f}x")
    acts = (fp_none.activations, fp_full.activations)
    print(
        f"{'activations kept (predicted only)':34s} {'':10s} {acts[0] / MIB:8.0f}Mi -> "
        f"{acts[1] / MIB:.0f}Mi ({acts[0] / acts[1]:.1f}x less)"
    )
    t_none, t_full = none["step_seconds"], full["step_seconds"]
    print(f"{'step time (s, best of 2, 1 thread)':34s} {t_none:9.2f}  {t_full:9.2f}  (none, full)")
    print(
        "(forward+backward memory = second step's high-water mark above weights + optimizer "
        "state: activations, their temporaries and the gradients)"
    )
    print(
        f"{'extra time / extra compute':34s} {100 * (t_full / t_none - 1):+8.1f}% "
        f"{100 * fp_full.recompute_overhead:+8.1f}%  (predicted = recompute FLOPs / step FLOPs)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the 8 configurations of the tests")
    ap.add_argument("--bert-batch", type=int, default=4, help="batch of the BERT-Base runs")
    args = ap.parse_args()
    groups = configurations(args.quick)
    bert_runs = bert_base_runs(args.bert_batch)
    done: list[dict] = []
    bert_rows: list[dict] = []
    try:
        with Progress(transient=True, console=None) as progress:
            task = progress.add_task("measuring (subprocesses)", total=len(groups) + 1)
            for runs in groups:
                done += compare(runs, measure(runs))
                progress.advance(task)
            bert_rows = compare(bert_runs, measure(bert_runs))
            progress.advance(task)
    except KeyboardInterrupt:
        print("interrupted: results so far", file=sys.stderr)
    print("Peak training memory on this CPU: measured (RSS high-water mark) vs predicted")
    print_rows(done)
    if bert_rows:
        print_bert_base(bert_rows, bert_runs)


if __name__ == "__main__":
    main()
