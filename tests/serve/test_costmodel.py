"""The closed-form step model against the full predictor on whole op tables."""

from __future__ import annotations

import pytest

from memwall.hardware import get_device
from memwall.serve.costmodel import Curve, build_step_model, check, token_grid
from memwall.serve.setup import tp_comm, tp_shard
from memwall.spec import load_model_config, parse_precision

SHAPES = [
    ("decode", 1, 100), ("decode", 8, 1000), ("decode", 64, 2000), ("decode", 256, 3000),
    ("decode", 100, 500), ("prefill", 1, 37), ("prefill", 1, 512), ("prefill", 1, 700),
    ("prefill", 4, 2048),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "predictor", "tp"),
    [
        ("llama-3-8b", "efficiency", 1),
        ("llama-3-8b", "roofline", 1),
        ("mixtral-8x7b", "efficiency", 1),
        ("llama-3-70b", "efficiency", 4),
    ],
)
def test_closed_form_within_5_percent_of_full_predictor(model, predictor, tp):
    spec, _ = load_model_config(model)
    dev, prec = get_device("h100-sxm"), parse_precision("bf16")
    shard = tp_shard(spec, tp)
    comm, _ = tp_comm(spec, "h100-sxm", tp, prec)
    launch = "graph" if predictor == "efficiency" else None
    m = build_step_model(shard, dev, prec, predictor, launch, 8192, 8192, 256, comm)
    rows = check(m, shard, dev, prec, SHAPES, comm)
    worst = max(rows, key=lambda r: r["error"])
    assert worst["error"] < 0.05, worst


def test_curve_interpolates_and_extrapolates_linearly():
    c = Curve((1.0, 2.0, 4.0), (10.0, 20.0, 30.0))
    assert c(1.5) == pytest.approx(15.0)
    assert c(3.0) == pytest.approx(25.0)
    assert c(8.0) == pytest.approx(50.0)  # last segment's slope, 5 per unit
    assert c.many([1.5, 3.0, 8.0]).tolist() == pytest.approx([15.0, 25.0, 50.0])


def test_token_grid_covers_one_to_the_largest_step():
    g = token_grid(8192)
    assert g[:64] == list(range(1, 65)) and g[-1] == 8192
    assert all(b > a for a, b in zip(g, g[1:], strict=False))
    assert {64 * k for k in range(1, 129)} | {64 * k + 1 for k in range(1, 128)} <= set(g)
    big = token_grid(200_000)
    tail = big[big.index(16384) :]
    assert big[-1] == 200_000 and all(b / a < 1.1 for a, b in zip(tail, tail[1:], strict=False))


def test_attention_at_own_context(gpt2_model):
    """A step's attention depends on each sequence's context, not the batch's longest."""
    m = gpt2_model
    one_long = m.step(2, 2, 1 + 1000, 1 + 1000)  # decodes at contexts 0 and 999
    two_mid = m.step(2, 2, 2 * 500.5, 2 * 500.5)
    assert one_long == pytest.approx(two_mid)
    assert m.decode_step(2, 999) > one_long


def test_serving_all_reduces_carry_16_bit_values_for_an_fp8_model():
    # the same rule as memwall parallel's inference plan: FP8 GEMMs write 16-bit outputs
    spec, _ = load_model_config("llama-3-70b")
    fp8, _ = tp_comm(spec, "h100-sxm", 4, parse_precision("8/8/8"))
    bf16, _ = tp_comm(spec, "h100-sxm", 4, parse_precision("bf16"))
    assert fp8(4096.0) == bf16(4096.0)
