"""Speculative decoding: a draft proposes k tokens per sequence, the target verifies them in
one step, and on average E of them (the bonus token included) are kept.

Per decode step of a batch of B sequences (vLLM V1's draft-model and n-gram proposers):
- the draft runs k decode steps of batch B (the draft model priced by memwall's step model
  like the target; `ngram` (prompt lookup) proposes on the host: no device time);
- the target runs one step over B x (k + 1) tokens: each sequence's last token and its k
  drafted ones, attending its context (one KV read per sequence, k + 1 queries);
- E = (1 - A^(k+1)) / (1 - A) tokens are kept per sequence on average (Leviathan et al.
  2023, "Fast Inference from Transformers via Speculative Decoding", eq. 1: every drafted
  token accepted with probability A independently; A = 1 gives k + 1).
At batch 1 the verify step costs about a decode step (the weights are read once for k + 1
tokens), so the speed-up is about E x t_decode / (k t_draft + t_verify); as the batch grows
the verify step becomes compute-bound, costs about k + 1 decode steps, and the gain shrinks
(or turns into a loss).

How the simulator runs it: a request of n output tokens makes its first token at prefill and
then needs ceil((n - 1) / E) verify steps (the expectation, rounded up); each engine decode
step is one verify step, priced as above. Prefill chunks are run by the draft model too (it
needs the prompt's KV). TPOT and E2E count the request's real n tokens; ITL is the gap between
verify steps (vLLM streams a step's accepted tokens as one chunk, which its benchmark times as
one gap). Simplified: the KV context grows one slot per verify step instead of E (KV use and
attention reads during decode are understated by up to that factor; exact when the output is
short beside the prompt), and the draft's KV is held in the same blocks (`kvcache`: the draft's
weights and KV bytes per block come off the capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from memwall.errors import MemwallError

MAX_K = 32


def expected_tokens(acceptance: float, k: int) -> float:
    """Tokens kept per verify step: (1 - A^(k+1)) / (1 - A), k + 1 at A = 1."""
    a = float(acceptance)
    if a >= 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


def check(k: Any, acceptance: Any) -> tuple[int, float]:
    """(k, A) checked: k an integer 1..32, A in [0, 1]."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise MemwallError(f"--spec-k must be an integer between 1 and {MAX_K} (drafted tokens "
                           f"per step), got {k!r}")  # fmt: skip
    try:
        a = float(acceptance)
    except (TypeError, ValueError):
        a = math.nan
    if not 0.0 <= a <= 1.0:  # NaN fails too
        raise MemwallError(
            "--spec-acceptance must be a number in [0, 1] (the probability a drafted token is "
            f"accepted), got {acceptance!r}"
        )
    return k, a


@dataclass(frozen=True)
class Speculative:
    """k drafted tokens per step, acceptance A, the draft's step model (None: n-gram)."""

    k: int
    acceptance: float
    draft: Any  # costmodel.StepModel or None
    draft_name: str

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.acceptance, self.k)

    def verify_steps(self, output_len: np.ndarray) -> np.ndarray:
        """Engine decode steps + 1 (the prefill's token) a request of `output_len` takes."""
        e = self.tokens_per_step
        o = np.asarray(output_len, dtype=np.int64)
        steps = np.ceil((o - 1) / e - 1e-9).astype(np.int64)
        return np.where(o > 1, 1 + np.maximum(steps, 1), o)

    def step(
        self, m: Any, tokens: int, seqs: int, qk: float, keys: float, n_dec: int, dec_keys: float
    ) -> tuple[float, int]:
        """(seconds, target tokens) of a step whose decode part is a verify step. tokens, qk,
        keys: the step as the engine counts it (one token per decoding sequence); dec_keys:
        the decoding sequences' summed keys (their part of qk and keys)."""
        k = self.k
        extra = n_dec * k
        t_tok = tokens + extra
        t_qk = qk + k * dec_keys + n_dec * k * (k + 1) / 2  # drafted token i attends i more
        dt = m.fixed(t_tok, seqs) + m.attention(t_tok, t_qk, keys + extra)
        d = self.draft
        if d is not None:
            for i in range(k if n_dec else 0):
                kd = dec_keys + n_dec * i
                dt += d.fixed(n_dec, n_dec) + d.attention(n_dec, kd, kd)
            ch = tokens - n_dec
            if ch:
                dt += d.fixed(ch, seqs - n_dec) + d.attention(ch, qk - dec_keys, keys - dec_keys)
        return dt, t_tok

    def decode_many(self, m: Any, batch: int, keys: np.ndarray) -> np.ndarray:
        """`step` for decode-only steps of `batch` sequences at summed keys `keys` (arrays)."""
        k = self.k
        t = batch * (k + 1)
        mem = m.attn_memory.many(m.b_key * (keys + batch * k) + m.b_query * t)
        cmp_ = m.attn_compute.many(m.f_qk * ((k + 1) * keys + batch * k * (k + 1) / 2))
        dt = m.fixed(t, batch) + np.maximum(mem, cmp_)
        if self.draft is not None:
            for i in range(k):
                dt = dt + self.draft.decode_many(batch, keys + batch * i)
        return dt

    def per_token(self, m: Any, batch: int, context: int) -> tuple[float, float, float]:
        """(seconds per output token with speculation, without, speed-up) for `batch`
        sequences each at `context` tokens, decode only."""
        kk = batch * m.keys(context + 1)
        spec = float(self.decode_many(m, batch, np.array([kk]))[0]) / self.tokens_per_step
        plain = m.decode_step(batch, context)
        return spec, plain, plain / spec

    def to_dict(self, m: Any, context: int, batches: tuple[int, ...]) -> dict[str, Any]:
        return {
            "draft": self.draft_name,
            "k": self.k,
            "acceptance": self.acceptance,
            "tokens_per_step": self.tokens_per_step,
            "speedup_at_batch": {
                str(b): self.per_token(m, b, context)[2] for b in batches
            },  # decode only, every sequence at the mean prompt length
            "context": context,
        }
