"""The real-engine check record: what `benchmarks/bench_serve.py` measured and simulated on this
machine, saved so that `memwall report` can show it without running an engine for minutes.

One record per machine (`store.engine_check_path`), the latest run replacing the one before.
Per workload (a length mix at a rate): the engine's measured metrics and memwall.serve's
simulated ones (means over the workload's runs), the error of the calibrated simulation and of
the rolling one (mean |error| over runs), and the engine's own run-to-run difference; over the
workloads, their medians; and how steady the machine itself was (`measure.steadiness`).

A saved file is data someone could edit: it is checked by a strict pydantic schema (numbers
finite and of the right sign, the metric names fixed) and every problem is one `MemwallError`.
Pure: no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from memwall.errors import MemwallError, first_problem
from memwall.io import write_json
from memwall.records.store import engine_check_path

ENGINE_CHECK_FORMAT = "memwall-engine-check/1"
METRICS = ("ttft_p50", "tpot_p50", "e2e_p50", "ttft_p90", "tpot_p90", "e2e_p90", "throughput")
MAX_FILE_BYTES = 1 << 20

Positive = Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[StrictInt | StrictFloat, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metrics(_Strict):
    """Latency percentiles in seconds and output throughput in tokens/s (vLLM's definitions)."""

    ttft_p50: Positive
    tpot_p50: Positive
    e2e_p50: Positive
    ttft_p90: Positive
    tpot_p90: Positive
    e2e_p90: Positive
    throughput: Positive


class Errors(_Strict):
    """|simulated / measured - 1| per metric (or a run-to-run difference), a fraction."""

    ttft_p50: NonNegative
    tpot_p50: NonNegative
    e2e_p50: NonNegative
    ttft_p90: NonNegative
    tpot_p90: NonNegative
    e2e_p90: NonNegative
    throughput: NonNegative


class WorkloadCheck(_Strict):
    mix: str = Field(min_length=1, max_length=40)
    prompt_mean: Positive  # tokens
    output_len: Positive  # tokens
    rate: Positive  # requests/s asked
    load: Positive  # x the capacity the calibrated model predicts
    runs: Annotated[StrictInt, Field(ge=1, le=100)]
    measured: Metrics
    simulated: Metrics
    error: Errors  # the calibrated simulation
    rolling_error: Errors  # re-priced at the previous run's step speed
    repeatability: Errors  # the engine's own run-to-run difference


class Machine(_Strict):
    steadiness_before: Annotated[StrictInt | StrictFloat, Field(ge=1, allow_inf_nan=False)]
    steadiness_after: Annotated[StrictInt | StrictFloat, Field(ge=1, allow_inf_nan=False)]
    engine_cpu_share: Annotated[StrictInt | StrictFloat, Field(ge=0, le=1.5, allow_inf_nan=False)]
    load_before: NonNegative
    load_after: NonNegative


class EngineCheck(_Strict):
    format: Literal["memwall-engine-check/1"]
    date: str = Field(min_length=10, max_length=40)
    engine: str = Field(min_length=1, max_length=200)
    load_generator: str = Field(min_length=1, max_length=200)
    model: dict[str, StrictInt]
    requests_per_run: Annotated[StrictInt, Field(ge=1)]
    machine: Machine
    workloads: list[WorkloadCheck] = Field(min_length=1, max_length=100)
    summary: Errors  # medians over workloads, the calibrated simulation
    rolling: Errors
    own_speed: Errors  # a diagnostic: at each run's own measured step speed
    repeatability: Errors


def check(obj: Any, where: str = "engine check record") -> EngineCheck:
    """The record as a validated `EngineCheck`; one `MemwallError` line saying what is wrong."""
    try:
        return EngineCheck.model_validate(obj)
    except ValidationError as e:
        raise MemwallError(f"{where} is malformed: {first_problem(e, 'top level')}") from None


def save(obj: dict[str, Any], path: str | Path | None = None) -> Path:
    """Validates and writes the record atomically (to this machine's place by default)."""
    rec = check(obj)
    return write_json(path or engine_check_path(), rec.model_dump(mode="json"), mkdir=True)


def load(path: str | Path | None = None) -> EngineCheck | None:
    """This machine's record, or None where none was saved."""
    p = Path(path) if path else engine_check_path()
    if not p.is_file():
        return None
    if p.stat().st_size > MAX_FILE_BYTES:
        raise MemwallError(f"{p} is not an engine check record (over {MAX_FILE_BYTES} bytes)")
    try:
        obj = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MemwallError(f"{p} is not valid JSON ({type(e).__name__})") from None
    return check(obj, str(p))
