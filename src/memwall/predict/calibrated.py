"""Calibrated prediction: the roofline, with roofs measured the way a real model runs.

The plain roofline (`predict_roofline` with the roofs `memwall measure` found) assumes every
matmul reaches the GEMM peak, every byte moves at STREAM bandwidth and every op costs one eager
dispatch. Real eager PyTorch models miss all three in known ways; each is a named term of a
calibration record (`memwall.records.calibration`), so every predicted time can be explained.

Pure: reads a record that `memwall.measure.calibration` wrote; measures nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from memwall.count import op_table
from memwall.count.ops import MODEL_LEVEL_OPS, linear_dims, linear_ops
from memwall.families import get_family
from memwall.precision import DTYPE_BYTES
from memwall.predict.roofline import predict_roofline
from memwall.records.calibration import (
    BLOCK_LAYERS,
    FRAMEWORK,
    CalibrationRecord,
    Term,
    block_key,
    block_workload,
    eager_key,
    interp_log,
    overhead_key,
    shape_class,
)
from memwall.spec import (
    ModelSpec,
    Precision,
    Workload,
    act_dtype,
    kernel_dtype,
    parse_precision,
    runnable_precision,
)

# Linear layers the calibration still prices by their bytes, as it did before the registry
# carried shapes (Phi-3's fused gate_up_proj, MLA and shared-expert projections): pricing them
# with `linear_rate` would move those models' predictions (issue 22).
_PRICED_BY_BYTES = frozenset(
    "gate_up_proj q_a_proj q_b_proj kv_a_proj kv_b_proj shared_gate shared_up shared_down "
    "shared_expert_gate".split()
)
LINEAR_OPS = linear_ops() - _PRICED_BY_BYTES
GENERATE_SAMPLES = 24  # decode contexts sampled to sum a generation's steps
# Measured names that hold several closed-form operations (transformers runs Mixtral's experts
# as one fused module, so the profiler sees one range).
GROUPS = {"experts": ("expert_gate", "expert_up", "expert_act_mul", "expert_down")}
_ZERO = {"flops": 0.0, "bytes": 0.0, "t_compute": 0.0, "t_memory": 0.0, "t_kernel": 0.0}


def table_precision(precision: str, head: bool = False) -> Precision:
    """The closed form's precision for a runnable precision. int8-dynamic is what torch.ao's
    `quantize_dynamic` leaves: int8 Linear weights, everything else (embeddings, norms, biases,
    activations, KV cache) fp32; `head`: the LM head quantised too (it is an nn.Linear)."""
    if kernel_dtype(precision) == "int8":
        return Precision(
            8,
            32,
            32,
            group_size=1 << 20,
            name="int8 dynamic (W8/A32/KV32)",
            quantize_head=head,
            rest_bits=32,
        )
    return parse_precision(runnable_precision(precision))


def closed_table(spec: ModelSpec, workload: Workload, precision: str) -> pd.DataFrame:
    """The full-convention op table at the precision as it runs (int8 matmuls marked int8), with
    MLA in transformers' expanded form: the profile times transformers' own code."""
    df = op_table(spec, workload, table_precision(precision), "full", True, "expanded")
    if kernel_dtype(precision) == "int8":
        # the LM head is an nn.Linear, so quantize_dynamic makes it int8; the embedding
        # tables (nn.Embedding) stay fp32, so only the head's row comes from a W8 head table
        head = df["name"] == "lm_head"
        if head.any():
            q = op_table(
                spec, workload, table_precision(precision, head=True), "full", True, "expanded"
            )
            df = pd.concat([df[~head], q[head]]).sort_index()
        df.loc[df["name"].isin(LINEAR_OPS), "dtype"] = "int8"
    return df


def step_workloads(wl: Workload) -> list[tuple[Workload, float]]:
    """The per-step workloads a workload runs, with weights (generate: sampled contexts)."""
    if wl.phase != "generate":
        return [(wl, 1.0)]
    g = wl.gen_len
    n = min(g, GENERATE_SAMPLES)
    out = []
    for j in range(n):
        lo, hi = j * g // n, (j + 1) * g // n  # steps lo .. hi-1, contexts seq_len + i
        ctx = wl.seq_len + (lo + hi - 1) // 2
        out.append((Workload("decode", wl.batch, ctx), float(hi - lo)))
    return out


BLOCK_CLAMP = (0.5, 2.0)  # a block factor outside this range is a failed measurement
MODEL_LEVEL = MODEL_LEVEL_OPS


@dataclass
class CalPrediction:
    """Calibrated predicted time per op (and its terms) and in total, for one workload."""

    ops: pd.DataFrame  # name, kind, flops, bytes, t_compute, t_memory, t_overhead, time, term
    total: float
    overhead_key: str
    terms: list[Term]
    notes: list[str]

    def by_name(self) -> dict[str, float]:
        return dict(zip(self.ops["name"], self.ops["time"], strict=True))


@dataclass(frozen=True)
class _Step:
    """What one step's rows are priced against."""

    spec: ModelSpec
    wl: Workload
    precision: str  # runnable precision (fp32, bf16, int8-dynamic)
    dtype: str  # its Linear kernel dtype
    rec: CalibrationRecord
    eager: Mapping[str, Any]
    kv_concat: bool
    block: float = 1.0  # the block factor: per-layer rows priced x this (see block_factor)

    @property
    def tokens(self) -> int:
        w = self.wl
        return w.batch * (w.seq_len if w.phase in ("encode", "prefill") else 1)

    @property
    def context(self) -> int:
        ctx = self.wl.seq_len if self.wl.phase == "decode" else 0
        if self.spec.sliding_window:  # a sliding-window cache keeps at most the window
            ctx = min(ctx, self.spec.sliding_window)
        return ctx


def _linear(s: _Step, name: str, flops: float, nbytes: float) -> tuple[float, float, str]:
    k, n = linear_dims(s.spec, name)
    m: float = s.wl.batch if name == "pooler" else s.tokens
    if name.startswith("expert_"):  # tokens per expert under uniform routing
        m = max(1.0, s.tokens * s.spec.experts_per_token / s.spec.n_experts)
    tc = flops / s.rec.linear_rate(s.dtype, m, k, n)
    layer_bytes = k * n * DTYPE_BYTES[s.dtype]
    tm = nbytes / s.rec.gemv_bandwidth(s.dtype, layer_bytes)
    term = f"linear_rate({s.dtype},{shape_class(k, n)})" if tc >= tm else ""
    return tc, tm, term or f"gemv_bandwidth({s.dtype})"


def _attention(s: _Step, flops: float, nbytes: float) -> tuple[float, float, str]:
    act = act_dtype(s.dtype)
    if s.wl.phase in ("encode", "prefill"):
        causal = s.spec.is_decoder
        tc = flops / s.rec.sdpa_rate(act, s.wl.seq_len, causal)
        return tc, 0.0, f"sdpa_rate({act},{'causal' if causal else 'full'})"
    return 0.0, nbytes / s.rec.sdpa_decode_bandwidth(act), f"sdpa_decode_bandwidth({act})"


def _price(s: _Step, r: dict[str, Any]) -> tuple[float, float, float, str]:
    """(t_compute, t_memory, bytes, term) of one op-table row."""
    name, cnt = r["name"], float(r["count"])
    flops, nbytes = r["flops"], r["bytes"]
    act = act_dtype(s.dtype)
    spec = s.spec
    eager_names = {
        "act_mul" if spec.gated_mlp else "act": ("act_mul" if spec.gated_mlp else "act", spec.d_ff),
        "attn_add_norm": ("add_norm", spec.d_model),
        "mlp_add_norm": ("add_norm", spec.d_model),
    }
    if name in LINEAR_OPS:
        tc, tm, term = _linear(s, name, flops, nbytes)
        return tc, tm, nbytes, term
    if name == "attention":
        tc, tm, term = _attention(s, flops, nbytes)
        return tc, tm, nbytes, term
    if name == "kv_cache_write" and s.kv_concat:
        esize = DTYPE_BYTES[act]
        per_layer = 2 * s.wl.batch * spec.kv_dim * esize * (2 * s.context + s.tokens)
        nb = per_layer * cnt  # torch.cat reads the old cache and writes old + new
        term = f"kv_concat_bandwidth({act}): torch.cat copies the cache"
        return 0.0, nb / s.rec.kv_concat_bandwidth(act), nb, term
    if name in eager_names:
        op, width = eager_names[name]
        n_el = s.tokens * width * max(1, spec.experts_per_token if op != "add_norm" else 1)
        tc = cnt * n_el * interp_log(s.eager[op], n_el)
        return tc, 0.0, nbytes, f"eager_pointwise({spec.family},{op},{act})"
    factor = get_family(spec.family).eager_passes.get(name, 1.0)
    size = nbytes / max(cnt, 1.0) / 3.0
    tm = nbytes * factor / s.rec.pointwise_bandwidth(act, size)
    term = f"pointwise_bandwidth({act})" + (f" x eager {factor:.3g}" if factor != 1 else "")
    return 0.0, tm, nbytes, term


def _per_layer(r: Mapping[str, Any], spec: ModelSpec) -> bool:
    """A row repeated in every layer (not the embeddings, final norm, head or pooler)."""
    return r["name"] not in MODEL_LEVEL and float(r["count"]) >= spec.n_layers


def block_factor(
    spec: ModelSpec, prec: str, rec: CalibrationRecord, phase: str, kv_concat: bool
) -> tuple[float, str]:
    """(measured / predicted seconds per layer at the block workload, note): how much slower
    a layer runs among its neighbours than its kernels timed alone (1.0 without a block
    term in the record)."""
    b = rec.data.get("block", {}).get(block_key(spec, prec, phase))
    if not b:
        return 1.0, ""
    wl = block_workload(spec, phase)
    lo, hi = BLOCK_LAYERS
    p = {
        n: predict_calibrated(
            replace(spec, n_layers=n), wl, prec, rec, kv_concat, block=False
        ).total
        for n in (lo, hi)
    }
    predicted = (p[hi] - p[lo]) / (hi - lo)
    raw = b["per_layer"] / predicted if predicted > 0 else 1.0
    f = min(max(raw, BLOCK_CLAMP[0]), BLOCK_CLAMP[1])
    note = (
        f"block term: a layer measured {b['per_layer'] * 1e3:.3g} ms at {wl.phase} "
        f"{wl.seq_len} against {predicted * 1e3:.3g} ms from its kernels alone; per-layer "
        f"rows priced x{f:.3f}" + (f" (measured x{raw:.3f}, clamped)" if f != raw else "")
    )
    return f, note


def _kernels(s0: _Step, workload: Workload) -> tuple[dict, dict, dict, float]:
    """Per measured name: summed flops/bytes/times over the workload's steps, kinds, terms."""
    group_of = {op: g for g, ops in GROUPS.items() for op in ops}
    acc: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    terms: dict[str, str] = {}
    n_steps = 0.0
    for step_wl, w in step_workloads(workload):
        n_steps += w
        s = replace(s0, wl=step_wl)
        for r in closed_table(s.spec, step_wl, s.precision).to_dict("records"):
            tc, tm, nb, term = _price(s, r)
            if _per_layer(r, s.spec):
                tc, tm = tc * s.block, tm * s.block
            shown = group_of.get(r["name"], r["name"])
            a = acc.setdefault(shown, dict(_ZERO))
            a["flops"] += r["flops"] * w
            a["bytes"] += nb * w
            a["t_compute"] += tc * w
            a["t_memory"] += tm * w
            a["t_kernel"] += max(tc, tm) * w
            kinds.setdefault(shown, r["kind"])
            terms.setdefault(shown, term)
    return acc, kinds, terms, n_steps


def predict_calibrated(
    spec: ModelSpec,
    workload: Workload,
    precision: str,
    record: Mapping[str, Any] | CalibrationRecord,
    kv_concat: bool = True,
    block: bool = True,
) -> CalPrediction:
    """Calibrated time of every memwall op for `workload` run eagerly at `precision`.

    `record`: a calibration record holding every term this prediction needs (measure them
    first with `memwall.measure.calibration.Calibration.ensure_for`); KeyError otherwise.
    `block`: scale per-layer rows by the record's block term for this model, when it has one.
    """
    rec = record if isinstance(record, CalibrationRecord) else CalibrationRecord(record)
    prec = runnable_precision(precision)
    ov_key = overhead_key(spec, prec, workload.phase)
    ov = rec.overhead(ov_key)
    factor, block_note = (
        block_factor(spec, prec, rec, workload.phase, kv_concat) if block else (1.0, "")
    )
    eager = rec.eager(eager_key(spec, prec))
    s0 = _Step(spec, workload, prec, kernel_dtype(prec), rec, eager, kv_concat, factor)
    acc, kinds, terms_used, n_steps = _kernels(s0, workload)
    ops_fixed, ops_layer = ov["ops_fixed"], ov["ops_per_layer"]
    names = list(acc) + [n for n in sorted(set(ops_fixed) | set(ops_layer)) if n not in acc]
    rows = []
    for name in names:
        r = acc.get(name, _ZERO)
        t_ov = ops_fixed.get(name, 0.0) + factor * spec.n_layers * ops_layer.get(name, 0.0)
        t_ov *= n_steps
        rows.append(
            {
                "name": name,
                "kind": kinds.get(name, "framework" if name == FRAMEWORK else "other"),
                "flops": r["flops"],
                "bytes": r["bytes"],
                "t_compute": r["t_compute"],
                "t_memory": r["t_memory"],
                "t_overhead": t_ov,
                "time": r["t_kernel"] + t_ov,
                "term": terms_used.get(name, f"overhead({ov_key})"),
            }
        )
    ops = pd.DataFrame(rows)
    notes = [block_note] if block_note else []
    if kv_concat and spec.is_decoder:
        notes.append(
            "KV-cache append priced as transformers' DynamicCache does it: torch.cat copies "
            "the whole cache every step"
        )
    if workload.phase == "generate" and workload.gen_len > GENERATE_SAMPLES:
        notes.append(f"generation summed over {GENERATE_SAMPLES} sampled decode contexts")
    terms = rec.terms(s0.dtype, ov_key)
    return CalPrediction(ops, float(ops["time"].sum()), ov_key, terms, notes)


def roofline_baseline(
    spec: ModelSpec, workload: Workload, precision: str, device: Any
) -> dict[str, Any]:
    """The uncalibrated roofline (`predict_roofline` with the device's roofs) for comparison."""
    p = predict_roofline(closed_table(spec, workload, precision), device)
    return {
        "device": device.name,
        "roof_origin": device.roof_origin,
        "time": p.totals["time"],
        "ops": dict(zip(p.ops["name"], p.ops["time"], strict=True)),
        "roofs": p.to_dict()["roofs"],
    }
