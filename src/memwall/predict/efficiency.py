"""Realistic time on a device memwall cannot measure: the roofline with published efficiencies.

The spec-sheet roofline divides bytes by the datasheet bandwidth and FLOPs by the dense peak, with
no cost per kernel; real kernels reach a fraction of both, and that fraction depends on the
working set, the matmul shape, the weight format and the runtime. Per op instance:

    t_memory  = bytes / (bandwidth x bw_frac x dq_bw) x (1 + ws_half / bytes)
    t_compute = flops / rate,  rate = max(peak x mm_frac x mm8 x M / (M + mm_m_half) x shape,
                                          fp32 peak x vec_frac) x dq_mm     (matmuls)
                                      peak16 x attn_frac (attention), fp32 peak x vec_frac (rest)
    t_kernel  = t_memory + t_compute - overlap x min(t_memory, t_compute)
    time      = t_kernel + gap             (graph: CUDA graphs, compiled runtimes)
    time      = max(t_kernel + gap, host)  (eager: the host launches each kernel while the
                                            previous one runs)

overlap (0.95, `memory_compute_overlap`) is XLA's GPU cost model's memory_compute_parallelism:
memory traffic and math do not hide each other completely, so a kernel near the roofline ridge
(t_memory ~ t_compute) takes up to 5% longer than max(t_memory, t_compute). On a device class
whose GEMMs write each output tile after its K-loop (`store_serial`: AMD Instinct), a matmul's
output store is not among the hidden traffic: t_kernel = combine(reads, math) + t_store.

Decode attention over an 8-bit KV cache, in a kernel that widens every K/V element it reads to
16/32 bits on the conversion pipe (`kv_dequant`), pays t_compute >= elements / (fp32 peak x
kv8_dq_frac), the elements counted once per KV head or once per query head (CUDA's conversion
throughput is 1/16 of its fp32 FLOP rate on Hopper, so a grouped-query model whose kernel
converts per query head is bound by conversions, not bytes). Kernels that feed FP8 K/V to FP8
tensor-core MMAs convert nothing, so none is the default.

M is the tokens a matmul instance multiplies (rows of its activation matrix); shape is the tile
and wave quantisation of `gemm_shape`; mm8 = mm8_rel for matmuls on the 8-bit peak (FP8, INT8:
an 8-bit GEMM reaches a smaller share of its doubled peak), else 1; dq_* apply to weight-only
low-bit matmuls (dequantization). Fused attention runs its matmuls in 16 bits whatever the
precision (peak16: FP8 context attention is opt-in where it exists, TensorRT-LLM's
--use_fp8_context_fmha; FlashAttention-2 has only fp16 and bf16). Every term comes from
`data/efficiency.json`, from the device's own published measurement where there is one, else
its class default; the same formula evaluated at each term's optimistic and pessimistic end
gives the range.

Attention kernels (`attention=`): the class's attn_frac / attn_bwd_frac describe the best fused
attention of today's software; a named kernel family (cuDNN, FlashAttention-3, FlashAttention-2,
the 2022-23 Triton FlashAttention, unfused PyTorch attention) replaces them with its published
figures for the device's architecture, scaled for head dims under 128 (`attention_terms`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memwall.count.ops import HEAD_OPS
from memwall.errors import MemwallError
from memwall.hardware import Device, normalize_dtype
from memwall.precision import Precision
from memwall.predict.efficiency_data import (  # noqa: F401 (re-exported: the module's API)
    ATTENTION_AUTO,
    KERNEL_FIGURES,
    TERMS,
    Term,
    _tiles,
    attention_names,
    attention_terms,
    check_attention,
    compute_units,
    device_class,
    efficiency_terms,
    load_table,
    memory_compute_overlap,
    parse_table,
    resolve_attention,
    store_serial,
    training_kernel_rate,
)
from memwall.predict.gemm_shape import shape_efficiency
from memwall.predict.prompt_attention import attention_share
from memwall.predict.roofline import check_ops, plain_value, predict_roofline

LAUNCH_MODES = ("graph", "eager", "kernel")


def combine(t_memory: np.ndarray, t_compute: np.ndarray) -> np.ndarray:
    """A kernel's time from its memory and compute times: their sum less the overlapped share
    of the shorter (`memory_compute_overlap`, XLA's GPU cost model); it exceeds the roofline's
    max most near the ridge, where the two are equal."""
    return t_memory + t_compute - memory_compute_overlap() * np.minimum(t_memory, t_compute)


# The terms that set a kernel's time (the rest: attention backward and collectives, parallel path).
KERNEL_TERMS = TERMS[:12] + ("mm_k_half", "mm8_rel", "acc16_rel", "mm_sm80_rel", "kv8_dq_frac")
# How a decode attention kernel converts an 8-bit KV cache: not element by element ("none", the
# default: FP8 K/V fed to FP8 tensor-core MMAs, as Hopper's XQA and FlashAttention-3 do), once
# per element it reads ("kv_head": a group's query heads share one thread block that widens K/V
# to 16 bits for 16-bit MMAs, as TensorRT-LLM 0.9's pre-Hopper XQA does), or once per query head
# ("query_head": one thread block per query head, TensorRT-LLM's masked multi-head attention).
KV_DEQUANT = ("none", "kv_head", "query_head")
# What a 16-bit matmul accumulates in: fp32 (cuBLAS's default, PyTorch, TensorRT-LLM) or fp16
# (CUBLAS_COMPUTE_16F, as llama.cpp runs its GEMMs on NVIDIA GPUs), which GeForce tensor cores
# run at up to twice the rate (acc16_rel).
ACCUMULATE = ("fp32", "fp16")
SIXTEEN_BIT = ("fp16", "bf16")  # matmuls acc16_rel applies to when accumulating in fp16
# The kernels an engine runs its MoE expert GEMMs with: the device's own generation ("native"),
# or Ampere's SM80 CUTLASS grouped GEMM on a newer GPU ("sm80": TensorRT-LLM 0.9 on Hopper),
# which reaches mm_sm80_rel of the device's own GEMM rate.
MOE_KERNELS = ("native", "sm80")
MATMUL_KINDS = ("matmul", "moe")  # expert GEMMs and routers run on the matrix units too
EIGHT_BIT = ("int8", "fp8")  # matmuls on the 8-bit tensor-core peak (mm8_rel applies)
FLOAT16 = ("fp16", "bf16", "fp32", "tf32", "fp64")  # dtypes attention runs in as they are
# Which end of each term's range makes a prediction fast (the other makes it slow).
_FAST_IS_LOW = {"ws_half", "mm_m_half", "launch_eager", "launch_graph", "mm_k_half"}
_HEAD_OPS = HEAD_OPS  # vocabulary matrices: read at the head width


def _params(terms: dict[str, Term], end: str) -> dict[str, float]:
    if end == "value":
        return {k: t.value for k, t in terms.items()}
    fast = end == "fast"
    return {
        k: (t.low if (k in _FAST_IS_LOW) == fast else t.high) for k, t in terms.items()
    }  # fmt: skip


def compute_dtype(device: Device, dtype: str, precision: Precision | None) -> str:
    """The dtype whose peak prices an op: a 16-bit format the user did not name as bf16 runs in
    fp16 on a device with no bf16 peak (Apple GPUs; what llama.cpp and MLX do there)."""
    d = normalize_dtype(dtype)
    named_bf16 = precision is not None and precision.name == "bf16"
    if d == "bf16" and not device.has_peak("bf16") and device.has_peak("fp16") and not named_bf16:
        return "fp16"
    device.peak(d)  # MemwallError (one line) when the device has no peak for it
    return d


def _attention_peak(device: Device, precision: Precision | None) -> float | None:
    """The 16-bit peak fused attention runs at when the precision's matmuls are 8 or 4 bits
    (None: no 16-bit peak). Serving engines keep attention's matmuls in 16 bits (FP8 context
    attention is opt-in where it exists); an 8-bit KV cache is dequantized on load."""
    kind = precision.float_kind if precision is not None else "bf16"
    for d in (kind, "fp16", "bf16"):
        if device.has_peak(d):
            return device.peak(d)
    return None


def _weight_bytes_per_param(df: pd.DataFrame, precision: Precision | None) -> np.ndarray:
    if precision is None:
        return np.full(len(df), 2.0)
    head = df["name"].astype(str).isin(_HEAD_OPS).to_numpy()
    return np.where(head, precision.head_weight_bytes, precision.weight_bytes)


def _dequant(df: pd.DataFrame, precision: Precision | None, dtypes: pd.Series) -> np.ndarray:
    """Weight bits whose dequantization an op pays (16 = none): weight-only low-bit matmuls."""
    if precision is None or not precision.integer_weights:
        return np.full(len(df), 16)
    matmul = df["kind"].isin(MATMUL_KINDS).to_numpy()
    head = df["name"].astype(str).isin(_HEAD_OPS).to_numpy() & (not precision.quantize_head)
    float_compute = ~dtypes.isin(["int8", "int4"]).to_numpy()  # W8A8 runs natively
    pays = matmul & ~head & float_compute & (df["bytes_weight"].to_numpy() > 0)
    return np.where(pays, precision.weight_bits, 16)


def _spread(
    cols: dict[str, Any], dev: Device, terms: dict[str, Term], launch: str, mid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (low, high) time: each term moved alone to its fast and slow end, the changes
    added in quadrature (independent uncertainties; all at once would be far too wide)."""
    base = _params(terms, "value")
    fast_sq, slow_sq = np.zeros(len(mid)), np.zeros(len(mid))
    for k in KERNEL_TERMS:
        for end, acc in (("fast", fast_sq), ("slow", slow_sq)):
            p = dict(base)
            p[k] = _params({k: terms[k]}, end)[k]
            acc += (_row_times(cols, dev, p, launch)["time"] - mid) ** 2
    return np.maximum(mid - np.sqrt(fast_sq), 0.0), mid + np.sqrt(slow_sq)


def _kv8_elements(df: pd.DataFrame, precision: Precision | None, kv_dequant: str) -> np.ndarray:
    """8-bit KV-cache elements each op converts (0 for all but attention reading an 8-bit
    cache): the elements read, or, converted once per query head, the score and value
    multiply-adds (matmul FLOPs / 2: one per K element and one per V element per query head)."""
    if precision is None or precision.kv_bits != 8 or kv_dequant == "none":
        return np.zeros(len(df))
    reads = (df["kind"] == "attention").to_numpy() & (df["bytes_kv"].to_numpy(float) > 0)
    if kv_dequant == "query_head":
        elems = df["matmul_flops"].to_numpy(float) / 2
    else:
        elems = df["bytes_kv"].to_numpy(float) / precision.kv_bytes
    return np.where(reads, elems, 0.0)


def _output_bytes(df: pd.DataFrame) -> np.ndarray:
    """Bytes each matmul row writes (its output), 0 for other ops or where the table has none."""
    if "bytes_written" not in df.columns:
        return np.zeros(len(df))
    mm = df["kind"].isin(MATMUL_KINDS).to_numpy()
    return np.where(mm, df["bytes_written"].to_numpy(float), 0.0)


def _columns(df: pd.DataFrame, units: float | None, attn_work: float) -> dict[str, Any]:
    """The prepared table as numpy arrays, read once (the range re-prices them 26 times)."""
    inst = (df["count"] * df["steps"]).to_numpy(float)
    inst = np.where(inst > 0, inst, 1.0)
    cols = {c: df[c].to_numpy(float) for c in ("_m", "_gm", "_gk", "_gn", "_peak", "_vpeak")}
    return {
        **cols,
        "bits8": df["dtype"].isin(EIGHT_BIT).to_numpy(),
        "out": _output_bytes(df) / inst,  # a matmul's output store (store_serial devices)
        "serial": False,  # set by predict_efficiency on a store_serial device
        "acc16": np.zeros(len(df), dtype=bool),  # set by predict_efficiency(accumulate="fp16")
        "sm80": np.zeros(len(df), dtype=bool),  # set by predict_efficiency(moe_kernel="sm80")
        "inst": inst,
        "b": df["bytes"].to_numpy(float) / inst,
        "f": df["flops"].to_numpy(float) / inst,
        "bits": df["_dq_bits"].to_numpy(),
        "kv8": df["_kv8"].to_numpy(float) / inst,
        "kind": df["kind"].to_numpy(),
        "units": units,
        "attn_work": attn_work,
    }


def _row_times(c: dict[str, Any], dev: Device, p: dict[str, float], launch: str) -> dict:
    """Per-row memory, compute and launch seconds under parameters `p` (pure numpy)."""
    inst, b, f, bits = c["inst"], c["b"], c["f"], c["bits"]
    dq_bw = np.where(bits >= 16, 1.0, np.where(bits >= 8, p["dq_bw_8"], p["dq_bw_4"]))
    dq_mm = np.where(bits >= 16, 1.0, np.where(bits >= 8, p["dq_mm_8"], p["dq_mm_4"]))
    bw = dev.memory_bandwidth() * p["bw_frac"] * dq_bw
    with np.errstate(divide="ignore", invalid="ignore"):
        t_mem = np.where(b > 0, (b + p["ws_half"]) / bw, 0.0)
        m = c["_m"]
        shape = np.where(np.isfinite(m), m / (m + p["mm_m_half"]), 1.0)
        shape = shape * shape_efficiency(
            c["_gm"], c["_gk"], c["_gn"], c["units"], _tiles(), p["mm_k_half"],
            c.get("m_spread", 0.0),
        )  # fmt: skip
        kind = c["kind"]
        peak, vpeak = c["_peak"], c["_vpeak"]
        vec_rate = vpeak * p["vec_frac"]
        mm_frac = p["mm_frac"] * np.where(c["bits8"], p["mm8_rel"], 1.0)
        mm_frac = mm_frac * np.where(c["acc16"], p["acc16_rel"], 1.0)
        mm_frac = mm_frac * np.where(c["sm80"], p["mm_sm80_rel"], 1.0)
        rate = np.where(  # a small-M matmul may run faster on the vector units (GEMV kernels)
            np.isin(kind, MATMUL_KINDS),
            np.maximum(peak * mm_frac * shape, vec_rate) * dq_mm,
            np.where(kind == "attention", peak * p["attn_frac"], vec_rate),
        )
        # causal attention over a prompt: the kernel skips the masked half of the score blocks
        work = np.where(kind == "attention", c["attn_work"], 1.0)
        t_cmp = np.where(f > 0, f * work / rate, 0.0)
        # an 8-bit KV cache widened element by element on the conversion pipe
        t_cmp = np.maximum(t_cmp, c["kv8"] / (c["_vpeak"] * p["kv8_dq_frac"]))
    # memory traffic and math overlap imperfectly: the shorter is hidden only in part; where
    # GEMMs store their output after the K-loop, that store adds to the rest
    t_out = np.minimum(c["out"] / bw, t_mem) if c["serial"] else 0.0
    t_kernel = combine(t_mem - t_out, t_cmp) + t_out
    t_exec = t_kernel
    if launch != "kernel":  # kernel: device time of the kernels alone, as a profiler shows it
        t_exec = t_exec + p["launch_graph"]  # the gap between kernels
    if launch == "eager":  # the host launches one kernel while the previous one runs
        t_exec = np.maximum(t_exec, p["launch_eager"])
    t_launch = t_exec - t_kernel
    return {
        "t_memory": t_mem * inst,
        "t_compute": t_cmp * inst,
        "t_launch": t_launch * inst,
        "time": t_exec * inst,
    }


@dataclass(frozen=True)
class EffPrediction:
    """Per-op predicted time with efficiencies, its range, and every term that produced it."""

    ops: pd.DataFrame = field(hash=False, compare=False)
    totals: dict[str, float] = field(hash=False)
    device: Device
    device_class: str
    launch: str
    terms: dict[str, Term] = field(hash=False)
    peaks_used: dict[str, float] = field(hash=False)
    notes: tuple[str, ...] = ()
    roofline: Any = field(default=None, hash=False, compare=False)  # the spec-sheet Prediction

    def describe(self) -> str:
        """One line for a table caption: which terms are the device's own, which defaults."""
        own = [k for k, t in self.terms.items() if t.origin.startswith("device")]
        rest = len(self.terms) - len(own)
        mine = f"this chip's own: {', '.join(own)}; " if own else ""
        return (
            f"efficiency terms ({self.launch} launch): {mine}{rest} defaults of class "
            f"{self.device_class}; values and sources: --format json"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: device (what-if said), the efficiency terms with sources, totals, ops."""
        cols = [
            "name", "kind", "dtype", "count", "steps", "flops", "bytes",
            "t_memory", "t_compute", "t_launch", "time", "time_low", "time_high", "bound",
        ]  # fmt: skip
        ops = [
            {k: plain_value(v) for k, v in r.items()}
            for r in self.ops[[c for c in cols if c in self.ops.columns]].to_dict("records")
        ]
        measured = sorted({t.origin for t in self.terms.values() if t.origin.startswith("device")})
        return {
            "model": "efficiency (spec-sheet roofs x published efficiencies)",
            "device": self.device.name,
            "display_name": self.device.display_name,
            "measured": False,
            "roof_origin": self.device.roof_origin,
            "what_if": self.device.to_dict().get("what_if"),
            "device_class": self.device_class,
            "launch": self.launch,
            "roofs": {
                "memory_bandwidth": self.device.memory_bandwidth(),
                "peak_flops": dict(self.peaks_used),
            },
            "efficiency_terms": [t.to_dict() for t in self.terms.values()],
            "terms_device_measured": [k for k, t in self.terms.items() if t.origin in measured],
            "terms_class_default": [k for k, t in self.terms.items() if t.origin not in measured],
            "notes": list(self.notes),
            "totals": dict(self.totals),
            "units": {"time*": "s", "t_*": "s", "bytes": "byte", "flops": "FLOP"},
            "ops": ops,
        }


def _prepare(
    ops: pd.DataFrame, device: Device, precision: Precision | None, kv_dequant: str = "none"
) -> tuple[pd.DataFrame, dict[str, float], list[str]]:
    df = check_ops(ops)
    for c in ("bytes_weight", "matmul_flops", "bytes_kv"):
        if c not in df.columns:
            df[c] = df["flops"] if c == "matmul_flops" else 0.0
    dtypes = {d: compute_dtype(device, d, precision) for d in dict.fromkeys(df["dtype"])}
    df["dtype"] = df["dtype"].map(dtypes)
    peaks = {d: device.peak(d) for d in dict.fromkeys(df["dtype"])}
    df["_peak"] = df["dtype"].map(peaks).astype(float)
    attn16 = _attention_peak(device, precision)
    low_bit_attn = (df["kind"] == "attention") & ~df["dtype"].isin(FLOAT16)
    if attn16 is not None and low_bit_attn.any():  # fused attention runs its matmuls in 16 bits
        df.loc[low_bit_attn, "_peak"] = np.minimum(df.loc[low_bit_attn, "_peak"], attn16)
    vec = device.peaks.get("fp32")  # element-wise work runs on the fp32 vector units
    df["_vpeak"] = df["_peak"] if vec is None else min(vec, *peaks.values())
    inst = (df["count"] * df["steps"]).clip(lower=1)
    params = df["bytes_weight"] / inst / _weight_bytes_per_param(df, precision)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(params > 0, df["matmul_flops"] / inst / (2 * params), np.inf)
    df["_m"] = m
    for c in ("m", "k", "n"):  # the GEMM's shape where the op table gives it (count's tables do)
        df[f"_g{c}"] = df[c].astype(float) if c in df.columns else np.nan
    df["_dq_bits"] = _dequant(df, precision, df["dtype"])
    df["_kv8"] = _kv8_elements(df, precision, kv_dequant)
    notes = [
        f"{a} ops priced at the {b} peak: the device has no {a} peak and the precision does not "
        f"name {a}"
        for a, b in dtypes.items()
        if normalize_dtype(a) != b
    ]
    return df, peaks, notes


def predict_efficiency(
    ops: pd.DataFrame,
    device: Device,
    precision: Precision | None = None,
    launch: str = "graph",
    causal: bool | float = False,
    spread: bool = True,
    attention: str | None = None,
    head_dim: int | None = None,
    kv_dequant: str = "none",
    m_spread: float = 0.0,
    accumulate: str = "fp32",
    moe_kernel: str = "native",
) -> EffPrediction:
    """Predicted time of each op on `device` with published efficiencies, and its range
    (`spread=False`: no range, the low and high equal the value; the parallel search's speed).

    `causal`: the ops are a decoder's prompt (prefill, training), whose causal attention kernel
    computes about half the score blocks the FLOP count (the MFU convention: full L x L) holds;
    a float is that share itself (`predict.prompt_attention`: less under sliding windows).

    `launch`: 'graph' (CUDA graphs / a compiled runtime, the default of serving engines and
    llama.cpp), 'eager' (one host launch per kernel) or 'kernel' (kernel time alone, as a
    profiler reports it). `attention`: a kernel family of the data file, or auto (the one the
    frameworks pick on the device), at the model's `head_dim`; None keeps the class's
    attention terms. `kv_dequant`: how decode attention converts an 8-bit KV cache: not element
    by element ('none', the default), once per element read ('kv_head') or once per query head
    ('query_head'; see KV_DEQUANT). `m_spread`: each GEMM's tile and wave quantisation as the
    average over M spread by that fraction either side (a server in steady state, whose steps'
    M varies; `predict.gemm_shape`), 0 the one shape. `accumulate`: what 16-bit matmuls
    accumulate in, 'fp32' (the default) or 'fp16' (llama.cpp on NVIDIA; the device's acc16_rel
    speeds them up). `moe_kernel`: the kernels of the expert GEMMs (op kind moe), 'native' or
    'sm80' (Ampere's grouped GEMM on a newer GPU, at the device's mm_sm80_rel; MOE_KERNELS).
    Raises MemwallError on an op dtype the device has no peak for, or an unknown launch mode,
    attention kernel, kv_dequant, accumulate or moe_kernel.
    """
    if launch not in LAUNCH_MODES:
        raise MemwallError(f"unknown launch mode {launch!r}; accepted: {', '.join(LAUNCH_MODES)}")
    if kv_dequant not in KV_DEQUANT:
        raise MemwallError(f"unknown kv_dequant {kv_dequant!r}; accepted: {', '.join(KV_DEQUANT)}")
    if accumulate not in ACCUMULATE:
        raise MemwallError(f"unknown accumulate {accumulate!r}; accepted: {', '.join(ACCUMULATE)}")
    if moe_kernel not in MOE_KERNELS:
        raise MemwallError(f"unknown moe_kernel {moe_kernel!r}; accepted: {', '.join(MOE_KERNELS)}")
    terms = efficiency_terms(device)
    attention_note = None
    if attention is not None:
        terms, attention_note = attention_terms(terms, device, attention, head_dim)
    df, peaks, notes = _prepare(ops, device, precision, kv_dequant)
    if attention_note:
        notes.append(attention_note)
    cols = _columns(df, compute_units(device), attention_share(causal))
    if not 0.0 <= m_spread < 1.0:
        raise MemwallError(f"m_spread must be in [0, 1), got {m_spread!r}")
    cols["m_spread"] = m_spread
    cols["serial"] = store_serial(device)
    if cols["serial"] and cols["out"].any():
        notes.append(
            "matmul outputs stored after the K-loop, not hidden under the math (this device "
            "class's GEMM kernels; data/efficiency.json gemm_epilogue)"
        )
    if accumulate == "fp16":
        kind, dtype = df["kind"], df["dtype"]
        cols["acc16"] = (kind.isin(MATMUL_KINDS) & dtype.isin(SIXTEEN_BIT)).to_numpy()
    if moe_kernel == "sm80":
        cols["sm80"] = ((df["kind"] == "moe") & (df["name"] != "router")).to_numpy()
    times = _row_times(cols, device, _params(terms, "value"), launch)
    if spread:
        low, high = _spread(cols, device, terms, launch, times["time"])
    else:
        low = high = times["time"]
    mid = pd.DataFrame(times, index=df.index)
    helpers = ["_peak", "_vpeak", "_m", "_dq_bits", "_kv8", "_gm", "_gk", "_gn"]
    out = df.drop(columns=helpers).join(mid)
    out["time_low"], out["time_high"] = low, high
    out["bound"] = np.where(
        mid["t_launch"] > np.maximum(mid["t_memory"], mid["t_compute"]),
        "launch",
        np.where(mid["t_compute"] >= mid["t_memory"], "compute", "memory"),
    )
    t = float(mid["time"].sum())
    totals = {
        "time": t,
        "time_low": float(low.sum()),
        "time_high": float(high.sum()),
        "t_memory": float(mid["t_memory"].sum()),
        "t_compute": float(mid["t_compute"].sum()),
        "t_launch": float(mid["t_launch"].sum()),
        "flops": float(df["flops"].sum()),
        "bytes": float(df["bytes"].sum()),
        "kernels": float((df["count"] * df["steps"]).sum()),
        "roofline_time": float(
            np.maximum(
                df["flops"] / df["dtype"].map(peaks), df["bytes"] / device.memory_bandwidth()
            ).sum()
        ),
    }
    return EffPrediction(
        out, totals, device, device_class(device), launch, terms, peaks, tuple(notes)
    )


def accumulate_roofs(device: Device, accumulate: str) -> Device:
    """`device` with the roofs a run accumulating 16-bit matmuls in `accumulate` is bounded by:
    under fp16 its fp16/bf16 peaks times acc16_rel's high end (the spec-sheet ratio, 2 on
    GeForce), so the plain roofline stays an upper bound of the efficiency prediction."""
    if accumulate != "fp16":
        return device
    ratio = efficiency_terms(device)["acc16_rel"].high
    if ratio == 1.0:
        return device
    peaks = {d: v * ratio if d in SIXTEEN_BIT else v for d, v in device.peaks.items()}
    return dataclasses.replace(device, peaks=peaks)


def device_prediction(
    ops: pd.DataFrame,
    device: Device,
    precision: Precision | None,
    launch: str = "graph",
    causal: bool | float = False,
    accumulate: str = "fp32",
) -> EffPrediction:
    """`predict_efficiency` with the spec-sheet roofline of the same ops kept as `.roofline`
    (what the datasheet alone says; the roofline plot draws it)."""
    eff = predict_efficiency(ops, device, precision, launch, causal, accumulate=accumulate)
    df = ops.copy()
    df["dtype"] = [compute_dtype(device, d, precision) for d in df["dtype"]]
    roof = predict_roofline(df, accumulate_roofs(device, accumulate))
    return dataclasses.replace(eff, roofline=roof)
