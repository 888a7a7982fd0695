"""Quiet success: a successful run prints nothing on stderr (no third-party warnings).

In a fresh interpreter, with every warning shown each time it is raised, so one already shown
earlier in the test session cannot hide it."""

from __future__ import annotations

import pytest

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_trace_decode_prints_nothing_on_stderr(cli_subprocess):
    r = cli_subprocess(
        "analyze", "gpt2", "--engine", "trace", "--phase", "decode", "--seq-len", "16",
        "--format", "json",
        env={"PYTHONWARNINGS": "always"},
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.err == ""
    assert r.json["engine"] == "trace" and r.json["totals"]["flops"] > 0
