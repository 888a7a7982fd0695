"""A chunked-prefill engine (vLLM V1) runs prompts inside decode steps: one forward multiplies
the decodes' and the prompts' tokens as one matrix and reads the weights once
(`memwall.parallel.energy.mixed_ops`, `mixed_step`); in steady state the expected step mixes
steps carrying floor(batch / gen_len) and one more prompt (`serving_steps(chunked=True)`)."""

from __future__ import annotations

import pytest

from memwall.count import op_table
from memwall.energy.published import load_energy_rows
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.energy import mixed_ops, mixed_step, serving_steps, step
from memwall.parallel.published_energy import chunked_prefill, engine, row_steps
from memwall.precision import parse_precision
from memwall.predict.efficiency_data import sample_s_per_sequence
from memwall.spec import Workload, load_model

BF16 = parse_precision("bf16")


def _tables(model: str, batch: int = 8, ctx: int = 700, prompt: int = 600):
    spec = load_model(model)
    dec = op_table(spec, Workload("decode", batch, ctx), BF16, "full", True)
    pre = op_table(spec, Workload("prefill", 1, prompt), BF16, "full", True)
    return spec, dec.set_index("name"), pre.set_index("name")


def test_mixed_ops_by_hand():
    """Two prompts of 600 tokens beside 8 decodes: the linear layers multiply 8 + 1200 rows
    and read their weights once, the prompts' causal attention is its own row at half the
    FLOPs of the full score matrix, the LM head computes logits for each prompt's last token
    only, the embedding gathers every token's row."""
    _, dec, pre = _tables("llama-3-8b")
    mix = mixed_ops(dec.reset_index(), pre.reset_index(), 2).set_index("name")
    q = mix.loc["q_proj"]
    assert q["m"] == 8 + 1200
    assert q["flops"] == pytest.approx(dec.loc["q_proj", "flops"] + 2 * pre.loc["q_proj", "flops"])
    assert q["bytes_weight"] == dec.loc["q_proj", "bytes_weight"]  # read once
    assert mix.loc["attention", "flops"] == dec.loc["attention", "flops"]
    assert mix.loc["attention_prompt", "flops"] == pytest.approx(pre.loc["attention", "flops"])
    head = pre.loc["lm_head", "flops"] / 600 * 2  # two last tokens
    assert mix.loc["lm_head", "flops"] == pytest.approx(dec.loc["lm_head", "flops"] + head)
    emb = dec.loc["embed", "bytes_weight"] + 2 * pre.loc["embed", "bytes_weight"]
    assert mix.loc["embed", "bytes_weight"] == pytest.approx(emb)
    b = mix["bytes_weight"] + mix["bytes_act"] + mix["bytes_kv"] + mix["bytes_written"]
    assert (mix["bytes"] == b).all()


def test_a_prompt_step_reads_the_experts_its_tokens_touch():
    """Mixture of experts: a few decodes touch some experts, a 600-token prompt all of them;
    the step carrying the prompt reads each expert once (the larger read)."""
    _, dec, pre = _tables("qwen3-30b-a3b")
    mix = mixed_ops(dec.reset_index(), pre.reset_index(), 1).set_index("name")
    assert pre.loc["expert_up", "bytes_weight"] > dec.loc["expert_up", "bytes_weight"]
    assert mix.loc["expert_up", "bytes_weight"] == pre.loc["expert_up", "bytes_weight"]


def test_a_mixed_step_is_cheaper_than_decode_and_prefill_apart():
    """The prompt's linear layers ride on the decode step's weight reads (and its launches):
    a step of 64 decodes and one prompt takes less than the decode step plus a prefill
    step of its own, and moves fewer DRAM bytes."""
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    mixed = mixed_step(spec, dev, BF16, 64, 800, 1, 600)
    dec = step(spec, dev, BF16, "decode", 64, 800)
    pre = step(spec, dev, BF16, "prefill", 1, 600)
    assert dec.time_s < mixed.time_s < dec.time_s + pre.time_s
    assert mixed.work.dram_bytes < dec.work.dram_bytes + pre.work.dram_bytes


def test_tensor_parallel_all_reduces_carry_every_token_of_the_step():
    """2 all-reduces per layer, each of (decodes + prompt tokens) x d_model x 2 bytes, ring
    bytes 2 (n - 1) / n of it per rank."""
    spec, dev = load_model("llama-3-70b"), get_device("h100-sxm")
    e = mixed_step(spec, dev, BF16, 128, 800, 2, 600, tp=4)
    msg = (128 + 2 * 600) * spec.d_model * 2
    assert e.work.link_bytes == pytest.approx(2 * spec.n_layers * msg * 2 * 3 / 4)
    assert mixed_step(spec, dev, BF16, 128, 800, 0, 600, tp=4).time_s < e.time_s


def test_the_expected_step_mixes_whole_prompts():
    """batch / gen_len = 0.02 prompts a step: 98% of steps are pure decode, 2% carry one whole
    prompt (compute-bound), each counted 1 / batch per output token; at 2.5 prompts a step,
    half the steps carry 2 and half 3."""
    spec, dev = load_model("llama-3-8b"), get_device("h100-sxm")
    s = serving_steps(spec, dev, BF16, 8, 600, 400, chunked=True)
    assert [k for _, k in s] == pytest.approx([0.98 / 8, 0.02 / 8])
    assert s[0][0].time_s == pytest.approx(step(spec, dev, BF16, "decode", 8, 800).time_s)
    assert s[1][0].time_s > 2 * s[0][0].time_s  # the prompt step is compute-bound
    s = serving_steps(spec, dev, BF16, 1000, 600, 400, chunked=True)
    assert [k for _, k in s] == pytest.approx([0.5 / 1000, 0.5 / 1000])
    assert sum(s[0][0].work.flops.values()) < sum(s[1][0].work.flops.values())


def test_vllm_rows_are_priced_chunked_and_the_2023_rows_are_not():
    rows = load_energy_rows()
    for r in rows:
        assert chunked_prefill(r) == r.software.startswith("vLLM")
    hf = next(r for r in rows if not chunked_prefill(r))
    assert len(row_steps(hf)) == 2  # a decode step and a prefill of its own
    big = next(r for r in rows if r.id == 45)  # Llama-3.1-70B, 4 H100s, batch 898
    assert chunked_prefill(big)
    apart = serving_steps(
        load_model(big.model), get_device(big.device), BF16, big.batch, big.prompt_len,
        big.gen_len, big.tp,
    )  # fmt: skip
    mixed = serving_steps(
        load_model(big.model), get_device(big.device), BF16, big.batch, big.prompt_len,
        big.gen_len, big.tp, chunked=True,
    )  # fmt: skip
    t_apart = sum(k * e.time_s for e, k in apart)
    t_mixed = sum(k * e.time_s for e, k in mixed)
    assert t_mixed < 0.9 * t_apart
    # the row itself also pays vLLM's sampling time per sequence: more than the forward alone
    assert sum(k * e.time_s for e, k in row_steps(big)) > t_mixed


def test_the_engine_sampling_time_by_hand():
    # efficiency.json serving_engines vllm-0.11: ns per vocabulary entry per sampled sequence
    spec = load_model("llama-3-8b")
    per = sample_s_per_sequence("vllm-0.11", spec.vocab_size)
    assert per == pytest.approx(0.39e-9 * 128256)  # 50 microseconds
    assert sample_s_per_sequence("vllm-0.11", 1000, "low") < sample_s_per_sequence(
        "vllm-0.11", 1000, "high"
    )
    with pytest.raises(MemwallError, match="serving engine"):
        sample_s_per_sequence("tgi-9", 1000)
    dev = get_device("h100-sxm")
    bare = mixed_step(spec, dev, BF16, 64, 700, 2, 300)
    with_sampling = mixed_step(spec, dev, BF16, 64, 700, 2, 300, sample_s=per)
    # each decode and each prompt's last token is sampled: 64 + 2 sequences
    assert with_sampling.time_s - bare.time_s == pytest.approx(66 * per)
    assert with_sampling.work == bare.work  # no counted FLOPs or bytes: static power only


def test_vllm_rows_pay_the_engine_sampling_time_and_the_2023_rows_do_not():
    rows = {r.id: r for r in load_energy_rows()}
    assert engine(rows[4]) == "vllm-0.11" and engine(rows[33]) is None
