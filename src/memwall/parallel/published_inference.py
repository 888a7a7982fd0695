"""Published measurements on named hardware, and memwall's prediction beside each.

`data/published_inference.csv` holds decode and prefill speeds, times to first token, per-token
and end-to-end latencies of static batches, and matmul times measured by others (llama.cpp
tables, TensorRT-LLM and vLLM performance pages, gpt-fast, kernel tuning logs), each with its
source, software and what was assumed. This module validates the file and prices every row twice:
with the default model (the efficiency model of `memwall.predict.efficiency`; rows split over
`tp` > 1 GPUs through `memwall.parallel.plan` with published efficiencies) and with the plain
roofline (dense spec-sheet peaks, no overheads; `plan` without efficiencies for tp > 1). It
summarises the error of both per device class and per metric, so the README's statement of how
far predictions are from measurements comes from a run anyone can repeat
(`python benchmarks/bench_published.py`).

How a metric is made from predicted times (prefill = one forward over the batch's prompts,
gen = gen_len decode steps after a prompt of seq_len, both of the whole batch):
decode_tok_s = batch x gen_len / gen; prefill_tok_s = batch x seq_len / prefill; ttft_s =
prefill; tpot_s = gen / gen_len; latency_s = prefill + gen x (gen_len - 1) / gen_len;
throughput_tok_s = batch x gen_len / latency_s. With tp > 1, prefill is the plan's
`prefill_time` and gen is gen_len x its `decode_step_time` over a KV cache of seq_len +
gen_len / 2 tokens (the mean context); the plan prices every kernel with the gap a CUDA graph
still leaves between kernels (`plan.INFER_LAUNCH`), or with a host launch per kernel where the
row's `prefill_launch` says the prompt ran eagerly (TensorRT-LLM's GptSession never captures the
context phase in a graph), and gives no range, so such rows have low = high = the prediction
and no in-range verdict. A row's `kv_dequant` says how its decode attention kernel converts an
8-bit KV cache (not element by element, once per element, or once per query head:
`predict.efficiency.KV_DEQUANT`), on one device and through the tensor-parallel plan alike.

A row whose `excluded` column gives a reason is priced and printed but left out of the error
statistics (`Comparison.included`, `Comparison.excluded`). Both reasons used are physical
rules anyone can check: the published speed is faster than reading each GPU's share of the
weights once per forward pass at the spec-sheet memory bandwidth (`weight_bound_s`), which no
engine can do; or the weights are more than the measured machine lets its GPU hold
(`exceeds_gpu_memory`), so the run paged memory, which memwall does not price.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memwall.count import op_table
from memwall.errors import MemwallError, first_problem
from memwall.hardware import Device, get_device
from memwall.precision import Precision, parse_precision
from memwall.predict.efficiency import (
    accumulate_roofs,
    compute_dtype,
    device_class,
    predict_efficiency,
)
from memwall.predict.efficiency_data import engine_term, sample_s_per_sequence
from memwall.predict.roofline import predict_roofline
from memwall.spec import ModelSpec, Workload, load_model_config

MetricName = Literal[
    "decode_tok_s", "prefill_tok_s", "ttft_s", "tpot_s", "latency_s", "throughput_tok_s",
    "matmul_time_s",
]  # fmt: skip
METRICS: tuple[str, ...] = MetricName.__args__  # type: ignore[attr-defined]
SPEEDS = ("decode_tok_s", "prefill_tok_s", "throughput_tok_s")
PHASE_OF = {
    "decode_tok_s": "generate", "prefill_tok_s": "prefill", "ttft_s": "prefill",
    "tpot_s": "decode", "latency_s": "generate", "throughput_tok_s": "generate",
    "matmul_time_s": "matmul",
}  # fmt: skip
MODELS = ("efficiency", "roofline")
_NEEDS = {
    "decode_tok_s": ("gen",), "prefill_tok_s": ("prefill",), "ttft_s": ("prefill",),
    "tpot_s": ("gen",), "latency_s": ("prefill", "gen"), "throughput_tok_s": ("prefill", "gen"),
}  # fmt: skip
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
    tp: int = Field(default=1, ge=1, le=64)
    seq_len: int = Field(ge=0)
    gen_len: int = Field(ge=0)
    metric: MetricName
    value: float = Field(gt=0, allow_inf_nan=False)
    unit: Literal["tokens/s", "s"]
    software: str = Field(min_length=3)
    launch: Literal["eager", "graph", "kernel"]
    fitted: Literal["yes", "no"]
    source: str = Field(min_length=20)
    notes: str = ""
    excluded: str = ""  # empty: in the error statistics; else why the row cannot be what it says
    prefill_launch: Literal["", "eager", "graph", "kernel"] = ""  # empty: as `launch`
    kv_dequant: Literal["", "none", "kv_head", "query_head"] = ""  # empty: none (KV_DEQUANT)
    accumulate: Literal["", "fp32", "fp16"] = ""  # 16-bit matmuls' accumulator; empty: fp32
    host_memory_gb: float | None = Field(default=None, gt=0)  # a unified-memory machine's RAM
    fused: Literal["", "qkv", "qkv+gate_up"] = ""  # projections the engine runs as one GEMM
    moe_kernel: Literal["", "native", "sm80"] = ""  # the expert GEMMs' kernels; empty: native

    @field_validator("host_memory_gb", mode="before")
    @classmethod
    def _host_memory(cls, v: object) -> object:
        return None if v in (None, "") else v

    @field_validator("fused", "moe_kernel", mode="before")
    @classmethod
    def _fused(cls, v: object) -> object:
        return "" if v is None else v  # a row may leave its trailing empty columns off

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        parse_precision(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PublishedRow:
        m = self.metric
        unit = "tokens/s" if m in SPEEDS else "s"
        if self.unit != unit:
            raise ValueError(f"metric {m} is in {unit}, not {self.unit}")
        if self.phase != PHASE_OF[m]:
            raise ValueError(f"metric {m} needs phase {PHASE_OF[m]}, not {self.phase}")
        if "gen" in _NEEDS.get(m, ()) and self.gen_len < 1:
            raise ValueError(f"metric {m} needs gen_len >= 1")
        if "prefill" in _NEEDS.get(m, ()) and self.seq_len < 1:
            raise ValueError(f"metric {m} needs seq_len >= 1")
        if m == "matmul_time_s" and self.tp != 1:
            raise ValueError("a matmul row runs on one device (tp 1)")
        if self.accumulate == "fp16" and self.tp != 1:
            raise ValueError("accumulate fp16 is priced on one device only (tp 1)")
        return self


def parse_published(text: str) -> list[PublishedRow]:
    """Rows of the published-measurements CSV ('#' lines are comments); MemwallError if bad."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    out = []
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        try:
            row = PublishedRow.model_validate(r)
        except (ValidationError, MemwallError) as e:
            msg = first_problem(e) if isinstance(e, ValidationError) else str(e)
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
    out = mm * n * 2.0  # every GEMM row's output is 16-bit
    act = mm * k * prec.act_bytes + out  # inputs in, outputs out
    return pd.DataFrame(
        [
            {
                "name": "gemm", "kind": "matmul", "count": 1, "steps": 1,
                "flops": 2.0 * mm * n * k, "matmul_flops": 2.0 * mm * n * k,
                "bytes": w + act, "bytes_weight": w, "bytes_written": out,
                "dtype": prec.compute_dtype,
            }
        ]
    )  # fmt: skip


Times = tuple[float, float, float]  # seconds: (predicted, low, high)


def _one_device(
    ops: pd.DataFrame,
    dev: Device,
    prec: Precision,
    launch: str,
    model: str,
    kv_dequant: str = "",
    accumulate: str = "",
    moe_kernel: str = "",
) -> Times:
    if model == "roofline":  # at the dtype the efficiency model prices (a peak the device has)
        ops = ops.assign(dtype=[compute_dtype(dev, d, prec) for d in ops["dtype"]])
        roofs = accumulate_roofs(dev, accumulate or "fp32")
        t = predict_roofline(ops, roofs, overhead=False).totals["time"]
        return t, t, t
    p = predict_efficiency(
        ops, dev, prec, launch, kv_dequant=kv_dequant or "none", accumulate=accumulate or "fp32",
        moe_kernel=moe_kernel or "native",
    ).totals  # fmt: skip
    return p["time"], p["time_low"], p["time_high"]


def launch_of(row: PublishedRow, part: str) -> str:
    """How the kernels of a row's `part` ('prefill' or 'gen') were launched."""
    return (row.prefill_launch or row.launch) if part == "prefill" else row.launch


def row_model(row: PublishedRow) -> ModelSpec:
    """The row's model as its engine runs it: Q, K, V (and the MLP's gate and up halves) as one
    GEMM where the row's `fused` says its engine's model code does (`memwall.count` then prices
    one larger GEMM, one kernel instead of three)."""
    spec, _ = load_model_config(row.model)
    if not row.fused:
        return spec
    return replace(spec, fused_qkv=True, fused_gate_up=row.fused == "qkv+gate_up")


def _parts_one(
    row: PublishedRow, spec: ModelSpec, prec: Precision, dev: Device, model: str
) -> dict[str, Times]:
    out = {}
    for part in _NEEDS[row.metric]:
        if part == "prefill":
            wl = Workload("prefill", row.batch, row.seq_len)
        else:
            wl = Workload("generate", row.batch, row.seq_len, row.gen_len)
        ops = op_table(spec, wl, prec, "full", True)
        out[part] = _one_device(
            ops, dev, prec, launch_of(row, part), model, row.kv_dequant, row.accumulate,
            row.moe_kernel,
        )  # fmt: skip
    return out


def _parts_tp(
    row: PublishedRow, spec: ModelSpec, prec: Precision, dev: Device, model: str
) -> dict[str, Times]:
    """Prefill and generation times of a row split over `tp` GPUs (memwall.parallel.plan)."""
    from memwall.parallel.layout import Layout  # parallel imports predict: import on use
    from memwall.parallel.links import links_for
    from memwall.parallel.plan import Options, plan

    links, lay = links_for(row.device), Layout(tp=row.tp)
    out = {}
    for part in _NEEDS[row.metric]:
        ctx = row.seq_len if part == "prefill" else row.seq_len + row.gen_len // 2
        o = Options("infer", row.batch, row.batch, ctx, prec, efficiency=model == "efficiency",
                    infer_launch=launch_of(row, part),
                    kv_dequant=row.kv_dequant or "none",
                    moe_kernel=row.moe_kernel or "native")  # fmt: skip
        x = plan(spec, dev, links, lay, o).extra
        t = x["prefill_time"] if part == "prefill" else row.gen_len * x["decode_step_time"]
        out[part] = (t, t, t)
    return out


def _combine(row: PublishedRow, parts: dict[str, Times]) -> Times:
    """The row's metric (value, low, high) from predicted times (see the module docstring)."""
    m, b, g = row.metric, row.batch, row.gen_len
    if m == "prefill_tok_s":
        tok, t = b * row.seq_len, parts["prefill"]
    elif m == "decode_tok_s":
        tok, t = b * g, parts["gen"]
    elif m == "tpot_s":
        return tuple(x / g for x in parts["gen"])  # type: ignore[return-value]
    elif m == "ttft_s":
        return parts["prefill"]
    else:
        pre, gen = parts["prefill"], parts["gen"]
        lat = tuple(p + x * (g - 1) / g for p, x in zip(pre, gen, strict=True))
        if m == "latency_s":
            return lat  # type: ignore[return-value]
        tok, t = b * g, lat
    return tok / t[0], tok / t[2], tok / t[1]


# Engines with a fitted per-request context cost, and engines with a fitted per-sequence cost
# per decode step (efficiency.json serving_engines), by the software their rows name. vLLM's
# per-sequence term was fitted on ML.ENERGY's vLLM 0.11.1 runs on H100 (published_energy.csv),
# never on these rows: ROCm vLLM 0.10.0 runs the same V1 engine (scheduler, sampler, per-request
# output processing), so its rows test the term out of sample.
CONTEXT_ENGINES = {"TensorRT-LLM 0.9": "tensorrt-llm-0.9"}
SEQUENCE_ENGINES = {"vLLM": "vllm-0.11"}


def _engine(row: PublishedRow, table: dict[str, str]) -> str | None:
    return next((e for k, e in table.items() if row.software.startswith(k)), None)


def context_engine(row: PublishedRow) -> str | None:
    """The serving engine whose fitted context cost a row's prefill pays, if any."""
    return _engine(row, CONTEXT_ENGINES)


def sequence_engine(row: PublishedRow) -> str | None:
    """The serving engine whose per-sequence cost each of a row's decode steps pays, if any."""
    return _engine(row, SEQUENCE_ENGINES)


def _add(t: Times, add: Times) -> Times:
    return tuple(a + b for a, b in zip(t, add, strict=True))  # type: ignore[return-value]


def _with_engine(
    row: PublishedRow, vocab: int, parts: dict[str, Times], ends: bool
) -> dict[str, Times]:
    """`parts` with the engine's fitted costs beyond its kernels (value, low, high ends of each
    term; `ends` False: none, as the roofline and the context fit price): a per-request context
    cost added to the prefill, a per-sequence cost to each of the gen_len decode steps."""
    if not ends:
        return parts
    out, ends3 = dict(parts), ("value", "low", "high")
    ctx, seq = context_engine(row), sequence_engine(row)
    if ctx is not None and "prefill" in out:
        out["prefill"] = _add(
            out["prefill"], tuple(engine_term(ctx, "context_s", e) for e in ends3)
        )
    if seq is not None and "gen" in out:
        per = (sample_s_per_sequence(seq, vocab, e) * row.batch * row.gen_len for e in ends3)
        out["gen"] = _add(out["gen"], tuple(per))
    return out


def predict_row(row: PublishedRow, model: str = "efficiency", context: bool = True) -> Times:
    """memwall's (value, low, high) for a published row, in the row's unit. `model`:
    'efficiency' (the default predictor) or 'roofline' (plain roofline; low = high = value).
    `context` False leaves out the engine's fitted costs beyond its kernels (the fit's view)."""
    if model not in MODELS:
        raise MemwallError(f"unknown prediction model {model!r}; accepted: {', '.join(MODELS)}")
    prec = parse_precision(row.precision, row.group_size, row.quantize_head == "yes")
    dev = get_device(row.device)
    if row.metric == "matmul_time_s":
        return _one_device(
            _gemm_table(row, prec), dev, prec, row.launch, model, accumulate=row.accumulate
        )
    spec = row_model(row)  # read once: the parts and the engine's per-sequence cost use it
    parts = (_parts_tp if row.tp > 1 else _parts_one)(row, spec, prec, dev, model)
    ends = context and model == "efficiency"
    return _combine(row, _with_engine(row, spec.vocab_size, parts, ends))


def fit_context_cost() -> tuple[list[tuple[PublishedRow, float]], tuple[float, float, float]]:
    """The stated rule of TensorRT-LLM 0.9's `context_s` (benchmarks/bench_published.py --fit):
    on its time-to-first-token rows marked fitted = yes alone (not excluded), each row's measured
    time less memwall's prediction without that cost; (low, value, high) = their quartiles and
    median."""
    rows = [r for r in load_published() if r.metric == "ttft_s" and r.fitted == "yes"
            and not r.excluded and context_engine(r) == "tensorrt-llm-0.9"]  # fmt: skip
    gaps = [(r, r.value - predict_row(r, context=False)[0]) for r in rows]
    q1, med, q3 = statistics.quantiles([g for _, g in gaps], n=4)
    return gaps, (q1, med, q3)


def weight_bound_s(row: PublishedRow) -> float:
    """Seconds a row's work takes at least: each forward pass reads each GPU's share (1 / tp) of
    the weights the op table says it reads (all experts a batch routes to) once, at the
    spec-sheet memory bandwidth, with nothing else priced. For a speed, the time of its tokens;
    for a matmul row, its weight bytes alone."""
    bw = get_device(row.device).memory_bandwidth()
    if row.metric == "matmul_time_s":
        prec = parse_precision(row.precision, row.group_size, row.quantize_head == "yes")
        return float(_gemm_table(row, prec)["bytes_weight"].sum()) / bw

    def once(phase: str) -> float:
        return weight_bytes(row, phase) / bw

    m, g = row.metric, row.gen_len
    if m in ("ttft_s", "prefill_tok_s"):
        return once("prefill")
    if m in ("tpot_s", "decode_tok_s"):
        return once("decode") * (1 if m == "tpot_s" else g)
    return once("prefill") + (g - 1) * once("decode")  # latency_s, throughput_tok_s


def weight_bytes(row: PublishedRow, phase: str) -> float:
    """Bytes of weights one forward pass of `phase` reads on each GPU of a model row (its share,
    1 / tp, of what the op table says the batch reads: all experts it routes to)."""
    prec = parse_precision(row.precision, row.group_size, row.quantize_head == "yes")
    spec, _ = load_model_config(row.model)
    ops = op_table(spec, Workload(phase, row.batch, max(1, row.seq_len)), prec, "full", True)
    return float(ops["bytes_weight"].sum()) / row.tp


def gpu_working_set_bytes(host_memory_gb: float) -> float:
    """Bytes of a unified-memory Apple machine the GPU may use: Metal's
    recommendedMaxWorkingSetSize as llama.cpp logs it, 2/3 of the RAM up to 32 GB (10922.67 MiB
    on 16 GB: abetlen/llama-cpp-python issue 687; 21845.34 MiB on 32 GB: ggml-org/llama.cpp PR
    2011) and 3/4 above (49152 MiB on 64 GB: llama.cpp issue 1870; 73728 MiB on 96 GB: issue
    3213)."""
    ram = host_memory_gb * 2**30
    return ram * (2 / 3 if host_memory_gb <= 32 else 3 / 4)


def exceeds_gpu_memory(row: PublishedRow) -> bool:
    """Whether a row's weights (each GPU's share) are more than its machine lets the GPU hold
    (`gpu_working_set_bytes`; rows without `host_memory_gb` are not checked): such a run pages
    memory in and out, which memwall does not price."""
    if row.host_memory_gb is None or row.metric == "matmul_time_s":
        return False
    return weight_bytes(row, "decode") > gpu_working_set_bytes(row.host_memory_gb)


def measured_time_s(row: PublishedRow) -> float:
    """The measured seconds of the work `weight_bound_s` bounds (a speed turned into a time)."""
    m = row.metric
    if m in ("decode_tok_s", "throughput_tok_s"):
        return row.batch * row.gen_len / row.value
    if m == "prefill_tok_s":
        return row.batch * row.seq_len / row.value
    return row.value


def _summary(g: pd.DataFrame) -> dict[str, float | int]:
    err, roof = g["error"].abs(), g["roofline_error"].abs()
    return {
        "rows": len(g),
        "median_abs_error": float(statistics.median(err)),
        "worst_abs_error": float(err.max()),
        "worst_row": int(g.loc[err.idxmax(), "id"]),
        "in_range": float(g["in_range"].mean()),  # NaN rows (no range) are skipped
        "roofline_median_abs_error": float(statistics.median(roof)),
        "roofline_worst_abs_error": float(roof.max()),
        "roofline_worst_row": int(g.loc[roof.idxmax(), "id"]),
    }


@dataclass(frozen=True)
class Comparison:
    """Every row with both predictions and their signed relative errors (predicted / measured -
    1): `predicted`/`error` for the default (efficiency) model, `roofline`/`roofline_error` for
    the plain roofline."""

    table: pd.DataFrame

    @property
    def included(self) -> pd.DataFrame:
        """The rows in the error statistics (no exclusion reason)."""
        if "excluded" not in self.table:
            return self.table
        return self.table[self.table["excluded"] == ""].reset_index(drop=True)

    @property
    def excluded(self) -> pd.DataFrame:
        """The rows priced and printed but left out of the statistics, with their reasons."""
        if "excluded" not in self.table:
            return self.table.iloc[0:0]
        return self.table[self.table["excluded"] != ""].reset_index(drop=True)

    def _by(self, col: str) -> pd.DataFrame:
        t = self.included
        groups = [*t.groupby(col), ("all", t)]
        return pd.DataFrame([{col: key, **_summary(g)} for key, g in groups])

    def by_class(self) -> pd.DataFrame:
        """Median and worst absolute error of both models per device class (and overall)."""
        return self._by("device_class")

    def by_metric(self) -> pd.DataFrame:
        """Median and worst absolute error of both models per metric (and overall)."""
        return self._by("metric")


def _class_of(dev: Device) -> str:
    return device_class(dev)


def compare(rows: list[PublishedRow] | None = None) -> Comparison:
    """Predict every published row with both models; errors are signed (positive = predicted
    value above the measured one: too optimistic for speeds, too slow for times)."""
    out = []
    for r in rows if rows is not None else load_published():
        pred, low, high = predict_row(r)
        roof = predict_row(r, "roofline")[0]
        dev = get_device(r.device)
        in_range = math.nan if low == high else float(low <= r.value <= high)
        out.append(
            {
                "id": r.id, "device": r.device, "device_class": _class_of(dev),
                "vendor": dev.vendor, "model": r.model, "precision": r.precision, "tp": r.tp,
                "batch": r.batch, "metric": r.metric, "measured": r.value, "predicted": pred,
                "low": low, "high": high, "error": pred / r.value - 1.0, "in_range": in_range,
                "roofline": roof, "roofline_error": roof / r.value - 1.0, "fitted": r.fitted,
                "software": r.software, "excluded": r.excluded,
            }
        )  # fmt: skip
    return Comparison(pd.DataFrame(out))
