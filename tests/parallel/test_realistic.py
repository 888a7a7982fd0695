"""The parallel prediction is realistic by default; the roofline is an upper bound (issue 23)."""

import pytest

import memwall.api
from memwall.hardware import get_device
from memwall.parallel import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, plan
from memwall.spec import load_model, parse_precision


def test_default_is_realistic_and_slower_than_the_roofline():
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    lay = Layout(tp=2, dp=4, sequence_parallel=True, zero=1)
    o = Options("train", 32, 1, 2048, parse_precision("bf16"))
    real = plan(spec, dev, links_for("h100-sxm"), lay, o)
    roof = plan(
        spec, dev, links_for("h100-sxm"), lay, Options(**{**o.__dict__, "efficiency": False})
    )
    assert o.efficiency
    assert real.step_time > 1.2 * roof.step_time
    assert real.breakdown["loss_and_grad_accumulation"] > 0
    assert real.breakdown["backward"] > 2 * real.breakdown["forward"]  # attention bwd 2.5x
    assert roof.breakdown["backward"] == 2 * roof.breakdown["forward"]


def test_api_names_the_model_and_gives_a_range():
    r = memwall.api.parallel("llama-3-8b", devices=8, tp=2, seq_len=1024)
    d = r.to_dict()
    assert "realistic" in d["compute_model"]
    lo, hi = d["mfu_range"]
    assert lo < d["mfu"] < hi
    assert d["limits"].startswith("kernels at")
    roof = memwall.api.parallel("llama-3-8b", devices=8, tp=2, seq_len=1024, roofline=True)
    assert "upper bound" in roof.to_dict()["compute_model"]
    assert roof.to_dict()["mfu"] > d["mfu"]


def test_context_parallel_rank_computes_the_loss_over_its_share_of_the_sequence():
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    o = Options("train", 4, 1, 4096, parse_precision("bf16"))
    one = plan(spec, dev, links_for("h100-sxm"), Layout(), o)
    two = plan(spec, dev, links_for("h100-sxm"), Layout(cp=2), o)
    assert one.micro_batches == two.micro_batches
    assert two.breakdown["loss_and_grad_accumulation"] < one.breakdown["loss_and_grad_accumulation"]


def test_a_hidden_collective_still_slows_the_compute_beside_it():
    """Compute overlapped with a collective runs at overlap_rate of its speed (arXiv 2507.03114:
    18.9% slower on average), so FSDP gathers fully hidden behind the compute still cost
    (1 - overlap_rate) of their time; the roofline hides them for free."""
    from memwall.parallel.comm import overlapped
    from memwall.predict.efficiency import efficiency_terms

    assert overlapped(1.0, 4.0, 0.841) == pytest.approx(0.159)  # hidden: the slowdown only
    assert overlapped(5.0, 4.0, 0.841) == pytest.approx(1.0)  # longer than the compute
    assert overlapped(1.0, 4.0, 0.841, overlap=False) == 1.0
    assert overlapped(1.0, 4.0, 1.0) == 0.0
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    rate = efficiency_terms(dev)["overlap_rate"].value
    assert rate == pytest.approx(1 / 1.189, abs=1e-3)
    lay = Layout(dp=8, zero=3)  # one node: every gather hides behind a micro-batch of 4 x 2048
    o = Options("train", 64, 4, 2048, parse_precision("bf16"))
    p = plan(spec, dev, links_for("h100-sxm"), lay, o)
    ag = next(c for c in p.collectives if c.kind == "all_gather" and c.group == "dp")
    rs = next(c for c in p.collectives if c.kind == "reduce_scatter" and c.group == "dp")
    m = 64 // (4 * 8)
    assert ag.time_each < p.breakdown["forward"] / m  # hidden
    want = m * (1 - rate) * (2 * ag.time_each + rs.time_each)
    assert p.breakdown["dp_comm"] == pytest.approx(want, rel=1e-9)
    roof = plan(
        spec, dev, links_for("h100-sxm"), lay, Options(**{**o.__dict__, "efficiency": False})
    )
    assert roof.breakdown["dp_comm"] == 0.0


def test_a_ring_across_nodes_runs_one_ring_per_nic():
    """A ring group with k ranks in each node runs k rings at once, one per NIC (nccl-tests
    issue 119: 85-96 GB/s all-reduce bus bandwidth across nodes of 8 A100s with 4 x 200 Gb/s
    NICs), up to the node's own link; a group with one rank per node keeps one NIC."""
    from memwall.parallel.collectives import node_rings
    from memwall.parallel.groups import per_node

    links = links_for("h100-sxm")
    assert node_rings(links, 1) == links
    four = node_rings(links, 4)
    assert four.inter.bandwidth == pytest.approx(4 * links.inter.bandwidth)
    assert node_rings(links, 8).inter.bandwidth == pytest.approx(
        min(8 * links.inter.bandwidth, links.intra.bandwidth)
    )
    assert four.intra == links.intra and "4 rings" in four.inter.name
    assert per_node(1, 64, 8) == 8  # data parallel over all ranks: 8 per node
    assert per_node(4, 16, 8) == 2  # tp 4 inside: two data-parallel ranks per node
    assert per_node(8, 8, 8) == 1  # tp fills the node: one rank per node, one NIC
    assert per_node(1, 4, 8) == 4  # a group smaller than a node


def test_fsdp_throughput_per_gpu_holds_from_one_node_to_eight():
    """llm-foundry's MPT-13B FSDP runs at 2048 tokens on H100 keep 39.6-40.0% MFU on 8, 16, 32
    and 64 GPUs (data/published_training.csv): the gathers cross nodes on every NIC at once, so
    memwall's MFU must not fall off a cliff at the second node (it fell 2.8x when each ring got
    one NIC)."""
    from memwall.parallel.published import predict_row, published_rows

    rows = {r["id"]: r for r in published_rows()}
    got = {g: predict_row(rows[f"mpt-13b-h100-{g}g-2k"])["predicted"] for g in (8, 16, 32, 64)}
    assert max(got.values()) / min(got.values()) < 1.03
    published = [rows[f"mpt-13b-h100-{g}g-2k"]["value"] for g in (8, 16, 32, 64)]
    assert max(published) / min(published) < 1.01


def test_mi355x_has_links_and_trains():
    """The MI355X platform: Infinity Fabric 1075.2 GB/s aggregate (537.6 per direction) in nodes
    of 8, so its MLPerf Llama 3.1 8B row is priced (data/published_training.csv)."""
    from memwall.parallel.published import predict_row, published_rows

    links = links_for("mi355x")
    assert links.intra.bandwidth == pytest.approx(537.6e9) and links.node_size == 8
    row = next(r for r in published_rows() if r["device"] == "mi355x")
    d = predict_row(row)
    assert d["fits"] and 0.1 < d["predicted"] < 0.9


def test_bf16_gradients_are_reduced_in_fp32_fp16_ones_in_fp16():
    # Megatron-LM accumulates and reduce-scatters bf16 training's gradients in fp32; fp16
    # training keeps fp16 gradients (loss scaling). The data-parallel reduce-scatter carries them.
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    lay = Layout(tp=1, dp=8, zero=1)

    def dp_bytes(prec: str) -> float:
        o = Options("train", 32, 1, 2048, parse_precision(prec))
        p = plan(spec, dev, links_for("h100-sxm"), lay, o)
        (rs,) = [c for c in p.collectives if c.group == "dp" and c.kind == "reduce_scatter"]
        return rs.message * rs.calls

    assert dp_bytes("bf16") == pytest.approx(4 * spec.n_params(), rel=1e-6)
    assert dp_bytes("fp16") == pytest.approx(2 * spec.n_params(), rel=1e-6)


def test_fp8_inference_all_reduces_16_bit_gemm_outputs():
    # an FP8 GEMM quantizes its input only and writes 16-bit outputs (vLLM's apply_fp8_linear,
    # out_dtype=input.dtype): the row-parallel all-reduce sums those, two bytes per element
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    lay = Layout(tp=4)

    def prefill_all_reduce(prec: str) -> float:
        o = Options("infer", 1, 1, 2048, parse_precision(prec))
        p = plan(spec, dev, links_for("h100-sxm"), lay, o)
        (ar,) = [c for c in p.extra["prefill_collectives"] if c["kind"] == "all_reduce"]
        return ar["bytes"]

    assert prefill_all_reduce("8/8/8") == prefill_all_reduce("bf16") == 2048 * spec.d_model * 2
    assert parse_precision("8/8/8").hidden_bytes == 2 and parse_precision("fp32").hidden_bytes == 4


def test_nemotron_rows_are_priced_with_grouped_query_attention():
    """Nemotron-4 340B is a GPT with 8 KV heads: its rows' model FLOPs are the source's GQA
    formula (8.62124e15 per 4,096-token sequence, 3 x forward), not the 1.01e16 of full MHA."""
    from memwall.parallel.published import published_rows, row_spec
    from memwall.parallel.shard import forward
    from memwall.precision import training_precision

    row = next(r for r in published_rows() if r["id"] == "dgxc-nemotron4-340b-h100-128")
    spec = row_spec(row)
    assert (spec.n_heads, spec.n_kv_heads) == (96, 8)
    f = forward(spec, "prefill", 1, 4096, training_precision("bf16"), get_device("h100-sxm"))
    assert 3 * f["flops"] == pytest.approx(8.62124e15, rel=1e-3)


def test_untied_heads_follow_the_rows_tied_embeddings_column():
    """Megatron-Core's GPTs and Nemotron-4 have a separate LM head (the published parameter
    counts need it); MPT ties it; a value other than true, false or empty is refused."""
    from memwall.errors import MemwallError
    from memwall.parallel import published
    from memwall.parallel.published import published_rows, row_spec

    rows = {r["id"]: r for r in published_rows()}
    assert row_spec(rows["mcore-weak-1.7b"]).tied_embeddings is False
    assert row_spec(rows["dgxc-nemotron4-340b-h100-128"]).tied_embeddings is False
    assert row_spec(rows["mpt-13b-h100-8g-2k"]).tied_embeddings is True
    text = published.resources.files("memwall.data").joinpath("published_training.csv")
    good = text.read_text("utf-8")
    bad = good.replace('Hopper",false,false\n', 'Hopper",false,maybe\n', 1)
    assert bad != good and len(published_rows(good)) == len(rows)
    with pytest.raises(MemwallError, match="mcore-weak-1.7b"):
        published_rows(bad)


def test_mpt_rows_use_llm_foundrys_exact_gelu_and_fit_as_they_ran():
    """llm-foundry's MPTMLP runs one nn.GELU(approximate='none') kernel, not HF GPT-2's eager
    tanh-GELU chain: priced so, MPT-7B at micro-batch 6 without checkpointing (a run that went)
    fits its 80 GB, where the chain's saved tensors put it at over 100 GiB."""
    from memwall.parallel.published import predict_row, published_rows, row_spec

    rows = {r["id"]: r for r in published_rows()}
    assert row_spec(rows["mpt-7b-h100-8g-2k"]).activation == "gelu"
    assert row_spec(rows["mcore-weak-1.7b"]).activation != "gelu"  # the family's default
    assert predict_row(rows["mpt-7b-h100-8g-2k"])["fits"]
    assert predict_row(rows["mpt-125m-a100-80g-8g-2k"])["fits"]


def test_parallel_and_serve_refuse_python_code_models_naming_the_commands_that_take_them():
    """parallel and serve price an architecture (a preset or a config.json): torchvision:NAME
    and module:function are one line that says which commands take them, before any work."""
    from memwall.errors import MemwallError

    for call in (
        lambda: memwall.api.parallel("torchvision:resnet50", devices=2),
        lambda: memwall.api.serve("my.mod:build", device="h100-sxm"),
    ):
        with pytest.raises(MemwallError, match="analyze, memory and profile take it"):
            call()
