"""The paper's angle in joules: what share of a model's decode energy moves bytes rather than
computes, and how batching, weight quantisation and KV-cache precision move that share.

For each batch size and precision variant, one decode step at a fixed context is counted
(`count.op_table`), timed by the efficiency model (`predict.efficiency`, one device, CUDA-graph
launch) and priced by `energy.model`; the result is a plain table (one row per batch and
variant) a report section or a notebook can draw. Everything in it is predicted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from memwall.count import op_table
from memwall.energy.model import step_energy
from memwall.energy.work import work_from_ops
from memwall.errors import MemwallError
from memwall.hardware import Device, get_device
from memwall.precision import parse_precision
from memwall.predict.efficiency import predict_efficiency
from memwall.spec import ModelSpec, Workload, load_model

# (precision as parse_precision reads it, what it changes)
VARIANTS: tuple[tuple[str, str], ...] = (
    ("bf16", "16-bit weights and KV cache"),
    ("16/16/8", "8-bit KV cache"),
    ("8/16/16", "8-bit weights"),
    ("4/16/16", "4-bit weights"),
    ("4/16/8", "4-bit weights, 8-bit KV cache"),
)
BATCHES = (1, 8, 64, 256)
COLUMNS = (
    "model", "device", "batch", "context", "precision", "variant", "j_per_token",
    "compute_j_per_token", "bytes_j_per_token", "static_j_per_token", "bytes_share_dynamic",
    "bytes_share", "compute_share", "static_share", "time_per_step_s", "capped_at_tdp",
)  # fmt: skip


def energy_shares(
    model: str | ModelSpec,
    device: str | Device,
    batches: Sequence[int] = BATCHES,
    context: int = 2048,
    variants: Sequence[tuple[str, str]] = VARIANTS,
) -> pd.DataFrame:
    """Per batch size and precision variant: predicted joules per generated token of one
    decode step at `context` cached tokens, split into computing, moving bytes (DRAM and
    on-chip) and static power, and the bytes' share of the dynamic (compute + bytes) energy.
    Units: J per token, shares as fractions, seconds."""
    spec = load_model(model) if isinstance(model, str) else model
    dev = get_device(device) if isinstance(device, str) else device
    if not spec.is_decoder:
        raise MemwallError(f"energy shares are per decode step; {spec.name} does not decode")
    if not batches or any(int(b) < 1 for b in batches) or context < 1:
        raise MemwallError("energy shares need batch sizes >= 1 and a context >= 1 token")
    rows = []
    for prec_text, label in variants:
        prec = parse_precision(prec_text)
        for b in batches:
            ops = op_table(spec, Workload("decode", int(b), context), prec, "full", True)
            t = predict_efficiency(ops, dev, prec, "graph", spread=False).totals["time"]
            e = step_energy(work_from_ops(ops, dev, prec), t, dev, 1)
            v, s = e.value, e.shares()
            dyn = v.compute_j + v.bytes_j
            rows.append(
                {
                    "model": spec.name, "device": dev.name, "batch": int(b), "context": context,
                    "precision": prec.label, "variant": label, "j_per_token": v.total_j / b,
                    "compute_j_per_token": v.compute_j / b, "bytes_j_per_token": v.bytes_j / b,
                    "static_j_per_token": v.static_j / b,
                    "bytes_share_dynamic": v.bytes_j / dyn if dyn else 0.0,
                    "bytes_share": s["bytes"], "compute_share": s["compute"],
                    "static_share": s["static"], "time_per_step_s": t,
                    "capped_at_tdp": v.capped,
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))
