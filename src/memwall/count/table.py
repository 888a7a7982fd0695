"""The operation table: the registry's formulas evaluated for one workload or a grid of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from memwall.count.formulas import MOE_ROUTING, Bytes, Dims, OpDef
from memwall.count.ops import fused_default, mla_form, op_defs
from memwall.errors import MemwallError
from memwall.spec import (
    PAPER_PRECISION,
    ModelSpec,
    Precision,
    Workload,
    check_workload_fits,
    parse_precision,
)

COLUMNS = [
    "name",
    "kind",
    "layer",
    "count",
    "flops",
    "matmul_flops",
    "bytes_weight",
    "bytes_act",
    "bytes_kv",
    "bytes_read",
    "bytes_written",
    "bytes",
    "intensity",
    "dtype",
    "steps",
]
SHAPE_COLUMNS = ["m", "k", "n"]  # a Linear layer's call: tokens, in and out features (else NaN)
_PARTS = ("flops", "mm", "w", "a", "kv", "out")

# ---------------------------------------------------------------- workload -> dims


def band_sum(n: Any, width: float) -> Any:
    """sum_{k=1..n} min(k, width) (arrays broadcast): the keys n successive queries attend when
    each sees at most `width` (a sliding window; the band a causal kernel computes)."""
    n, w = np.asarray(n, dtype=np.float64), float(width)
    return np.where(n <= w, n * (n + 1) / 2, w * (w + 1) / 2 + (n - w) * w)


def _mean_keys(prompt: Any, steps: Any, window: int | None) -> Any:
    """Mean keys attended over decode steps at contexts prompt .. prompt+steps-1 (exact)."""
    prompt = np.asarray(prompt, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.float64)
    if window is None:
        return prompt + (steps + 1) / 2
    cum = band_sum(prompt + steps, window) - band_sum(prompt, window)
    return cum / np.maximum(steps, 1)


_SPEC_WINDOW: Any = object()


def dims_for(
    s: ModelSpec,
    phase: str,
    batch: Any,
    seq_len: Any,
    gen_len: Any,
    convention: str = "full",
    window: Any = _SPEC_WINDOW,
) -> Dims:
    """Per-step sizes of a workload (arrays broadcast for sweeps). `window`: the attention
    window of the layers these dims stand for (default: the spec's, when every layer has it)."""
    if window is _SPEC_WINDOW:
        window = s.sliding_window if s.n_window_layers == s.n_layers else None
    B = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seq_len, dtype=np.float64)
    G = np.asarray(gen_len, dtype=np.float64)
    writes_cache = convention == "full" and s.is_decoder and phase != "encode"
    if phase in ("encode", "prefill"):
        return Dims(B, L, L, np.ones_like(L), False, writes_cache, B * L, L)
    if phase == "decode":
        keys = L + 1 if window is None else np.minimum(L + 1, window)
        return Dims(B, np.ones_like(L), keys, np.ones_like(L), True, writes_cache, B, L)
    if phase == "generate":
        keys = _mean_keys(L, G, window)
        return Dims(B, np.ones_like(L), keys, G, True, writes_cache, B, L)
    raise MemwallError(f"unknown phase {phase!r}")


def layer_groups(
    s: ModelSpec, phase: str, batch: Any, seq_len: Any, gen_len: Any, convention: str = "full"
) -> list[tuple[int, Dims]]:
    """(layers, dims) for each group of layers that attend alike: all layers, or (Qwen2 with
    `max_window_layers`) the full-attention layers and the sliding-window layers."""
    w = s.n_window_layers
    if w in (0, s.n_layers):
        return [(s.n_layers, dims_for(s, phase, batch, seq_len, gen_len, convention))]
    return [
        (s.n_layers - w, dims_for(s, phase, batch, seq_len, gen_len, convention, None)),
        (w, dims_for(s, phase, batch, seq_len, gen_len, convention, s.sliding_window)),
    ]


def bytes_for(prec: Precision | Sequence[Precision]) -> Bytes:
    """Bytes per element of each kind of tensor (arrays over a list of precisions)."""
    if isinstance(prec, Precision):
        precs, pick = [prec], (lambda x: x[0])
    else:
        precs, pick = list(prec), np.array
    return Bytes(
        *(
            pick([getattr(p, k) for p in precs])
            for k in ("weight_bytes", "act_bytes", "kv_bytes", "small_weight_bytes")
        ),
        wh=pick([p.head_weight_bytes for p in precs]),
    )


def _resolve_precision(convention: str, prec: Precision | str | None) -> Precision:
    if convention == "paper":
        return PAPER_PRECISION
    if prec is None:
        return parse_precision("fp32")
    # strings are still taken from callers not yet typed; the CLI parses once and passes Precision
    return parse_precision(prec) if isinstance(prec, str) else prec


def _evaluate(
    spec: ModelSpec, defs: list[OpDef], groups: list[tuple[int, Dims]], p: Bytes
) -> list[dict[str, Any]]:
    """Per op: each cost part summed over the layers it runs in (one step)."""
    out = []
    for op in defs:
        runs = groups if op.per_layer else [(1, groups[0][1])]
        acc: dict[str, Any] = dict.fromkeys(_PARTS, 0.0)
        for n, d in runs:
            c = op.fn(spec, d, p)
            acc = {k: acc[k] + n * getattr(c, k) for k in _PARTS}
        out.append(acc)
    return out


# ---------------------------------------------------------------- public API


def op_table(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision | None = None,
    convention: str = "full",
    fused_attention: bool | None = None,
    mla: str | None = None,
) -> pd.DataFrame:
    """One row per operation; values are totals over the layers a row stands for and the steps.
    `fused_attention`, `mla`: None takes `count.ops`'s defaults; `df.attrs` says what was
    counted (`fused_attention`, `mla_form`, and `moe_routing` for mixture-of-experts models)."""
    check_workload_fits(spec, workload)
    prec = _resolve_precision(convention, precision)
    defs = op_defs(spec, convention, fused_attention, workload.phase, mla)
    wl = workload
    groups = layer_groups(spec, wl.phase, wl.batch, wl.seq_len, wl.gen_len, convention)
    steps = float(groups[0][1].steps)
    rows = []
    for op, c in zip(defs, _evaluate(spec, defs, groups, bytes_for(prec)), strict=True):
        w, a, kv, out = (float(c[k]) * steps for k in ("w", "a", "kv", "out"))
        read = w + a + kv
        flops = float(c["flops"]) * steps
        rows.append(
            {
                "name": op.name,
                "kind": op.kind,
                "layer": "all" if op.per_layer or op.layers else "-",
                "count": _row_count(spec, op),
                "flops": flops,
                "matmul_flops": float(c["mm"]) * steps,
                "bytes_weight": w,
                "bytes_act": a,
                "bytes_kv": kv,
                "bytes_read": read,
                "bytes_written": out,
                "bytes": read + out,
                "intensity": flops / (read + out) if read + out else 0.0,
                "dtype": _row_dtype(prec, op),
                "steps": int(steps),
                **_shape(spec, op, groups[0][1]),
            }
        )
    df = pd.DataFrame(rows, columns=[*COLUMNS, *SHAPE_COLUMNS])
    df.attrs.update(
        model=spec.name,
        convention=convention,
        precision=prec.label,
        precision_note=prec.note,
        fused_attention=fused_default(spec, convention, fused_attention),
        mla_form=mla_form(spec, workload.phase, mla),
        moe_routing=MOE_ROUTING if spec.is_moe else None,
    )
    return df


def _shape(spec: ModelSpec, op: OpDef, d: Dims) -> dict[str, float]:
    """(m, k, n) of one call of a Linear row at one step (NaN for other rows)."""
    mkn = op.shape(spec, d) if op.shape is not None else (np.nan,) * 3
    return {c: float(v) for c, v in zip(SHAPE_COLUMNS, mkn, strict=True)}


def _row_count(spec: ModelSpec, op: OpDef) -> int:
    """Layers a row stands for (a T5 row names its own stack's)."""
    if op.layers is not None:
        return op.layers(spec)
    return spec.n_layers if op.per_layer else 1


def _row_dtype(prec: Precision, op: OpDef) -> str:
    """The dtype a row computes in; `gemm_dtype` (mixed FP8) moves the layers' Linear GEMMs
    only: not the LM head, embeddings, router or attention."""
    if op.dtype_role != "compute":
        return _act_dtype(prec)
    if prec.gemm_dtype and op.shape is not None and op.role != "head" and op.name != "router":
        return prec.gemm_dtype
    return prec.compute_dtype


def _act_dtype(prec: Precision) -> str:
    if prec.act_bits >= 32:
        return "fp32"
    if prec.act_bits == 16:
        return prec.float_kind
    return "int8"


def totals(df: pd.DataFrame) -> dict[str, float]:
    """Sum of an op table; intensity = total FLOPs / total bytes."""
    keys = "flops matmul_flops bytes bytes_weight bytes_act bytes_kv bytes_read bytes_written"
    t = {k: float(df[k].sum()) for k in keys.split()}
    t["intensity"] = t["flops"] / t["bytes"] if t["bytes"] else 0.0
    return t


def sweep(
    spec: ModelSpec,
    phase: str,
    batch: Sequence[int] | int = 1,
    seq_len: Sequence[int] | int = 128,
    gen_len: Sequence[int] | int = 0,
    precisions: Sequence[Precision] | Precision | None = None,
    convention: str = "full",
    fused_attention: bool | None = None,
    mla: str | None = None,
) -> pd.DataFrame:
    """Totals over the grid batch x seq_len x gen_len x precision, evaluated at once with numpy
    (the same rows as `op_table`, defaults included)."""
    Workload(phase, 1, max(1, int(np.min(seq_len))), max(1, int(np.min(gen_len))))  # validate
    check_workload_fits(spec, Workload(phase, 1, 1, 1))
    if precisions is None or isinstance(precisions, Precision | str):
        precisions = [precisions]  # type: ignore[list-item]
    precs = [_resolve_precision(convention, p) for p in precisions]  # type: ignore[union-attr]
    b, sl, g, pi = np.meshgrid(
        np.atleast_1d(batch),
        np.atleast_1d(seq_len),
        np.atleast_1d(gen_len),
        np.arange(len(precs)),
        indexing="ij",
    )
    b, sl, g, pi = (x.ravel() for x in (b, sl, g, pi))
    for what, arr, lo in (("batch", b, 1), ("seq-len", sl, 0), ("gen-len", g, 0)):
        if np.any(arr < lo):
            raise MemwallError(f"{what} values must be >= {lo}")
    groups = layer_groups(spec, phase, b, sl, g, convention)
    bw = bytes_for(precs)
    p = Bytes(*(getattr(bw, k)[pi] for k in ("w", "a", "kv", "wn", "wh")))
    defs = op_defs(spec, convention, fused_attention, phase, mla)
    flops, nbytes = _grid_totals(spec, defs, groups, p)
    return pd.DataFrame(
        {
            "batch": b,
            "seq_len": sl,
            "gen_len": g,
            "precision": [precs[i].label for i in pi],
            "flops": flops,
            "bytes": nbytes,
            "intensity": flops / nbytes,
        }
    )


def _grid_totals(
    spec: ModelSpec, defs: list[OpDef], groups: list[tuple[int, Dims]], p: Bytes
) -> tuple[Any, Any]:
    """(FLOPs, bytes) summed over the ops and the steps."""
    flops: Any = 0.0
    nbytes: Any = 0.0
    for c in _evaluate(spec, defs, groups, p):
        flops = flops + c["flops"]
        nbytes = nbytes + c["w"] + c["a"] + c["kv"] + c["out"]
    steps = groups[0][1].steps
    return flops * steps, nbytes * steps


def point_totals(
    spec: ModelSpec,
    phase: str,
    batch: int,
    seq_len: int,
    gen_len: int,
    precision: Precision,
    convention: str = "full",
    fused_attention: bool | None = None,
    mla: str | None = None,
) -> tuple[float, float]:
    """(flops, bytes) of one workload point with plain Python numbers: the per-point baseline."""
    groups = layer_groups(spec, phase, batch, seq_len, gen_len, convention)
    defs = op_defs(spec, convention, fused_attention, phase, mla)
    flops, nbytes = _grid_totals(spec, defs, groups, bytes_for(precision))
    return float(flops), float(nbytes)
