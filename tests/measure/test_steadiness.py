"""The machine-steadiness probe: a fixed loop timed window by window."""

from __future__ import annotations

import pytest

from memwall.measure.steadiness import Steadiness, speed_windows


def test_windows_are_timed_and_their_spread_reported():
    s = speed_windows(seconds=0.6, window=0.1)
    assert len(s.seconds) >= 4  # the last window may run past the end; none is cut short
    assert all(0 < t < 0.1 for t in s.seconds)  # many loops fit in every window
    assert s.spread >= 1.0 and min(s.seconds) <= s.median <= max(s.seconds)
    assert "p90/p10" in s.text()


def test_spread_is_p90_over_p10():
    s = Steadiness(tuple([1.0] * 9 + [2.0] * 1 + [3.0] * 10))
    assert s.spread == pytest.approx(3.0)  # p10 1.0, p90 3.0
    assert Steadiness((2.0, 2.0, 2.0)).spread == 1.0


@pytest.mark.parametrize("seconds,window", [(0, 0.1), (1.0, 0), (0.1, 0.5), (-1, 0.1)])
def test_bad_arguments_are_refused(seconds, window):
    with pytest.raises(ValueError):
        speed_windows(seconds, window)
