"""The training work outside the op table: the loss over the vocabulary as Megatron-Core runs it."""

from __future__ import annotations

import pytest

from memwall.hardware import get_device
from memwall.parallel.extras import CE_BYTES_PER_LOGIT, CE_PASSES, cross_entropy_time
from memwall.predict.efficiency import efficiency_terms

DEV = get_device("h100-sxm")


def test_the_loss_moves_every_pass_megatron_core_makes_over_the_logits():
    # upcast, max, subtract, exp, sum, divide; backward: scale, cast back to 16 bits
    assert len(CE_PASSES) == 8
    assert CE_PASSES[0][1:] == (2, 4) and CE_PASSES[-1][1:] == (4, 2)
    assert CE_BYTES_PER_LOGIT == 52
    bw = DEV.memory_bandwidth() * efficiency_terms(DEV)["bw_frac"].value
    tokens, vocab = 8192, 128256  # one Llama 3 sequence
    assert cross_entropy_time(tokens, vocab, DEV) == pytest.approx(tokens * vocab * 52 / bw)
