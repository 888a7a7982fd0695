"""Trace-engine speed: every bundled preset, torchvision's models, DLRM, the paper's Figure 4.

The trace engine counts on the meta device (shapes only: nothing computed, nothing allocated),
so its time is Python dispatch per aten call, not arithmetic. Target: every preset under 30 s,
including the issue's acceptance run (gpt2 prefill 1024 x 2 in bf16, which took over 7 minutes
computing on this CPU before). Prints seconds, the device traced and the ratio of traced to
closed-form FLOPs and bytes measured in the same run, and how many of the model's layers were
traced (`memwall.trace.repeat`: one per distinct layer context, weighted; exact). Seconds are
wall-clock and this process's CPU time (the machine may be shared: the load average is printed
beside them). Run:
    .venv/bin/python benchmarks/bench_trace.py
"""

from __future__ import annotations

import os
import time

from memwall.count import op_table, totals
from memwall.spec import Workload, load_model, parse_precision, preset_names
from memwall.trace import trace_table
from memwall.trace.dlrm import bundled, dlrm_run
from memwall.trace.sources import torchvision_run
from memwall.trace.table import trace_run

TARGET_S = 30.0
VISION = ["resnet50", "vgg19", "densenet201", "resnext101_64x4d", "vit_b_16"]


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _load() -> str:
    return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _preset(name: str, wl: Workload, precision_text: str = "bf16") -> float:
    precision = parse_precision(precision_text)
    spec = load_model(name)
    if not spec.is_decoder:
        wl = Workload("encode", wl.batch, wl.seq_len)
    c0 = time.process_time()
    df, dt = _time(lambda: trace_table(spec, wl, precision))
    cpu = time.process_time() - c0
    t, c = totals(df), totals(op_table(spec, wl, precision))
    layers = df.attrs.get("traced_layers")
    kept = f"{len(layers['layers'])}/{spec.n_layers}" if layers else "all"
    flag = "" if dt < TARGET_S else "  OVER TARGET"
    print(
        f"{name:>16} {wl.phase:>7} b={wl.batch} L={wl.seq_len:<5} {dt:6.1f} s wall "
        f"{cpu:6.1f} s cpu  {df.attrs['device']:>4} layers {kept:>6}  trace/closed FLOPs "
        f"{t['flops'] / c['flops']:.4f} bytes {t['bytes'] / c['bytes']:.4f}  ({_load()}){flag}"
    )
    return dt


def main() -> None:
    print("== acceptance: gpt2 prefill 1024 x 2 bf16 --engine trace")
    worst = _preset("gpt2", Workload("prefill", 2, 1024))
    print("== every preset: prefill 512 x 1 (encode for encoders), then decode at 512")
    for name in preset_names():
        for wl in (Workload("prefill", 1, 512), Workload("decode", 1, 512)):
            if wl.phase == "decode" and not load_model(name).is_decoder:
                continue
            worst = max(worst, _preset(name, wl))
    print("== torchvision (meta, batch 1, 224 x 224)")
    for name in VISION:
        df, dt = _time(lambda n=name: trace_run(torchvision_run(n)))
        print(f"{name:>16} {dt:6.2f} s  {totals(df)['flops'] / 1e9:8.2f} GFLOP")
        worst = max(worst, dt)
    df, dt = _time(lambda: trace_run(dlrm_run(bundled(), 1)))
    print(f"{'dlrm criteo-tb':>16} {dt:6.2f} s  {totals(df)['flops'] / 1e6:8.2f} MFLOP")
    from memwall.studies.figure4 import figure4_table

    _, dt = _time(figure4_table)
    print(f"{'figure 4 table':>16} {dt:6.2f} s  (8 models, 6 traced for training memory)")
    print(f"slowest trace: {worst:.1f} s wall (target < {TARGET_S:.0f} s); {_load()}")


if __name__ == "__main__":
    main()
