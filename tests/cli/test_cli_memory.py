"""`memwall memory` end to end: the JSON contract, table/csv, bad input, plots."""

from __future__ import annotations

import pytest

from memwall.studies.figure4 import paper_training_table

ACCEPT = (
    "memory llama-3-70b --mode train --optimizer adam --precision bf16 --zero 3 --devices 64 "
    "--device h100-sxm --format json"
).split()

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


def test_cli_acceptance(cli):
    r = cli(*ACCEPT)
    assert r.code == 0, r.err
    d = r.json
    assert d["mode"] == "train" and d["setup"]["zero"] == 3 and d["setup"]["devices"] == 64
    pd_ = d["per_device"]
    for k in ("weights", "gradients", "optimizer_state", "activations", "peak"):
        assert pd_[k] > 0
    assert d["fit"]["device"] == "h100-sxm" and d["fit"]["fits"] is True
    assert d["fit"]["need"] == pd_["peak"]
    comps = {r["component"] for r in d["breakdown"]}
    assert {"weights", "gradients", "optimizer state", "activations (kept)"} <= comps


def test_cli_table_and_csv(cli):
    r = cli("memory", "gpt2", "--mode", "train", "--precision", "fp32")
    assert r.code == 0 and "peak (timeline)" in r.out
    r = cli("memory", "bert-base", "--format", "csv", "--batch", "8")
    assert r.code == 0 and r.out.splitlines()[0] == "component,bytes,share,note"
    r = cli("memory", "llama-3-8b", "--device", "a100-sxm-80gb", "--format", "json")
    d = r.json
    assert d["max_batch"] >= 1 and d["max_context"] > 0 and d["fit"]["fits"]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--zero", "4"], "ZeRO stage"),
        (["--devices", "0"], "devices"),
        (["--optimizer", "adamm"], "did you mean adam"),
        (["--checkpointing", "every:13"], "larger than the model's 12 layers"),
        (["--checkpointing", "every:0"], "at least 1"),
        (["--device", "h100-sxn"], "unknown device"),
        (["--precision", "int4"], "16- or 32-bit"),
        (["--batch", "0"], "batch"),
    ],
)
def test_cli_bad_input_one_line_exit_2(cli, args, match):
    cli("memory", "gpt2", "--mode", "train", *args).assert_one_line_error(match)


def test_cli_train_flags_rejected_for_inference(cli):
    cli("memory", "gpt2", "--zero", "2").assert_one_line_error("--mode train")


def test_cli_tradeoff_and_figure4(cli, tmp_path):
    r = cli(
        "memory", "bert-base", "--mode", "train", "--tradeoff", "--format", "json",
        "--seq-len", "512", "--batch", "8", "--plot", tmp_path / "remat.png",
    )  # fmt: skip
    d = r.json
    assert r.code == 0 and d["paper_claim"]["best_within_budget"]["extra_compute"] <= 0.2
    assert (tmp_path / "remat.png").read_bytes()[:4] == b"\x89PNG"
    r = cli("memory", "--paper-figure4", "--format", "json", "--plot", tmp_path / "f4.svg")
    d = r.json
    assert r.code == 0 and len(d["rows"]) == len(paper_training_table())
    assert (tmp_path / "f4.svg").read_text().lstrip().startswith("<?xml")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_plot_bad_suffix_writes_nothing(cli, tmp_path):
    target = tmp_path / "x.jpg"
    r = cli("memory", "gpt2", "--plot", target)
    assert r.code == 2 and "format" in r.err and not target.exists()


def test_breakdown_plot(cli, tmp_path):
    target = tmp_path / "bd.png"
    r = cli(
        "memory", "llama-3-8b", "--mode", "train", "--checkpointing", "full", "--zero", "3",
        "--devices", "8", "--device", "h100-sxm", "--plot", target,
    )  # fmt: skip
    assert r.code == 0 and target.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("precision, per_param", [("bf16", 18), ("fp16", 16)])
def test_json_parts_sum_per_parameter_for_mixed_adam(cli, precision, per_param):
    # 2 (weights) + gradients (fp32 under bf16, 16-bit under fp16) + 8 (moments) + 4 (master)
    r = cli("memory", "gpt2", "--mode", "train", "--precision", precision, "--format", "json")
    assert r.code == 0, r.err
    d = r.json
    pdv = d["per_device"]
    parts = d["model_state_parts"]
    assert parts == ["weights", "gradients", "optimizer_state", "master_weights"]
    assert sum(pdv[k] for k in parts) == pytest.approx(per_param * d["params"], rel=1e-12)
    assert sum(pdv[k] for k in parts) == pytest.approx(pdv["model_states"], rel=1e-12)
    assert pdv["optimizer_state"] == pytest.approx(8 * d["params"])  # two fp32 moments
    assert pdv["master_weights"] == pytest.approx(4 * d["params"])
    assert "master_weights" in d["model_state_parts_note"]
    assert d["setup"]["master_weights"] is True
    rows = {r["component"]: r["bytes"] for r in d["breakdown"]}
    assert rows["optimizer state"] == pdv["optimizer_state"]
    assert rows["master weights"] == pdv["master_weights"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["gpt2", "--device", ""], "device name is empty"),
        (["gpt2", "--seq-len", "10000000"], "seq-len 10,000,000 + gen-len 128"),
        (["bert-base", "--gen-len", "5"], "--gen-len is for --phase generate"),
        (["gpt2", "--phase", "prefill", "--gen-len", "5"], "--gen-len is for --phase generate"),
        (["gpt2", "--impl", "fused"], "--impl does not apply here"),
        (["gpt2", "--no-master"], "--no-master does not apply here"),
        (["gpt2", "--dropout", "0.1"], "--dropout does not apply here"),
        (["gpt2", "--mode", "train", "--gen-len", "3"], "--gen-len does not apply here"),
        (["gpt2", "--mode", "train", "--tradeoff", "--zero", "1"], "--tradeoff compares"),
        (["--paper-figure4", "--batch", "2"], "--batch does not apply here"),
        (["gpt2", "--paper-figure4"], "takes no MODEL"),
    ],
)
def test_flags_that_do_not_apply_and_bad_values_are_named(cli, args, needle):
    cli("memory", *args).assert_one_line_error(needle)


def test_seq_len_limit_names_the_value_typed(cli):
    r = cli("memory", "gpt2", "--phase", "prefill", "--seq-len", "10000001")
    r.assert_one_line_error("10,000,001")
    assert "10,000,128" not in r.err


def test_quantize_head_and_the_precision_note(cli):
    args = ["memory", "llama-3-8b", "--phase", "decode", "--seq-len", "4096", "-f", "json"]
    d = cli(*args, "--precision", "int4").json
    q = cli(*args, "--precision", "int4", "--quantize-head").json
    bf = cli(*args, "--precision", "bf16").json
    # input embedding table and untied LM head, each vocabulary x width
    head = 2 * 128256 * 4096
    saved = head * (2 - 0.5 - 2 / 128)  # 2 bytes -> 4 bits + one 2-byte scale per 128
    assert d["footprint"]["weights"] - q["footprint"]["weights"] == pytest.approx(saved, 1e-3)
    assert any("LM head 16-bit" in n for n in d["notes"])
    assert any("LM head quantized too" in n for n in q["notes"])
    assert bf["notes"] == []  # float formats quantize nothing
    t = cli("memory", "llama-3-8b", "--precision", "int4")
    assert t.code == 0 and "LM head 16-bit" in " ".join(t.out.split())
    cli("memory", "gpt2", "--mode", "train", "--quantize-head").assert_one_line_error(
        "--quantize-head"
    )


def test_counting_past_the_positions_is_said_as_analyze_says_it(cli):
    m = cli("memory", "gpt2", "--phase", "prefill", "--seq-len", "2000", "-f", "json").json
    a = cli("analyze", "gpt2", "--phase", "prefill", "--seq-len", "2000", "-f", "json").json
    assert m["notes"] and m["notes"] == [n for n in a["notes"] if "positions" in n]
    ok = cli("memory", "gpt2", "--phase", "prefill", "--seq-len", "1000", "-f", "json").json
    assert ok["notes"] == []
    tr = cli("memory", "gpt2", "--mode", "train", "--seq-len", "2000", "-f", "json").json
    assert tr["notes"] == m["notes"]
    t = cli("memory", "llama-2-7b", "--phase", "prefill", "--seq-len", "5000")
    assert t.code == 0 and "4,096 trained positions" in " ".join(t.out.split())
