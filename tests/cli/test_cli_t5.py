"""`memwall analyze` and `memwall memory` on T5 (encoder-decoder): JSON contract and refusals."""

from __future__ import annotations


def test_analyze_t5_decode_json(cli):
    r = cli("analyze", "t5-base", "--phase", "decode", "--seq-len", "512", "--format", "json")
    assert r.code == 0, r.err
    d = r.json
    assert d["workload"] == {"phase": "decode", "batch": 1, "seq_len": 512, "gen_len": 0}
    assert d["params"] == 222_903_552
    names = [op["name"] for op in d["ops"]]
    assert "decoder.cross.attention" in names and not any(n.startswith("encoder.") for n in names)
    # self (513 tokens) and cross (512 tokens) caches of 12 layers, K and V, 768 wide, fp32
    assert d["totals"]["bytes_kv"] == 12 * 2 * 768 * 4 * (513 + 512)
    assert 0 < d["totals"]["intensity"] < 1  # one decoder token: memory-bound


def test_analyze_t5_encode_and_prefill(cli):
    enc = cli("analyze", "t5-base", "--phase", "encode", "--seq-len", "64", "-f", "json").json
    pre = cli("analyze", "t5-base", "--phase", "prefill", "--seq-len", "64", "-f", "json").json
    assert all(op["name"].startswith("encoder.") for op in enc["ops"])
    assert pre["totals"]["flops"] > enc["totals"]["flops"]


def test_memory_t5(cli):
    r = cli("memory", "t5-base", "--mode", "infer", "--format", "json")
    assert r.code == 0, r.err
    fp = r.json["footprint"]
    assert fp["weights"] == 222_903_552 * 2  # bf16
    assert fp["kv_cache"] > 0 and fp["activations"] > 0
    cli("memory", "t5-base", "--mode", "train").assert_one_line_error("not modelled")


def test_t5_bad_input_one_line(cli):
    cli("analyze", "t5-base", "--phase", "decode", "--seq-len", "0").assert_one_line_error(
        "seq-len"
    )
    cli("analyze", "t5-base", "--convention", "paper").assert_one_line_error("encoder-decoder")
