"""Static batching: the server waits until it is idle, takes up to `max_seqs` waiting requests
(as many as the KV cache holds at the padded length), and runs them as one batch to its end,
as `model.generate` on a padded batch does: one prefill of every prompt padded to the longest,
then decode steps until the longest output is done. Tokens stream as they are made (a request's
TTFT is the batch's prefill, its E2E its own last token), but its slot and its padded KV
blocks stay taken until the batch ends. Each batch is priced in closed form (its decode steps
as one array), so the loop runs once per batch.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from memwall.serve.costmodel import StepModel
from memwall.serve.engine import Req, Trace
from memwall.serve.kvcache import blocks_for
from memwall.serve.workload import Requests


def run_static(
    requests: Requests, model: StepModel, max_seqs: int, block_size: int, blocks: int
) -> Trace:
    reqs = [
        Req(i, float(a), int(n), int(o))
        for i, (a, n, o) in enumerate(
            zip(requests.arrival, requests.input_len, requests.output_len, strict=True)
        )
    ]
    trace = Trace(reqs, kv_blocks=blocks)
    cap = requests.concurrency
    slots: deque[float] = deque([0.0] * cap)
    waiting: deque[Req] = deque()
    now, nxt, n = 0.0, 0, len(reqs)
    while nxt < n or waiting:
        while nxt < n:  # release what has arrived (and has a slot, in a closed loop)
            if cap and not slots:  # every slot taken: the batch formed so far runs first
                break
            t = max(reqs[nxt].arrival, slots[0]) if cap else reqs[nxt].arrival
            if t > now:
                if not waiting:
                    now = t  # idle: wait for it
                else:
                    break
            reqs[nxt].release = t
            waiting.append(reqs[nxt])
            nxt += 1
            if cap:
                slots.popleft()
        batch = _form(waiting, max_seqs, block_size, blocks)
        now = _run_batch(batch, model, now, block_size, len(waiting), trace)
        if cap:
            slots.extend(sorted(r.finish for r in batch))
    return trace


def _form(waiting: deque[Req], max_seqs: int, bs: int, blocks: int) -> list[Req]:
    """Up to max_seqs requests from the queue's head whose padded KV fits the cache."""
    batch: list[Req] = []
    lp = gp = 0
    while waiting and len(batch) < max_seqs:
        r = waiting[0]
        lp2, gp2 = max(lp, r.input_len), max(gp, r.output_len)
        if batch and (len(batch) + 1) * blocks_for(lp2 + gp2 - 1, bs) > blocks:
            break
        batch.append(waiting.popleft())
        lp, gp = lp2, gp2
    return batch


def _run_batch(
    batch: list[Req], model: StepModel, now: float, bs: int, queued: int, trace: Trace
) -> float:
    b = len(batch)
    lp = max(r.input_len for r in batch)
    gp = max(r.output_len for r in batch)
    t_pre = model.prefill_step(b, lp)
    j = np.arange(1, gp)  # decode step j reads lp + j - 1 cached tokens
    keys = (
        b * np.array([model.keys(int(k)) for k in lp + j])
        if model.window_layers
        else b * (lp + j).astype(float)
    )
    t_dec = model.decode_many(b, keys)
    ends = now + t_pre + np.concatenate([[0.0], np.cumsum(t_dec)])  # token k at ends[k]
    outs = np.array([r.output_len for r in batch])
    for r in batch:
        r.first = float(ends[0])
        r.finish = float(ends[r.output_len - 1])
        r.generated = r.output_len
    if gp > 1:  # gap of decode step j, for the requests still generating
        trace.itl_gap.extend(t_dec.tolist())
        trace.itl_count.extend((outs[None, :] > j[:, None]).sum(axis=1).tolist())
    starts = np.concatenate([[now], ends[:-1]])
    trace.t_start.extend(starts.tolist())
    trace.t_step.extend([t_pre, *t_dec.tolist()])
    trace.batch.extend([b] * gp)
    trace.tokens.extend([b * lp] + [b] * (gp - 1))
    used = b * np.array([blocks_for(int(k), bs) for k in [lp, *(lp + j).tolist()]])
    trace.kv_used.extend(used.tolist())
    trace.waiting.extend([queued] * gp)
    trace.running.extend([b] * gp)
    return float(ends[-1])
