"""`memwall.count_ops`: the trace engine around any code a user runs, counted exactly."""

from __future__ import annotations

import pytest

import memwall
from memwall.errors import MemwallError

torch = pytest.importorskip("torch")
nn = torch.nn


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32, bias=False), nn.Linear(32, 16, bias=False))


def test_linear_layers_count_exactly_2mkn():
    model, x = _mlp(), torch.randn(8, 64)
    with memwall.count_ops(model) as c:
        y = model(x)
    assert y.shape == (8, 16)  # the code ran for real
    assert c.total_flops == 2 * 8 * 64 * 32 + 2 * 8 * 32 * 16
    t = c.table
    assert t["bytes_weight"].sum() == 4 * (64 * 32 + 32 * 16)  # every weight read once, fp32
    assert t["bytes_written"].sum() == 4 * (8 * 32 + 8 * 16)  # hidden and returned output
    assert c.total_bytes == t["bytes"].sum() == t["bytes_read"].sum() + t["bytes_written"].sum()
    assert c.intensity == pytest.approx(c.total_flops / c.total_bytes)
    assert c.coverage == {}


def test_without_a_module_parameters_are_still_weights():
    model, x = _mlp(), torch.randn(8, 64)
    with memwall.count_ops(model) as named:
        model(x)
    with memwall.count_ops() as anon:
        model(x)
    assert anon.total_flops == named.total_flops
    assert anon.total_bytes == named.total_bytes
    assert anon.table["bytes_weight"].sum() == named.table["bytes_weight"].sum() > 0
    assert list(anon.table["name"]) == ["model [mm]"]  # no module: rows named by kernel


def test_meta_device_and_backward():
    with torch.device("meta"):
        lin = nn.Linear(4096, 4096, bias=False)
        x = torch.empty(16, 4096)
    with memwall.count_ops() as c:
        lin(x)
    assert c.total_flops == 2 * 16 * 4096 * 4096  # shapes only: no memory allocated
    model, x = _mlp(), torch.randn(8, 64)
    with memwall.count_ops(model) as c:
        model(x).sum().backward()
    forward = 2 * 8 * 64 * 32 + 2 * 8 * 32 * 16
    assert c.table["matmul_flops"].sum() == 3 * forward - 2 * 8 * 64 * 32  # no input grad


def test_result_is_a_memwall_result():
    model, x = _mlp(), torch.randn(8, 64)
    with memwall.count_ops(model, name="mlp") as c:
        model(x)
    r = c.result()
    assert isinstance(r, memwall.Result) and r.command == "count_ops"
    d = r.to_dict()
    assert d["model"] == "mlp" and d["totals"]["flops"] == c.total_flops
    assert d["precision"] == "fp32" and len(d["ops"]) == len(c.table)
    assert list(r.to_frame().columns) == list(r.columns) and len(r.to_frame()) == len(c.table)
    assert r.title in r._repr_html_() and r.title in c._repr_html_()


def test_reading_before_the_block_has_run_is_one_line():
    c = memwall.count_ops()
    with pytest.raises(MemwallError, match="after the `with` block"):
        c.total_flops  # noqa: B018


def test_gpt2_forward_matches_the_closed_form():
    from memwall.count import op_table, totals
    from memwall.spec import Workload, parse_precision, spec_from_config
    from memwall.trace import build_model
    from tiny_configs import TINY_GPT2

    model = build_model(dict(TINY_GPT2), torch.float32, "cpu")
    ids = torch.randint(0, TINY_GPT2["vocab_size"], (2, 32))
    with torch.no_grad(), memwall.count_ops(model) as c:
        model(ids)
    spec = spec_from_config(TINY_GPT2, name="tiny-gpt2")
    closed = totals(op_table(spec, Workload("prefill", 2, 32), parse_precision("fp32")))
    assert c.table["matmul_flops"].sum() == closed["matmul_flops"]
    assert c.total_flops == pytest.approx(closed["flops"], rel=1e-4)
    assert c.total_bytes == pytest.approx(closed["bytes"], rel=0.05)
    assert c.coverage == {}
    names = set(c.table["name"])
    assert {"transformer.h.*.mlp.c_fc", "lm_head"} <= names  # submodule paths, layers collapsed
    assert c.table.set_index("name").loc["transformer.h.*.mlp.c_fc", "count"] == 2
