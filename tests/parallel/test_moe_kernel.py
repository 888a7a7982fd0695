"""MoE expert GEMMs priced with the kernels the engine ran: TensorRT-LLM 0.9 ran Ampere's SM80
grouped GEMM on Hopper (the `moe_kernel` column of data/published_inference.csv, efficiency.json
mm_sm80_rel), not Hopper's own GEMMs."""

from __future__ import annotations

import pytest

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.layout import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, plan
from memwall.parallel.published_inference import load_published, predict_row
from memwall.precision import parse_precision
from memwall.predict.efficiency import predict_efficiency
from memwall.predict.efficiency_data import efficiency_terms
from memwall.spec import Workload, load_model

FP16 = parse_precision("fp16")
MIXTRAL = load_model("mixtral-8x7b")
HOPPER = ("h100-sxm", "h200-sxm", "h100-pcie")


def _ops():
    return op_table(MIXTRAL, Workload("prefill", 8, 2048), FP16, "full")


def test_sm80_kernels_slow_only_the_expert_gemms_on_hopper():
    h100 = get_device("h100-sxm")
    own = predict_efficiency(_ops(), h100, FP16, spread=False).ops.set_index("name")
    sm80 = predict_efficiency(_ops(), h100, FP16, spread=False, moe_kernel="sm80").ops
    sm80 = sm80.set_index("name")
    rel = efficiency_terms(h100)["mm_sm80_rel"].value
    assert rel == pytest.approx(0.73)
    for name in ("expert_gate", "expert_up", "expert_down"):  # compute-bound at 16k tokens
        assert sm80.loc[name, "t_compute"] == pytest.approx(own.loc[name, "t_compute"] / rel)
    for name in ("router", "q_proj", "attention", "lm_head"):
        assert sm80.loc[name, "time"] == pytest.approx(own.loc[name, "time"])


def test_on_ampere_sm80_kernels_are_the_device_s_own():
    a100 = get_device("a100-sxm-80gb")
    own = predict_efficiency(_ops(), a100, FP16, spread=False).totals["time"]
    sm80 = predict_efficiency(_ops(), a100, FP16, spread=False, moe_kernel="sm80")
    assert sm80.totals["time"] == pytest.approx(own)


def test_an_unknown_moe_kernel_is_refused():
    with pytest.raises(MemwallError, match="moe_kernel"):
        predict_efficiency(_ops(), get_device("h100-sxm"), FP16, moe_kernel="sm90a")


def test_the_parallel_plan_passes_the_kernel_to_inference():
    h100, lay = get_device("h100-sxm"), Layout(tp=2)
    o = Options("infer", 8, 8, 2048, FP16)
    own = plan(MIXTRAL, h100, links_for("h100-sxm"), lay, o).extra["prefill_time"]
    o80 = Options("infer", 8, 8, 2048, FP16, moe_kernel="sm80")
    sm80 = plan(MIXTRAL, h100, links_for("h100-sxm"), lay, o80).extra["prefill_time"]
    assert sm80 > 1.15 * own


def test_the_column_marks_tensorrt_llm_0_9_moe_runs_on_hopper_and_only_them():
    rows = load_published()
    marked = {r.id for r in rows if r.moe_kernel == "sm80"}
    rule = {
        r.id
        for r in rows
        if r.software.startswith("TensorRT-LLM 0.9")
        and r.device in HOPPER
        and load_model(r.model).is_moe
    }
    assert marked == rule and len(marked) == 12
    r = next(r for r in rows if r.id in marked and r.metric == "ttft_s" and r.seq_len > 1000)
    assert predict_row(r)[0] > 1.2 * predict_row(r.model_copy(update={"moe_kernel": ""}))[0]
