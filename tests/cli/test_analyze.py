"""`memwall analyze` end to end: the JSON contract, the paper's observation, bad input."""

from __future__ import annotations

import json
import os

import pytest

from memwall.spec import preset_config


def test_paper_intensities_differ_by_more_than_50x(cli):
    g = cli(
        "analyze", "gpt2", "--phase", "generate", "--seq-len", "0", "--gen-len", "128",
        "--convention", "paper", "--format", "json",
    )  # fmt: skip
    b = cli(
        "analyze", "bert-base", "--phase", "encode", "--seq-len", "128",
        "--convention", "paper", "--format", "json",
    )  # fmt: skip
    assert g.code == 0 and b.code == 0, g.err + b.err
    gj, bj = g.json, b.json
    assert gj["convention"] == "paper" and gj["workload"]["gen_len"] == 128
    assert set(gj["totals"]) >= {"flops", "bytes", "intensity"}
    assert bj["totals"]["intensity"] > 50 * gj["totals"]["intensity"]
    op = gj["ops"][0]
    assert {"name", "kind", "flops", "bytes", "intensity"} <= set(op)


def test_csv_and_table_formats(cli):
    c = cli(
        "analyze", "llama-3-8b", "--phase", "decode", "--seq-len", "1024",
        "--precision", "int4", "--format", "csv",
    )  # fmt: skip
    assert c.code == 0, c.err
    lines = c.out.strip().splitlines()
    assert lines[0].startswith("name,kind,layer,count,flops,bytes,intensity")
    assert any(line.startswith("attention,") for line in lines)
    t = cli("analyze", "bert-base")
    assert t.code == 0 and "intensity" in t.out and "FLOP/B" in t.out


BAD = [
    (["analyze", "gpt-2"], "did you mean gpt2"),
    (["analyze", "gpt2", "--seq-len", "-1"], "seq-len must be between"),
    (["analyze", "gpt2", "--seq-len", "1000000000000"], "seq-len must be between"),
    (["analyze", "gpt2", "--batch", "1.5"], "--batch"),
    (["analyze", "gpt2", "--batch", "0"], "batch must be between"),
    (["analyze", "gpt2", "--precision", "fp12"], "unknown precision"),
    (["analyze", "gpt2", "--phase", "encode"], "is a decoder"),
    (["analyze", "llama-3-8b", "--convention", "paper"], "gated MLP"),
    (["analyze", "gpt2", "--plot", "x.png"], "--plot needs --device"),
    (["analyze", "bert-base", "--gen-len", "-3"], "--gen-len -3"),
    (["analyze", "gpt2", "--phase", "decode", "--gen-len", "5"], "applies to --phase generate"),
    (["analyze", ""], "the model is empty"),
    (["analyze", "/dev/zero"], "is a device file"),
]


@pytest.mark.parametrize("args,msg", BAD)
def test_bad_input_is_one_line_exit_2(cli, args, msg):
    cli(*args).assert_one_line_error(msg)


@pytest.mark.parametrize(
    "patch,msg",
    [
        ({"n_embd": 100}, "must divide the model width"),
        ({"n_layer": None, "num_layers": None}, "missing required field"),
        ({"n_head": -12}, "between 1 and"),
        ({"n_layer": "twelve"}, "must be an integer"),
        ({"model_type": 5}, "'model_type' must be a string, got int 5"),
        ({"tie_word_embeddings": "false"}, "'tie_word_embeddings' must be true or false"),
        ({"layer_norm_epsilon": "abc"}, "'layer_norm_epsilon' must be a finite number"),
        ({"add_cross_attention": True}, "'add_cross_attention' is true: not supported"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(cli, tmp_path, patch, msg):
    cfg = {**preset_config("gpt2"), **patch}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    cli("analyze", str(p)).assert_one_line_error(msg)


@pytest.mark.parametrize("key", ["n_embd", "layer_norm_epsilon"])
def test_json_overflow_to_infinity_is_refused(cli, tmp_path, key):
    text = json.dumps({**preset_config("gpt2"), key: 12345}).replace("12345", "1e400")
    p = tmp_path / "config.json"
    p.write_text(text)
    cli("analyze", str(p)).assert_one_line_error(f"config field {key!r} must be")


def test_special_config_paths_get_accurate_messages(cli, tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    cli("analyze", str(fifo)).assert_one_line_error("is a FIFO")
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    cli("analyze", str(loop)).assert_one_line_error("symbolic link loop")
    cli("analyze", str(tmp_path / "none.json")).assert_one_line_error("no such config file")


def test_file_names_with_markup_are_printed_literally(cli, tmp_path):
    p = tmp_path / "[bold red]x[-].json"
    p.write_text(json.dumps(preset_config("gpt2")))
    r = cli("analyze", str(p))
    assert r.code == 0, r.err
    assert "[bold red]x[-]" in r.out
    bad = tmp_path / "[bold]y[-].json"
    bad.write_text(json.dumps({**preset_config("gpt2"), "n_head": 7}))
    cli("analyze", str(bad)).assert_one_line_error("must divide the model width")


def test_counting_past_the_positions_is_said(cli):
    r = cli("analyze", "gpt2", "--seq-len", "2000", "--format", "json")
    assert r.code == 0, r.err
    assert any("1,024 learned positions" in n for n in r.json["notes"])
    ok = cli("analyze", "gpt2", "--seq-len", "1000", "--format", "json")
    assert not any("positions" in n for n in ok.json["notes"])
    t = cli("analyze", "gpt2", "--seq-len", "2000")
    assert "1,024 learned positions" in " ".join(t.out.split())


def test_integer_weights_keep_the_head_16_bit_and_say_so(cli):
    args = ["analyze", "llama-3-8b", "--phase", "decode", "--seq-len", "4096", "-f", "json"]
    d = cli(*args, "--precision", "int4").json
    q = cli(*args, "--precision", "int4", "--quantize-head").json
    bf = cli(*args, "--precision", "bf16").json
    head = 128256 * 4096  # llama-3-8b vocabulary x width: LM head (untied)
    # the head moves from 2 bytes to 4 bits + one 2-byte scale per 128 weights
    saved = head * (2 - 0.5 - 2 / 128)
    assert d["totals"]["bytes_weight"] - q["totals"]["bytes_weight"] == pytest.approx(saved, 1e-3)
    assert d["totals"]["bytes_weight"] == pytest.approx(4.65e9, rel=0.01)
    assert any("LM head 16-bit" in n for n in d["notes"])
    assert any("quantized too" in n for n in q["notes"])
    assert not bf["notes"]


def test_accumulate_fp16_speeds_a_geforce_prompt_and_needs_a_catalog_device(cli):
    args = ("analyze", "llama-3-8b", "--phase", "prefill", "--seq-len", "512",
            "--precision", "fp16", "--device", "rtx-4090", "--format", "json")  # fmt: skip
    base = cli(*args)
    fast = cli(*args, "--accumulate", "fp16")
    assert base.code == 0 and fast.code == 0, base.err + fast.err
    t32 = base.json["prediction"]["totals"]["time"]
    t16 = fast.json["prediction"]["totals"]["time"]
    assert t16 < 0.8 * t32  # a 512-token prompt is mostly GEMMs
    for bad in (
        ("analyze", "llama-3-8b", "--accumulate", "fp16"),
        ("analyze", "llama-3-8b", "--device", "rtx-4090", "--accumulate", "fp8"),
        ("analyze", "torchvision:resnet18", "--device", "rtx-4090", "--accumulate", "fp16"),
    ):
        r = cli(*bad)
        assert r.code == 2 and "accumulate" in r.err and "Traceback" not in r.err
    h = cli("analyze", "--help")
    assert "--accumulate" in h.out and "fp16" in h.out
