"""Byte vs compute shares of decode energy, and how batching and precision move them."""

from __future__ import annotations

import pytest

from memwall.energy.shares import energy_shares
from memwall.errors import MemwallError


def test_batching_moves_energy_from_bytes_to_compute():
    df = energy_shares("llama-3-8b", "h100-sxm", batches=(1, 8, 64), context=1024,
                       variants=(("bf16", "16-bit"), ("4/16/16", "4-bit weights")))  # fmt: skip
    for _, g in df.groupby("variant"):
        g = g.sort_values("batch")
        assert g["bytes_share_dynamic"].is_monotonic_decreasing
        assert g["j_per_token"].is_monotonic_decreasing
    b1 = df[df["batch"] == 1].set_index("variant")
    assert b1.loc["4-bit weights", "j_per_token"] < b1.loc["16-bit", "j_per_token"]
    shares = df[["bytes_share", "compute_share", "static_share"]].sum(axis=1)
    assert shares.round(9).eq(1.0).all()


def test_bad_input():
    with pytest.raises(MemwallError):
        energy_shares("llama-3-8b", "h100-sxm", batches=(0,))
    with pytest.raises(MemwallError):
        energy_shares("bert-base", "h100-sxm")
