"""The rematerialisation trade-off: activation memory against recompute FLOPs.

Each checkpointing strategy is one point: how much activation memory the step needs at its
worst moment (kept activations + the recomputed segment + backward temporaries) and how many
FLOPs recomputation adds, as a fraction of the step without it (forward + backward = 3 x forward).
The paper's claim ("rematerialisation ... 5x less memory for about 20% more compute") is then a
question the curve answers for a given model and workload: `claim_check`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from memwall.memory.activations import layer_ops
from memwall.memory.checkpointing import Checkpointing
from memwall.memory.states import BF16
from memwall.memory.training import TrainingFootprint, training_memory
from memwall.precision import typed_precision
from memwall.spec import ModelSpec, Precision

MAX_POINTS = 12  # per family of strategies (every:K, layers:M)


def activation_memory(fp: TrainingFootprint) -> float:
    """Largest activation bytes (kept + recomputed + temporaries) over forward and backward."""
    return max(
        e.saved + e.temporaries
        for e in fp.events
        if e.name not in ("optimizer step", "Hessian-vector product", "embedding backward")
    )


def strategies(n_layers: int) -> list[Checkpointing]:
    """none, selective, a spread of layers:M and every:K, sqrt, full."""

    def spread(lo: int, hi: int) -> list[int]:
        if hi < lo:
            return []
        if hi - lo + 1 <= MAX_POINTS:
            return list(range(lo, hi + 1))
        step = (hi - lo) / (MAX_POINTS - 1)
        return sorted({lo + round(i * step) for i in range(MAX_POINTS)})

    out = [Checkpointing("none"), Checkpointing("selective")]
    out += [Checkpointing("layers", m) for m in spread(1, n_layers - 1)]
    out += [Checkpointing("every", k) for k in spread(2, n_layers)]
    out += [Checkpointing("sqrt"), Checkpointing("full")]
    return out


def remat_curve(
    spec: ModelSpec,
    batch: int,
    seq_len: int,
    precision: Precision = BF16,
    optimizer: str = "adam",
    impl: str = "eager",
    fused_attention: bool = True,
    dropout: float = 0.0,
    **kw: Any,
) -> pd.DataFrame:
    """One row per strategy: activation memory, its reduction vs none, recompute FLOPs, peak."""
    prec = typed_precision(precision)
    ops = layer_ops(spec, batch, seq_len, prec, fused_attention)
    rows = []
    for ck in strategies(spec.n_layers):
        fp = training_memory(
            spec,
            batch,
            seq_len,
            prec,
            optimizer,
            ck,
            impl=impl,
            fused_attention=fused_attention,
            dropout=dropout,
            ops=ops,
            **kw,
        )
        rows.append(
            {
                "strategy": ck.label,
                "activation_memory": activation_memory(fp),
                "activations_kept": fp.activations,
                "peak": fp.peak,
                "recompute_flops": fp.recompute_flops,
                "step_flops": fp.step_flops,
                "extra_compute": fp.recompute_overhead,
            }
        )
    df = pd.DataFrame(rows)
    base = float(df.loc[df["strategy"] == "none", "activation_memory"].iloc[0])
    df["reduction"] = base / df["activation_memory"]
    df.attrs.update(
        model=spec.name,
        batch=batch,
        seq_len=seq_len,
        precision=prec.label,
        impl=impl,
        fused_attention=fused_attention,
        dropout=dropout,
    )
    return df


def pareto(curve: pd.DataFrame) -> pd.DataFrame:
    """The strategies no other one beats on both memory and compute."""
    df = curve.sort_values(["extra_compute", "activation_memory"])
    keep, best = [], math.inf
    for i, r in df.iterrows():
        if r["activation_memory"] < best:
            keep.append(i)
            best = r["activation_memory"]
    return curve.loc[keep]


def claim_check(
    curve: pd.DataFrame, reduction: float = 5.0, extra_compute: float = 0.20
) -> dict[str, Any]:
    """Does some strategy give >= `reduction` x less activation memory for <= `extra_compute`?"""
    within = curve[curve["extra_compute"] <= extra_compute + 1e-12]
    best = within.loc[within["reduction"].idxmax()]
    reaching = curve[curve["reduction"] >= reduction]
    cheapest = reaching.loc[reaching["extra_compute"].idxmin()] if len(reaching) else None
    return {
        "reduction_wanted": reduction,
        "extra_compute_allowed": extra_compute,
        "holds": bool(best["reduction"] >= reduction),
        "best_within_budget": {
            "strategy": best["strategy"],
            "reduction": float(best["reduction"]),
            "extra_compute": float(best["extra_compute"]),
        },
        "cheapest_reaching_reduction": None
        if cheapest is None
        else {
            "strategy": cheapest["strategy"],
            "reduction": float(cheapest["reduction"]),
            "extra_compute": float(cheapest["extra_compute"]),
        },
        "max_reduction": float(curve["reduction"].max()),
    }
