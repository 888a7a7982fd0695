"""Arrivals and lengths."""

from __future__ import annotations

import numpy as np
import pytest

from memwall.errors import MemwallError
from memwall.serve.workload import Lengths, arrival_times, check_rate, parse_lengths


def test_poisson_and_gamma_arrivals_have_the_asked_rate():
    rng = np.random.default_rng(0)
    for burst in (1.0, 0.5, 4.0):
        a = arrival_times(20001, 10.0, burst, rng)
        assert a[0] == 0.0
        assert np.diff(a).mean() == pytest.approx(0.1, rel=0.03)
        cv2 = np.diff(a).var() / np.diff(a).mean() ** 2  # gamma: 1 / shape
        assert cv2 == pytest.approx(1 / burst, rel=0.1)
    assert (arrival_times(5, float("inf"), 1.0, rng) == 0).all()


def test_lengths_fixed_or_range():
    assert parse_lengths("--input-len", "128") == Lengths(128, 128)
    assert parse_lengths("--input-len", "64:256") == Lengths(64, 256)
    d = Lengths(64, 256).draw(np.random.default_rng(0), 10000)
    assert d.min() == 64 and d.max() == 256
    for bad in ("0", "x", "9:3", "1:2:3", "-5"):
        with pytest.raises(MemwallError):
            parse_lengths("--input-len", bad)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "fast"])
def test_bad_rates_are_refused(bad):
    with pytest.raises(MemwallError, match="--rate"):
        check_rate(bad)
