"""Published energy measurements priced by memwall, and how far the predictions are.

Each row of `data/published_energy.csv` (validated by `memwall.energy.published`) is priced as
a server in steady state (`memwall.parallel.energy.serving_steps`): the realistic predictor's
decode step at the row's batch over the mean context and a one-request prefill (vLLM rows: one
chunked-prefill step holding the decodes and batch / gen_len prompts), for every GPU of the
row, then joules per output token from `memwall.energy`. The signed error is predicted /
measured - 1. Two diagnostics split that error between the two models it comes from: the time
predictor (`time_error`: predicted / measured seconds per output token - 1, the measured one
being 1 / the published throughput) and the energy model alone (`error_at_measured_time`: the
same steps, the same FLOPs and bytes, priced over the measured time instead of the predicted
one, every step's time scaled alike (`at_time`); `power_error`: predicted / measured average
power - 1). `trend_check` asks, per measured sweep (one model on one GPU set), whether energy
per token falls as the batch grows wherever the measurement says it falls (the sign of each
step between batches), and names the steps where it does not. `python
benchmarks/bench_energy.py` prints all of it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import pandas as pd

from memwall.energy import Energy, coefficients_for, combine, parts
from memwall.energy.published import EnergyRow, load_energy_rows
from memwall.hardware import get_device
from memwall.parallel.energy import admitted, serving_steps
from memwall.precision import parse_precision
from memwall.predict.efficiency_data import sample_s_per_sequence
from memwall.spec import load_model

BATCH_BANDS = ((1, 1, "1"), (2, 16, "2-16"), (17, 128, "17-128"), (129, 1 << 30, ">128"))


def band(batch: int) -> str:
    """The batch-size band a row is summarised in."""
    return next(name for lo, hi, name in BATCH_BANDS if lo <= batch <= hi)


def chunked_prefill(row: EnergyRow) -> bool:
    """Whether the row's engine runs prompts inside decode steps: vLLM's V1 engine (0.8 on; the
    ML.ENERGY v3.0 rows ran 0.11.1) has no prefill-only step, chunked prefill is always on and
    its scheduler fills each step's token budget with the running decodes first, then prompt
    tokens (vLLM docs, Optimization and Tuning, "Chunked Prefill": "In vLLM V1, chunked prefill
    is always enabled by default"; A. Gordic, "Inside vLLM", 2025: the V1 scheduler mixes
    prefill and decode requests in the same step, V0 ran one kind at a time). Hugging Face
    generate (the 2023 rows) prefills each batch on its own."""
    return row.software.startswith("vLLM")


def engine(row: EnergyRow) -> str | None:
    """The serving engine whose per-sequence sampling time (`efficiency.json` serving_engines)
    a row pays: the v3.0 rows ran vLLM 0.11.1; None for engines memwall has no entry for."""
    return "vllm-0.11" if row.software.startswith("vLLM 0.11") else None


def row_steps(row: EnergyRow, end: str = "value") -> list[tuple[Energy, float]]:
    """The steps one output token of a row is priced from, each with its share
    (`memwall.parallel.energy.serving_steps`; chunked where the engine is, `chunked_prefill`;
    the engine's sampling time per sequence at `end` of its range)."""
    spec = load_model(row.model)
    name = engine(row)
    sample = sample_s_per_sequence(name, spec.vocab_size, end) if name else 0.0
    return serving_steps(
        spec, get_device(row.device), parse_precision(row.precision), row.batch,
        row.prompt_len, row.gen_len, row.tp, row.launch, chunked_prefill(row), sample,
    )  # fmt: skip


def median_step_s(row: EnergyRow, steps: list[tuple[Energy, float]]) -> float | None:
    """The predicted time of the step a row's median inter-token latency measures, where that is
    a step without a prompt (chunked rows admitting under half a request per step: most steps
    carry none, `serving_steps`' first step); None where the median step holds prompts, whose
    lengths vary far more than one mean-length prompt says."""
    if not chunked_prefill(row):
        return None
    prompts, share = admitted(row.batch, row.gen_len)[0]
    return steps[0][0].time_s if prompts == 0 and share > 0.5 else None


def price_row(row: EnergyRow) -> Energy:
    """memwall's predicted energy of one output token of a row (all its GPUs)."""
    return combine(row_steps(row))


def at_time(steps: list[tuple[Energy, float]], time_s: float) -> float:
    """Joules of the same steps (same FLOPs and bytes, each capped at the TDP as predicted)
    if one output token took `time_s` instead of the predicted time: every step's time is
    scaled by the same factor, an assumption (the predictor may err more on one phase)."""
    predicted = sum(k * e.time_s for e, k in steps)
    scale = time_s / predicted if predicted > 0 else 1.0
    total = 0.0
    for e, k in steps:
        c = coefficients_for(get_device(e.device))
        total += k * parts(e.work, e.time_s * scale, c, e.devices).total_j
    return total


@dataclass(frozen=True)
class EnergyComparison:
    """Every row with its prediction and signed error (predicted / measured - 1)."""

    table: pd.DataFrame

    def summary(self, rows: pd.DataFrame | None = None) -> dict[str, float | int]:
        """Median and worst |error|, the worst row, the share of rows inside the predicted
        range, and the medians of the two diagnostics (|time error|, |error at measured time|)."""
        g = self.table if rows is None else rows
        err = g["error"].abs()
        return {
            "rows": len(g),
            "median_abs_error": float(statistics.median(err)),
            "worst_abs_error": float(err.max()),
            "worst_row": int(g.loc[err.idxmax(), "id"]),
            "in_range": float(g["in_range"].mean()),
            "median_abs_time_error": float(statistics.median(g["time_error"].abs())),
            "median_abs_error_at_measured_time": float(
                statistics.median(g["error_at_measured_time"].abs())
            ),
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
            b = g["batch"].to_numpy()
            wrong = [i for i in range(steps) if (m[i + 1] < m[i]) != (p[i + 1] < p[i])]
            out.append(
                {
                    "series": series, "model": g["model"].iloc[0], "device": g["device"].iloc[0],
                    "batches": " ".join(str(x) for x in b), "steps": steps,
                    "sign_agrees": steps - len(wrong), "ok": not wrong,
                    "measured_falls": bool((m[1:] < m[:-1]).all()),
                    "wrong_steps": "; ".join(
                        f"{b[i]}->{b[i + 1]}: measured {m[i + 1] / m[i] - 1:+.1%}, "
                        f"predicted {p[i + 1] / p[i] - 1:+.1%}" for i in wrong
                    ),
                }
            )  # fmt: skip
        return pd.DataFrame(out)


def compare(rows: list[EnergyRow] | None = None) -> EnergyComparison:
    """Predict every published row (all by default)."""
    out = []
    for r in rows if rows is not None else load_energy_rows():
        steps = row_steps(r)
        e = combine(steps)
        pred, low, high, shares = e.total_j, e.low.total_j, e.high.total_j, e.shares()
        t_meas = 1.0 / r.throughput_tok_s  # wall seconds per output token, all GPUs together
        at_meas = at_time(steps, t_meas)
        med = median_step_s(r, steps)
        itl = r.median_itl_ms * 1e-3 if r.median_itl_ms is not None else None
        itl_err = med / itl - 1.0 if med is not None and itl is not None else float("nan")
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
                "time_error": e.time_s / t_meas - 1.0,
                "at_measured_time": at_meas,
                "error_at_measured_time": at_meas / r.j_per_output_token - 1.0,
                "measured_w": r.avg_power_w, "predicted_w": e.avg_power_w,
                "power_error": e.avg_power_w / r.avg_power_w - 1.0,
                "median_itl_ms": r.median_itl_ms if r.median_itl_ms is not None else float("nan"),
                "predicted_itl_ms": med * 1e3 if med is not None else float("nan"),
                "itl_error": itl_err,
            }
        )  # fmt: skip
    return EnergyComparison(pd.DataFrame(out))
