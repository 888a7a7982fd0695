"""The calibration record: what `memwall.measure.calibration` writes and
`memwall.predict.calibrated` reads, so that neither imports the other.

A record is JSON: per-dtype sections (`linear`, `gemv_bandwidth`: by Linear kernel dtype;
`sdpa`, `sdpa_decode_bandwidth`, `pointwise`, `kv_concat_bandwidth`: by activation dtype) and
per-model sections keyed by the functions below (`overhead`, `eager_pointwise`, `block`).
`CalibrationRecord` reads one by dtype, shape and size, and names each term it holds, so that
every predicted time can be explained (see `memwall.measure.terms` for how each is timed).

Pure: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from memwall.precision import act_dtype, kernel_dtype, runnable_precision
from memwall.spec import ModelSpec
from memwall.workload import Workload

CAL_FORMAT = "memwall-calibration/6"  # 6: decode block term over copies of its cuts
MiB = 1024 * 1024
KERNEL_DTYPES = ("fp32", "bf16", "int8")  # Linear kernels a calibration measures
PER_DTYPE = ("linear", "gemv_bandwidth")  # sections keyed by the Linear kernels' dtype
PER_ACT = ("sdpa", "sdpa_decode_bandwidth", "pointwise", "kv_concat_bandwidth")  # activations
FRAMEWORK = "framework"  # measured time no operation owns (the profiler's name for it)
BLOCK_LAYERS = (1, 3)  # the block term times the model cut to these layer counts
BLOCK_TOKENS = 128  # ... at this many tokens forward, or one decode step on this context


def step_kind(phase: str) -> str:
    """How a phase's steps run: `forward` (encode, prefill) or `decode` (decode, generate)."""
    return "forward" if phase in ("encode", "prefill") else "decode"


def overhead_key(spec: ModelSpec, precision: str, phase: str) -> str:
    """The record's key of the framework overhead of one architecture."""
    return f"{spec.family}/{runnable_precision(precision)}/{step_kind(phase)}"


def block_key(spec: ModelSpec, precision: str, phase: str) -> str:
    """The record's key of one model's block term (family, widths, precision)."""
    p = runnable_precision(precision)
    return f"{spec.family}/{spec.d_model}/{spec.d_ff}/{spec.n_heads}/{p}/{step_kind(phase)}"


def eager_key(spec: ModelSpec, precision: str) -> str:
    """The record's key of a family's eager pointwise code at a precision."""
    act = act_dtype(kernel_dtype(precision))
    return f"{spec.family}/{spec.raw_activation}/{spec.d_model}/{spec.d_ff}/{act}"


def block_workload(spec: ModelSpec, phase: str) -> Workload:
    """Where the block term is measured: BLOCK_TOKENS tokens forward (encode / prefill), or
    one decode step on a BLOCK_TOKENS-token cache (decode / generate); at most half the
    model's positions."""
    n = BLOCK_TOKENS
    if spec.max_positions:  # a short learned position table (test models) bounds it
        n = max(1, min(n, spec.max_positions // 2))
    if phase in ("encode", "prefill"):
        return Workload(phase, 1, n)
    return Workload("decode", 1, n)


def interp_log(points: Any, x: float) -> float:
    """Piecewise-linear interpolation in log-log of [[x, y], ...], clamped at both ends."""
    xs = np.log([p[0] for p in points])
    ys = np.log([max(p[1], 1e-30) for p in points])
    return float(np.exp(np.interp(math.log(max(x, 1e-30)), xs, ys)))


def shape_class(k: int, n: int) -> str:
    """A Linear layer's shape class: square, up (widening) or down (narrowing)."""
    r = n / k
    return "up" if r > 2 else "down" if r < 0.5 else "square"


def shape_desc(shape: str, d: int) -> str:
    return {"square": f"{d}->{d}", "up": f"{d}->{4 * d}", "down": f"{4 * d}->{d}"}[shape]


@dataclass(frozen=True)
class Term:
    """One calibration term: a name, a measured value (or curve) with its unit, and how it
    was measured. A curve's `points` are [x, value] pairs; `value` is then its last point."""

    name: str
    value: float
    unit: str
    how: str
    points: tuple[tuple[float, float], ...] = ()
    x_unit: str = ""

    def display(self) -> str:
        """Human-readable value: `1.2e+10` or `M=1: 6.7e+09, M=16: 1.1e+10, ...`."""
        if not self.points:
            return f"{self.value:.4g}"
        return ", ".join(f"{self.x_unit}{_short(x)}: {y:.3g}" for x, y in self.points)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "how": self.how,
        }
        if self.points:
            d["points"] = [list(p) for p in self.points]
            d["x"] = self.x_unit.rstrip("=") or "x"
        return d


def _short(x: float) -> str:
    if x >= 2**20 and x % 2**20 == 0:
        return f"{x / 2**20:.0f}Mi"
    if x >= 2**10 and x % 2**10 == 0:
        return f"{x / 2**10:.0f}Ki"
    return f"{x:.0f}"


@dataclass(frozen=True)
class CalibrationRecord:
    """Read-only view of a calibration record: lookups by dtype (fp32, bf16, int8 kernels)."""

    data: Mapping[str, Any]

    @property
    def width(self) -> int:
        return int(self.data.get("sizes", {}).get("width", 768))

    @property
    def gemv_bytes(self) -> float:
        return float(self.data.get("sizes", {}).get("gemv_bytes", 256 * MiB))

    def overhead(self, key: str) -> Mapping[str, Any]:
        return self.data["overhead"][key]

    def eager(self, key: str) -> Mapping[str, Any]:
        return self.data["eager_pointwise"][key]

    def linear_rate(self, dtype: str, m: float, k: int, n: int) -> float:
        return interp_log(self.data["linear"][dtype]["curves"][shape_class(k, n)], m)

    def gemv_bandwidth(self, dtype: str, layer_bytes: float | None = None) -> float:
        """Bytes/s of M = 1 through a Linear layer of `layer_bytes` weights (a curve by layer
        size, clamped at its ends; a single number in older records; None: the first point)."""
        v = self.data["gemv_bandwidth"][dtype]
        if isinstance(v, (int, float)):
            return float(v)
        return interp_log(v, layer_bytes if layer_bytes is not None else v[0][0])

    def sdpa_rate(self, dtype: str, length: float, causal: bool) -> float:
        return interp_log(
            self.data["sdpa"][act_dtype(dtype)]["causal" if causal else "full"], length
        )

    def sdpa_decode_bandwidth(self, dtype: str) -> float:
        return float(self.data["sdpa_decode_bandwidth"][act_dtype(dtype)])

    def kv_concat_bandwidth(self, dtype: str) -> float:
        return float(self.data["kv_concat_bandwidth"][act_dtype(dtype)])

    def pointwise_bandwidth(self, dtype: str, nbytes: float) -> float:
        return interp_log(self.data["pointwise"][act_dtype(dtype)], nbytes)

    def terms(self, dtype: str, overhead_key: str | None = None) -> list[Term]:
        """The named terms a prediction at kernel `dtype` uses, with their measured values."""
        act = act_dtype(dtype)
        family = overhead_key.split("/")[0] if overhead_key else ""
        return [
            *self._linear_terms(dtype),
            *self._memory_terms(dtype, act),
            *self._eager_terms(act, family),
            *self._overhead_terms(overhead_key),
        ]

    def _linear_terms(self, dtype: str) -> list[Term]:
        lin = self.data.get("linear", {}).get(dtype)
        if not lin:
            return []
        int8 = " int8 dynamic (activation quantisation included)" if dtype == "int8" else ""
        out = [
            Term(
                f"linear_rate({dtype},{shape})",
                float(lin["curves"][shape][-1][1]),
                "FLOP/s",
                f"nn.Linear {shape_desc(shape, self.width)}{int8} at M tokens, mean per call, "
                "dispatch removed",
                _points(lin["curves"][shape]),
                "M=",
            )
            for shape in ("square", "up", "down")
        ]
        out.append(Term(f"linear_dispatch({dtype})", lin["dispatch"], "s", "one 8x8 Linear call"))
        return out

    def _memory_terms(self, dtype: str, act: str) -> list[Term]:
        d = self.data
        out = []
        gemv = d.get("gemv_bandwidth", {}).get(dtype)
        if gemv is not None:
            how = (
                f"M=1 through Linear layers holding {self.gemv_bytes / MiB:.0f} MiB of weights "
                "(streamed from DRAM), by weight bytes of one layer"
            )
            pts = _points(gemv) if isinstance(gemv, list) else ()
            value = float(gemv[-1][1]) if pts else float(gemv)
            out.append(Term(f"gemv_bandwidth({dtype})", value, "bytes/s", how, pts, "layer bytes="))
        for mode, pts in d.get("sdpa", {}).get(act, {}).items():
            how = "scaled_dot_product_attention at length L, FLOPs counted as the full L x L square"
            how += " (the kernel skips masked blocks)" if mode == "causal" else ""
            out.append(
                Term(
                    f"sdpa_rate({act},{mode})", float(pts[-1][1]), "FLOP/s", how, _points(pts), "L="
                )
            )
        if act in d.get("sdpa_decode_bandwidth", {}):
            how = "one query over a KV cache: slope between two cache sizes"
            out.append(
                Term(
                    f"sdpa_decode_bandwidth({act})", self.sdpa_decode_bandwidth(act), "bytes/s", how
                )
            )
        if act in d.get("kv_concat_bandwidth", {}):
            how = (
                "appending one token to a KV cache with torch.cat (transformers' DynamicCache): "
                "bytes read + written, slope between two cache sizes"
            )
            out.append(
                Term(f"kv_concat_bandwidth({act})", self.kv_concat_bandwidth(act), "bytes/s", how)
            )
        pw = d.get("pointwise", {}).get(act)
        if pw:
            how = (
                "out-of-place add (fresh output buffer) by bytes moved, dispatch removed; eager "
                "kernels of fused chains priced at this rate"
            )
            out.append(
                Term(
                    f"pointwise_bandwidth({act})",
                    float(pw[-1][1]),
                    "bytes/s",
                    how,
                    _points(pw),
                    "bytes=",
                )
            )
        return out

    def _eager_terms(self, act: str, family: str) -> list[Term]:
        out = []
        for key, ops in self.data.get("eager_pointwise", {}).items():
            if not key.endswith("/" + act) or (family and not key.startswith(family + "/")):
                continue
            fam = key.split("/")[0]
            for op, pts in ops.items():
                how = f"the family's eager {op} code (transformers) per element, by elements"
                out.append(
                    Term(
                        f"eager_pointwise({fam},{op},{act})",
                        float(pts[-1][1]),
                        "s/element",
                        how,
                        _points(pts),
                        "n=",
                    )
                )
        return out

    def _overhead_terms(self, key: str | None) -> list[Term]:
        if not key or key not in self.data.get("overhead", {}):
            return []
        ov = self.data["overhead"][key]
        return [
            Term(
                f"overhead({key}).fixed",
                ov["fixed"],
                "s",
                "framework time per step beyond the layers (same architecture at width 64)",
            ),
            Term(
                f"overhead({key}).per_layer",
                ov["per_layer"],
                "s",
                "framework time per layer per step (width 64: 4 layers minus 1, over 3)",
            ),
        ]


def _points(pts: Any) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in pts)
