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
"""

from __future__ import annotations

from memwall.serve.engine import Req, State
from memwall.serve.kvcache import blocks_for

SCHEDULERS = ("vllm", "prefill-first", "static")


def schedule_vllm(st: State) -> tuple[list[tuple[Req, int]], bool]:
    """Decodes, then running chunks, then admissions, within the token budget."""
    preempted = st.allocate_decode()
    budget = st.max_tokens - st.n_dec
    chunks: list[tuple[Req, int]] = []
    bs = st.bs
    for r in list(st.prefilling):
        if budget <= 0:
            break
        if r.i not in st.running:  # preempted for an earlier one's blocks
            continue
        q = min(r.target - r.computed, budget)
        nb = blocks_for(r.computed + q, bs) - r.blocks
        while nb > st.free and r.i in st.running:
            st.preempt(st.tail())
            preempted = True
        if r.i not in st.running:
            break
        st.free -= nb
        r.blocks += nb
        chunks.append((r, q))
        budget -= q
    if not preempted:
        waiting = st.waiting
        while waiting and budget > 0 and len(st.running) < st.max_seqs:
            r = waiting[0]
            q = min(r.target, budget)
            nb = blocks_for(q, bs)
            if nb > st.free:
                break
            st.admit(r, nb)
            chunks.append((r, q))
            budget -= q
    return chunks, True


def schedule_prefill_first(st: State) -> tuple[list[tuple[Req, int]], bool]:
    """Whole waiting prompts when any fits, else one decode step of every running request."""
    chunks: list[tuple[Req, int]] = []
    budget = st.max_tokens
    waiting = st.waiting
    while waiting and len(st.running) < st.max_seqs:
        r = waiting[0]
        nb = blocks_for(r.target, st.bs)
        if r.target > budget or nb > st.free:
            break
        st.admit(r, nb)
        chunks.append((r, r.target))
        budget -= r.target
    if chunks:
        return chunks, False
    st.allocate_decode()
    return chunks, True


POLICIES = {"vllm": schedule_vllm, "prefill-first": schedule_prefill_first}
