"""The trace engine on small hand-made modules: FLOPs, bytes, views, fusion, coverage, meta."""

from __future__ import annotations

import threading
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from memwall.count import POINTWISE_FLOPS, op_table, totals  # noqa: E402
from memwall.count.table import COLUMNS, SHAPE_COLUMNS  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from memwall.spec import Workload, load_model, parse_precision, spec_from_config  # noqa: E402
from memwall.trace import (  # noqa: E402
    Tracer,
    flop_counter_mode,
    kernels,
    trace_config,
    trace_module,
    trace_table,
)
from memwall.trace.models import build_model, resolve_device, trace_decode_step  # noqa: E402

F32 = 4
TINY_LLAMA = dict(
    model_type="llama",
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=500,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)


class MLP(nn.Module):
    def __init__(self, d: int = 32, f: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, f)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(f, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _only(result, packet):
    recs = [r for r in result.records if r.packet == packet]
    assert len(recs) == 1, [r.packet for r in result.records]
    return recs[0]


def test_linear_flops_bytes_and_module_paths():
    B, d, f = 8, 32, 64
    res = trace_module(MLP(d, f), torch.randn(B, d))
    mms = [r for r in res.records if r.packet == "addmm"]
    assert [r.module for r in mms] == ["fc1", "fc2"]
    assert mms[0].matmul_flops == 2 * B * d * f
    assert mms[0].flops == 2 * B * d * f + B * f  # + the bias add
    gelu = _only(res, "gelu")
    assert gelu.module == "act" and gelu.flops == POINTWISE_FLOPS["gelu"] * B * f
    read, written = mms[0].eager_bytes(res.storages)
    assert read == (B * d + d * f + f) * F32  # input, weight (through its transposed view), bias
    assert written == B * f * F32
    assert not res.coverage


def test_matmul_flops_equal_flop_counter_on_the_same_run():
    model = MLP()
    x = torch.randn(4, 32)
    fc = flop_counter_mode()
    with torch.no_grad(), fc, Tracer(model) as tr:
        model(x)
    res = tr.result()
    assert res.matmul_flops == fc.get_total_flops() > 0


def test_views_move_nothing_and_are_not_double_counted():
    class Halves(nn.Module):
        def forward(self, x):
            a, b = x[:, :16], x[:, 16:]  # two views of one storage
            return (a + b).t().contiguous()

    x = torch.randn(8, 32)
    res = trace_module(Halves(), x)
    assert [r.packet for r in res.records] == ["add", "clone"]  # slices / transpose: no record
    add = res.records[0]
    read, written = add.eager_bytes(res.storages)
    assert read == 8 * 32 * F32  # both halves, i.e. x once
    assert written == 8 * 16 * F32
    assert res.view_calls >= 3


def test_peak_activation_frees_at_last_use():
    class Seq(nn.Module):
        def forward(self, x):
            a = x * 2  # 400 B, dead after b
            b = a + 1  # 400 B
            c = torch.cat([b, b])  # 800 B, returned
            return c

    res = trace_module(Seq(), torch.randn(10, 10))
    n = 100 * F32
    assert res.peak_activation_bytes() == 3 * n  # b and c alive together; a already freed


def test_same_view_read_twice_counts_once():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    res = trace_module(Square(), torch.randn(10, 10))
    read, _ = res.records[0].eager_bytes(res.storages)
    assert read == 100 * F32


def test_embedding_reads_rows_not_table():
    emb = nn.Embedding(10_000, 64)
    ids = torch.tensor([[1, 5, 5, 9, 42]])
    res = trace_module(emb, ids)
    rec = _only(res, "embedding")
    weight = [s for s in rec.reads if res.storages[s].role == "param"]
    assert len(weight) == 1
    assert sum(rec.reads[weight[0]].values()) == 5 * 64 * F32  # rows gathered, not 10000 x 64
    read, written = rec.eager_bytes(res.storages)
    assert read == 5 * 64 * F32 + 5 * 8  # + the int64 ids
    assert written == 5 * 64 * F32


def test_cache_write_counts_the_elements_written():
    class Append(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("cache", torch.zeros(1, 4, 1000, 16))

        def forward(self, k, pos):
            self.cache.index_copy_(2, pos, k)
            return self.cache

    k = torch.randn(1, 4, 1, 16)
    res = trace_module(Append(), k, torch.tensor([7]))
    rec = _only(res, "index_copy_")
    read, written = rec.eager_bytes(res.storages)
    assert written == 4 * 16 * F32  # one token, not the 1000-slot cache
    assert read == 4 * 16 * F32 + 8  # the new K and its index; the cache itself is not read


def test_uncovered_op_is_reported_with_its_count_and_still_moves_bytes():
    class Spectral(nn.Module):
        def forward(self, x):
            for _ in range(3):
                x = torch.fft.rfft(x, dim=-1).abs()[..., :-1].contiguous()
                x = torch.cat([x, x], dim=-1)
            return x

    res = trace_module(Spectral(), torch.randn(4, 64))
    assert len(res.coverage) == 1
    ((op, calls),) = res.coverage.items()
    assert "fft_r2c" in op and calls == 3
    fft = [r for r in res.records if not r.covered]
    assert len(fft) == 3 and all(r.flops == 0 for r in fft)
    assert all(sum(r.eager_bytes(res.storages)) > 0 for r in fft)


def test_table_reports_uncovered_ops():
    df = trace_config(TINY_LLAMA, Workload("prefill", 1, 8), device="cpu")
    assert df.attrs["engine"] == "trace"
    assert df.attrs["coverage"] == {}  # every op of a Llama block has a formula


def test_pointwise_chain_is_one_kernel():
    class Chain(nn.Module):
        def forward(self, x):
            return torch.relu(x * 2 + 1) - 3

    x = torch.randn(16, 16)
    res = trace_module(Chain(), x)
    fused = kernels(res, fused=True)
    eager = kernels(res, fused=False)
    assert len(fused) == 1 and len(eager) == 4
    n = 16 * 16 * F32
    assert fused[0].bytes_read == n and fused[0].bytes_written == n
    assert sum(k.bytes for k in eager) == 8 * n  # four ops, each reads and writes n
    assert fused[0].bytes_eager == 8 * n


def test_kernel_boundary_through_a_matmul_is_respected():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(16, 16, bias=False)

        def forward(self, x):
            h = torch.relu(x)
            return self.lin(h) + h  # the add needs the matmul, which needs relu

    res = trace_module(Residual(), torch.randn(4, 16))
    fused = kernels(res, fused=True)
    assert [k.label for k in fused] == ["act", "mm", "add"]
    relu = fused[0]
    assert relu.bytes_written == 4 * 16 * F32  # read by the matmul and the add: written once


def test_fused_kernel_skips_dead_outputs_eager_keeps_them():
    ln = nn.LayerNorm(32)
    res = trace_module(ln, torch.randn(8, 32))
    (fk,) = kernels(res, fused=True)
    (ek,) = kernels(res, fused=False)
    assert fk.bytes_written == 8 * 32 * F32  # the normalised output only
    assert ek.bytes_written == 8 * 32 * F32 + 2 * 8 * F32  # + saved mean and rstd
    assert fk.flops == POINTWISE_FLOPS["layernorm"] * 8 * 32


def test_meta_device_counts_what_cpu_counts_attention_included():
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(64, 3 * 64)

        def forward(self, x):
            q, k, v = self.qkv(x).view(1, -1, 3, 4, 16).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def run(device):
        with torch.device(device):
            m = Attn()
            x = torch.randn(1, 10, 64)
        res = trace_module(m, x)
        ks = kernels(res)
        return [(k.label, k.flops, k.matmul_flops, k.bytes) for k in ks]

    cpu, meta = run("cpu"), run("meta")
    assert cpu == meta
    attn = [k for k in cpu if k[0] == "attention"]
    assert attn and attn[0][2] == 4 * 4 * 10 * 10 * 16  # QK^T and PV over the full square


def test_trace_table_columns_and_bf16():
    wl = Workload("decode", 1, 16)
    f32 = trace_config(TINY_LLAMA, wl, device="cpu")
    bf16 = trace_config(TINY_LLAMA, wl, precision=parse_precision("bf16"), device="cpu")
    cf = op_table(spec_from_config(TINY_LLAMA), wl)
    shared = [c for c in cf.columns if c not in SHAPE_COLUMNS]  # m, k, n: closed form only
    assert list(f32.columns[: len(shared)]) == shared == list(COLUMNS)
    assert {"module", "aten_ops", "bytes_eager"} <= set(f32.columns)
    assert set(bf16.dtype) >= {"bf16"} and "bf16" not in set(f32.dtype)
    assert bf16.bytes_weight.sum() == pytest.approx(f32.bytes_weight.sum() / 2)
    assert bf16.flops.sum() == pytest.approx(f32.flops.sum(), rel=1e-3)
    rows = f32.set_index("name")
    assert rows.loc["model.layers.*.mlp.gate_proj", "count"] == 2
    assert (f32.bytes_eager >= f32.bytes - 1e-9).all()  # fusion never adds traffic


def test_generate_sums_its_decode_steps_exactly():
    spec = spec_from_config(TINY_LLAMA, "tiny")
    df = trace_config(TINY_LLAMA, Workload("generate", 1, 6, 4), device="cpu", name="tiny")
    model = build_model(TINY_LLAMA)
    flops = nbytes = 0.0
    with torch.no_grad():
        for c in range(6, 10):
            res = trace_decode_step(model, spec, 1, c, torch.float32, "cpu")
            ks = kernels(res)
            flops += sum(k.flops for k in ks)
            nbytes += sum(k.bytes for k in ks)
    assert df.flops.sum() == pytest.approx(flops, rel=1e-12)
    assert df.bytes.sum() == pytest.approx(nbytes, rel=1e-12)
    assert (df.steps == 4).all()


def test_auto_device_is_meta_unless_routing_needs_values():
    gpt2 = load_model("gpt2")
    assert resolve_device(gpt2, torch.float32, "auto", Workload("decode", 1, 16)) == "meta"
    assert resolve_device(load_model("llama-2-7b"), torch.bfloat16, "auto") == "meta"
    small_moe = spec_from_config(
        dict(TINY_LLAMA, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2)
    )
    assert resolve_device(small_moe, torch.float32, "auto", Workload("decode", 1, 8)) == "cpu"
    assert resolve_device(gpt2, torch.float32, "cpu") == "cpu"


@pytest.mark.parametrize("wl", [Workload("prefill", 2, 12), Workload("generate", 1, 5, 3)])
def test_meta_trace_counts_what_cpu_counts(wl):
    cpu = trace_config(TINY_LLAMA, wl, device="cpu")
    meta = trace_config(TINY_LLAMA, wl, device="auto")
    assert meta.attrs["device"] == "meta"
    for col in ("flops", "matmul_flops", "bytes_weight", "bytes_kv"):
        assert meta[col].sum() == pytest.approx(cpu[col].sum(), rel=1e-9), col
    # activations: a few bytes apart (the cache's fill level is an int64 scalar on meta runs)
    assert meta.bytes_act.sum() == pytest.approx(cpu.bytes_act.sum(), rel=1e-4)


def test_bad_input_is_one_clear_error():
    wl = Workload("decode", 1, 8)
    with pytest.raises(MemwallError, match="fp32, bf16 or fp16"):
        trace_config(TINY_LLAMA, wl, precision=parse_precision("int8"))
    with pytest.raises(MemwallError, match="device"):
        trace_config(TINY_LLAMA, wl, device="gpu")
    with pytest.raises(MemwallError, match="config"):
        trace_table(spec_from_config(TINY_LLAMA, "not-a-preset"), wl)


def test_small_moe_traces_on_cpu():
    moe = dict(TINY_LLAMA, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2)
    wl = Workload("decode", 1, 8)
    df = trace_config(moe, wl, device="cpu")
    t = totals(op_table(spec_from_config(moe), wl))
    assert df.flops.sum() == pytest.approx(t["flops"], rel=0.01)
    assert "moe" in set(df.kind)
    assert df.attrs["coverage"] == {}  # the router's topk has a formula now
    assert "balanced routing" not in df.attrs["note"]  # cpu: real routing


@pytest.mark.parametrize("wl", [Workload("decode", 1, 8), Workload("prefill", 2, 16)])
def test_moe_on_meta_routes_as_the_closed_form_assumes(wl):
    moe = dict(TINY_LLAMA, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2)
    df = trace_config(moe, wl, device="meta")
    t = totals(op_table(spec_from_config(moe), wl))
    assert df.attrs["device"] == "meta" and "balanced routing" in df.attrs["note"]
    assert df.flops.sum() == pytest.approx(t["flops"], rel=0.01)
    # one token touches exactly k experts; 32 tokens touch all 8 (closed form: 7.99)
    assert df.bytes_weight.sum() == pytest.approx(t["bytes_weight"], rel=0.01)


def _peak_rss_during(fn):
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    base = proc.memory_info().rss
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out = fn()
    finally:
        done.set()
        th.join()
    return out, peak[0] - base


def test_meta_trace_of_a_7b_model_allocates_no_weights():
    spec = load_model("llama-2-7b")
    wl = Workload("decode", 1, 128)
    assert resolve_device(spec, torch.float32, "auto") == "meta"  # else this would need 27 GB
    df, grown = _peak_rss_during(lambda: trace_table(spec, wl, device="auto"))
    weights = spec.n_params() * F32
    assert df.attrs["device"] == "meta"
    assert grown < weights / 20  # ~27 GB of fp32 weights; the trace holds shapes only
    t = totals(op_table(spec, wl))
    assert df.bytes_weight.sum() == pytest.approx(t["bytes_weight"], rel=1e-6)
    assert df.flops.sum() == pytest.approx(t["flops"], rel=0.01)
