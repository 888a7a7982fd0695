"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, 2-thread parallel regions can stall
    for a scheduler tick each (timings are not asserted; this keeps timed tests quick)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh, empty MEMWALL_DATA_DIR for one test (saved devices, calibrations, collectives),
    so no test reads or writes the user's own measurements."""
    d = tmp_path / "data"
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(d))
    return d
