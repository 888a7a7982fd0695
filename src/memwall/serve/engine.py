"""The event loop of a continuous-batching server: requests arrive, the scheduler picks each
step's batch, the step model prices it, time advances by that step.

Why a loop of its own and not simpy: the server is one process that steps back to back while it
has work, so the only events are "the step ends" and "a request arrives"; a plain loop over
steps with the arrivals in a sorted array needs no event queue for them, and one heap (decode
sequences keyed by the step they finish at) is all the bookkeeping. simpy would add a
dependency and a coroutine switch per event, for no modelling gain.

What keeps 10,000 requests under a second or two: nothing is done per decode token. The
decode group is held as aggregates (sequences, summed context, how many cross a KV block
boundary at each step modulo the block size, a heap of finish steps); a request is touched
only when it is admitted, prefilled, preempted or finished. Inter-token latencies are stored
as (gap, how many sequences had it) pairs.

Two options hook in, each None by default (and then nothing changes): `prefix`
(`serve.prefix`: a shared prefix's cached blocks; a request's `shared` blocks are not its own,
and unreferenced cached ones count as free until evicted) and `spec` (`serve.speculative`:
every decode step is a verify step, priced by it). `run_reqs` runs requests built elsewhere
(a decode instance of `serve.disagg`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any

import numpy as np

from memwall.serve.costmodel import StepModel
from memwall.serve.workload import Requests

FF_MIN = 4  # shortest decode stretch worth vectorising
FF_MAX = 4096


class Req:
    """One request's state (slots: the loop touches these often)."""

    __slots__ = (
        "i", "arrival", "release", "input_len", "output_len", "target", "computed",
        "generated", "blocks", "first", "last", "finish", "g0", "ctx0", "gen0", "phase",
        "epoch", "preemptions", "decoding", "shared",
    )  # fmt: skip

    def __init__(self, i: int, arrival: float, input_len: int, output_len: int):
        self.i, self.arrival, self.release = i, arrival, arrival
        self.input_len, self.output_len = input_len, output_len
        self.target, self.computed, self.generated, self.blocks = input_len, 0, 0, 0
        self.first = self.last = self.finish = -1.0
        self.g0 = self.ctx0 = self.gen0 = self.phase = self.epoch = self.preemptions = 0
        self.decoding = False
        self.shared = 0  # blocks of the shared prefix it references (prefix caching)


@dataclass
class Trace:
    """What a run produced, before any statistics (see `metrics`)."""

    requests: list[Req]
    itl_gap: list[float] = field(default_factory=list)
    itl_count: list[int] = field(default_factory=list)
    # one entry per step: start time, length, sequences, tokens, KV blocks used, waiting,
    # running (at the step's start)
    t_start: list[float] = field(default_factory=list)
    t_step: list[float] = field(default_factory=list)
    batch: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    kv_used: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    kv_blocks: int = 0  # per instance
    preemptions: int = 0
    instances: int = 1  # servers whose steps are interleaved here (disaggregation: P + D)
    extra: dict[str, Any] = field(default_factory=dict)  # what an option adds (its stats)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            k: np.asarray(getattr(self, k), dtype=float)
            for k in ("t_start", "t_step", "batch", "tokens", "kv_used", "waiting", "running")
        }


class State:
    """The server: queues, the KV blocks, and the decode group as aggregates.

    A decoding request's context at decode step gd is ctx0 + gd - g0 (tokens cached before
    the step), so the group's summed context grows by its size each decode step, a request
    needs a new block at the decode steps where gd = phase (mod block size), and it finishes
    at a known decode step."""

    def __init__(
        self, model: StepModel, max_tokens: int, max_seqs: int, bs: int, blocks: int,
        prefix: Any = None, spec: Any = None,
    ):  # fmt: skip
        self.model, self.max_tokens, self.max_seqs, self.bs = model, max_tokens, max_seqs, bs
        self.prefix = prefix  # serve.prefix.PrefixCache, or None (no prefix caching)
        self.spec = spec  # serve.speculative.Speculative, or None
        self.per_dec = 1 + spec.k if spec is not None else 1  # tokens a decode step schedules
        self.now = 0.0
        self.gd = 0  # decode steps run so far
        self.waiting: deque[Req] = deque()
        self.running: dict[int, Req] = {}  # admission order
        self.prefilling: list[Req] = []  # running, prompt not all computed (admission order)
        self.free = self.total = blocks
        self.n_dec = 0
        self.sum_ctx = 0
        self.phase_cnt = [0] * bs
        self.heap: list[tuple[int, int, int]] = []  # (finish decode step, epoch, request)
        self.joined: list[Req] = []  # joined the decode group since its last step
        self.last_decode_end = 0.0
        self.allocated = False  # this step's decode blocks are taken
        self.done: list[Req] = []  # finished in the last step
        self.trace: Trace

    # ---- KV blocks and membership
    def take(self, n: int) -> None:
        """Take `n` blocks from the free pool (evicting unreferenced cached prefix blocks
        when no empty block is left)."""
        self.free -= n
        pc = self.prefix
        if pc is not None and self.free < pc.cached - pc.top:
            pc.evict(self)

    def tail(self) -> Req:
        return self.running[next(reversed(self.running))]

    def admit(self, r: Req, nb: int) -> None:
        self.waiting.popleft()
        self.running[r.i] = r
        self.prefilling.append(r)
        self.take(nb)
        r.blocks = nb

    def preempt(self, r: Req) -> None:
        """Recompute preemption (vLLM's default): free the blocks, back to the queue's head."""
        if r.decoding:
            ctx = r.ctx0 + self.gd - r.g0
            held = -(-(ctx + self.allocated) // self.bs) - r.shared
            r.generated = r.gen0 + self.gd - r.g0
            self.n_dec -= 1
            self.sum_ctx -= ctx
            self.phase_cnt[r.phase] -= 1
            r.decoding = False
            if r in self.joined:
                self.joined.remove(r)
            else:
                r.last = self.last_decode_end
        else:
            held = r.blocks
            self.prefilling.remove(r)
        r.epoch += 1
        self.free += held
        if r.shared:
            self.prefix.release(self, r)
        del self.running[r.i]
        r.blocks, r.computed, r.target = 0, 0, r.input_len + r.generated
        r.preemptions += 1
        self.trace.preemptions += 1
        self.waiting.appendleft(r)

    def allocate_decode(self) -> bool:
        """Take this decode step's new blocks, preempting from the tail until they fit.
        True when something was preempted."""
        r_phase = self.gd % self.bs
        need = self.phase_cnt[r_phase]
        preempted = False
        while need > self.free:
            v = self.tail()
            if v.decoding and v.phase == r_phase:
                need -= 1
            self.preempt(v)
            preempted = True
        self.take(need)
        self.allocated = True
        return preempted

    # ---- one step
    def execute(self, chunks: list[tuple[Req, int]], decode: bool) -> None:
        m, trace = self.model, self.trace
        n_dec = self.n_dec if decode else 0
        tokens, seqs = n_dec, n_dec + len(chunks)
        if n_dec and m.window_layers:
            keys = n_dec * m.keys(self.sum_ctx / n_dec + 1)
        else:
            keys = float(self.sum_ctx + n_dec) if n_dec else 0.0
        qk = dec_keys = keys
        for r, q in chunks:  # causal: a chunk's tokens attend c + (q + 1) / 2 keys on average
            tokens += q
            qk += q * m.keys(r.computed + (q + 1) / 2)
            keys += m.keys(r.computed + q)
        if seqs == 0:  # a request preempted itself for its own blocks: schedule again
            self.allocated = False
            return
        if self.spec is None:
            dt = m.fixed(tokens, seqs) + m.attention(tokens, qk, keys)
        else:
            dt, tokens = self.spec.step(m, tokens, seqs, qk, keys, n_dec, dec_keys)
        trace.t_start.append(self.now)
        trace.t_step.append(dt)
        trace.batch.append(seqs)
        trace.tokens.append(tokens)
        trace.kv_used.append(self.total - self.free)
        trace.waiting.append(len(self.waiting))
        trace.running.append(len(self.running))
        self.now = now = self.now + dt
        if n_dec:
            self._decoded(now, n_dec)
        self.allocated = False
        if chunks:
            self._prefilled(chunks, now)

    def _decoded(self, now: float, n_dec: int) -> None:
        trace = self.trace
        old = n_dec - len(self.joined)
        if old:
            trace.itl_gap.append(now - self.last_decode_end)
            trace.itl_count.append(old)
        for r in self.joined:
            trace.itl_gap.append(now - r.last)
            trace.itl_count.append(1)
        self.joined = []
        self.last_decode_end = now
        self.sum_ctx += n_dec
        self._finish_due(now)

    def _finish_due(self, now: float) -> None:
        """Retire the decoding requests whose last token was decode step gd; then gd + 1."""
        heap, gd, reqs = self.heap, self.gd, self.trace.requests
        while heap and heap[0][0] <= gd:
            _, ep, i = heappop(heap)
            r = reqs[i]
            if r.epoch != ep:
                continue
            ctx = r.ctx0 + gd - r.g0 + 1
            self.n_dec -= 1
            self.sum_ctx -= ctx
            self.phase_cnt[r.phase] -= 1
            self.free += -(-ctx // self.bs) - r.shared
            if r.shared:
                self.prefix.release(self, r)
            del self.running[r.i]
            r.decoding = False
            r.generated = r.output_len
            r.finish = now
            self.done.append(r)
        self.gd = gd + 1

    def fast_forward(self, t_next: float) -> bool:
        """Run, in one vectorised go, the decode-only steps that follow while nothing else can
        happen: no request waits or is part-prefilled, up to the first finish, the first step
        that starts after the next arrival, and the KV blocks there are. False if not possible
        (the loop then takes one ordinary step)."""
        if self.waiting or self.prefilling or self.joined or not self.n_dec:
            return False
        heap, reqs = self.heap, self.trace.requests
        while heap and reqs[heap[0][2]].epoch != heap[0][1]:
            heappop(heap)  # stale entries of preempted requests
        bs, n, m = self.bs, self.n_dec, self.model
        dt0 = m.fixed(n, n) + m.attention(n, self.sum_ctx + n, self.sum_ctx + n)
        # steps only lengthen (contexts grow): at most this many start before t_next
        k_max = min(
            heap[0][0] - self.gd + 1, FF_MAX, int(min((t_next - self.now) / dt0, FF_MAX)) + 1
        )
        if k_max < FF_MIN:
            return False
        cnt = np.asarray(self.phase_cnt)
        s = np.arange(k_max)
        cum = np.cumsum(cnt[(self.gd + s) % bs])
        k_max = int(np.searchsorted(cum, self.free, side="right"))  # blocks suffice
        if k_max < FF_MIN:
            return False
        s = s[:k_max]
        if m.window_layers:
            mean = self.sum_ctx / n + 1 + s
            w, nl = m.window_layers, m.n_layers
            keys = n * ((nl - w) * mean + w * np.minimum(mean, m.window)) / nl
        else:
            keys = (self.sum_ctx + n) + n * s.astype(float)
        dt = m.decode_many(n, keys) if self.spec is None else self.spec.decode_many(m, n, keys)
        ends = self.now + np.cumsum(dt)
        starts = ends - dt
        k = int(np.searchsorted(starts, t_next, side="left"))  # steps starting before it
        if k < FF_MIN:
            return False
        dt, starts, used = dt[:k], starts[:k], self.total - self.free + cum[:k]
        tr = self.trace
        tr.t_start.extend(starts.tolist())
        tr.t_step.extend(dt.tolist())
        tr.batch.extend([n] * k)
        tr.tokens.extend([n * self.per_dec] * k)
        tr.kv_used.extend(used.tolist())
        tr.waiting.extend([0] * k)
        tr.running.extend([len(self.running)] * k)
        tr.itl_gap.append(float(dt[0]) + starts[0] - self.last_decode_end)
        tr.itl_gap.extend(dt[1:].tolist())
        tr.itl_count.extend([n] * k)
        self.take(int(cum[k - 1]))
        self.sum_ctx += n * k
        self.now = self.last_decode_end = float(ends[k - 1])
        self.gd += k - 1
        self._finish_due(self.now)
        return True

    def join(self, r: Req) -> None:
        """`r` (its prompt computed, `generated` tokens made) joins the decode group at the
        next decode step."""
        r.decoding = True
        r.g0, r.ctx0, r.gen0 = self.gd, r.computed, r.generated
        r.phase = (r.g0 - r.ctx0) % self.bs
        self.phase_cnt[r.phase] += 1
        self.n_dec += 1
        self.sum_ctx += r.ctx0
        self.joined.append(r)
        heappush(self.heap, (r.g0 + r.output_len - r.gen0 - 1, r.epoch, r.i))

    def _prefilled(self, chunks: list[tuple[Req, int]], now: float) -> None:
        trace, done, pc = self.trace, False, self.prefix
        for r, q in chunks:
            r.computed += q
            if pc is not None and r.shared == pc.cached < pc.blocks:
                pc.grow(r)
            if r.computed < r.target:
                continue
            done = True
            r.generated += 1
            if r.first < 0:
                r.first = now
            else:  # resumed after a preemption: the gap since its last token
                trace.itl_gap.append(now - r.last)
                trace.itl_count.append(1)
            r.last = now
            if r.generated >= r.output_len:
                self.free += r.blocks
                if r.shared:
                    pc.release(self, r)
                del self.running[r.i]
                r.finish = now
                self.done.append(r)
                continue
            self.join(r)
        if done:
            self.prefilling = [r for r in self.prefilling if r.computed < r.target]


def make_reqs(requests: Requests) -> list[Req]:
    return [
        Req(i, float(a), int(n), int(o))
        for i, (a, n, o) in enumerate(
            zip(requests.arrival, requests.input_len, requests.output_len, strict=True)
        )
    ]


def run(
    requests: Requests,
    model: StepModel,
    scheduler: Any,
    max_tokens: int,
    max_seqs: int,
    block_size: int,
    blocks: int,
    prefix: Any = None,
    spec: Any = None,
) -> Trace:
    """Simulate until every request has finished. `scheduler(state) -> (chunks, decode)`;
    `prefix`: a `prefix.PrefixCache` (prefix caching), `spec`: a `speculative.Speculative`."""
    return run_reqs(
        make_reqs(requests), requests.concurrency, model, scheduler, max_tokens, max_seqs,
        block_size, blocks, prefix, spec,
    )  # fmt: skip


def run_reqs(
    reqs: list[Req], concurrency: int, model: StepModel, scheduler: Any, max_tokens: int,
    max_seqs: int, block_size: int, blocks: int, prefix: Any = None, spec: Any = None,
) -> Trace:  # fmt: skip
    """`run` on prepared requests (`reqs[i].i == i`, sorted by arrival)."""
    st = State(model, max_tokens, max_seqs, block_size, blocks, prefix, spec)
    st.trace = Trace(reqs, kv_blocks=blocks)
    releases = Releases(reqs, concurrency)
    while True:
        releases.release(st)
        if not st.running and not st.waiting:
            t = releases.next_time()
            if math.isinf(t):
                break
            st.now = t
            continue
        if not st.fast_forward(releases.next_time()):
            chunks, decode = scheduler(st)
            st.execute(chunks, decode)
        releases.finished(st)
    return st.trace


class Releases:
    """When requests reach the server: at their arrival (open loop), or with a concurrency
    cap, when a slot is free too (a slot frees when a request finishes)."""

    def __init__(self, reqs: list[Req], concurrency: int):
        self.reqs, self.next, self.cap = reqs, 0, concurrency
        self.slots: deque[float] = deque([0.0] * concurrency) if concurrency else deque()

    def next_time(self) -> float:
        if self.next >= len(self.reqs):
            return math.inf
        a = self.reqs[self.next].arrival
        if not self.cap:
            return a
        return max(a, self.slots[0]) if self.slots else math.inf

    def release(self, st: State) -> None:
        while self.next < len(self.reqs):
            t = self.next_time()
            if t > st.now:
                return
            r = self.reqs[self.next]
            r.release = t
            st.waiting.append(r)
            self.next += 1
            if self.cap:
                self.slots.popleft()

    def finished(self, st: State) -> None:
        """A closed loop: each request that finished this step frees a slot at its finish."""
        if st.done:
            if self.cap:
                self.slots.extend(r.finish for r in st.done)
            st.done = []
