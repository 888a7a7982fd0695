"""The statistics, as vLLM's benchmark_serving computes them."""

from __future__ import annotations

import numpy as np
import pytest

from memwall.serve.metrics import summary, weighted_summary


def test_weighted_percentiles_equal_numpy_on_the_expanded_sample():
    rng = np.random.default_rng(1)
    v = rng.random(50)
    c = rng.integers(0, 7, 50)
    expanded = np.repeat(v, c)
    w = weighted_summary(v, c)
    s = summary(expanded)
    assert w == pytest.approx(s)


def test_summary_of_nothing_is_none():
    assert summary(np.array([])) is None
    assert weighted_summary(np.array([1.0]), np.array([0])) is None
