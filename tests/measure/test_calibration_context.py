"""Issue 11: the calibration measures kernels where a model has them.

Kernels are timed over rotating operands (not one tensor in the core's caches), the allocator
is fixed for every measurement, the block term (a layer of the real model among its
neighbours) scales per-layer rows, and a speed probe says how the machine runs now against
the calibration. No timing is asserted (the machine is shared): only the arithmetic around
the measured numbers.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

from memwall.measure.calibration import Calibration  # noqa: E402
from memwall.measure.terms import QUICK, CalConfig, rotation  # noqa: E402
from memwall.predict.calibrated import (  # noqa: E402
    BLOCK_LAYERS,
    block_key,
    block_workload,
    closed_table,
    predict_calibrated,
)
from memwall.spec import Workload, spec_from_config  # noqa: E402
from tiny_configs import GPT2_2  # noqa: E402


def test_rotation_exceeds_the_bytes_asked_but_caps_the_arithmetic():
    cfg = CalConfig(rotate_bytes=64, rotate_flops=1000)
    assert rotation(10, 1, cfg) == 7  # 7 x 10 bytes > 64
    assert rotation(10, 400, cfg) == 3  # at most 1000 FLOPs a cycle
    assert rotation(1000, 1, cfg) == 2  # never fewer than two copies


def test_every_measurement_runs_under_one_allocator_setting():
    code = (
        "from memwall.measure.allocator import steady_allocator as s; print(s()); print(s() is s())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith("glibc with freed buffers reused") and out[1] == "True"
    env = {"MEMWALL_ALLOCATOR": "system", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    assert out[0] == "system defaults (MEMWALL_ALLOCATOR=system)"


@pytest.fixture(scope="module")
def measured():
    """A quick calibration holding every term of a 2-layer GPT-2 decode, block included."""
    spec = spec_from_config(GPT2_2, "gpt2-2")
    cal = Calibration.load(QUICK, persist=False)
    cal.ensure_for(spec, GPT2_2, "fp32", "decode")
    return spec, cal


def test_block_term_scales_exactly_the_per_layer_rows(measured):
    spec, cal = measured
    key = block_key(spec, "fp32", "decode")
    block = cal.data["block"][key]
    assert block["per_layer"] >= 0 and set(block["medians"]) == {str(n) for n in BLOCK_LAYERS}
    wl = Workload("decode", 1, 20)
    plain = predict_calibrated(spec, wl, "fp32", cal.data, block=False)
    scaled = predict_calibrated(spec, wl, "fp32", cal.data)
    note = next(n for n in scaled.notes if n.startswith("block term"))
    factor = float(note.split("priced x")[1].split()[0])
    assert 0.5 <= factor <= 2.0
    per_layer = set(closed_table(spec, wl, "fp32").query("count >= @spec.n_layers")["name"]) - {
        "lm_head",
        "embed",
        "embed_norm",
    }
    a, b = plain.ops.set_index("name"), scaled.ops.set_index("name")
    for name in a.index:
        kernel_a = a.loc[name, "time"] - a.loc[name, "t_overhead"]
        kernel_b = b.loc[name, "time"] - b.loc[name, "t_overhead"]
        want = kernel_a * (factor if name in per_layer else 1.0)
        assert kernel_b == pytest.approx(want, rel=1e-3, abs=1e-12), name
    # the factor is what it says: measured per layer over predicted per layer
    lo, hi = BLOCK_LAYERS
    wl_b = block_workload(spec, "decode")
    p = {
        n: predict_calibrated(replace(spec, n_layers=n), wl_b, "fp32", cal.data, block=False)
        for n in (lo, hi)
    }
    raw = block["per_layer"] / ((p[hi].total - p[lo].total) / (hi - lo))
    assert factor == pytest.approx(min(max(raw, 0.5), 2.0), rel=1e-3)


def test_a_record_without_a_block_term_predicts_as_before(measured):
    spec, cal = measured
    data = {k: v for k, v in cal.data.items() if k != "block"}
    wl = Workload("decode", 1, 20)
    a = predict_calibrated(spec, wl, "fp32", data)
    b = predict_calibrated(spec, wl, "fp32", cal.data, block=False)
    assert a.total == pytest.approx(b.total, rel=1e-12)
    assert not any(n.startswith("block term") for n in a.notes)


def test_speed_probe_compares_the_machine_now_with_the_calibration(measured):
    _, cal = measured
    f = cal.speed("fp32")
    assert set(f) == {"compute", "memory", "dispatch"} and all(v > 0 for v in f.values())
    st = cal.status()
    assert st["speed_now"] == f and "slower" in st["speed_now_means"]


def test_block_term_stores_its_spread_and_runs_decode_without_the_head(measured):
    spec, cal = measured
    block = cal.data["block"][block_key(spec, "fp32", "decode")]
    assert block["spread"] >= 0 and block["runs"] >= QUICK.block_reps
    assert block["lm_head"] is False  # decode: the head's bytes would swamp two layers
    assert f"block/{block_key(spec, 'fp32', 'decode')}" in cal.data["spread"]


def test_headless_replaces_the_output_embeddings_only():
    import torch

    from memwall.measure.block import _headless
    from memwall.measure.models import build

    spec = spec_from_config(GPT2_2, "gpt2-2")
    lm = _headless(build(spec, GPT2_2, "fp32", None, Workload("decode", 1, 8)))
    assert isinstance(lm.module.get_output_embeddings(), torch.nn.Identity)
    assert lm.module.transformer.wte.weight.shape[0] == GPT2_2["vocab_size"]


def test_a_block_term_that_stays_noisy_flags_the_record(monkeypatch, tmp_path):
    from memwall.measure import block as B

    spec = spec_from_config(GPT2_2, "gpt2-2")
    cal = Calibration.load(QUICK, persist=False)
    cal.ensure_for(spec, GPT2_2, "fp32", "decode")
    calls = []

    def wild(*a, **k):
        calls.append(1)
        return {"per_layer": 1e-3, "spread": 0.9, "runs": 3, "medians": {}, "workload": {}}

    monkeypatch.setattr(B, "measure_block", wild)
    cal.data["block"] = {}
    cal.data["noisy"] = False
    cal.ensure_for(spec, GPT2_2, "fp32", "decode")
    assert len(calls) == 2  # measured again once before it is judged
    assert cal.data["noisy"] and any("block term" in r for r in cal.data["noise"])
    st = cal.status()
    assert st["saved"] is False
    assert st["block"][block_key(spec, "fp32", "decode")] == {"per_layer": 1e-3, "spread": 0.9}


def test_int8_prices_the_lm_head_int8_and_the_embeddings_fp32():
    spec = spec_from_config(GPT2_2, "gpt2-2")
    df = closed_table(spec, Workload("decode", 1, 8), "int8-dynamic").set_index("name")
    head = spec.vocab_size * spec.d_model
    assert df.loc["lm_head", "dtype"] == "int8"
    assert head <= df.loc["lm_head", "bytes_weight"] < 1.01 * head  # one byte a weight
    fp = closed_table(spec, Workload("decode", 1, 8), "fp32").set_index("name")
    assert df.loc["embed", "bytes"] == fp.loc["embed", "bytes"]  # nn.Embedding stays fp32


def test_decode_block_cycles_over_copies_as_many_layers_as_the_model():
    """Two small cuts run in turn keep their weights cached; a decode step's layers do not."""
    from memwall.measure.block import block_copies
    from memwall.measure.models import resolve

    gpt2, _ = resolve("gpt2")
    bert, _ = resolve("bert-base")
    assert block_copies(gpt2, "decode") * sum(BLOCK_LAYERS) >= gpt2.n_layers
    assert block_copies(gpt2, "generate") == block_copies(gpt2, "decode") == 3
    assert block_copies(bert, "encode") == 1  # forward reuses each weight over every token
    # memory caps the copies: half of what is free, at 4 cut layers a copy beyond the first
    assert block_copies(gpt2, "decode", 1e9, 8e9) == 2
    assert block_copies(gpt2, "decode", 1e9, 1e9) == 1
    assert block_copies(gpt2, "decode", 1e6, 8e9) == 3


def test_decode_block_copies_share_one_embedding_table(monkeypatch):
    import memwall.measure.block as T

    cfg = dict(GPT2_2, n_layer=8, n_embd=64, n_head=2, vocab_size=512)
    spec = spec_from_config(cfg, "gpt2-8")
    seen = []
    real = T.Runner

    def runner(lm, wl):
        seen.append(lm.module)
        return real(lm, wl)

    monkeypatch.setattr(T, "Runner", runner)
    b = T.measure_block(spec, cfg, "fp32", "decode", QUICK)
    assert b["copies"] == 2 and len(seen) == 4 and b["per_layer"] >= 0
    tables = {id(m.get_input_embeddings()) for m in seen}
    assert len(tables) == 1 and len({id(m) for m in seen}) == 4
