"""Calibrated prediction: the roofline, with roofs measured the way a real model runs.

The plain roofline (`memwall.roofline.predict` with the roofs `memwall measure` found) assumes
every matmul reaches the GEMM peak, every byte moves at STREAM bandwidth and every op costs one
eager dispatch. Real eager PyTorch models miss all three in known ways, each measured here as a
named term (seconds, FLOP/s, bytes/s) so that every predicted time can be explained:

- `linear_rate(dtype, shape)` at M: achieved FLOP/s of an `nn.Linear` (or int8 dynamic-quantised
  Linear, activation quantisation included) at M tokens, for a square, a widening (d -> 4d) and a
  narrowing (4d -> d) layer of width 768; interpolated in log M. Small M (GEMV-like) runs far
  below the GEMM peak; this is the "efficiency as a function of shape".
- `linear_dispatch(dtype)`: the fixed cost of one Linear call (subtracted from the curve: it
  belongs to the overhead term).
- `gemv_bandwidth(dtype)`: bytes/s of M = 1 Linear layers over a weight set 8x the last-level
  cache (the decode case: weights stream from DRAM).
- `sdpa_rate(dtype, full|causal)` at L: counted FLOP/s (full L x L square) of
  `scaled_dot_product_attention` at sequence length L; causal kernels skip masked blocks.
- `sdpa_decode_bandwidth(dtype)`: bytes/s of one query over a KV cache (slope of a two-size fit).
- `pointwise_bandwidth(dtype)` by bytes: an out-of-place add, allocation included, by working set
  (captures the cache levels, page faults of fresh buffers, and the eager op's own passes).
- `overhead(family/precision/kind)`: framework time (dispatch, Python, masks, cache
  bookkeeping) per step and per layer, per memwall op, measured on the same architecture
  shrunk to width 64 (1 and 4 layers): at that width the kernels take no time.
- `eager_pointwise(family, op, dtype)`: seconds per element of the family's own eager code for the
  activation (GPT-2's tanh-GELU is 8 kernels; BERT's erf-GELU is compute-bound) and for the
  residual add + norm, at a cache-sized and a DRAM-sized tensor: the closed form counts each
  such chain as one fused kernel moving a few bytes per element, eager PyTorch does not.
- `kv_concat_bandwidth(dtype)`: transformers' DynamicCache appends with torch.cat, copying the
  whole cache on every step (the closed form counts only the new token's write); priced at the
  measured bytes/s of such appends over caches larger than the last-level cache.

Calibrations are cached per machine, thread count and library versions in the user data
directory (`MEMWALL_DATA_DIR` overrides it); `recalibrate=True` measures again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.spec import ModelSpec, Precision, Workload, parse_precision

CAL_FORMAT = "memwall-calibration/1"
MiB = 1024 * 1024
LINEAR_OPS = {
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "fc1",
    "fc2",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
    "pooler",
    "router",
    "expert_gate",
    "expert_up",
    "expert_down",
}
# Eager kernels' bytes over the closed form's fused-chain bytes, for the chains not timed by
# `eager_pointwise` (counted from transformers' eager code: BERT sums three embedding rows with
# two adds then a LayerNorm, 8 tensor passes against the fused 4; rotary embedding runs
# mul, slice, neg, cat, mul, add per tensor).
EAGER_PASSES: dict[tuple[str, str], float] = {
    ("gpt2", "embed_norm"): 5 / 4,
    ("bert", "embed_norm"): 2.0,
    ("opt", "embed_norm"): 5 / 4,
    **{(f, "embed_norm"): 3.5 for f in ("llama", "mistral", "qwen2", "mixtral")},
    **{(f, "rope"): 4.0 for f in ("llama", "mistral", "qwen2", "mixtral")},
}
GENERATE_SAMPLES = 24  # decode contexts sampled to sum a generation's steps
MAX_AGE_DAYS = 7.0  # a cached calibration older than this is measured again
SPOT_TOLERANCE = 1.5  # a cached calibration must agree with a spot check within this factor


@dataclass(frozen=True)
class CalConfig:
    """What calibration measures; `QUICK` (tests) shrinks every size."""

    width: int = 768
    ms: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096)
    gemv_bytes: int = 256 * MiB
    sdpa_lengths: tuple[int, ...] = (128, 512, 2048)
    sdpa_heads: int = 12
    head_dim: int = 64
    decode_contexts: tuple[int, int] = (512, 4096)
    decode_set_bytes: int = 128 * MiB
    pointwise_elems: tuple[int, ...] = tuple(4**k for k in range(7, 13))  # 16 Ki .. 16 Mi
    eager_elems: tuple[int, ...] = (1 << 17, 1 << 22)  # in cache, in DRAM
    reps: int = 5
    min_time: float = 0.1
    tiny_reps: int = 30
    name: str = "default"


QUICK = CalConfig(
    width=128,
    ms=(1, 16, 256),
    gemv_bytes=8 * MiB,
    sdpa_lengths=(32, 128),
    sdpa_heads=2,
    head_dim=32,
    decode_contexts=(64, 512),
    decode_set_bytes=4 * MiB,
    pointwise_elems=(4**7, 4**9),
    eager_elems=(1 << 12, 1 << 16),
    reps=3,
    min_time=0.0,
    tiny_reps=5,
    name="quick",
)


ENV_CONFIG = "MEMWALL_CALIBRATION"  # "quick": the small test/smoke configuration


def default_config() -> CalConfig:
    """The full configuration, or QUICK when $MEMWALL_CALIBRATION is "quick" (tests, smoke)."""
    return QUICK if os.environ.get(ENV_CONFIG, "").strip().lower() == "quick" else CalConfig()


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


# ---------------------------------------------------------------- timing helpers


def mean_time(
    fn: Callable[[], Any], reps: int = 5, min_time: float = 0.05, rounds: int = 3
) -> float:
    """Seconds per call: the lowest mean over `rounds` loops (after a warm-up call), each of
    at least `reps` calls and `min_time` / `rounds` seconds.

    A loop's *mean* (not a single fastest call) because a model run is thousands of such calls
    in a row; the lowest loop because on a shared machine a loop may be slowed by other work
    that a quiet run does not see.
    """
    fn()
    best = math.inf
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        while n < reps or (time.perf_counter() - start < min_time / rounds and n < 100_000):
            fn()
            n += 1
        best = min(best, (time.perf_counter() - start) / n)
    return best


def _tdtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}[dtype]


def _act_dtype(dtype: str) -> str:
    """int8 dynamic quantisation keeps activations (attention, pointwise) in fp32."""
    return "fp32" if dtype == "int8" else dtype


def _linear(k: int, n: int, dtype: str):
    import torch

    lin = torch.nn.Linear(k, n)
    if dtype == "int8":
        from memwall.profile.models import quantize_int8

        return quantize_int8(torch.nn.Sequential(lin))[0]
    return lin.to(_tdtype(dtype))


# ---------------------------------------------------------------- measurements


def measure_linear(dtype: str, cfg: CalConfig) -> tuple[dict[str, list[list[float]]], float]:
    """({shape: [[M, FLOP/s], ...]}, dispatch seconds) for one dtype."""
    import torch

    d = cfg.width
    shapes = {"square": (d, d), "up": (d, 4 * d), "down": (4 * d, d)}
    with torch.inference_mode():
        tiny = _linear(8, 8, dtype)
        x8 = torch.randn(1, 8, dtype=_tdtype(dtype))
        dispatch = mean_time(lambda: tiny(x8), max(cfg.reps, 20), cfg.min_time)
        out: dict[str, list[list[float]]] = {}
        for shape, (k, n) in shapes.items():
            lin = _linear(k, n, dtype)
            pts = []
            for m in cfg.ms:
                x = torch.randn(m, k, dtype=_tdtype(dtype))
                t = mean_time(lambda lin=lin, x=x: lin(x), cfg.reps, cfg.min_time)
                t = max(t - dispatch, 0.1 * t)
                pts.append([float(m), 2.0 * m * k * n / t])
            out[shape] = pts
    return out, dispatch


def measure_gemv(dtype: str, cfg: CalConfig, dispatch: float) -> float:
    """Bytes/s of M = 1 through Linear layers whose weights total `gemv_bytes` (from DRAM)."""
    import torch

    d = cfg.width
    per = d * 4 * d * {"fp32": 4, "bf16": 2, "int8": 1}[dtype]
    n = max(2, math.ceil(cfg.gemv_bytes / per))
    with torch.inference_mode():
        layers = [_linear(d, 4 * d, dtype) for _ in range(n)]
        x = torch.randn(1, d, dtype=_tdtype(dtype))

        def run() -> None:
            for lin in layers:
                lin(x)

        t = mean_time(run, cfg.reps, cfg.min_time)
    t = max(t - n * dispatch, 0.1 * t)
    return n * per / t


def measure_sdpa(dtype: str, cfg: CalConfig) -> dict[str, list[list[float]]]:
    """{full|causal: [[L, counted FLOP/s], ...]}: 4 H L^2 hd FLOPs per call, causal included."""
    import torch
    import torch.nn.functional as F

    h, hd = cfg.sdpa_heads, cfg.head_dim
    out: dict[str, list[list[float]]] = {"full": [], "causal": []}
    with torch.inference_mode():
        for L in cfg.sdpa_lengths:
            q, k, v = (torch.randn(1, h, L, hd, dtype=_tdtype(dtype)) for _ in range(3))
            flops = 4.0 * h * L * L * hd
            for mode in ("full", "causal"):
                c = mode == "causal"
                t = mean_time(
                    lambda q=q, k=k, v=v, c=c: F.scaled_dot_product_attention(q, k, v, is_causal=c),
                    cfg.reps,
                    cfg.min_time,
                )
                out[mode].append([float(L), flops / t])
    return out


def measure_sdpa_decode(dtype: str, cfg: CalConfig) -> float:
    """Bytes/s of one query attending a KV cache: slope between two cache sizes, each cycled
    over enough copies to exceed the caches."""
    import torch
    import torch.nn.functional as F

    h, hd = cfg.sdpa_heads, cfg.head_dim
    esize = 2 if dtype == "bf16" else 4
    res = []
    with torch.inference_mode():
        for ctx in cfg.decode_contexts:
            per = 2 * h * ctx * hd * esize
            n = max(2, math.ceil(cfg.decode_set_bytes / per))
            q = torch.randn(1, h, 1, hd, dtype=_tdtype(dtype))
            kvs = [(torch.randn(1, h, ctx, hd, dtype=_tdtype(dtype)),) * 2 for _ in range(n)]
            kvs = [(torch.randn_like(k), torch.randn_like(k)) for k, _ in kvs]

            def run(kvs=kvs, q=q) -> None:
                for k, v in kvs:
                    F.scaled_dot_product_attention(q, k, v)

            res.append((per, mean_time(run, cfg.reps, cfg.min_time) / n))
    (b1, t1), (b2, t2) = res
    slope = (t2 - t1) / (b2 - b1) if b2 > b1 else 0.0
    if slope <= 0:  # noise swamped the difference: use the larger size alone
        return b2 / t2
    return 1.0 / slope


def measure_kv_concat(dtype: str, cfg: CalConfig) -> float:
    """Bytes/s of appending one token to a KV tensor with torch.cat (what DynamicCache does):
    read the old cache, write old + new; slope between two cache sizes, each cycled over
    enough copies to exceed the caches."""
    import torch

    h, hd = cfg.sdpa_heads, cfg.head_dim
    esize = 2 if dtype == "bf16" else 4
    res = []
    with torch.inference_mode():
        new = torch.randn(1, h, 1, hd, dtype=_tdtype(dtype))
        for ctx in cfg.decode_contexts:
            per = h * ctx * hd * esize
            n = max(2, math.ceil(cfg.decode_set_bytes / per))
            olds = [torch.randn(1, h, ctx, hd, dtype=_tdtype(dtype)) for _ in range(n)]

            def run(olds=olds) -> None:
                for k in olds:
                    torch.cat([k, new], dim=-2)

            res.append((2 * per, mean_time(run, cfg.reps, cfg.min_time) / n))
    (b1, t1), (b2, t2) = res
    slope = (t2 - t1) / (b2 - b1) if b2 > b1 else 0.0
    return 1.0 / slope if slope > 0 else b2 / t2


def measure_pointwise(dtype: str, cfg: CalConfig) -> list[list[float]]:
    """[[bytes moved, bytes/s], ...] of `a + b` (fresh output) by size, dispatch removed."""
    import torch

    esize = 2 if dtype == "bf16" else 4
    pts = []
    with torch.inference_mode():
        one = torch.ones(1, dtype=_tdtype(dtype))
        dispatch = mean_time(lambda: one + one, max(cfg.reps, 20), cfg.min_time)
        for n in cfg.pointwise_elems:
            a = torch.randn(n, dtype=_tdtype(dtype))
            b = torch.randn(n, dtype=_tdtype(dtype))
            t = mean_time(lambda a=a, b=b: a + b, cfg.reps, cfg.min_time)
            t = max(t - dispatch, 0.1 * t)
            pts.append([3.0 * n * esize, 3.0 * n * esize / t])
    return pts


EAGER_OPS = ("act", "act_mul", "add_norm")
RMS_FAMILIES = ("llama", "mistral", "qwen2", "mixtral")


def eager_kernels(spec: ModelSpec, dtype: str) -> dict[str, tuple[int, Callable]]:
    """The eager code transformers runs for each pointwise chain of `spec`'s family, as
    op -> (width, f(x, y) on [rows, width] tensors): the activation (act, or act * up for gated
    MLPs) over the FFN width, and the residual add + norm over the model width."""
    import torch
    from transformers.activations import ACT2FN

    act_fn = ACT2FN[spec.raw_activation or "gelu"]
    d = spec.d_model
    if spec.norm == "rmsnorm":
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        norm = LlamaRMSNorm(d, eps=spec.norm_eps)
    else:
        norm = torch.nn.LayerNorm(d, eps=spec.norm_eps)
    norm = norm.to(_tdtype(dtype))
    out: dict[str, tuple[int, Callable]] = {"add_norm": (d, lambda x, y: norm(x + y))}
    if spec.gated_mlp:
        out["act_mul"] = (spec.d_ff, lambda x, y: act_fn(x) * y)
    else:
        out["act"] = (spec.d_ff, lambda x, y: act_fn(x))
    return out


def measure_eager_pointwise(spec: ModelSpec, dtype: str, cfg: CalConfig) -> dict[str, Any]:
    """{op: [[elements, seconds per element], ...]} of the family's eager pointwise code at two
    sizes (in cache, in DRAM), dispatch included (the overhead term holds it at tiny sizes:
    it is removed as the time at 1 row)."""
    import torch

    out: dict[str, Any] = {}
    with torch.inference_mode():
        for op, (width, fn) in eager_kernels(spec, dtype).items():
            one = [torch.randn(1, width, dtype=_tdtype(dtype)) for _ in range(2)]
            t0 = mean_time(lambda one=one, fn=fn: fn(*one), cfg.reps, cfg.min_time)
            pts = []
            for elems in cfg.eager_elems:
                rows = max(1, elems // width)
                x, y = (torch.randn(rows, width, dtype=_tdtype(dtype)) for _ in range(2))
                t = mean_time(lambda x=x, y=y, fn=fn: fn(x, y), cfg.reps, cfg.min_time)
                n = rows * width
                pts.append([float(n), max(t - t0, 0.1 * t) / n])
            out[op] = pts
    return out


def measure_overhead(
    spec: ModelSpec, config: dict, precision: str, kind: str, cfg: CalConfig
) -> dict[str, Any]:
    """Framework time of the architecture at width 64: fixed and per layer, per memwall op.

    kind `forward` (encode / prefill: 16 tokens) or `decode` (one generated token per step on
    a 16-token cache, argmax included). Per-op shares come from a profiled run, scaled so they
    add up to the unprofiled median.
    """
    from memwall.profile.models import build, tiny_config
    from memwall.profile.run import Runner, profile_ops, time_runs
    from memwall.spec import spec_from_config

    per_layers = {}
    for n_layers in (1, 4):
        tcfg = tiny_config(spec, config, n_layers)
        tspec = spec_from_config(tcfg, name=f"{spec.name}-tiny{n_layers}")
        if kind == "forward":
            wl = Workload("encode" if not spec.is_decoder else "prefill", 1, 16)
            steps = 1
        else:
            wl = Workload("generate", 1, 16, 4)
            steps = 4
        lm = build(tspec, tcfg, precision, None, wl)
        runner = Runner(lm, wl)
        tm = time_runs(runner, warmup=3, repeats=cfg.tiny_reps)
        prof = profile_ops(runner)
        typical = tm.median
        scale = typical / prof.total if prof.total > 0 else 1.0
        per_layers[n_layers] = (
            typical / steps,
            {k: v * scale / steps for k, v in prof.times.items()},
        )
    (t1, p1), (t4, p4) = per_layers[1], per_layers[4]
    names = sorted(set(p1) | set(p4))
    per_layer = {n: max(0.0, (p4.get(n, 0.0) - p1.get(n, 0.0)) / 3) for n in names}
    fixed = {n: max(0.0, p1.get(n, 0.0) - per_layer[n]) for n in names}
    return {
        "fixed": max(0.0, t1 - (t4 - t1) / 3),
        "per_layer": max(0.0, (t4 - t1) / 3),
        "ops_fixed": fixed,
        "ops_per_layer": per_layer,
    }


# ---------------------------------------------------------------- the calibration object


def _interp_log(points: list[list[float]], x: float) -> float:
    """Piecewise-linear interpolation in log-log of [[x, y], ...], clamped at both ends."""
    xs = np.log([p[0] for p in points])
    ys = np.log([max(p[1], 1e-30) for p in points])
    return float(np.exp(np.interp(math.log(max(x, 1e-30)), xs, ys)))


def _shape_class(k: int, n: int) -> str:
    r = n / k
    return "up" if r > 2 else "down" if r < 0.5 else "square"


def _key() -> dict[str, Any]:
    import torch
    import transformers

    from memwall import __version__
    from memwall.measure import cpu_model

    return {
        "cpu_model": cpu_model()[0],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "memwall": __version__,
    }


def calibration_path(cfg: CalConfig) -> Path:
    from memwall.hardware import data_dir

    k = _key()
    slug = hashlib.sha1(json.dumps([k, cfg.name], sort_keys=True).encode()).hexdigest()[:12]
    return data_dir() / "calibration" / f"{slug}.json"


def _write_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Calibration:
    """Measured calibration terms (JSON-able `data`), measured lazily and cached on disk."""

    data: dict[str, Any]
    cfg: CalConfig = field(default_factory=CalConfig)
    path: Path | None = None
    on_measure: Callable[[str], None] | None = None  # progress: called before each measurement
    _checked: set[str] = field(default_factory=set)  # dtypes whose cached terms were checked

    @classmethod
    def load(
        cls,
        cfg: CalConfig | None = None,
        recalibrate: bool = False,
        on_measure: Callable[[str], None] | None = None,
        persist: bool = True,
    ) -> Calibration:
        cfg = cfg or default_config()
        path = calibration_path(cfg) if persist else None
        data: dict[str, Any] | None = None
        if path is not None and path.is_file() and not recalibrate:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            if not isinstance(data, dict) or data.get("format") != CAL_FORMAT:
                data = None
            elif _age_days(data.get("date")) > MAX_AGE_DAYS:
                data = None  # machines and their loads change: measure again
        if data is None:
            data = {
                "format": CAL_FORMAT,
                "key": _key(),
                "config": cfg.name,
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "load_average_1min": _load(),
            }
        return cls(data, cfg, path, on_measure)

    def _save(self) -> None:
        if self.path is not None:
            _write_atomic(self.path, self.data)

    def _section(self, name: str, dtype: str, fn: Callable[[], Any]) -> Any:
        sec = self.data.setdefault(name, {})
        if dtype not in sec:
            if self.on_measure:
                self.on_measure(f"calibrating {name} {dtype}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sec[dtype] = fn()
            self._save()
        return sec[dtype]

    def ensure(self, dtype: str) -> None:
        """Measure every per-dtype term of `dtype` (fp32, bf16, int8) not measured yet."""
        if dtype not in ("fp32", "bf16", "int8"):
            raise MemwallError(f"no calibration for dtype {dtype!r}; accepted: fp32, bf16, int8")
        cfg = self.cfg
        if dtype in self.data.get("linear", {}) and dtype not in self._checked:
            self._spot_check(dtype)
        lin = self._section("linear", dtype, lambda: _pack(measure_linear(dtype, cfg)))
        disp = lin["dispatch"]
        self._section("gemv_bandwidth", dtype, lambda: measure_gemv(dtype, cfg, disp))
        act = _act_dtype(dtype)
        self._section("sdpa", act, lambda: measure_sdpa(act, cfg))
        self._section("sdpa_decode_bandwidth", act, lambda: measure_sdpa_decode(act, cfg))
        self._section("pointwise", act, lambda: measure_pointwise(act, cfg))
        self._section("kv_concat_bandwidth", act, lambda: measure_kv_concat(act, cfg))

    def _spot_check(self, dtype: str) -> None:
        """Reuse a cached calibration only if this machine still runs like it: one Linear at
        M = 16 and one small-op dispatch, timed now, must agree within SPOT_TOLERANCE (a
        calibration taken while other work stalled the machine is otherwise kept for days)."""
        import torch

        self._checked.add(dtype)
        lin = self.data["linear"][dtype]
        d = self.cfg.width
        m = 16
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer = _linear(d, 4 * d, dtype)
            x = torch.randn(m, d, dtype=_tdtype(dtype))
            t = mean_time(lambda: layer(x), self.cfg.reps, self.cfg.min_time)
            tiny = _linear(8, 8, dtype)
            x8 = torch.randn(1, 8, dtype=_tdtype(dtype))
            disp = mean_time(lambda: tiny(x8), max(self.cfg.reps, 20), self.cfg.min_time)
        rate = 2.0 * m * d * 4 * d / max(t - disp, 0.1 * t)
        cached_rate = _interp_log(lin["curves"]["up"], m)
        ok = all(
            1 / SPOT_TOLERANCE <= now / then <= SPOT_TOLERANCE
            for now, then in ((rate, cached_rate), (disp, lin["dispatch"]))
            if then > 0
        )
        if not ok:
            if self.on_measure:
                self.on_measure("cached calibration disagrees with this machine now: remeasuring")
            for key in (
                "linear",
                "gemv_bandwidth",
                "sdpa",
                "sdpa_decode_bandwidth",
                "pointwise",
                "kv_concat_bandwidth",
            ):
                self.data.get(key, {}).pop(dtype, None)
                self.data.get(key, {}).pop(_act_dtype(dtype), None)
            for key in ("overhead", "eager_pointwise"):
                self.data[key] = {}
            self.data["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    def ensure_overhead(self, spec: ModelSpec, config: dict, precision: str, kind: str) -> dict:
        key = f"{spec.family}/{precision}/{kind}"
        return self._section(
            "overhead", key, lambda: measure_overhead(spec, config, precision, kind, self.cfg)
        )

    def ensure_eager(self, spec: ModelSpec, precision: str) -> dict:
        act = _act_dtype(precision)
        key = f"{spec.family}/{spec.raw_activation}/{spec.d_model}/{spec.d_ff}/{act}"
        return self._section(
            "eager_pointwise", key, lambda: measure_eager_pointwise(spec, act, self.cfg)
        )

    # ---- lookups (call ensure first)

    def linear_rate(self, dtype: str, m: float, k: int, n: int) -> float:
        return _interp_log(self.data["linear"][dtype]["curves"][_shape_class(k, n)], m)

    def gemv_bandwidth(self, dtype: str) -> float:
        return float(self.data["gemv_bandwidth"][dtype])

    def sdpa_rate(self, dtype: str, length: float, causal: bool) -> float:
        return _interp_log(
            self.data["sdpa"][_act_dtype(dtype)]["causal" if causal else "full"], length
        )

    def sdpa_decode_bandwidth(self, dtype: str) -> float:
        return float(self.data["sdpa_decode_bandwidth"][_act_dtype(dtype)])

    def kv_concat_bandwidth(self, dtype: str) -> float:
        return float(self.data["kv_concat_bandwidth"][_act_dtype(dtype)])

    def pointwise_bandwidth(self, dtype: str, nbytes: float) -> float:
        return _interp_log(self.data["pointwise"][_act_dtype(dtype)], nbytes)

    def terms(self, dtype: str, overhead_key: str | None = None) -> list[Term]:
        """The named terms a prediction at `dtype` uses, with their measured values."""
        out: list[Term] = []
        family = overhead_key.split("/")[0] if overhead_key else ""
        lin = self.data.get("linear", {}).get(dtype)
        if lin:
            for shape in ("square", "up", "down"):
                pts = tuple((float(m), float(r)) for m, r in lin["curves"][shape])
                out.append(
                    Term(
                        f"linear_rate({dtype},{shape})",
                        pts[-1][1],
                        "FLOP/s",
                        f"nn.Linear {_shape_desc(shape, self.cfg.width)}"
                        + (
                            " int8 dynamic (activation quantisation included)"
                            if dtype == "int8"
                            else ""
                        )
                        + " at M tokens, mean per call, dispatch removed",
                        pts,
                        "M=",
                    )
                )
            out.append(
                Term(f"linear_dispatch({dtype})", lin["dispatch"], "s", "one 8x8 Linear call")
            )
        if dtype in self.data.get("gemv_bandwidth", {}):
            out.append(
                Term(
                    f"gemv_bandwidth({dtype})",
                    self.gemv_bandwidth(dtype),
                    "bytes/s",
                    f"M=1 through Linear layers holding {self.cfg.gemv_bytes / MiB:.0f} MiB of "
                    "weights (streamed from DRAM)",
                )
            )
        act = _act_dtype(dtype)
        for mode, pts in self.data.get("sdpa", {}).get(act, {}).items():
            out.append(
                Term(
                    f"sdpa_rate({act},{mode})",
                    float(pts[-1][1]),
                    "FLOP/s",
                    "scaled_dot_product_attention at length L, FLOPs counted as the full "
                    "L x L square"
                    + (" (the kernel skips masked blocks)" if mode == "causal" else ""),
                    tuple((float(x), float(y)) for x, y in pts),
                    "L=",
                )
            )
        if act in self.data.get("sdpa_decode_bandwidth", {}):
            out.append(
                Term(
                    f"sdpa_decode_bandwidth({act})",
                    self.sdpa_decode_bandwidth(act),
                    "bytes/s",
                    "one query over a KV cache: slope between two cache sizes",
                )
            )
        if act in self.data.get("kv_concat_bandwidth", {}):
            out.append(
                Term(
                    f"kv_concat_bandwidth({act})",
                    self.kv_concat_bandwidth(act),
                    "bytes/s",
                    "appending one token to a KV cache with torch.cat (transformers' "
                    "DynamicCache): bytes read + written, slope between two cache sizes",
                )
            )
        pw = self.data.get("pointwise", {}).get(act)
        if pw:
            out.append(
                Term(
                    f"pointwise_bandwidth({act})",
                    float(pw[-1][1]),
                    "bytes/s",
                    "out-of-place add (fresh output buffer) by bytes moved, dispatch removed; "
                    "eager kernels of fused chains priced at this rate",
                    tuple((float(x), float(y)) for x, y in pw),
                    "bytes=",
                )
            )
        for key, ops in self.data.get("eager_pointwise", {}).items():
            if not key.endswith("/" + act) or (family and not key.startswith(family + "/")):
                continue
            for op, pts in ops.items():
                out.append(
                    Term(
                        f"eager_pointwise({key.split('/')[0]},{op},{act})",
                        float(pts[-1][1]),
                        "s/element",
                        f"the family's eager {op} code (transformers) per element, by elements",
                        tuple((float(x), float(y)) for x, y in pts),
                        "n=",
                    )
                )
        if overhead_key and overhead_key in self.data.get("overhead", {}):
            ov = self.data["overhead"][overhead_key]
            out.append(
                Term(
                    f"overhead({overhead_key}).fixed",
                    ov["fixed"],
                    "s",
                    "framework time per step beyond the layers (same architecture at width 64)",
                )
            )
            out.append(
                Term(
                    f"overhead({overhead_key}).per_layer",
                    ov["per_layer"],
                    "s",
                    "framework time per layer per step (width 64: 4 layers minus 1, over 3)",
                )
            )
        return out


def _pack(res: tuple[dict, float]) -> dict:
    curves, dispatch = res
    return {"curves": curves, "dispatch": dispatch}


def _shape_desc(shape: str, d: int) -> str:
    return {"square": f"{d}->{d}", "up": f"{d}->{4 * d}", "down": f"{4 * d}->{d}"}[shape]


def _binary(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}B"


def _age_days(date: Any) -> float:
    try:
        then = dt.datetime.fromisoformat(str(date))
    except ValueError:
        return math.inf
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.timezone.utc)
    return (dt.datetime.now(dt.timezone.utc) - then).total_seconds() / 86400


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ---------------------------------------------------------------- prediction


def table_precision(precision: str) -> Precision:
    """The closed form's precision for a runnable precision (int8 = W8, fp32 activations/KV)."""
    if precision == "int8":
        return Precision(8, 32, 32, group_size=1 << 20, name="int8 dynamic (W8/A32/KV32)")
    return parse_precision(precision)


def closed_table(spec: ModelSpec, workload: Workload, precision: str) -> pd.DataFrame:
    """The full-convention op table at the precision as it runs (int8 matmuls marked int8)."""
    df = op_table(spec, workload, table_precision(precision), "full", True)
    if precision == "int8":
        df.loc[df["name"].isin(LINEAR_OPS), "dtype"] = "int8"
    return df


def _linear_dims(spec: ModelSpec, name: str) -> tuple[int, int]:
    d, f = spec.d_model, spec.d_ff
    return {
        "q_proj": (d, spec.q_dim),
        "k_proj": (d, spec.kv_dim),
        "v_proj": (d, spec.kv_dim),
        "qkv_proj": (d, spec.q_dim + 2 * spec.kv_dim),
        "o_proj": (spec.q_dim, d),
        "fc1": (d, f),
        "fc2": (f, d),
        "gate_proj": (d, f),
        "up_proj": (d, f),
        "down_proj": (f, d),
        "lm_head": (d, spec.vocab_size),
        "pooler": (d, d),
        "router": (d, max(spec.n_experts, 1)),
        "expert_gate": (d, f),
        "expert_up": (d, f),
        "expert_down": (f, d),
    }[name]


def _step_workloads(wl: Workload) -> list[tuple[Workload, float]]:
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


def predict(
    spec: ModelSpec,
    workload: Workload,
    precision: str,
    cal: Calibration,
    config: dict,
    kv_concat: bool = True,
) -> CalPrediction:
    """Calibrated time of every memwall op for `workload` run eagerly at `precision`."""
    from memwall.profile.opmap import FRAMEWORK, GROUPS

    cal.ensure(precision)
    kind = "forward" if workload.phase in ("encode", "prefill") else "decode"
    ov_key = f"{spec.family}/{precision}/{kind}"
    ov = cal.ensure_overhead(spec, config, precision, kind)
    act = _act_dtype(precision)
    esize = 2 if act == "bf16" else 4
    group_of = {op: g for g, ops in GROUPS.items() for op in ops}
    acc: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    terms_used: dict[str, str] = {}

    def add(name: str, kind: str, flops: float, nbytes: float, tc: float, tm: float, term: str):
        r = acc.setdefault(
            name, {"flops": 0.0, "bytes": 0.0, "t_compute": 0.0, "t_memory": 0.0, "t_kernel": 0.0}
        )
        r["flops"] += flops
        r["bytes"] += nbytes
        r["t_compute"] += tc
        r["t_memory"] += tm
        r["t_kernel"] += max(tc, tm)
        kinds.setdefault(name, kind)
        terms_used.setdefault(name, term)

    eager = cal.ensure_eager(spec, precision)
    act_op = "act_mul" if spec.gated_mlp else "act"
    eager_names = {
        act_op: (act_op, spec.d_ff),
        "attn_add_norm": ("add_norm", spec.d_model),
        "mlp_add_norm": ("add_norm", spec.d_model),
    }
    n_steps = 0.0
    for step_wl, weight in _step_workloads(workload):
        n_steps += weight
        df = op_table(spec, step_wl, table_precision(precision), "full", True)
        B = step_wl.batch
        T = B * (step_wl.seq_len if step_wl.phase in ("encode", "prefill") else 1)
        ctx = step_wl.seq_len if step_wl.phase == "decode" else 0
        if spec.sliding_window:  # a sliding-window cache keeps at most the window
            ctx = min(ctx, spec.sliding_window)
        for r in df.to_dict("records"):
            name = r["name"]
            shown = group_of.get(name, name)
            cnt = float(r["count"])
            flops, nbytes = r["flops"], r["bytes"]
            if name in LINEAR_OPS:
                k, n = _linear_dims(spec, name)
                m = B if name == "pooler" else T
                if name.startswith("expert_"):  # tokens per expert under uniform routing
                    m = max(1.0, T * spec.experts_per_token / spec.n_experts)
                rate = cal.linear_rate(precision, m, k, n)
                tc = flops / rate
                tm = nbytes / cal.gemv_bandwidth(precision)
                term = (
                    f"linear_rate({precision},{_shape_class(k, n)})"
                    if tc >= tm
                    else f"gemv_bandwidth({precision})"
                )
            elif name == "attention":
                if step_wl.phase in ("encode", "prefill"):
                    tc = flops / cal.sdpa_rate(act, step_wl.seq_len, spec.is_decoder)
                    tm = 0.0
                    term = f"sdpa_rate({act},{'causal' if spec.is_decoder else 'full'})"
                else:
                    tc = 0.0
                    tm = nbytes / cal.sdpa_decode_bandwidth(act)
                    term = f"sdpa_decode_bandwidth({act})"
            elif name == "kv_cache_write" and kv_concat:
                per_layer = 2 * B * spec.kv_dim * esize * (2 * ctx + T)  # read old, write old+new
                nb = per_layer * cnt
                tc = 0.0
                tm = nb / cal.kv_concat_bandwidth(act)
                nbytes = nb
                term = f"kv_concat_bandwidth({act}): torch.cat copies the cache"
            elif name in eager_names:
                op, width = eager_names[name]
                n_el = T * width * max(1, spec.experts_per_token if op != "add_norm" else 1)
                tc = cnt * n_el * _interp_log(eager[op], n_el)
                tm = 0.0
                term = f"eager_pointwise({spec.family},{op},{act})"
            else:
                factor = EAGER_PASSES.get((spec.family, name), 1.0)
                nb = nbytes * factor
                size = nbytes / max(cnt, 1.0) / 3.0
                tc = 0.0
                tm = nb / cal.pointwise_bandwidth(act, size)
                term = f"pointwise_bandwidth({act})" + (
                    f" x eager {factor:.3g}" if factor != 1 else ""
                )
            add(shown, r["kind"], flops * weight, nbytes * weight, tc * weight, tm * weight, term)
    L = spec.n_layers
    rows = []
    ops_fixed, ops_layer = ov["ops_fixed"], ov["ops_per_layer"]
    names = list(acc) + [n for n in sorted(set(ops_fixed) | set(ops_layer)) if n not in acc]
    for name in names:
        r = acc.get(
            name, {"flops": 0.0, "bytes": 0.0, "t_compute": 0.0, "t_memory": 0.0, "t_kernel": 0.0}
        )
        t_ov = (ops_fixed.get(name, 0.0) + L * ops_layer.get(name, 0.0)) * n_steps
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
    notes = []
    if kv_concat and spec.is_decoder:
        notes.append(
            "KV-cache append priced as transformers' DynamicCache does it: torch.cat copies "
            "the whole cache every step"
        )
    if workload.phase == "generate" and workload.gen_len > GENERATE_SAMPLES:
        notes.append(f"generation summed over {GENERATE_SAMPLES} sampled decode contexts")
    return CalPrediction(ops, float(ops["time"].sum()), ov_key, cal.terms(precision, ov_key), notes)


def roofline_baseline(
    spec: ModelSpec, workload: Workload, precision: str, device: Any
) -> dict[str, Any]:
    """The uncalibrated roofline (memwall.roofline with the device's roofs) for comparison."""
    from memwall.roofline import predict as roof_predict

    df = closed_table(spec, workload, precision)
    p = roof_predict(df, device)
    return {
        "device": device.name,
        "roof_origin": device.roof_origin,
        "time": p.totals["time"],
        "ops": dict(zip(p.ops["name"], p.ops["time"], strict=True)),
        "roofs": p.to_dict()["roofs"],
    }


def with_config(cfg: CalConfig, **kw: Any) -> CalConfig:
    return replace(cfg, **kw)
