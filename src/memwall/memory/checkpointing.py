"""Activation checkpointing (rematerialisation) strategies and which layers they recompute.

Strategies (the names the CLI accepts):
- `none`: every layer keeps what its backward needs.
- `full`: every layer is checkpointed on its own: only its input is kept; its forward runs again
  during backward (Chen et al. 2016 with segments of one layer; `gradient_checkpointing_enable()`
  in transformers).
- `every:K`: segments of K consecutive layers (Megatron-LM `--recompute-method uniform
  --recompute-num-layers K`): one input kept per segment; backward recomputes a whole segment
  at once, so K layers' activations are live together. All layers are recomputed.
- `sqrt`: `every:K` with K = round(sqrt(n_layers)) (Chen et al. 2016, "sublinear memory").
- `layers:M`: only the first M layers are checkpointed, each on its own (Megatron-LM
  `--recompute-method block`); the rest keep their activations. The knob between none and full.
- `selective`: the attention core (QK^T, softmax, dropout, attention over V) is recomputed from
  the kept Q, K, V; everything else is kept (Korthikanti et al. 2022).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from memwall.errors import MemwallError, suggest

KINDS = ("none", "full", "every", "sqrt", "layers", "selective")
ACCEPTED = "none, full, every:K, sqrt, layers:M, selective"


@dataclass(frozen=True)
class Checkpointing:
    kind: str = "none"
    k: int = 0  # segment length for `every`, checkpointed layers for `layers`

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.k}" if self.kind in ("every", "layers") else self.kind

    def segments(self, n_layers: int) -> list[tuple[int, int]]:
        """Checkpointed segments as (first, last) layer indices; layers outside keep everything."""
        if self.kind in ("none", "selective"):
            return []
        if self.kind == "full":
            return [(i, i) for i in range(n_layers)]
        if self.kind == "layers":
            return [(i, i) for i in range(min(self.k, n_layers))]
        k = self.segment_length(n_layers)
        return [(s, min(s + k, n_layers) - 1) for s in range(0, n_layers, k)]

    def segment_length(self, n_layers: int) -> int:
        if self.kind == "sqrt":
            return max(1, round(math.sqrt(n_layers)))
        if self.kind == "every":
            return self.k
        return 1

    def recomputed_layers(self, n_layers: int) -> int:
        """Layers whose whole forward runs again during backward."""
        return sum(b - a + 1 for a, b in self.segments(n_layers))


def parse_checkpointing(text: str | Checkpointing, n_layers: int | None = None) -> Checkpointing:
    """`none`, `full`, `every:K`, `sqrt`, `layers:M` or `selective`; K and M within the layers."""
    if isinstance(text, Checkpointing):
        ck = text
    else:
        t = str(text).strip().lower().replace("_", "-")
        m = re.fullmatch(r"(every|layers)[:=-]?(-?\d+)", t)
        if m:
            ck = Checkpointing(m.group(1), int(m.group(2)))
        elif t in ("none", "full", "sqrt", "selective"):
            ck = Checkpointing(t)
        elif t in ("every", "layers"):
            raise MemwallError(
                f"checkpointing {t!r} needs a count, e.g. {t}:2; accepted: {ACCEPTED}"
            )
        else:
            raise MemwallError(
                f"unknown checkpointing {text!r}{suggest(t, KINDS)}; accepted: {ACCEPTED}"
            )
    if ck.kind in ("every", "layers"):
        what = "checkpoint interval" if ck.kind == "every" else "checkpointed layer count"
        if ck.k < 1:
            raise MemwallError(f"{what} must be at least 1, got {ck.k}")
        if n_layers is not None and ck.k > n_layers:
            raise MemwallError(
                f"{what} {ck.k} is larger than the model's {n_layers} layers; "
                f"use a value from 1 to {n_layers}"
            )
    return ck
