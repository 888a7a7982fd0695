"""Work a model is asked to do (`Workload`), and the checks that tie it to a model.

Kept apart from `memwall.spec` (re-exported there) so the model description and the work stay
small modules; both are light (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from memwall.configs import MAX_LENGTH
from memwall.errors import MemwallError, suggest

if TYPE_CHECKING:  # pragma: no cover - types only
    from memwall.spec import ModelSpec

MAX_BATCH = 1_000_000
PHASES: tuple[str, ...] = ("encode", "prefill", "decode", "generate")


@dataclass(frozen=True)
class Workload:
    """What the model is asked to do.

    encode / prefill: one forward over `seq_len` tokens per sequence.
    decode: one step that adds 1 token to a KV cache already holding `seq_len` tokens
        (the new token attends to seq_len + 1 keys).
    generate: `gen_len` decode steps after a prompt of `seq_len` tokens (the prompt's
        prefill is not included); seq_len 0 is the paper's generation from no prompt.
    Encoder-decoder models (T5): seq_len is the encoder input; encode runs the encoder, prefill
        the encoder and the decoder's first token, decode one decoder token with seq_len tokens
        in its self-attention cache and cross-attending the seq_len input tokens
        (`memwall.count.encdec` states them in full).
    """

    phase: str
    batch: int = 1
    seq_len: int = 128
    gen_len: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise MemwallError(
                f"unknown phase {self.phase!r}{suggest(self.phase, PHASES)}; "
                f"accepted: {', '.join(PHASES)}"
            )
        for what, v, lo, hi in (
            ("batch", self.batch, 1, MAX_BATCH),
            ("seq-len", self.seq_len, 0, MAX_LENGTH),
            ("gen-len", self.gen_len, 0, MAX_LENGTH),
        ):
            if isinstance(v, bool) or not isinstance(v, int):
                raise MemwallError(f"{what} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise MemwallError(f"{what} must be between {lo} and {hi:,}, got {v:,}")
        if self.phase in ("encode", "prefill") and self.seq_len < 1:
            raise MemwallError(f"{self.phase} needs seq-len >= 1")
        if self.phase == "generate" and self.gen_len < 1:
            raise MemwallError("generate needs gen-len >= 1")

    @property
    def total_context(self) -> int:
        """The longest sequence the model holds during this workload."""
        if self.phase == "decode":
            return self.seq_len + 1
        if self.phase == "generate":
            return self.seq_len + self.gen_len
        return self.seq_len

    def with_(self, **kw: Any) -> Workload:
        return replace(self, **kw)


def check_workload_fits(spec: ModelSpec, wl: Workload) -> None:
    """Encoders cannot decode; learned position tables cap the length."""
    if not spec.is_decoder and wl.phase in ("decode", "generate", "prefill"):
        raise MemwallError(
            f"{spec.name} is an encoder: use --phase encode "
            "(prefill, decode and generate need a decoder)"
        )
    if spec.is_encoder_decoder and wl.seq_len < 1:
        raise MemwallError(
            f"{spec.name} is an encoder-decoder model: seq-len (its input) must be >= 1"
        )
    if spec.is_decoder and wl.phase == "encode" and not spec.is_encoder_decoder:
        raise MemwallError(f"{spec.name} is a decoder: use --phase prefill, decode or generate")


def positions_note(spec: ModelSpec, tokens: int) -> str | None:
    """Counting past a model's positions is allowed, and said (the same words everywhere)."""
    if not spec.is_decoder and spec.position != "learned" or tokens <= spec.max_positions:
        return None
    if spec.position == "relative":  # T5: bucketed relative positions, no table to pass
        return None
    if spec.position == "learned":
        return (
            f"{tokens:,} tokens pass {spec.name}'s {spec.max_positions:,} learned positions: "
            "counted as if its position table were longer (the model cannot run this as is)"
        )
    return (
        f"{tokens:,} tokens pass {spec.name}'s {spec.max_positions:,} trained positions "
        "(max_position_embeddings): counted; the model was not trained this long"
    )
