"""Quantisation and sparsity on this CPU: measured speed and bytes beside memwall's prediction.

1. gpt2 (preset shape, random weights), batch 1: decode tokens/s after a 256-token prompt and
   prefill time of 256 tokens, for fp32, bf16, int8 weight-only, int8 dynamic and int4 (g128),
   each beside the speed-up memwall predicts from bytes moved (fp32 bytes / method bytes of one
   step), and the stored bytes beside memwall's count.
2. Where unstructured sparsity starts to pay: one gpt2 FFN matrix (3072 x 768) run dense and
   as CSR (torch's CPU kernel) at falling densities, for 1 token (decode) and 256 (prefill).

Runs on demand, about a minute or two (one thread by default: the machine is shared):
    .venv/bin/python benchmarks/bench_compression.py [--threads N] [--context 256]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from rich.console import Console
from rich.table import Table

from memwall.compress import run
from memwall.compress.prune import CSRLinear

METHODS = ["bf16", "int8", "int8-dynamic", "int4:128"]
DENSITIES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02)


def _mib(x: float) -> str:
    return f"{x / 2**20:.1f} MiB"


def model_table(context: int, threads: int) -> Table:
    dec = run("gpt2", METHODS, measure=True, phase="decode", context=context, threads=threads)
    pre = run("gpt2", METHODS, measure=True, phase="prefill", context=context, threads=threads)
    t = Table(title=f"gpt2 (random weights), batch 1, context {context}, {threads} thread(s)")
    for h in ("method", "decode tok/s (measured)", "decode speed-up measured",
              "predicted (bytes)", "prefill s (measured)", "prefill speed-up measured",
              "predicted (bytes)", "stored (measured)", "stored (memwall count)",
              "measured/count"):  # fmt: skip
        t.add_column(h, justify="left" if h == "method" else "right")
    for d, p in zip(dec["rows"], pre["rows"], strict=True):
        t.add_row(
            d["method"],
            f"{1 / d['latency_measured']:.1f}",
            f"{d['speedup_measured']:.2f}x",
            f"{d['speedup_predicted']:.2f}x",
            f"{p['latency_measured']:.3f}",
            f"{p['speedup_measured']:.2f}x",
            f"{p['speedup_predicted']:.2f}x",
            _mib(d["weights_real"]),
            _mib(d["weights_count"]),
            f"{d['weights_real'] / d['weights_count'] - 1:+.2%}",
        )
    return t


def _best(fn, reps: int = 20) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sparsity_table(threads: int) -> Table:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(768, 3072)
    t = Table(title=f"3072 x 768 matrix: CSR vs dense, fp32, {threads} thread(s) (measured)")
    for h in ("density", "bytes CSR / dense", "decode (1 token) speed-up",
              "prefill (256 tokens) speed-up"):  # fmt: skip
        t.add_column(h, justify="right")
    xs = {m: torch.randn(m, 768, generator=g) for m in (1, 256)}
    with torch.no_grad():
        dense = {m: _best(lambda m=m: lin(xs[m])) for m in xs}
        for dens in DENSITIES:
            mask = torch.rand(lin.weight.shape, generator=g) < dens
            sparse_lin = torch.nn.Linear(768, 3072)
            sparse_lin.weight.copy_(lin.weight * mask)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                csr = CSRLinear(sparse_lin)
            ratio = csr.stored_bytes() / (lin.weight.numel() * 4)
            sp = {m: dense[m] / _best(lambda m=m, c=csr: c(xs[m])) for m in xs}
            t.add_row(f"{dens:g}", f"{ratio:.2f}", f"{sp[1]:.2f}x", f"{sp[256]:.2f}x")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=256)
    a = ap.parse_args()
    c = Console(width=180)
    c.print(model_table(a.context, a.threads))
    c.print(
        "predicted = fp32 bytes / method bytes of one step (memwall's count, convention full; "
        "int4 counts a 16-bit scale and zero point per group); a memory-bound step would "
        "speed up by that much. int8/int4 weight-only run with bf16 activations; int8 dynamic "
        "keeps fp32 outside the quantised matrices."
    )
    c.print(sparsity_table(a.threads))


if __name__ == "__main__":
    main()
