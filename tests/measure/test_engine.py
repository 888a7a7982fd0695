"""A real engine end to end: `transformers serve --continuous-batching` on a tiny random-weight
model built here, driven by guidellm (4 Poisson requests), its per-request metrics read back.
Skipped where the engine (transformers' `serving` extra) or guidellm is not installed, except
under CI (CI=true), where `make test` installs both, so that the path cannot rot unseen."""

from __future__ import annotations

import json
import math
import os

import pytest

import memwall.measure.engine as engine
from memwall.measure.engine_steps import read

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("tokenizers")
    return engine.build_tiny_model(tmp_path_factory.mktemp("engine") / "model")


def test_tiny_model_round_trips_ascii(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    text = "Hello, world!\n\tTabs & {braces} ~"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert tok.all_special_ids == []  # every generated token streams as text
    assert json.loads((tiny / "config.json").read_text())["eos_token_id"] is None


def test_engine_under_load(tiny, tmp_path):
    reason = engine.missing()
    if reason and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"make test installs the engine and guidellm, yet: {reason}")
    if reason:
        pytest.skip(f"engine packages not installed: {reason}")
    workload = engine.Workload(rate=4.0, requests=4, prompt_tokens=24, output_tokens=8, seed=3)
    steps_log = tmp_path / "steps.log"
    config = engine.EngineConfig(
        block_size=16, num_blocks=32, max_batch_tokens=64, steps_log=str(steps_log)
    )
    result = engine.measure(tiny, [workload], config, folder=tmp_path)
    json.dumps(result)  # plain data
    (bench,) = result["runs"][0]["benchmarks"]
    requests = bench["requests"]
    assert len(requests) == 4
    for r in requests:
        assert r["status"] == "completed", r["error"]
        assert r["prompt_tokens"] == 24 and r["output_tokens"] == 8
        assert 0 < r["ttft"] < r["e2e"]
        assert r["tpot"] == pytest.approx((r["e2e"] - r["ttft"]) / 7)
        assert r["itl"] > 0 and r["chunks"] >= 2
    summary = bench["summary"]
    assert summary["completed"] == 4 and summary["failed"] == 0
    assert summary["output_throughput"] > 0
    for name in engine.METRICS:
        assert summary[name]["mean"] > 0
    # the engine timed its own steps: at least 4 prompts of 24 tokens and 7 decodes each
    # (besides the warm-up request), never more keys than 4 requests of 32 tokens hold
    steps = read(str(steps_log))
    assert len(steps["start"]) >= 8 and min(steps["seconds"]) > 0
    assert sum(steps["tokens"]) >= 4 * 24 + 4 * 7
    assert max(steps["keys"]) <= 4 * 32 and min(steps["tokens"]) >= 1


def test_step_records_are_read_by_time(tmp_path):
    log = tmp_path / "steps.log"
    log.write_text(
        "100.0 0.004 1 1 50 50\n101.0 0.009 64 1 64 4096\n102.0 0.0\n"
        "103.5 0.005 8 8 900 7200 0.0045\n"
    )
    steps = read(str(log), since=100.5)
    assert steps["start"] == [101.0, 103.5]  # the cut line is skipped
    assert steps["token_keys"] == [4096.0, 7200.0]
    # the loop thread's CPU time: absent (nan) in records written before it was kept
    assert math.isnan(steps["cpu"][0]) and steps["cpu"][1] == 0.0045
