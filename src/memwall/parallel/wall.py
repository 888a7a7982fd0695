"""The interconnect wall: as a fixed training job spreads over more devices, communication grows
while each device's compute shrinks (strong scaling at a fixed global batch).

`interconnect_wall` prices the job at each N on each accelerator with the fastest layout of a
small standard family (tensor parallelism inside a node, the fewest pipeline stages that fit,
ZeRO-1, selective recomputation, sequence parallelism) and splits the step into compute-bound
time, memory-bound time, exposed communication and the rest (bubble, optimizer).
`crossover` finds the smallest N at which exposed communication exceeds compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.layout import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, Plan, plan
from memwall.spec import ModelSpec, load_model, parse_precision

COLUMNS = (
    "device",
    "devices",
    "layout",
    "step_time",
    "compute",
    "memory",
    "communication",
    "other",
    "mfu",
    "communication_fraction",
)


def compute_time(p: Plan) -> float:
    """Forward, backward and recomputation (or inference compute) in the step."""
    return sum(v for k, v in p.breakdown.items() if k in ("forward", "backward", "recompute")
               or k.endswith("_compute"))  # fmt: skip


def _standard(spec: ModelSpec, dev, links, n: int, o: Options) -> Plan | None:
    best = None
    for t in (1, 2, 4, 8):
        if t > min(n, links.node_size) or n % t or spec.n_heads % t or spec.n_kv_heads % t:
            continue
        for p in (1, 2, 4, 8, 16):
            if n % (t * p) or p > spec.n_layers:
                continue
            lay = Layout(t, p, n // (t * p), zero=1 if n // (t * p) > 1 else 0,
                         checkpointing="selective", sequence_parallel=t > 1)  # fmt: skip
            try:
                pl = plan(spec, dev, links, lay, o)
            except MemwallError:
                continue
            if pl.fits and (best is None or pl.step_time < best.step_time):
                best = pl
    return best


def interconnect_wall(
    model: str | ModelSpec = "gpt2-xl",
    devices: Sequence[str] = ("b200", "v100-sxm2-32gb"),
    ns: Sequence[int] = (8, 16, 32, 64, 128, 256, 512),
    batch: int = 512,
    seq_len: int = 1024,
    precision: str = "bf16",
) -> pd.DataFrame:
    """Step time split into compute, memory, communication and other, per accelerator and N.

    Predicted (the realistic model, alpha-beta links at bus bandwidth); seconds per training
    step at a fixed global batch.
    `precision` falls back to fp16 on devices without bf16 (V100). Rows where no layout fits or
    the batch does not divide are left out.
    """
    spec = load_model(model) if isinstance(model, str) else model
    rows = []
    for name in devices:
        dev, links = get_device(name), links_for(name)
        prec = parse_precision(precision if dev.has_peak(precision) else "fp16")
        o = Options(mode="train", batch=batch, micro_batch=1, seq_len=seq_len, precision=prec)
        for n in ns:
            p = _standard(spec, dev, links, n, o)
            if p is None:
                continue
            comp = compute_time(p)
            frac_c = p.extra.get("compute_bound_fraction", 1.0)
            rows.append(
                {
                    "device": name,
                    "devices": n,
                    "layout": p.layout.label,
                    "step_time": p.step_time,
                    "compute": comp * frac_c,
                    "memory": comp * (1 - frac_c),
                    "communication": p.communication,
                    "other": p.step_time - comp - p.communication,
                    "mfu": p.mfu,
                    "communication_fraction": p.communication / p.step_time,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def crossover(
    spec: ModelSpec, device, links, layout: Layout, options: Options, limit: int = 1 << 20
) -> int | None:
    """Smallest device count (growing data parallelism at this global batch) whose exposed
    communication exceeds its compute; None when the batch runs out first."""
    dp = 1
    while layout.tp * layout.pp * dp <= limit:
        if options.batch % (options.micro_batch * dp) == 0:
            lay = replace(layout, dp=dp, zero=layout.zero if dp > 1 else 0)
            try:
                p = plan(spec, device, links, lay, options)
            except MemwallError:
                return None
            if p.communication > compute_time(p):
                return lay.devices
        else:
            return None
        dp *= 2
    return None
