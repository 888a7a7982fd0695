"""The whole-step kernel rate of training (`training_step.kernel_rate`, a fit on marked rows of
data/published_training.csv): applied where it should be, chosen by its stated rule."""

import pytest

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel import Layout
from memwall.parallel.beside import training_line
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, plan
from memwall.parallel.published import (
    fit_kernel_rate,
    predict_row,
    published_rows,
    row_kernel_rate,
)
from memwall.predict.efficiency import training_kernel_rate
from memwall.spec import load_model, parse_precision

SPEC, DEV = load_model("llama-3-8b"), get_device("h100-sxm")
LAY = Layout(tp=2, dp=4, sequence_parallel=True, zero=1)


def _plan(**kw):
    o = Options("train", 32, 1, 2048, parse_precision("bf16"), **kw)
    return plan(SPEC, DEV, links_for("h100-sxm"), LAY, o)


def test_kernel_time_scales_with_the_rate_and_communication_does_not():
    one, half = _plan(kernel_rate=1.0), _plan(kernel_rate=0.5)
    for part in ("forward", "backward"):
        assert half.breakdown[part] == pytest.approx(2 * one.breakdown[part])
    assert half.breakdown["optimizer"] == one.breakdown["optimizer"]  # memory-bound, unscaled
    assert half.collectives[0].time == one.collectives[0].time


def test_default_uses_the_fitted_value_and_says_so():
    t = training_kernel_rate()
    assert t.low < t.value < t.high and t.origin.startswith("fit: FIT:")
    d, one = _plan(), _plan(kernel_rate=t.value)
    assert d.step_time == one.step_time
    assert d.extra["kernel_rate"] == t.value
    assert f"{t.value:.3f} of their one-by-one rate" in d.to_dict()["compute_model"]


def test_roofline_and_inference_ignore_the_rate():
    roof = _plan(efficiency=False)
    assert roof.step_time == _plan(efficiency=False, kernel_rate=0.5).step_time
    assert "upper bound" in roof.to_dict()["compute_model"]
    o = Options("infer", 8, 1, 512, parse_precision("bf16"))
    inf = plan(SPEC, DEV, links_for("h100-sxm"), Layout(tp=2), o)
    assert "one-by-one" not in inf.to_dict()["compute_model"]


@pytest.mark.parametrize("bad", [0.0, -1.0, 2.0])
def test_a_rate_outside_its_bounds_is_refused(bad):
    with pytest.raises(MemwallError, match="kernel rate"):
        _plan(kernel_rate=bad)


FIT_ROWS = 93  # the rows the kernel rate was fitted over; rows added after it are out of sample


def test_fit_rows_are_every_third_row_in_file_order():
    rows = published_rows()
    assert [r["fitted"] == "yes" for r in rows[:FIT_ROWS]] == [i % 3 == 0 for i in range(FIT_ROWS)]
    assert all(r["fitted"] == "no" for r in rows[FIT_ROWS:])


def test_row_kernel_rate_makes_the_prediction_match_the_row():
    r = next(r for r in published_rows() if r["id"] == "dgxc-llama31-70b-h100-64")
    k = row_kernel_rate(r)
    assert predict_row(r, kernel_rate=k)["predicted"] == pytest.approx(r["value"], rel=1e-6)


def test_beside_line_marks_a_fit_row_as_in_sample():
    row = dict(id="x", gpus=8, layout="tp1 pp1 dp8", seq_len=4096, global_batch=8, metric="mfu")
    row.update(published=0.5, predicted=0.5, error=0.0, source="s")
    assert "in sample" in training_line([{**row, "fitted": True}])
    assert "in sample" not in training_line([{**row, "fitted": False}])


@pytest.mark.slow
def test_data_file_holds_what_the_stated_rule_gives():
    """value = median, low/high = quartiles of the fit rows' matching rates (bench --fit)."""
    rates, (q1, med, q3) = fit_kernel_rate()
    assert len(rates) == 31 and all(r["fitted"] == "yes" for r, _ in rates)
    t = training_kernel_rate()
    assert (t.low, t.value, t.high) == pytest.approx((q1, med, q3), abs=0.0015)


def test_gradient_accumulation_is_fused_without_zero_and_sharded_with_it():
    """Megatron adds each micro-batch's weight gradients into fp32 main gradients in the wgrad
    GEMM's epilogue (--gradient-accumulation-fusion), so only the unhidden share of those bytes
    costs; FSDP / ZeRO-3 adds them into the device's 1/dp shard after the reduce-scatter."""
    from memwall.parallel.extras import accumulation_time
    from memwall.predict.efficiency import memory_compute_overlap

    alone = accumulation_time(1e9, DEV)
    assert accumulation_time(1e9, DEV, fused=True) == pytest.approx(
        alone * (1 - memory_compute_overlap())
    )
    o = Options("train", 64, 1, 2048, parse_precision("bf16"))
    links = links_for("h100-sxm")
    z1 = plan(SPEC, DEV, links, Layout(dp=8, zero=1), o)
    z3 = plan(SPEC, DEV, links, Layout(dp=8, zero=3), o)
    ce = z1.breakdown["loss_and_grad_accumulation"] - 8 * accumulation_time(
        SPEC.n_params(), DEV, fused=True
    )
    assert ce > 0  # what is left is the loss over the vocabulary, the same in both
    assert z3.breakdown["loss_and_grad_accumulation"] == pytest.approx(
        ce + 8 * accumulation_time(SPEC.n_params() / 8, DEV), rel=1e-6
    )


def test_the_rate_applies_to_the_classes_its_fit_rows_stand_for_only():
    """Fitted on datacenter GPUs: a TPU or Gaudi training plan keeps its kernels' own rate."""
    for name in ("tpu-v5e", "gaudi2"):
        dev = get_device(name)
        o = Options("train", 8, 1, 512, parse_precision("bf16"))
        gpt2, links = load_model("gpt2"), links_for(name)
        p = plan(gpt2, dev, links, Layout(), o)
        one = plan(gpt2, dev, links, Layout(), Options(**{**o.__dict__, "kernel_rate": 1.0}))
        assert p.extra["kernel_rate"] is None and p.step_time == one.step_time
        assert "one-by-one" not in p.to_dict()["compute_model"]
    assert training_kernel_rate(get_device("mi300x")) is not None
    assert training_kernel_rate(get_device("rtx-4090")) is None
