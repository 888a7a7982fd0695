"""Automatic prefix caching (vLLM's `--enable-prefix-caching`, on by default in V1) for a
workload whose prompts all begin with the same `tokens` tokens (`--shared-prefix`: a system
prompt, a few-shot preamble).

vLLM caches KV blocks by the hash of their tokens and everything before them, full blocks only
(vllm/v1/core/kv_cache_manager.py). A new request looks up its prompt's leading full blocks;
those found cached are not prefilled (its computed tokens start after them, and they are not
charged to the step's token budget) and are not allocated again: the request takes a
reference to them, so every request using them shares one copy. At least one prompt token is
always computed (the hit is capped at prompt - 1 tokens, to produce the logits). A block a
request computes enters the cache when full; when the last request referencing a cached block
finishes (or is preempted) the block stays cached but becomes free: the allocator may evict
it, least recently used first, when it needs a block.

What this module holds, with one shared prefix: the prefix's cacheable blocks form a chain
(block j is only useful if blocks 0..j-1 are cached), `cached` of them are in the cache, and
each running request references its first `shared` of them (`Req.shared`). A block is
referenced while some request holds it: blocks 0..top-1 where top is the largest `shared`.
The engine's free count includes the `cached - top` unreferenced cached blocks (vLLM counts
them free too, so KV use counts a shared block once and a cached idle one not at all); they
are evicted only when no empty block is left, from the chain's end (vLLM frees a request's
blocks tail first, so the tail is the least recently used). A request that computes the
prefix while the chain ends where its own reference ends extends the chain with its blocks;
one that computes blocks another request already cached keeps its copies to itself (vLLM
does not merge duplicates). Not modelled: hits on blocks beyond the shared prefix (each
request's own prompt and output are unique here), so a preempted request finds only the
prefix again.
"""

from __future__ import annotations

from typing import Any


class PrefixCache:
    """The cached blocks of one prefix shared by every prompt, and who references them."""

    def __init__(self, tokens: int, block_size: int):
        self.tokens, self.bs = int(tokens), int(block_size)
        self.blocks = self.tokens // self.bs  # full blocks: what can be cached
        self.cached = 0  # blocks 0..cached-1 of the prefix are in the cache
        self.top = 0  # blocks 0..top-1 are referenced by a running request
        self.refs = [0] * (self.blocks + 1)  # refs[s]: running requests holding s blocks
        self.queried = 0  # prompt tokens looked up (vLLM's prefix-cache queries)
        self.hit = 0  # tokens found cached
        self.evicted = 0  # blocks evicted

    def lookup(self, r: Any) -> int:
        """How many of the prefix's blocks `r` finds cached now (leaving one token to
        compute); the caller checks the blocks fit, then calls `take`."""
        return min(self.cached, min(self.tokens, r.target - 1) // self.bs)

    def touch(self, h: int) -> int:
        """Free blocks a hit of `h` blocks takes out of the free pool (the unreferenced
        cached ones it starts to reference)."""
        return h - self.top if h > self.top else 0

    def take(self, st: Any, r: Any, h: int) -> None:
        """`r` is admitted with a hit of `h` blocks: it references them, its prompt starts
        after them."""
        self.queried += r.target
        self.hit += h * self.bs
        if not h:
            return
        if h > self.top:
            st.free -= h - self.top
            self.top = h
        self.refs[h] += 1
        r.shared = h
        r.computed = h * self.bs

    def grow(self, r: Any) -> None:
        """After a chunk of `r` (whose reference ends at the chain's end): the prefix blocks
        it has now filled join the cache, shared from now on."""
        n = min(r.computed, self.tokens) // self.bs
        if n <= self.cached:
            return
        d = n - self.cached
        if r.shared:
            self.refs[r.shared] -= 1
        self.refs[n] += 1
        r.shared, r.blocks = n, r.blocks - d
        self.cached = n
        if n > self.top:
            self.top = n

    def release(self, st: Any, r: Any) -> None:
        """`r` finished or was preempted: its reference goes; blocks nobody references any
        more become free (and stay cached until evicted)."""
        s = r.shared
        r.shared = 0
        self.refs[s] -= 1
        if s == self.top and not self.refs[s]:
            top, refs = s, self.refs
            while top and not refs[top]:
                top -= 1
            st.free += self.top - top
            self.top = top

    def evict(self, st: Any) -> None:
        """No empty block is left: evict unreferenced cached blocks from the chain's end
        until the free pool is theirs alone."""
        keep = self.top + max(st.free, 0)
        if keep < self.cached:
            self.evicted += self.cached - keep
            self.cached = keep

    def stats(self) -> dict[str, Any]:
        return {
            "queried_tokens": self.queried,
            "hit_tokens": self.hit,
            "hit_rate": self.hit / self.queried if self.queried else 0.0,
            "evicted_blocks": self.evicted,
        }
