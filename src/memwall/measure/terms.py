"""Calibration terms: each a small torch measurement of one way eager PyTorch models miss the
plain roofline (what each term means, and the record that holds it:
`memwall.records.calibration`).

- `measure_linear`: achieved FLOP/s of an `nn.Linear` (or dynamic-int8 Linear, activation
  quantisation included) at M tokens, for a square, a widening (d -> 4d) and a narrowing
  (4d -> d) layer, and the fixed cost of one call (dispatch, removed from the curve).
- `measure_gemv`: bytes/s of M = 1 Linear layers over a weight set far beyond the caches, by
  the size of one layer (an FFN layer and an LM-head-sized one).
- `measure_sdpa`: counted FLOP/s of `scaled_dot_product_attention` at length L (full, causal).
- `measure_sdpa_decode`, `measure_kv_concat`: bytes/s of one query over a KV cache, and of
  appending to it with torch.cat (transformers' DynamicCache), each as a two-size slope.
- `measure_pointwise`: an out-of-place add by working set (cache levels, page faults).
- `measure_eager_pointwise`: the family's own eager activation and add + norm per element.
- `measure_overhead`: framework time per step and per layer, per memwall op, of the same
  architecture shrunk to width 64 (1 and 4 layers): at that width kernels take no time.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from memwall.families import get_family
from memwall.measure.models import (
    build,
    quantize_int8,
    quiet_transformers,
    tiny_config,
)
from memwall.measure.run import Runner, profile_ops, time_runs
from memwall.measure.timing import mean_time
from memwall.precision import DTYPE_BYTES
from memwall.spec import ModelSpec, Workload, spec_from_config

MiB = 1024 * 1024


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
    eager_elems: tuple[int, ...] = (1 << 17, 1 << 22)  # a short and a long sequence
    reps: int = 5
    min_time: float = 0.1
    tiny_reps: int = 30
    rounds: int = 3  # each per-dtype term is measured this many times, interleaved
    rotate_bytes: int = 32 * MiB  # kernels cycle over distinct copies this large (see rotation)
    rotate_flops: float = 2e9  # ... but one cycle does at most this much arithmetic (time)
    block_reps: int = 15  # interleaved runs of the 1- and 3-layer models (block term) ...
    block_min_time: float = 4.0  # ... and at least this many seconds of them
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
    rounds=2,
    rotate_bytes=1 * MiB,
    rotate_flops=1e8,
    block_reps=3,
    block_min_time=0.0,
    name="quick",
)


ENV_CONFIG = "MEMWALL_CALIBRATION"  # "quick": the small test/smoke configuration


def default_config() -> CalConfig:
    """The full configuration, or QUICK when $MEMWALL_CALIBRATION is "quick" (tests, smoke)."""
    return QUICK if os.environ.get(ENV_CONFIG, "").strip().lower() == "quick" else CalConfig()


def tdtype(dtype: str):
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}[dtype]


def rotation(nbytes: float, flops: float, cfg: CalConfig) -> int:
    """How many distinct copies of a kernel's operands to cycle through when timing it.

    In a model every layer has its own weights and reads activations another kernel just wrote,
    so its operands come from beyond the core's private caches; one tensor timed again and again
    stays in them and runs up to 1.5x faster (Linear, this machine). Enough copies to exceed
    `rotate_bytes` put the operands where a model has them; `rotate_flops` caps one cycle's
    arithmetic so large kernels (whose reuse hides the fetch anyway) keep calibration short."""
    by_bytes = math.ceil(cfg.rotate_bytes / max(nbytes, 1.0))
    by_flops = math.ceil(cfg.rotate_flops / max(flops, 1.0))
    return max(2, min(by_bytes, by_flops))


def _cycle(fn: Callable, operands: list) -> Callable[[], None]:
    """One call of `fn(*ops)` for every set of operands, in turn."""

    def run() -> None:
        for ops in operands:
            fn(*ops)

    return run


def linear_layer(k: int, n: int, dtype: str):
    lin = torch.nn.Linear(k, n)
    if dtype == "int8":
        return quantize_int8(torch.nn.Sequential(lin))[0]
    return lin.to(tdtype(dtype))


LINEAR_SHAPES = ("square", "up", "down")


def measure_linear(
    dtype: str, cfg: CalConfig, only: tuple[str, ...] = LINEAR_SHAPES
) -> tuple[dict[str, list[list[float]]], float]:
    """({shape: [[M, FLOP/s], ...]}, dispatch seconds) for one dtype (`only` these shapes)."""
    d = cfg.width
    shapes = {"square": (d, d), "up": (d, 4 * d), "down": (4 * d, d)}
    shapes = {k: v for k, v in shapes.items() if k in only}
    with torch.inference_mode():
        tiny = linear_layer(8, 8, dtype)
        x8 = torch.randn(1, 8, dtype=tdtype(dtype))
        dispatch = mean_time(lambda: tiny(x8), max(cfg.reps, 20), cfg.min_time)
        out: dict[str, list[list[float]]] = {}
        esize = DTYPE_BYTES[dtype]
        for shape, (k, n) in shapes.items():
            most = rotation(k * n * esize, 2.0 * min(cfg.ms) * k * n, cfg)
            layers = [linear_layer(k, n, dtype) for _ in range(most)]
            pts = []
            for m in cfg.ms:
                flops = 2.0 * m * k * n
                copies = min(most, rotation(k * n * esize, flops, cfg))
                ops = [(lin, torch.randn(m, k, dtype=tdtype(dtype))) for lin in layers[:copies]]
                t = mean_time(_cycle(lambda lin, x: lin(x), ops), cfg.reps, cfg.min_time) / copies
                t = max(t - dispatch, 0.1 * t)
                pts.append([float(m), flops / t])
            out[shape] = pts
            del layers
    return out, dispatch


PROBE_M = 256  # the Linear point the speed probe times


def probe(dtype: str, cfg: CalConfig) -> dict[str, float]:
    """The machine's speed now, by three kernels a calibration also times, the same way: an
    FFN-shaped Linear (d -> 4d) at M = PROBE_M over rotating copies (compute), M = 1 through
    FFN layers streamed from DRAM (memory) and one tiny Linear call (dispatch). About half a
    second (the operands are built once per process); see `Calibration.speed`."""
    rot, stream, tiny = _probe_operands(dtype, cfg)
    with torch.inference_mode():
        dispatch = mean_time(lambda: tiny[0](tiny[1]), max(cfg.reps, 20), cfg.min_time)
        k, n = rot[0][0].in_features, rot[0][0].out_features
        t = mean_time(_cycle(lambda lin, x: lin(x), rot), cfg.reps, cfg.min_time) / len(rot)
        compute = 2.0 * PROBE_M * k * n / max(t - dispatch, 0.1 * t)
        layers, x = stream
        t = mean_time(
            _cycle(lambda lin: lin(x), [(lin,) for lin in layers]), cfg.reps, cfg.min_time
        )
        t = max(t - len(layers) * dispatch, 0.1 * t)
    esize = DTYPE_BYTES[dtype]
    return {"compute": compute, "memory": len(layers) * k * n * esize / t, "dispatch": dispatch}


@functools.lru_cache(maxsize=3)
def _probe_operands(dtype: str, cfg: CalConfig) -> tuple[list, tuple, tuple]:
    """(rotating Linear + input pairs at M = PROBE_M, (streamed layers, one token), tiny call),
    sized exactly as `measure_linear` and `measure_gemv` size them."""
    d, esize = cfg.width, DTYPE_BYTES[dtype]
    k, n = d, 4 * d
    copies = rotation(k * n * esize, 2.0 * PROBE_M * k * n, cfg)
    with torch.inference_mode():
        rot = [
            (linear_layer(k, n, dtype), torch.randn(PROBE_M, k, dtype=tdtype(dtype)))
            for _ in range(copies)
        ]
        many = max(2, math.ceil(cfg.gemv_bytes / (k * n * esize)))
        stream = (
            [linear_layer(k, n, dtype) for _ in range(many)],
            torch.randn(1, d, dtype=tdtype(dtype)),
        )
        tiny = (linear_layer(8, 8, dtype), torch.randn(1, 8, dtype=tdtype(dtype)))
    return rot, stream, tiny


def measure_gemv(
    dtype: str, cfg: CalConfig, dispatch: float, widenings: tuple[int, ...] = (4, 64)
) -> list[list[float]]:
    """[[weight bytes per layer, bytes/s], ...] of M = 1 through Linear layers d -> w d for each
    widening w, cycled over `gemv_bytes` of weights (streamed from DRAM), dispatch removed.

    By layer size because a bigger layer streams faster: the fixed work of each call (the int8
    kernels quantise the activation and requantise the output; threads start) is spread over
    more bytes, so one rate measured on FFN layers prices a 50k-wide LM head several times too
    slow."""
    d = cfg.width
    esize = DTYPE_BYTES[dtype]
    pts = []
    with torch.inference_mode():
        for w in widenings:
            per = d * w * d * esize
            n = max(2, math.ceil(cfg.gemv_bytes / per))
            layers = [linear_layer(d, w * d, dtype) for _ in range(n)]
            x = torch.randn(1, d, dtype=tdtype(dtype))

            def run(layers=layers, x=x) -> None:
                for lin in layers:
                    lin(x)

            t = mean_time(run, cfg.reps, cfg.min_time)
            t = max(t - n * dispatch, 0.1 * t)
            pts.append([float(per), n * per / t])
            del layers
    return pts


def measure_sdpa(dtype: str, cfg: CalConfig) -> dict[str, list[list[float]]]:
    """{full|causal: [[L, counted FLOP/s], ...]}: 4 H L^2 hd FLOPs per call, causal included."""
    h, hd = cfg.sdpa_heads, cfg.head_dim
    out: dict[str, list[list[float]]] = {"full": [], "causal": []}
    with torch.inference_mode():
        esize = DTYPE_BYTES[dtype]
        for L in cfg.sdpa_lengths:
            flops = 4.0 * h * L * L * hd
            copies = rotation(3 * h * L * hd * esize, flops, cfg)
            qkvs = [
                tuple(torch.randn(1, h, L, hd, dtype=tdtype(dtype)) for _ in range(3))
                for _ in range(copies)
            ]
            for mode in ("full", "causal"):
                c = mode == "causal"
                run = _cycle(
                    lambda q, k, v, c=c: F.scaled_dot_product_attention(q, k, v, is_causal=c), qkvs
                )
                t = mean_time(run, cfg.reps, cfg.min_time) / copies
                out[mode].append([float(L), flops / t])
    return out


def measure_sdpa_decode(dtype: str, cfg: CalConfig) -> float:
    """Bytes/s of one query attending a KV cache: slope between two cache sizes, each cycled
    over enough copies to exceed the caches."""
    h, hd = cfg.sdpa_heads, cfg.head_dim
    esize = DTYPE_BYTES[dtype]
    res = []
    with torch.inference_mode():
        for ctx in cfg.decode_contexts:
            per = 2 * h * ctx * hd * esize
            n = max(2, math.ceil(cfg.decode_set_bytes / per))
            q = torch.randn(1, h, 1, hd, dtype=tdtype(dtype))
            kvs = [(torch.randn(1, h, ctx, hd, dtype=tdtype(dtype)),) * 2 for _ in range(n)]
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
    h, hd = cfg.sdpa_heads, cfg.head_dim
    esize = DTYPE_BYTES[dtype]
    res = []
    with torch.inference_mode():
        new = torch.randn(1, h, 1, hd, dtype=tdtype(dtype))
        for ctx in cfg.decode_contexts:
            per = h * ctx * hd * esize
            n = max(2, math.ceil(cfg.decode_set_bytes / per))
            olds = [torch.randn(1, h, ctx, hd, dtype=tdtype(dtype)) for _ in range(n)]

            def run(olds=olds) -> None:
                for k in olds:
                    torch.cat([k, new], dim=-2)

            res.append((2 * per, mean_time(run, cfg.reps, cfg.min_time) / n))
    (b1, t1), (b2, t2) = res
    slope = (t2 - t1) / (b2 - b1) if b2 > b1 else 0.0
    return 1.0 / slope if slope > 0 else b2 / t2


def measure_pointwise(dtype: str, cfg: CalConfig) -> list[list[float]]:
    """[[bytes moved, bytes/s], ...] of `a + b` (fresh output) by size, dispatch removed."""
    esize = DTYPE_BYTES[dtype]
    pts = []
    with torch.inference_mode():
        one = torch.ones(1, dtype=tdtype(dtype))
        dispatch = mean_time(lambda: one + one, max(cfg.reps, 20), cfg.min_time)
        for n in cfg.pointwise_elems:
            a = torch.randn(n, dtype=tdtype(dtype))
            b = torch.randn(n, dtype=tdtype(dtype))
            t = mean_time(lambda a=a, b=b: a + b, cfg.reps, cfg.min_time)
            t = max(t - dispatch, 0.1 * t)
            pts.append([3.0 * n * esize, 3.0 * n * esize / t])
    return pts


def eager_kernels(spec: ModelSpec, dtype: str) -> dict[str, tuple[int, Callable]]:
    """The eager code transformers runs for each pointwise chain of `spec`'s family, as
    op -> (width, f(x, y) on [rows, width] tensors): the activation (act, or act * up for gated
    MLPs) over the FFN width, and the residual add + norm over the model width."""
    act_fn = ACT2FN[spec.raw_activation or "gelu"]
    d = spec.d_model
    if get_family(spec.family).eager_norm == "llama_rmsnorm":
        norm = LlamaRMSNorm(d, eps=spec.norm_eps)
    else:
        norm = torch.nn.LayerNorm(d, eps=spec.norm_eps)
    norm = norm.to(tdtype(dtype))
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
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for op, (width, fn) in eager_kernels(spec, dtype).items():
            one = [torch.randn(1, width, dtype=tdtype(dtype)) for _ in range(2)]
            t0 = mean_time(lambda one=one, fn=fn: fn(*one), cfg.reps, cfg.min_time)
            pts = []
            esize = DTYPE_BYTES[dtype]
            for elems in cfg.eager_elems:
                rows = max(1, elems // width)
                n = rows * width
                copies = rotation(2 * n * esize, 10.0 * n, cfg)
                xys = [
                    tuple(torch.randn(rows, width, dtype=tdtype(dtype)) for _ in range(2))
                    for _ in range(copies)
                ]
                t = mean_time(_cycle(fn, xys), cfg.reps, cfg.min_time) / copies
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
        with quiet_transformers():  # its start token is the tiny config's pad token: a remark
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
