"""Time of one engine step of a continuous-batching server, priced by memwall's own predictor.

A step runs the model once over a mixed batch: the prompt chunks being prefilled and one token
of every sequence being decoded. Its time is

    dense(T) + head(S) + max(attn_memory(B), attn_compute(F)) + step_overhead

- T: tokens in the step (prefill chunk tokens + decode tokens). `dense` is every operation of
  the model except attention and the LM head (projections, FFN or experts, norms, rotary,
  KV-cache writes, embedding), as the op table of T tokens counts them, plus with tensor
  parallelism the two all-reduces per layer of a T x d_model activation (alpha-beta model of
  `memwall.parallel.collectives` over the device's links).
- S: sequences in the step: the LM head runs on the last position of each (vLLM computes
  logits at one position per scheduled request).
- F, B: attention FLOPs and bytes summed over the batch, each sequence at its own context:
  F = f_qk * sum(q_i * kq_i), B = b_key * sum(k_i) + b_query * T, with q_i the sequence's new
  tokens, k_i its keys (context c_i + q_i) and kq_i = c_i + (q_i + 1) / 2 the keys a new
  token attends on average under the causal mask (flash kernels skip the masked blocks; a
  decode token attends all); a sliding window caps its layers, taken as
  `ModelSpec.kv_tokens(k) / n_layers`. Serving engines run one fused (flash / paged)
  attention kernel per layer over the whole batch; it is priced as one kernel per layer, and
  any predictor that prices a kernel as max(compute time, memory time) plus a per-kernel
  cost gives exactly max(time at (F, 0), time at (0, B)).

The curves are tabulated once per (model, device, precision, tp, predictor): the op tables of
T = 1..32 tokens and then every 8 % up to the largest step, and attention probes at doubling
F and B, all priced in one call of the predictor (`predict_efficiency` with `launch`, or the
plain roofline); between grid points they are interpolated linearly (exact for the affine
pieces of both predictors), beyond them extrapolated. `check()` compares the closed form with
the full predictor on whole op tables.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memwall.errors import MemwallError

PREDICTORS = ("efficiency", "roofline")
GROWTH = 1.08  # spacing of the token grid above TILE_GRID_MAX tokens
TILE_GRID_MAX = 16384
MAX_GRID_TOKENS = 1_000_000  # count.Workload's batch limit; larger steps are extrapolated
HEAD = "lm_head"


class Curve:
    """y(x) piecewise linear through the points, extrapolated linearly past both ends."""

    __slots__ = ("xs", "ys", "_xa", "_ya", "_top")

    def __init__(self, xs: tuple[float, ...], ys: tuple[float, ...]):
        self.xs, self.ys = tuple(float(x) for x in xs), tuple(float(y) for y in ys)
        self._xa, self._ya = np.asarray(self.xs), np.asarray(self.ys)
        self._top = len(self.xs) - 1

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        i = bisect_right(xs, x)
        i = 1 if i < 1 else (self._top if i > self._top else i)
        x0 = xs[i - 1]
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (xs[i] - x0)

    def many(self, x: np.ndarray) -> np.ndarray:
        xa, ya = self._xa, self._ya
        i = np.minimum(np.maximum(xa.searchsorted(x, side="right"), 1), self._top)
        x0, y0 = xa[i - 1], ya[i - 1]
        return y0 + (ya[i] - y0) * (x - x0) / (xa[i] - x0)


@dataclass
class StepModel:
    """The closed-form step time (see the module docstring) and what it was built from."""

    dense: Curve
    head: Curve
    attn_memory: Curve
    attn_compute: Curve
    f_qk: float  # attention FLOPs per (query token x key), all layers
    b_key: float  # attention bytes per key (the K and V read), all layers
    b_query: float  # attention bytes per query token (Q read, output written), all layers
    n_layers: int
    window: int | None  # sliding window of `window_layers` layers
    window_layers: int
    predictor: str
    launch: str | None
    step_overhead: float = 0.0
    about: dict[str, Any] = field(default_factory=dict)
    _cache: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)

    def keys(self, k: float) -> float:
        """Mean keys per layer a query attends at `k` keys of context (a window caps some)."""
        if not self.window_layers:
            return float(k)
        w, n = self.window_layers, self.n_layers
        return ((n - w) * k + w * min(k, self.window)) / n

    def fixed(self, tokens: int, seqs: int) -> float:
        """dense(T) + head(S) + the per-step overhead, cached per batch shape."""
        key = (tokens, seqs)
        v = self._cache.get(key)
        if v is None:
            v = self.dense(tokens) + self.head(seqs) + self.step_overhead
            self._cache[key] = v
        return v

    def attention(self, tokens: float, qk: float, keys: float) -> float:
        """Attention time of a step: qk = sum q_i k_i, keys = sum k_i (effective keys)."""
        return max(
            self.attn_memory(self.b_key * keys + self.b_query * tokens),
            self.attn_compute(self.f_qk * qk),
        )

    def step(self, tokens: int, seqs: int, qk: float, keys: float) -> float:
        """Seconds of one step of `tokens` new tokens over `seqs` sequences."""
        return self.fixed(tokens, seqs) + self.attention(tokens, qk, keys)

    def decode_many(self, batch: int, keys: np.ndarray) -> np.ndarray:
        """Decode steps of `batch` sequences (one new token each) at summed effective keys
        `keys` (one entry per step): a decode stretch or a static batch at once."""
        mem = self.attn_memory.many(self.b_key * keys + self.b_query * batch)
        cmp_ = self.attn_compute.many(self.f_qk * keys)
        return self.fixed(batch, batch) + np.maximum(mem, cmp_)

    def decode_step(self, batch: int, context: int) -> float:
        """One decode step of `batch` sequences each holding `context` tokens."""
        k = self.keys(context + 1)
        return self.step(batch, batch, batch * k, batch * k)

    def prefill_step(self, batch: int, prompt: int) -> float:
        """One step prefilling `batch` whole prompts of `prompt` tokens (logits at the last)."""
        k, kq = self.keys(prompt), self.keys((prompt + 1) / 2)
        return self.step(batch * prompt, batch, batch * prompt * kq, batch * k)


def token_grid(t_max: int) -> list[int]:
    """1..64; then both sides of every multiple of 64 up to 16,384 tokens (a GEMM's time steps
    where its rows fill one more 64- or 128-row output tile, and is flat between: the
    efficiency model prices tile and wave quantisation); then every 8 % up to t_max (capped
    at the op table's batch limit), where one more tile row changes little."""
    top = min(max(int(t_max), 2), MAX_GRID_TOKENS)
    grid = list(range(1, min(64, top) + 1))
    k = 64
    while k < min(top, TILE_GRID_MAX):
        grid += [x for x in (k + 1, k + 64) if x <= top]
        k += 64
    while grid[-1] < top:
        grid.append(min(top, max(grid[-1] + 1, int(grid[-1] * GROWTH))))
    return grid


def doubling(lo: float, hi: float) -> list[float]:
    """0, then lo, 2 lo, 4 lo, ... past hi."""
    out, x = [0.0], max(lo, 1.0)
    while True:
        out.append(x)
        if x > hi:
            return out
        x *= 2.0


class _Pricer:
    """Prices a stacked op table once: each row's predicted seconds."""

    def __init__(self, device: Any, precision: Any, predictor: str, launch: str | None):
        self.device, self.precision = device, precision
        self.predictor, self.launch = predictor, launch

    def times(self, ops: Any) -> np.ndarray:
        if self.predictor == "efficiency":
            from memwall.predict.efficiency import predict_efficiency

            pred = predict_efficiency(ops, self.device, self.precision, self.launch or "graph")
        else:
            from memwall.predict import predict_roofline

            pred = predict_roofline(ops, self.device)
        return pred.ops["time"].to_numpy(dtype=float)

    def total(self, ops: Any) -> float:
        return float(self.times(ops).sum())


def _tables(shard: Any, precision: Any, mla: str | None, phase: str, batch: int, seq: int):
    from memwall.count import op_table
    from memwall.spec import Workload

    return op_table(shard, Workload(phase, batch, seq), precision, "full", True, mla)


def build_step_model(
    shard: Any,
    device: Any,
    precision: Any,
    predictor: str,
    launch: str | None,
    t_max: int,
    k_max: int,
    seqs_max: int,
    comm: Any = None,
    step_overhead: float = 0.0,
) -> StepModel:
    """Tabulate the step model of `shard` (the model, or one tensor-parallel rank's share) on
    `device`. t_max, k_max, seqs_max: the largest step tokens, context and batch the run can
    reach (the grids cover them). `comm(tokens) -> seconds`: collectives per step."""
    import pandas as pd

    if predictor not in PREDICTORS:
        raise MemwallError(f"--predictor must be one of {', '.join(PREDICTORS)}; got {predictor!r}")
    mla = "absorbed" if shard.is_mla else None
    grid = token_grid(max(t_max, seqs_max))
    frames, probe = [], []
    for i, t in enumerate(grid):
        df = _tables(shard, precision, mla, "prefill", t, 1)
        frames.append(df)
        probe.append(np.full(len(df), i))
    # attention coefficients from two decode contexts of one sequence
    c1, c2 = _contexts(shard)
    a1, a2 = (_attention_rows(_tables(shard, precision, mla, "decode", 1, c)) for c in (c1, c2))
    n, w = shard.n_layers, shard.n_window_layers
    model = StepModel(
        Curve((0.0, 1.0), (0.0, 0.0)), Curve((0.0, 1.0), (0.0, 0.0)),
        Curve((0.0, 1.0), (0.0, 0.0)), Curve((0.0, 1.0), (0.0, 0.0)),
        0.0, 0.0, 0.0, n, shard.sliding_window if w else None, w, predictor, launch,
        step_overhead,
    )  # fmt: skip
    k1, k2 = model.keys(c1 + 1), model.keys(c2 + 1)
    f2 = float(a2["flops"].sum())
    b1, b2 = float(a1["bytes"].sum()), float(a2["bytes"].sum())
    model.f_qk = f2 / k2
    model.b_key = (b2 - b1) / (k2 - k1)
    model.b_query = max(b1 - model.b_key * k1, 0.0)
    template = a2.iloc[[0]].copy()
    template["count"] = float(a2["count"].sum())
    template["steps"] = 1.0
    f_grid = doubling(model.f_qk, model.f_qk * float(t_max) * k_max * 1.01)
    b_grid = doubling(model.b_key, model.b_key * (seqs_max * k_max + t_max) + model.b_query * t_max)
    probes = _probe_rows(template, f_grid, b_grid)
    stacked = pd.concat([*frames, probes], ignore_index=True)
    times = _Pricer(device, precision, predictor, launch).times(stacked)
    n_dense = sum(len(f) for f in frames)
    ids = np.concatenate(probe)
    names = stacked["name"].to_numpy()[:n_dense]
    kinds = stacked["kind"].to_numpy()[:n_dense]
    head = names == HEAD
    dense = ~head & (kinds != "attention")
    t_dense = np.bincount(ids, weights=np.where(dense, times[:n_dense], 0.0), minlength=len(grid))
    t_head = np.bincount(ids, weights=np.where(head, times[:n_dense], 0.0), minlength=len(grid))
    if comm is not None:
        t_dense = t_dense + np.array([comm(t) for t in grid])
    xs = tuple(float(t) for t in grid)
    model.dense = Curve(xs, tuple(t_dense))
    model.head = Curve(xs, tuple(t_head))
    pt = times[n_dense:]
    model.attn_compute = Curve(tuple(f_grid), tuple(pt[: len(f_grid)]))
    model.attn_memory = Curve(tuple(b_grid), tuple(pt[len(f_grid) :]))
    model.about = {
        "grid_points": len(grid) + len(f_grid) + len(b_grid),
        "tokens_max": grid[-1],
        "attention_flops_per_query_key": model.f_qk,
        "attention_bytes_per_key": model.b_key,
        "attention_bytes_per_query": model.b_query,
    }
    return model


def _contexts(shard: Any) -> tuple[int, int]:
    top = max(int(shard.max_positions) - 2, 8)
    return min(255, top // 4), min(1023, top)


def _attention_rows(df: Any) -> Any:
    rows = df[df["kind"] == "attention"]
    if rows.empty:
        raise MemwallError(f"{df.attrs.get('model', 'this model')} has no attention to serve")
    return rows


def _probe_rows(template: Any, f_grid: list[float], b_grid: list[float]) -> Any:
    """Attention rows at (F, 0) for every F and (0, B) for every B."""
    import pandas as pd

    n_f, n_b = len(f_grid), len(b_grid)
    df = pd.concat([template] * (n_f + n_b), ignore_index=True)
    flops = np.concatenate([f_grid, np.zeros(n_b)])
    nbytes = np.concatenate([np.zeros(n_f), b_grid])
    df["flops"] = flops
    df["matmul_flops"] = flops
    df["bytes"] = nbytes
    for c in ("bytes_weight", "bytes_kv", "bytes_written"):
        if c in df.columns:
            df[c] = 0.0
    for c in ("bytes_act", "bytes_read"):
        if c in df.columns:
            df[c] = nbytes
    with np.errstate(divide="ignore", invalid="ignore"):
        df["intensity"] = np.where(nbytes > 0, flops / np.where(nbytes > 0, nbytes, 1), 0.0)
    return df


def check(
    model: StepModel,
    shard: Any,
    device: Any,
    precision: Any,
    shapes: list[tuple[str, int, int]],
    comm: Any = None,
) -> list[dict[str, Any]]:
    """The closed form against the full predictor on whole op tables: per shape (phase, batch,
    tokens) the two times and the relative error. Prefill: the table's LM head runs on every
    position, so the closed form is asked for the same (S = batch x tokens); the table counts
    the whole L x L attention square, so its attention FLOPs are scaled to the causal share
    the closed form counts, (L + 1) / 2L."""
    mla = "absorbed" if shard.is_mla else None
    pricer = _Pricer(device, precision, model.predictor, model.launch)
    out = []
    for phase, batch, n in shapes:
        ops = _tables(shard, precision, mla, phase, batch, n)
        if phase == "decode":
            k = model.keys(n + 1)
            tokens, fast = batch, model.step(batch, batch, batch * k, batch * k)
        else:
            attn = ops["kind"] == "attention"
            scale = model.keys((n + 1) / 2) / model.keys(n)
            ops.loc[attn, ["flops", "matmul_flops"]] *= scale
            k = model.keys(n)
            tokens = batch * n
            fast = model.step(tokens, tokens, tokens * model.keys((n + 1) / 2), batch * k)
        full = pricer.total(ops)
        full += comm(tokens) if comm is not None else 0.0
        fast -= model.step_overhead
        err = abs(fast - full) / full if full > 0 else 0.0
        out.append(
            {"phase": phase, "batch": batch, "tokens": n, "closed_form": fast, "full": full,
             "error": err}
        )  # fmt: skip
    if not all(math.isfinite(r["error"]) for r in out):
        raise MemwallError("the step-time model is not finite on this device")
    return out
