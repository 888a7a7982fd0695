"""Real torch.distributed runs on this CPU: a 2-rank tensor-parallel GPT-2 block (gloo)."""

from __future__ import annotations

import pytest

from memwall.errors import MemwallError
from memwall.measure.tp_block import tp_block_check

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


def test_two_rank_tensor_parallel_gpt2_block_matches_unsplit():
    r = tp_block_check(batch=2, seq=8, d=64, heads=4, world=2, repeats=1)
    assert r["ref_max_abs"] > 0.1  # a real output, not zeros
    assert r["max_abs_diff"] <= 1e-5 * max(1.0, r["ref_max_abs"])
    assert r["split"] > 0 and r["unsplit"] > 0 and r["split_all_reduce"] > 0


def test_split_needs_divisible_heads():
    with pytest.raises(MemwallError, match="must divide the 3 heads"):
        tp_block_check(d=48, heads=3, world=2)
