"""Published measurements of inference energy (`data/published_energy.csv`), validated.

Each row is joules per output token measured by others (ML.ENERGY's leaderboards with Zeus)
for a model served `batch` sequences at a time on `tp` GPUs, with its source, its software and
what memwall assumed to price it. `role` says what the row may be used for: `fit` rows chose the
coefficients the data file marks as fits, `check` rows chose nothing, `holdout` rows (newer
parts such as B200) are kept out of every choice as an out-of-sample check. Pricing the rows
needs the parallel planner, so it lives in `memwall.parallel.published_energy`.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memwall.errors import MemwallError, first_problem
from memwall.precision import parse_precision

ROLES = ("fit", "check", "holdout")


class EnergyRow(BaseModel):
    """One published energy measurement (a row of the CSV), validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=1)
    device: str = Field(min_length=2)
    model: str = Field(min_length=2)
    precision: str
    tp: int = Field(ge=1, le=64)
    batch: int = Field(ge=1, le=100_000)
    prompt_len: int = Field(ge=1, le=1_000_000)
    gen_len: int = Field(ge=1, le=1_000_000)
    launch: Literal["graph", "eager", "kernel"]
    j_per_output_token: float = Field(gt=0, allow_inf_nan=False)
    avg_power_w: float = Field(gt=0, allow_inf_nan=False)
    throughput_tok_s: float = Field(gt=0, allow_inf_nan=False)
    median_itl_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    software: str = Field(min_length=3)
    series: str = Field(min_length=3)
    role: Literal["fit", "check", "holdout"]
    source: str = Field(min_length=20)
    assumed: str = Field(min_length=10)

    @field_validator("median_itl_ms", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        parse_precision(v)
        return v


def parse_energy_rows(text: str) -> list[EnergyRow]:
    """Rows of the CSV text ('#' lines are comments); MemwallError naming the bad row."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    out = []
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        try:
            out.append(EnergyRow.model_validate(r))
        except ValidationError as e:
            msg = first_problem(e)
            raise MemwallError(f"published_energy.csv row {r.get('id')!r}: {msg}") from None
        except MemwallError as e:
            raise MemwallError(f"published_energy.csv row {r.get('id')!r}: {e}") from None
    ids = [r.id for r in out]
    if len(set(ids)) != len(ids):
        raise MemwallError("published_energy.csv: duplicate ids")
    if not out:
        raise MemwallError("published_energy.csv: no rows")
    return out


def load_energy_rows() -> list[EnergyRow]:
    """The bundled published energy measurements."""
    f = resources.files("memwall.data").joinpath("published_energy.csv")
    return parse_energy_rows(f.read_text("utf-8"))
