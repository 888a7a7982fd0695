"""The realistic model's GEMM shape terms, MoE expert GEMMs and causal attention (issue 23)."""

import numpy as np
import pytest

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.predict.efficiency import predict_efficiency
from memwall.predict.gemm_shape import shape_efficiency
from memwall.spec import Workload, load_model, parse_precision

TILES = ((128, 256, 1.0), (128, 128, 0.93), (64, 128, 0.8))


def _eff(m, k, n, units=132):
    return float(shape_efficiency(np.array([m]), np.array([k]), np.array([n]), units, TILES, 64)[0])


def test_wave_quantisation_by_hand():
    # 128 x 256 tiles: 2 x 67 = 134 tiles on 132 units -> 2 waves, 134 / 264 busy; the
    # 128 x 128 option: 2 x 133 = 266 tiles -> 3 waves, 266 / 396 x 0.93 x column padding
    m, k, n = 256, 4096, 67 * 256
    big = 134 / 264
    small = 266 / 396 * 0.93 * (n / (133 * 128))
    tiny = 536 / 660 * 0.8  # 64 x 128: 4 x 134 tiles, 5 waves
    assert _eff(m, k, n) == pytest.approx(max(big, small, tiny) * k / (k + 64))


def test_short_k_and_skinny_n_cost_rate():
    assert _eff(8192, 8192, 8192) > 0.95
    assert _eff(131072, 256, 7168) < _eff(131072, 2048, 7168)
    assert _eff(2048, 4096, 8) < 0.2  # a router: a few columns use a few units
    assert _eff(2048, 4096, 4096, units=None) == 1.0  # no unit count: no quantisation


def test_moe_expert_gemms_run_on_the_matrix_units():
    """Regression: expert GEMMs (op kind moe) were priced at the fp32 vector rate."""
    prec = parse_precision("bf16")
    dev = get_device("h100-sxm")
    ops = op_table(load_model("mixtral-8x7b"), Workload("prefill", 1, 2048), prec, "full")
    e = predict_efficiency(ops, dev, prec, "kernel").ops.set_index("name")
    up = e.loc["expert_up"]
    rate = up["flops"] / up["t_compute"]
    assert rate > 0.5 * dev.peak("bf16")  # tensor cores, not 30% of the 67 TFLOP/s vector peak
    assert rate > 5 * dev.peak("fp32")


def test_causal_prompt_halves_attention_compute():
    prec = parse_precision("bf16")
    dev = get_device("h100-sxm")
    ops = op_table(load_model("llama-3-8b"), Workload("prefill", 1, 8192), prec, "full")
    full = predict_efficiency(ops, dev, prec, "kernel").ops.set_index("name")
    causal = predict_efficiency(ops, dev, prec, "kernel", causal=True).ops.set_index("name")
    assert causal.loc["attention", "t_compute"] == pytest.approx(
        0.5 * full.loc["attention", "t_compute"]
    )
    assert causal.loc["q_proj", "time"] == pytest.approx(full.loc["q_proj", "time"])


def _spread_eff(m, spread, k=4096, n=4096, units=132):
    one = np.array([m], dtype=float)
    return float(shape_efficiency(one, np.array([k]), np.array([n]), units, TILES, 64, spread)[0])


def test_m_spread_zero_is_the_one_shape():
    for m in (1, 300, 1000, 1025, 4096):
        assert _spread_eff(m, 0.0) == pytest.approx(_eff(m, 4096, 4096))


def test_m_spread_averages_the_wave_cliff():
    # one row past a full wave: 128 x 256 tiles, N = 4096 -> 16 columns; 8 x 16 = 128 tiles
    # fill 132 units once at M = 1024, M = 1025 needs a ninth row of tiles (144: two waves)
    assert _eff(1000, 4096, 4096) / _eff(1025, 4096, 4096) > 1.4
    a, b = _spread_eff(1000, 0.25), _spread_eff(1025, 0.25)
    assert abs(a / b - 1) < 0.05
    # the average lies between the best and worst single shapes of its window
    window = [_eff(m, 4096, 4096) for m in range(750, 1251)]
    assert min(window) <= a <= max(window)
    # total work over total time, by hand on the 17 shapes it averages
    f = np.linspace(0.75, 1.25, 17)
    by_hand = f.sum() / sum(x / _eff(1000 * x, 4096, 4096) for x in f)
    assert a == pytest.approx(by_hand)


def test_m_spread_out_of_range_is_refused():
    with pytest.raises(ValueError):
        _spread_eff(1000, 1.0)
    ops = op_table(load_model("gpt2"), Workload("decode", 8, 128), parse_precision("bf16"))
    with pytest.raises(MemwallError):
        predict_efficiency(ops, get_device("h100-sxm"), m_spread=-0.1)
