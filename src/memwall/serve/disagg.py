"""Prefill/decode disaggregation (DistServe, Splitwise; vLLM's disaggregated prefill): P
instances only prefill, D instances only decode, each instance tp devices, and each request's
KV cache moves from its prefill instance to a decode instance over the link.

- Requests go to the prefill instances in turn (round robin in arrival order). A prefill
  instance is vLLM's scheduler (chunked prefill under the token budget, its own KV blocks and
  prefix cache) on requests that end at their first token: that token is made there, so TTFT
  ends when the prefill does (DistServe's and Splitwise's definition).
- The KV cache of the prompt (every layer's K and V of its input tokens) then moves to a
  decode instance: each of the tp ranks sends its share of the heads over its own link at
  once, so the transfer takes alpha + (prompt KV bytes / tp) / bandwidth, the alpha-beta
  point-to-point price of `memwall.parallel.collectives` (send/recv) at the bus bandwidth
  NCCL reaches (`collectives.realistic_links`, as `memwall parallel` prices by default): over
  the scale-up link (NVLink) when all (P + D) x tp devices fit in one node, else over each
  device's network link. The transfer starts when the prefill ends (layer-by-layer streaming,
  which hides part of it, is not modelled) and the prefill instance frees the blocks then.
- Requests reach the decode instances in turn, in the order their KV arrives; one joins the
  decode group as soon as its blocks (the prompt's and its next token's) and `max_num_seqs`
  allow, and decodes its remaining tokens there (TPOT and ITL come from the decode
  instances; the first gap includes the transfer). A decode instance that runs out of blocks
  preempts and recomputes locally, as the colocated server does.
- No back-pressure from the decode instances to the prefill ones (a prefill instance never
  waits for room on a decode instance; the transferred KV waits in its queue), and no
  closed loop (the prefill instances run first, then the decode instances).
A request of one output token ends at its prefill. The steps of every instance are
interleaved in one trace (`Trace.instances` = P + D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memwall.errors import MemwallError
from memwall.serve.engine import Req, Trace, run_reqs
from memwall.serve.workload import Requests

MAX_INSTANCES = 1024
STEP_FIELDS = ("t_start", "t_step", "batch", "tokens", "kv_used", "waiting", "running")


def parse(text: Any) -> tuple[int, int]:
    """'P:D' -> (P, D), each an integer >= 1."""
    parts = str(text).strip().split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        p, d = int(parts[0]), int(parts[1])
    except ValueError:
        raise MemwallError(
            f"--disagg must be P:D (prefill instances:decode instances, e.g. 1:1), got {text!r}"
        ) from None
    if not (1 <= p <= MAX_INSTANCES and 1 <= d <= MAX_INSTANCES):
        raise MemwallError(f"--disagg {text}: P and D must be integers from 1 to {MAX_INSTANCES}")
    return p, d


@dataclass(frozen=True)
class Transfer:
    """How a prompt's KV cache moves: alpha (s) + tokens x bytes_per_token / bandwidth."""

    alpha: float  # seconds
    bandwidth: float  # bytes/s per rank
    bytes_per_token: float  # KV bytes per prompt token on one rank
    tp: int
    link: str  # what carries it

    def time(self, tokens: np.ndarray) -> np.ndarray:
        return self.alpha + np.asarray(tokens, dtype=float) * self.bytes_per_token / self.bandwidth

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "bandwidth_per_rank": self.bandwidth,
            "kv_bytes_per_token_per_rank": self.bytes_per_token,
            "kv_bytes_per_token": self.bytes_per_token * self.tp,
            "link": self.link,
        }


def transfer_link(device: Any, device_name: str, devices: int, bytes_per_token: float, tp: int):
    """The Transfer of a server of `devices` devices in all (module docstring)."""
    from memwall.parallel.collectives import price, realistic_links
    from memwall.parallel.links import links_for

    links = realistic_links(links_for(device_name), device)
    spans = devices > links.node_size
    a = price("send_recv", "pd", 2, 0.0, 1, "transfer", links, spans).time
    one = price("send_recv", "pd", 2, 1e9, 1, "transfer", links, spans).time
    bw = 1e9 / (one - a)
    lk = links.inter if spans else links.intra
    where = (
        f"{lk.name} between nodes ({devices} devices > {links.node_size} per node)"
        if spans
        else f"{lk.name} inside a node ({devices} devices <= {links.node_size})"
    )
    if links.origin == "measured":
        where = f"this machine's measured links ({links.source})"
    return Transfer(a, bw, bytes_per_token, tp, f"{where}, NCCL bus bandwidth {bw / 1e9:.3g} GB/s")


def run_disagg(
    requests: Requests, model: Any, policies: dict[str, Any], max_tokens: int, max_seqs: int,
    bs: int, blocks: int, prefill: int, decode: int, transfer: Transfer,
    make_prefix: Any = None,
) -> Trace:  # fmt: skip
    """Simulate P prefill and D decode instances (module docstring). `make_prefix()`: a fresh
    prefix cache per prefill instance (None: no prefix caching)."""
    n = len(requests)
    arrival = np.asarray(requests.arrival, dtype=float)
    ins = np.asarray(requests.input_len, dtype=np.int64)
    outs = np.asarray(requests.output_len, dtype=np.int64)
    final = [Req(i, float(arrival[i]), int(ins[i]), int(outs[i])) for i in range(n)]
    order = np.argsort(arrival, kind="stable")
    traces: list[Trace] = []
    hit = queried = 0
    for p in range(prefill):
        idx = order[p::prefill]
        if not len(idx):
            continue
        reqs = [Req(j, float(arrival[g]), int(ins[g]), 1) for j, g in enumerate(idx)]
        pc = make_prefix() if make_prefix is not None else None
        tr = run_reqs(reqs, 0, model, policies["vllm"], max_tokens, max_seqs, bs, blocks, pc)
        if pc is not None:
            hit, queried = hit + pc.hit, queried + pc.queried
        for g, r in zip(idx, tr.requests, strict=True):
            f = final[g]
            f.release, f.first, f.preemptions = r.release, r.first, r.preemptions
            f.finish, f.generated = r.first, 1
        traces.append(tr)
    first = np.array([f.first for f in final])
    go = np.flatnonzero(outs > 1)
    moved = transfer.time(ins[go])
    kv_at = first[go] + moved
    by_arrival = go[np.argsort(kv_at, kind="stable")]
    at = dict(zip(go.tolist(), kv_at.tolist(), strict=True))
    for d in range(decode):
        idx = by_arrival[d::decode]
        if not len(idx):
            continue
        reqs = []
        for j, g in enumerate(idx):
            r = Req(j, at[int(g)], int(ins[g]), int(outs[g]))
            r.computed, r.generated = r.target, 1  # the prompt's KV is here; its 1st token made
            r.first = r.last = float(first[g])
            reqs.append(r)
        tr = run_reqs(reqs, 0, model, policies["decode"], max_tokens, max_seqs, bs, blocks)
        for g, r in zip(idx, tr.requests, strict=True):
            f = final[g]
            f.finish, f.generated = r.finish, r.output_len
            f.preemptions += r.preemptions
        traces.append(tr)
    out = merge(final, traces, blocks, prefill + decode)
    n_pre = sum(1 for p in range(prefill) if len(order[p::prefill]))
    pre, dec = traces[:n_pre], traces[n_pre:]
    out.extra["disagg"] = {
        "transfer_s": _summary(moved),
        "transfer_bytes": float(ins[go].sum() * transfer.bytes_per_token * transfer.tp),
        "prefill_busy_s": sum(float(np.sum(t.t_step)) for t in pre),
        "decode_busy_s": sum(float(np.sum(t.t_step)) for t in dec),
        "prefill_mean_batch": _mean_batch(pre),
        "decode_mean_batch": _mean_batch(dec),
        "prefill_kv_max": max((max(t.kv_used, default=0) for t in pre), default=0) / blocks,
        "decode_kv_max": max((max(t.kv_used, default=0) for t in dec), default=0) / blocks,
    }
    if make_prefix is not None:
        out.extra["prefix"] = {
            "queried_tokens": queried, "hit_tokens": hit,
            "hit_rate": hit / queried if queried else 0.0,
        }  # fmt: skip
    return out


def _summary(x: np.ndarray) -> dict[str, float] | None:
    if not len(x):
        return None
    return {"mean": float(np.mean(x)), "max": float(np.max(x))}


def _mean_batch(traces: list[Trace]) -> float:
    w = np.concatenate([np.asarray(t.t_step, float) for t in traces]) if traces else np.zeros(0)
    b = np.concatenate([np.asarray(t.batch, float) for t in traces]) if traces else np.zeros(0)
    return float((b * w).sum() / w.sum()) if w.sum() > 0 else 0.0


def merge(reqs: list[Req], traces: list[Trace], blocks: int, instances: int) -> Trace:
    """One trace of every instance's steps, by start time, for `metrics`."""
    out = Trace(reqs, kv_blocks=blocks, instances=instances)
    cols = {k: np.concatenate([np.asarray(getattr(t, k), float) for t in traces]) for k in
            STEP_FIELDS}  # fmt: skip
    order = np.argsort(cols["t_start"], kind="stable")
    for k in STEP_FIELDS:
        v = cols[k][order]
        setattr(out, k, v.tolist() if k in ("t_start", "t_step") else v.astype(int).tolist())
    for t in traces:
        out.itl_gap.extend(t.itl_gap)
        out.itl_count.extend(t.itl_count)
        out.preemptions += t.preemptions
    return out
