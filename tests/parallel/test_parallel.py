"""memwall.parallel: collectives, layouts, the priced step, search (pure, no torch)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel import (
    Layout,
    Link,
    Options,
    alpha_beta_time,
    bubble_fraction,
    bytes_per_rank,
    links_for,
    plan,
    validate_layout,
)
from memwall.parallel.links import COLLECTIVES_FORMAT, load_measured_links
from memwall.parallel.search import search
from memwall.parallel.wall import interconnect_wall
from memwall.spec import load_model, parse_precision

BF16 = parse_precision("bf16")
H100 = get_device("h100-sxm")
H100_LINKS = links_for("h100-sxm")


def _ring_allreduce_sent(n: int, message: int) -> list[int]:
    """Run a ring all-reduce (reduce-scatter then all-gather over n chunks) on real arrays and
    count the elements each rank sends."""
    rng = np.random.default_rng(0)
    data = [rng.integers(0, 100, message) for _ in range(n)]
    want = sum(data)
    chunks = [np.array_split(d.copy(), n) for d in data]
    sent = [0] * n
    for step in range(n - 1):  # reduce-scatter
        msgs = [(r, (r - step) % n, chunks[r][(r - step) % n].copy()) for r in range(n)]
        for r, c, payload in msgs:
            chunks[(r + 1) % n][c] += payload
            sent[r] += payload.size
    for step in range(n - 1):  # all-gather
        msgs = [(r, (r + 1 - step) % n, chunks[r][(r + 1 - step) % n].copy()) for r in range(n)]
        for r, c, payload in msgs:
            chunks[(r + 1) % n][c] = payload
            sent[r] += payload.size
    for r in range(n):
        assert np.array_equal(np.concatenate(chunks[r]), want)
    return sent


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_ring_all_reduce_moves_2_n_minus_1_over_n(n):
    message = 960  # divisible by every n here
    sent = _ring_allreduce_sent(n, message)
    for s in sent:
        assert s == pytest.approx(bytes_per_rank("all_reduce", message, n))
        assert s == pytest.approx(2 * (n - 1) / n * message)


def test_alpha_beta_ring_and_tree():
    link = Link("x", bandwidth=100e9, latency=5e-6)
    small, algo_s = alpha_beta_time("all_reduce", 1024, 64, link)
    big, algo_b = alpha_beta_time("all_reduce", 1 << 30, 64, link)
    assert algo_s == "tree"  # latency-bound: log2(n) steps beat 2(n-1)
    ring, _ = alpha_beta_time("all_reduce", 1 << 30, 64, link, "ring")
    tree, _ = alpha_beta_time("all_reduce", 1 << 30, 64, link, "tree")
    assert big == min(ring, tree) and abs(tree / ring - 1) < 0.05  # bandwidth-bound: both ~2S/B
    assert ring == pytest.approx(2 * 63 * 5e-6 + 2 * 63 / 64 * (1 << 30) / 100e9)
    ag, _ = alpha_beta_time("all_gather", 1 << 20, 4, link)
    assert ag == pytest.approx(3 * 5e-6 + 0.75 * (1 << 20) / 100e9)
    assert alpha_beta_time("all_reduce", 1 << 20, 1, link)[0] == 0.0


def _infer(spec, lay, batch=8, seq=512):
    o = Options("infer", batch, batch // lay.dp, seq, BF16)
    return plan(spec, H100, H100_LINKS, lay, o)


def test_tensor_parallel_halves_weight_bytes():
    spec = load_model("llama-3-8b")
    one = _infer(spec, Layout(tp=1, dp=1))
    two = _infer(spec, Layout(tp=2, dp=1))
    ratio = two.per_device["weights"] / one.per_device["weights"]
    assert ratio == pytest.approx(0.5, abs=0.002)  # only the norms stay whole
    assert two.share("all_reduce") > 0 and one.share("all_reduce") == 0


@pytest.mark.parametrize("p,m", [(2, 1), (4, 8), (8, 32)])
def test_bubble_fraction_1f1b(p, m):
    assert bubble_fraction(p, m) == pytest.approx((p - 1) / (m + p - 1))
    assert bubble_fraction(p, m, 2) < bubble_fraction(p, m)


def test_plan_bubble_matches_formula():
    spec = load_model("gpt2-xl")
    o = Options("train", batch=16, micro_batch=1, seq_len=1024, precision=BF16)
    p = plan(spec, H100, H100_LINKS, Layout(pp=4, dp=1), o)
    b = p.breakdown
    step_level = ("dp_comm", "optimizer", "grad_clipping")  # once per step
    pipeline = sum(v for k, v in b.items() if k not in step_level)
    assert p.micro_batches == 16
    assert b["bubble"] / pipeline == pytest.approx(3 / (16 + 3))
    assert p.step_time == pytest.approx(sum(b.values()))


def test_train_plan_parts_and_collectives():
    spec = load_model("llama-3-8b")
    o = Options("train", batch=64, micro_batch=1, seq_len=2048, precision=BF16)
    p = plan(spec, H100, H100_LINKS, Layout(tp=4, pp=2, dp=8, zero=1, sequence_parallel=True), o)
    kinds = {(c.kind, c.group) for c in p.collectives}
    assert ("all_gather", "tp") in kinds and ("reduce_scatter", "tp") in kinds
    assert ("send_recv", "pp") in kinds and ("reduce_scatter", "dp") in kinds
    dp = next(c for c in p.collectives if c.group == "dp")
    assert dp.level == "inter"  # tp 4 x dp 8 spans nodes of 8
    tpc = next(c for c in p.collectives if c.group == "tp")
    assert tpc.level == "intra"
    assert 0 < p.mfu < 1 and p.hfu >= p.mfu
    no = plan(spec, H100, H100_LINKS, Layout(tp=4, pp=2, dp=8, zero=1, sequence_parallel=True),
              Options("train", 64, 1, 2048, BF16, overlap=False))  # fmt: skip
    assert no.breakdown["dp_comm"] > p.breakdown["dp_comm"]


@pytest.mark.parametrize(
    "lay,batch,needle",
    [
        (Layout(tp=2, pp=2, dp=1), 8, "product must equal"),
        (Layout(tp=3, dp=1), 8, "must divide the attention heads"),
        (Layout(tp=16, dp=1), 16, "key/value heads (8)"),
        (Layout(pp=64, dp=1), 64, "exceed the 32 layers"),
        (Layout(dp=4), 6, "not divisible by micro-batch x dp"),
        (Layout(dp=2, ep=2), 8, "mixture-of-experts"),
        (Layout(pp=2, dp=2, zero=2), 8, "ZeRO stage 2"),
    ],
)
def test_bad_layouts_one_line(lay, batch, needle):
    spec = load_model("llama-3-8b")  # 32 heads, 8 KV heads, 32 layers
    n = 8 if needle == "product must equal" else lay.devices
    with pytest.raises(MemwallError) as e:
        validate_layout(spec, lay, n, batch, 1)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_search_ranks_fitting_layouts_and_explains():
    spec = load_model("gpt2-xl")
    o = Options("train", batch=32, micro_batch=1, seq_len=1024, precision=parse_precision("fp16"))
    r = search(spec, get_device("v100-sxm2-32gb"), links_for("v100-sxm2-32gb"), 8,
               o, micro_batches=(1,))  # fmt: skip
    times = [p.step_time for p in r.ranked]
    assert times == sorted(times)
    assert all(p.fits for p in r.ranked)
    assert r.ranked[0].layout.label in r.explanation and "Runner-up" in r.explanation


def test_moe_expert_all_to_all():
    spec = load_model("mixtral-8x7b")
    o = Options("infer", 8, 2, 256, BF16)
    p = plan(spec, H100, H100_LINKS, Layout(tp=2, dp=4, ep=4), o)
    a2a = [c for c in p.collectives if c.kind == "all_to_all"]
    assert a2a and a2a[0].group_size == 4
    # one expert per device, fewer than the 2 each token uses: tokens are routed to the ranks
    one = plan(spec, H100, H100_LINKS, Layout(tp=1, dp=8, ep=8), Options("infer", 8, 1, 256, BF16))
    assert one.step_time > 0 and any(c.group_size == 8 for c in one.collectives)


def test_fp8_expert_dispatch_is_8_bit_and_combine_16_bit():
    """FP8 serving dispatches FP8 tokens but combines the experts' 16-bit outputs (DeepEP's
    combine is BF16 only): the combine's all-to-all carries twice the dispatch's bytes."""
    spec = load_model("mixtral-8x7b")
    o8 = Options("infer", 8, 2, 256, parse_precision("8/8/8"))
    p8 = plan(spec, H100, H100_LINKS, Layout(tp=2, dp=4, ep=4), o8)
    a2a = sorted((c for c in p8.collectives if c.kind == "all_to_all"), key=lambda c: c.message)
    assert len(a2a) == 2 and a2a[1].message == pytest.approx(2 * a2a[0].message)
    p16 = plan(spec, H100, H100_LINKS, Layout(tp=2, dp=4, ep=4), Options("infer", 8, 2, 256, BF16))
    b16 = sum(c.bytes_moved for c in p16.collectives if c.kind == "all_to_all")
    b8 = sum(c.bytes_moved for c in p8.collectives if c.kind == "all_to_all")
    assert b8 == pytest.approx(0.75 * b16)  # one 8-bit and one 16-bit leg instead of two 16-bit


def test_plan_memory_counts_the_runtime_as_memwall_memory_does():
    """A layout fits only with room for the CUDA context (the same line `memwall memory`
    shows), in training and in inference."""
    from memwall.memory.states import framework_overhead

    over = framework_overhead("gpu")[0]
    spec = load_model("llama-2-7b")
    for o in (Options("train", 8, 1, 1024, BF16), Options("infer", 8, 1, 1024, BF16)):
        p = plan(spec, H100, H100_LINKS, Layout(tp=2, dp=4), o)
        d = p.per_device
        assert d["framework_overhead"] == over > 0
        states = d["weights"] + d.get("gradients", 0) + d.get("optimizer_state", 0)
        assert d["peak"] >= states + over


def test_accumulated_gradients_are_live_beside_the_activations_in_flight():
    """With many micro-batches a step, every micro-batch after the first runs with the whole
    gradients allocated (accumulation adds into them): the peak holds all model states and
    every in-flight micro-batch's activations at once. It once took the one-micro-batch
    timeline's optimizer step (no activations) and added the activations to it, 26 GiB
    short for Llama-3-70B at tp4 pp2 v2."""
    spec = load_model("llama-3-70b")
    lay = Layout(tp=4, pp=2, dp=8, sequence_parallel=True, zero=1, interleave=2)
    p = plan(spec, H100, H100_LINKS, lay, Options("train", 512, 2, 2048, BF16))
    assert p.micro_batches == 32
    d = p.per_device
    states = d["weights"] + d["gradients"] + d["optimizer_state"] + d.get("master_weights", 0)
    assert d["peak"] >= states + d["activations"] + d["framework_overhead"]
    assert not p.fits  # 63 GiB of states and 31 GiB of activations on an 80 GiB device


def test_one_micro_batch_keeps_the_timeline_of_memwall_memory():
    """One micro-batch a step (no accumulation, no pipeline): the plan's peak is the moment
    `memwall memory` finds for the shard with fused kernels, plus the CUDA context."""
    from memwall.memory import training_memory

    spec = load_model("llama-2-7b")
    p = plan(spec, H100, H100_LINKS, Layout(dp=8, zero=3), Options("train", 8, 1, 2048, BF16))
    assert p.micro_batches == 1
    fp = training_memory(spec, 1, 2048, BF16, zero=3, devices=8, impl="fused")
    d = p.per_device
    assert d["peak"] == pytest.approx(fp.peak + d["framework_overhead"])
    assert d["activations"] == pytest.approx(fp.activations)


def test_no_pipeline_stage_holds_both_the_embedding_and_the_head():
    """Under a pipeline the first stage holds the embedding and the last the final norm, the
    untied head and the loss: the device's memory is the larger stage's, never the slice with
    both (one 128,256 x 4,096 matrix and its states too many for Llama-3-8B)."""
    from memwall.memory import training_memory
    from memwall.memory.states import param_groups
    from memwall.parallel.shard import shard_spec

    spec = load_model("llama-3-8b")
    lay = Layout(pp=2, dp=4, zero=1)
    p = plan(spec, H100, H100_LINKS, lay, Options("train", 32, 1, 4096, BF16))
    shard = shard_spec(spec, lay)
    fp = training_memory(shard, 1, 4096, BF16, zero=1, devices=4, impl="fused")
    pg = param_groups(shard)
    w = p.per_device["weights"]
    stage_w = (fp.weights * (1 - pg.head / pg.total), fp.weights * (1 - pg.embed / pg.total))
    assert any(w == pytest.approx(x) for x in stage_w)
    assert w <= fp.weights - 0.99 * 2 * spec.vocab_size * spec.d_model


def test_one_local_expert_still_runs_every_token_s_top_k():
    """Expert parallelism as wide as the experts leaves each device one expert, which the
    tokens of the whole group reach k times each: the device's forward FLOPs are those of a
    narrower expert parallelism. A one-expert slice was once counted as a dense MLP (one pass
    per token, no top-k), which priced Mixtral's training search at 98% MFU, kernels at 106%
    of the dense peak."""
    from memwall.parallel.shard import forward, shard_spec

    spec = load_model("mixtral-8x7b")
    flops = {
        ep: forward(shard_spec(spec, Layout(dp=64, ep=ep)), "prefill", 4, 2048, BF16, H100)["flops"]
        for ep in (4, 8)
    }
    assert shard_spec(spec, Layout(dp=64, ep=8)).n_experts == 1
    assert flops[8] == pytest.approx(flops[4], rel=1e-3)
    p = plan(
        spec, H100, H100_LINKS, Layout(dp=64, ep=8, zero=1), Options("train", 512, 4, 2048, BF16)
    )
    assert p.mfu < 0.8


def test_published_moe_rows_take_their_preset_and_are_compared_on_throughput():
    """A training row may name a preset (a MoE model's experts and routing come from it); its
    architecture columns must agree with the preset, and a tokens_per_gpu row is compared on
    training tokens per second per GPU, what memwall's plan predicts for that layout."""
    from memwall.parallel.published import predict_row, published_rows

    text = (
        "id,family,n_layers,d_model,n_heads,n_kv_heads,d_ff,vocab_size,seq_len,device,gpus,tp,pp,"
        "dp,cp,interleave,sequence_parallel,checkpointing,zero,global_batch,micro_batch,"
        "precision,attention,metric,value,fitted,source,notes,tp_overlap,tied_embeddings,"
        "activation,ep\n"
        "q,qwen3-30b-a3b,48,2048,32,4,{d_ff},151936,4096,h100-sxm,16,1,2,8,1,1,false,none,1,"
        "512,2,bf16,auto,tokens_per_gpu,5000,no,a source,n,false,,,8\n"
    )
    (r,) = published_rows(text.format(d_ff=768))
    d = predict_row(r)
    spec = load_model("qwen3-30b-a3b")
    lay = Layout(pp=2, dp=8, ep=8, zero=1)
    p = plan(spec, H100, H100_LINKS, lay, Options("train", 512, 2, 4096, BF16, attention="auto"))
    assert d["predicted"] == pytest.approx(p.tokens_per_s / 16)
    assert d["error"] == pytest.approx(d["predicted"] / 5000 - 1)
    with pytest.raises(MemwallError, match="d_ff differ from the qwen3-30b-a3b preset"):
        published_rows(text.format(d_ff=1024))  # refused as the file is read
    with pytest.raises(MemwallError, match="row 'q': unknown model 'qwen9'"):
        published_rows(text.format(d_ff=768).replace("qwen3-30b-a3b", "qwen9"))


def test_the_last_pipeline_stage_holds_fewer_micro_batches():
    """Megatron's interleaved warm-up: the first rank holds p + (p-1)/v micro-batches' worth
    of activations, the last ((v-1) p + 1)/v; without interleaving p and 1."""
    from memwall.parallel.shard import in_flight

    lay = Layout(pp=8, dp=4, interleave=2)
    assert in_flight(lay, 128) == pytest.approx(8 + 7 / 2)
    assert in_flight(lay, 128, last=True) == pytest.approx(9 / 2)
    assert in_flight(Layout(pp=4, dp=2), 16, last=True) == 1.0
    assert in_flight(lay, 1, last=True) == 1.0


def test_plan_activations_are_those_fused_kernels_keep():
    """The layouts describe Megatron-Core, NeMo, torchtitan and llm-foundry runs (fused norms
    and gated MLP, flash attention): their activations, not Hugging Face eager's (fp32 norm
    inputs, separate SiLU and product), which made 21 of the published training runs that
    really ran 'not fit'."""
    from memwall.memory import training_memory

    spec = load_model("llama-3-8b")
    p = plan(spec, H100, H100_LINKS, Layout(dp=8), Options("train", 8, 1, 4096, BF16))
    eager = training_memory(spec, 1, 4096, BF16, impl="eager").activations
    fused = training_memory(spec, 1, 4096, BF16, impl="fused").activations
    assert fused < 0.8 * eager
    assert p.per_device["activations"] == pytest.approx(fused)


def test_measured_links(tmp_path):
    f = tmp_path / "c.json"
    obj = {"format": COLLECTIVES_FORMAT, "world": 2, "backend": "gloo",
           "fit": {"all_reduce": {"alpha": 1e-4, "beta": 1e9}}}  # fmt: skip
    f.write_text(json.dumps(obj))
    links = load_measured_links(f)
    assert links.origin == "measured" and links.intra.bandwidth == 1e9
    f.write_text(json.dumps({**obj, "fit": {"all_reduce": {"alpha": -1, "beta": 0}}}))
    with pytest.raises(MemwallError, match="malformed"):
        load_measured_links(f)


def test_interconnect_wall_frame():
    df = interconnect_wall("gpt2-xl", ("h100-sxm", "v100-sxm2-32gb"), (8, 64), batch=128,
                           seq_len=512)  # fmt: skip
    assert set(df["device"]) == {"h100-sxm", "v100-sxm2-32gb"}
    parts = df["compute"] + df["memory"] + df["communication"] + df["other"]
    assert np.allclose(parts, df["step_time"])
    assert ((df["communication_fraction"] >= 0) & (df["communication_fraction"] < 1)).all()
    # the same job on the 2018 GPU takes longer at every N
    h = df[df.device == "h100-sxm"].set_index("devices")["step_time"]
    v = df[df.device == "v100-sxm2-32gb"].set_index("devices")["step_time"]
    assert all(v[n] > h[n] for n in h.index if n in v.index)
    assert not math.isnan(df["mfu"].iloc[0])


def test_inference_plan_pays_the_gap_between_kernels():
    """Serving engines replay a step's kernels from a CUDA graph: each kernel still pays the
    device-side gap (launch_graph), so a tensor-parallel decode step is the shard's forward
    under launch 'graph' plus its all-reduces, not the kernels' time alone."""
    from memwall.parallel.shard import forward, shard_spec
    from memwall.predict.efficiency import efficiency_terms

    spec = load_model("llama-3-8b")
    lay = Layout(tp=2)
    p = _infer(spec, lay, batch=4, seq=512)
    shard = shard_spec(spec, lay)
    graph = forward(shard, "decode", 4, 512, BF16, H100, True, "graph")["time"]
    bare = forward(shard, "decode", 4, 512, BF16, H100, True, "kernel")["time"]
    comm = p.breakdown["tp_comm"]
    assert p.extra["decode_step_time"] == pytest.approx(graph + comm, rel=1e-9)
    kernels = 13 * spec.n_layers  # at least: 13 kernels per layer in count's decoder table
    gap = efficiency_terms(H100)["launch_graph"].value
    assert graph - bare >= kernels * gap * 0.999
