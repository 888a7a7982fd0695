"""Published energy measurements priced by memwall, and how far the predictions are.

Each row of `data/published_energy.csv` (validated by `memwall.energy.published`) is priced as
a server in steady state (`memwall.parallel.energy.serving_energy`): the realistic predictor's
decode step at the row's batch over the mean context and a one-request prefill, for every GPU
of the row, then joules per output token from `memwall.energy`. The signed error is predicted /
measured - 1. `trend_check` asks, per model and device, whether energy per token falls as the
batch grows wherever the measurement says it falls (the sign of each step between batches).
`python benchmarks/bench_energy.py` prints all of it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import pandas as pd

from memwall.energy import Energy
from memwall.energy.published import EnergyRow, load_energy_rows
from memwall.hardware import get_device
from memwall.parallel.energy import serving_energy
from memwall.precision import parse_precision
from memwall.spec import load_model

BATCH_BANDS = ((1, 1, "1"), (2, 16, "2-16"), (17, 128, "17-128"), (129, 1 << 30, ">128"))


def band(batch: int) -> str:
    """The batch-size band a row is summarised in."""
    return next(name for lo, hi, name in BATCH_BANDS if lo <= batch <= hi)


def price_row(row: EnergyRow) -> Energy:
    """memwall's predicted energy of one output token of a row (all its GPUs)."""
    return serving_energy(
        load_model(row.model), get_device(row.device), parse_precision(row.precision),
        row.batch, row.prompt_len, row.gen_len, row.tp, row.launch,
    )  # fmt: skip


@dataclass(frozen=True)
class EnergyComparison:
    """Every row with its prediction and signed error (predicted / measured - 1)."""

    table: pd.DataFrame

    def summary(self, rows: pd.DataFrame | None = None) -> dict[str, float | int]:
        g = self.table if rows is None else rows
        err = g["error"].abs()
        return {
            "rows": len(g),
            "median_abs_error": float(statistics.median(err)),
            "worst_abs_error": float(err.max()),
            "worst_row": int(g.loc[err.idxmax(), "id"]),
            "in_range": float(g["in_range"].mean()),
        }

    def by(self, col: str) -> pd.DataFrame:
        """Median and worst |error| per value of `col` (role, batch_band, device, ...)."""
        groups = [*self.table.groupby(col, sort=False), ("all", self.table)]
        return pd.DataFrame([{col: k, **self.summary(g)} for k, g in groups])

    def trend_check(self) -> pd.DataFrame:
        """Per measured sweep (`series`): at each step between consecutive batches, whether
        predicted energy per token moves the way the measured one does (sign agreement)."""
        out = []
        for series, g in self.table.groupby("series", sort=False):
            g = g.sort_values("batch")
            if len(g) < 2:
                continue
            m, p = g["measured"].to_numpy(), g["predicted"].to_numpy()
            steps = len(g) - 1
            agree = sum((m[i + 1] < m[i]) == (p[i + 1] < p[i]) for i in range(steps))
            out.append(
                {
                    "series": series, "model": g["model"].iloc[0], "device": g["device"].iloc[0],
                    "batches": " ".join(str(b) for b in g["batch"]), "steps": steps,
                    "sign_agrees": int(agree), "ok": bool(agree == steps),
                }
            )  # fmt: skip
        return pd.DataFrame(out)


def compare(rows: list[EnergyRow] | None = None) -> EnergyComparison:
    """Predict every published row (all by default)."""
    out = []
    for r in rows if rows is not None else load_energy_rows():
        e = price_row(r)
        pred, low, high, shares = e.total_j, e.low.total_j, e.high.total_j, e.shares()
        out.append(
            {
                "id": r.id, "device": r.device, "model": r.model, "precision": r.precision,
                "tp": r.tp, "series": r.series, "batch": r.batch, "batch_band": band(r.batch),
                "role": r.role,
                "measured": r.j_per_output_token, "predicted": pred, "low": low, "high": high,
                "error": pred / r.j_per_output_token - 1.0,
                "in_range": float(low <= r.j_per_output_token <= high),
                "bytes_share": shares["bytes"], "compute_share": shares["compute"],
                "static_share": shares["static"],
                "measured_s_per_token": 1.0 / r.throughput_tok_s,
                "predicted_s_per_token": e.time_s, "software": r.software,
            }
        )  # fmt: skip
    return EnergyComparison(pd.DataFrame(out))
