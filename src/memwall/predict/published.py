"""Published measurements on named hardware, and memwall's prediction beside each.

`data/published_inference.csv` holds decode and prefill speeds and matmul times measured by
others (llama.cpp tables, kernel tuning logs), each with its source and software. This module
validates the file, prices every row with the efficiency model, and summarises the error per
device class, so the README's statement of how far predictions are from measurements comes from
a run anyone can repeat (`python benchmarks/bench_published.py`).
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import Device, get_device
from memwall.precision import Precision, parse_precision
from memwall.predict.efficiency import device_class, predict_efficiency
from memwall.spec import Workload, load_model_config

METRICS = ("decode_tok_s", "prefill_tok_s", "matmul_time_s")
_GEMM = re.compile(r"gemm:m=(\d+),n=(\d+),k=(\d+)")


class PublishedRow(BaseModel):
    """One published measurement (a row of the CSV), validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=1)
    device: str = Field(min_length=2)
    model: str = Field(min_length=2)
    precision: str
    group_size: int = Field(ge=1)
    quantize_head: Literal["yes", "no"] = "no"
    phase: Literal["generate", "prefill", "decode", "matmul"]
    batch: int = Field(ge=1)
    seq_len: int = Field(ge=0)
    gen_len: int = Field(ge=0)
    metric: Literal["decode_tok_s", "prefill_tok_s", "matmul_time_s"]
    value: float = Field(gt=0, allow_inf_nan=False)
    unit: Literal["tokens/s", "s"]
    software: str = Field(min_length=3)
    launch: Literal["eager", "graph", "kernel"]
    fitted: Literal["yes", "no"]
    source: str = Field(min_length=20)
    notes: str = ""

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        parse_precision(v)
        return v


def parse_published(text: str) -> list[PublishedRow]:
    """Rows of the published-measurements CSV ('#' lines are comments); MemwallError if bad."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    out = []
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        try:
            row = PublishedRow.model_validate(r)
        except (ValidationError, MemwallError) as e:
            msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            raise MemwallError(f"published_inference.csv row {r.get('id')!r}: {msg}") from None
        out.append(row)
    ids = [r.id for r in out]
    if len(set(ids)) != len(ids):
        raise MemwallError("published_inference.csv: duplicate ids")
    return out


def load_published() -> list[PublishedRow]:
    text = resources.files("memwall.data").joinpath("published_inference.csv").read_text("utf-8")
    return parse_published(text)


def _gemm_table(row: PublishedRow, prec: Precision) -> pd.DataFrame:
    m = _GEMM.fullmatch(row.model)
    if not m:
        raise MemwallError(f"published row {row.id}: matmul model must be gemm:m=,n=,k=")
    mm, n, k = (int(x) for x in m.groups())
    w = n * k * prec.weight_bytes
    act = mm * k * prec.act_bytes + mm * n * 2.0  # inputs in, 16-bit outputs out
    return pd.DataFrame(
        [
            {
                "name": "gemm", "kind": "matmul", "count": 1, "steps": 1,
                "flops": 2.0 * mm * n * k, "matmul_flops": 2.0 * mm * n * k,
                "bytes": w + act, "bytes_weight": w, "dtype": prec.compute_dtype,
            }
        ]
    )  # fmt: skip


def predict_row(row: PublishedRow) -> tuple[float, float, float]:
    """memwall's (value, low, high) for a published row, in the row's unit."""
    prec = parse_precision(row.precision, row.group_size, row.quantize_head == "yes")
    dev = get_device(row.device)
    if row.metric == "matmul_time_s":
        p = predict_efficiency(_gemm_table(row, prec), dev, prec, row.launch)
        return p.totals["time"], p.totals["time_low"], p.totals["time_high"]
    spec, _ = load_model_config(row.model)
    wl = Workload(row.phase, row.batch, row.seq_len, row.gen_len)
    p = predict_efficiency(op_table(spec, wl, prec, "full", True), dev, prec, row.launch)
    tokens = row.batch * (row.gen_len if row.metric == "decode_tok_s" else row.seq_len)
    t = p.totals
    return tokens / t["time"], tokens / t["time_high"], tokens / t["time_low"]


@dataclass(frozen=True)
class Comparison:
    """Every row with its prediction and signed relative error (predicted / measured - 1)."""

    table: pd.DataFrame

    def by_class(self) -> pd.DataFrame:
        """Median and worst absolute error per device class (and overall)."""
        rows = []
        groups = [*self.table.groupby("device_class"), ("all", self.table)]
        for cls, g in groups:
            err = g["error"].abs()
            worst = g.loc[err.idxmax()]
            rows.append(
                {
                    "device_class": cls,
                    "rows": len(g),
                    "median_abs_error": float(statistics.median(err)),
                    "worst_abs_error": float(err.max()),
                    "worst_row": int(worst["id"]),
                    "in_range": float(g["in_range"].mean()),
                }
            )
        return pd.DataFrame(rows)


def _class_of(dev: Device) -> str:
    return device_class(dev)


def compare(rows: list[PublishedRow] | None = None) -> Comparison:
    """Predict every published row; the error is signed (positive = memwall too optimistic for
    speeds, too slow for times -- i.e. predicted value above the measured one)."""
    out = []
    for r in rows if rows is not None else load_published():
        pred, low, high = predict_row(r)
        dev = get_device(r.device)
        out.append(
            {
                "id": r.id, "device": r.device, "device_class": _class_of(dev),
                "vendor": dev.vendor, "model": r.model, "precision": r.precision,
                "metric": r.metric, "measured": r.value, "predicted": pred, "low": low,
                "high": high, "error": pred / r.value - 1.0,
                "in_range": low <= r.value <= high, "fitted": r.fitted, "software": r.software,
            }
        )  # fmt: skip
    return Comparison(pd.DataFrame(out))
