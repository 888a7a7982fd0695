"""Pipeline stages of a MoE model with dense first layers (DeepSeek-V3: 3 dense, 58 MoE): the
device priced is the heavier of the first stage and one of MoE layers alone, and a stage of
dense layers alone is priced as one (its memory asked for the router's tensors)."""

from __future__ import annotations

from dataclasses import replace

from memwall.count.weights import matmul_params
from memwall.hardware import get_device
from memwall.memory import training_memory
from memwall.parallel import Layout, Options, links_for, plan
from memwall.parallel.shard import shard_spec
from memwall.spec import load_model, parse_precision

BF16 = parse_precision("bf16")


def test_the_heavier_stage_is_priced():
    ds = load_model("deepseek-v3")
    assert (ds.dense_layers, ds.n_layers) == (3, 61)
    # 32 stages of 2 layers: the first holds dense layers alone; without expert parallelism a
    # stage of two MoE layers holds 256 experts each and is far heavier
    s = shard_spec(ds, Layout(pp=32))
    assert s.dense_layers == 0 and s.moe_layers == 2
    first = replace(s, dense_layers=2)
    assert matmul_params(s) > 10 * matmul_params(first)
    # 4 stages at EP 64: 4 experts a device, the first stage's dense MLPs weigh more
    assert shard_spec(ds, Layout(pp=4, ep=64, dp=64)).dense_layers == 3
    # the layout that claimed to fit (it priced the dense stage) does not
    o = Options("train", 64, 1, 1024, BF16, efficiency=True)
    p = plan(ds, get_device("b200"), links_for("b200"), Layout(pp=32, dp=2), o)
    assert not p.fits


def test_a_stage_of_dense_layers_alone_has_its_memory():
    ds = load_model("deepseek-v3")
    dense_stage = replace(ds, n_layers=2, dense_layers=2, n_experts=4)
    assert dense_stage.is_moe and dense_stage.moe_layers == 0
    fp = training_memory(dense_stage, 1, 1024, BF16, impl="fused")
    assert fp.activations > 0 and fp.peak > fp.activations


def test_the_moe_training_caution_says_what_the_published_rows_show():
    # the caution every MoE training answer carries must stay true of the rows it cites
    import re

    from memwall.api._parallel import MOE_TRAINING
    from memwall.parallel.published import predict_row, published_rows, row_spec

    rows = [r for r in published_rows() if row_spec(r).is_moe]
    assert {r["family"] for r in rows} == {"gpt-oss-120b", "qwen3-30b-a3b", "deepseek-v3"}
    ratios = {r["id"]: 1 + predict_row(r)["error"] for r in rows}
    assert all(x > 1 for x in ratios.values())  # "every ... ran slower than memwall predicts"
    lo, hi = map(int, re.search(r"predicted (\d+)-(\d+)% too fast", MOE_TRAINING).groups())
    fine = [x for k, x in ratios.items() if "deepseek" not in k]  # 128 experts of 768-2880
    assert (round(100 * (min(fine) - 1)), round(100 * (max(fine) - 1))) == (lo, hi)
