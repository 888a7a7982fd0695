"""Who runs in the next step: the batching policies a simulated server can use.

- `vllm`: vLLM V1's scheduler (vllm/v1/core/sched/scheduler.py): one token budget per step
  (`max_num_batched_tokens`) shared by every scheduled request, chunked prefill always on.
  Decoding requests take one token each first; then running requests whose prompt is not
  all computed get the next chunk; then, if nothing was preempted this step, waiting requests
  are admitted first come first served while the budget, `max_num_seqs` and the free KV
  blocks allow (a new request needs blocks for its first chunk only). A request that cannot
  get its blocks preempts the most recently admitted running request (recompute: its blocks
  are freed and it goes back to the head of the queue, to prefill its prompt and the tokens
  it had generated).
- `prefill-first`: vLLM V0 without chunked prefill: while a whole waiting prompt fits the
  budget, the free blocks and the sequence cap, the step prefills waiting prompts only;
  otherwise it is a decode step of every running request.
- `static`: a batch is formed when the server is idle and runs to its end (`serve.static`).

With prefix caching (`serve.prefix`) an admitted request first takes the cached blocks of its
prompt's shared prefix: only the rest is prefilled and charged to the budget, and only its own
blocks are allocated. With speculative decoding each decoding request schedules 1 + k tokens
(vLLM V1 charges the draft tokens to the budget). A decode instance of a disaggregated server
(`serve.disagg`) admits requests whose KV cache has arrived straight into the decode group.
"""

from __future__ import annotations

from memwall.serve.engine import Req, State
from memwall.serve.kvcache import blocks_for

SCHEDULERS = ("vllm", "prefill-first", "static")


def schedule_vllm(st: State) -> tuple[list[tuple[Req, int]], bool]:
    """Decodes, then running chunks, then admissions, within the token budget."""
    return _vllm(st, True)


def _vllm(st: State, admit: bool) -> tuple[list[tuple[Req, int]], bool]:
    preempted = st.allocate_decode()
    budget = st.max_tokens - st.n_dec * st.per_dec
    chunks: list[tuple[Req, int]] = []
    bs, pc = st.bs, st.prefix
    for r in list(st.prefilling):
        if budget <= 0:
            break
        if r.i not in st.running:  # preempted for an earlier one's blocks
            continue
        q = min(r.target - r.computed, budget)
        nb = blocks_for(r.computed + q, bs) - r.blocks - r.shared
        while nb > st.free and r.i in st.running:
            st.preempt(st.tail())
            preempted = True
        if r.i not in st.running:
            break
        st.take(nb)
        r.blocks += nb
        chunks.append((r, q))
        budget -= q
    if admit and not preempted:
        waiting = st.waiting
        while waiting and budget > 0 and len(st.running) < st.max_seqs:
            r = waiting[0]
            if r.computed >= r.target > 0:  # its KV has arrived (a decode instance): it joins
                break  # the decode group at the next step, never as a prompt to compute
            if pc is None:
                q = min(r.target, budget)
                nb = blocks_for(q, bs)
                if nb > st.free:
                    break
            else:
                h = pc.lookup(r)
                c = h * bs
                q = min(r.target - c, budget)
                nb = blocks_for(c + q, bs) - h
                if nb + pc.touch(h) > st.free:
                    break
                pc.take(st, r, h)
            st.admit(r, nb)
            chunks.append((r, q))
            budget -= q
    return chunks, True


def schedule_prefill_first(st: State) -> tuple[list[tuple[Req, int]], bool]:
    """Whole waiting prompts when any fits, else one decode step of every running request."""
    chunks: list[tuple[Req, int]] = []
    budget = st.max_tokens
    waiting = st.waiting
    pc = st.prefix
    while waiting and len(st.running) < st.max_seqs:
        r = waiting[0]
        h = pc.lookup(r) if pc is not None else 0
        q = r.target - h * st.bs
        nb = blocks_for(r.target, st.bs) - h
        if q > budget or nb + (pc.touch(h) if pc is not None else 0) > st.free:
            break
        if pc is not None:
            pc.take(st, r, h)
        st.admit(r, nb)
        chunks.append((r, q))
        budget -= q
    if chunks:
        return chunks, False
    st.allocate_decode()
    return chunks, True


def schedule_decode_instance(st: State) -> tuple[list[tuple[Req, int]], bool]:
    """A decode instance: requests whose KV cache has arrived (prompt computed, first token
    made) join the decode group first come first served while their blocks (and the next
    token's) and `max_num_seqs` allow; then vLLM's step (a preempted request is recomputed
    here, as a decode instance of vLLM's disaggregated serving would)."""
    w = st.waiting
    while w and w[0].computed >= w[0].target > 0 and len(st.running) < st.max_seqs:
        r = w[0]
        nb = blocks_for(r.computed, st.bs)
        if blocks_for(r.computed + 1, st.bs) > st.free:
            break
        w.popleft()
        st.running[r.i] = r
        st.take(nb)
        r.blocks = nb
        st.join(r)
    blocked = bool(w) and w[0].computed >= w[0].target > 0
    return _vllm(st, not blocked)


POLICIES = {
    "vllm": schedule_vllm,
    "prefill-first": schedule_prefill_first,
    "decode": schedule_decode_instance,  # a disaggregated server's decode instances
}
