"""`memwall analyze` end to end: the JSON contract, the paper's observation, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memwall.spec import preset_config


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memwall", *args], capture_output=True, text=True, timeout=120
    )


def test_paper_intensities_differ_by_more_than_50x():
    g = run(
        "analyze",
        "gpt2",
        "--phase",
        "generate",
        "--seq-len",
        "0",
        "--gen-len",
        "128",
        "--convention",
        "paper",
        "--format",
        "json",
    )
    b = run(
        "analyze",
        "bert-base",
        "--phase",
        "encode",
        "--seq-len",
        "128",
        "--convention",
        "paper",
        "--format",
        "json",
    )
    assert g.returncode == 0 and b.returncode == 0, g.stderr + b.stderr
    gj, bj = json.loads(g.stdout), json.loads(b.stdout)
    assert gj["convention"] == "paper" and gj["workload"]["gen_len"] == 128
    assert set(gj["totals"]) >= {"flops", "bytes", "intensity"}
    assert bj["totals"]["intensity"] > 50 * gj["totals"]["intensity"]
    op = gj["ops"][0]
    assert {"name", "kind", "flops", "bytes", "intensity"} <= set(op)


def test_csv_and_table_formats():
    c = run(
        "analyze",
        "llama-3-8b",
        "--phase",
        "decode",
        "--seq-len",
        "1024",
        "--precision",
        "int4",
        "--format",
        "csv",
    )
    assert c.returncode == 0, c.stderr
    lines = c.stdout.strip().splitlines()
    assert lines[0].startswith("name,kind,layer,count,flops,bytes,intensity")
    assert any(line.startswith("attention,") for line in lines)
    t = run("analyze", "bert-base")
    assert t.returncode == 0 and "intensity" in t.stdout and "FLOP/B" in t.stdout


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
]


@pytest.mark.parametrize("args,msg", BAD)
def test_bad_input_is_one_line_exit_2(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    "patch,msg",
    [
        ({"n_embd": 100}, "must divide the model width"),
        ({"n_layer": None, "num_layers": None}, "missing required field"),
        ({"n_head": -12}, "between 1 and"),
        ({"n_layer": "twelve"}, "must be an integer"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(tmp_path, patch, msg):
    cfg = {**preset_config("gpt2"), **patch}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    r = run("analyze", str(p))
    assert r.returncode == 2 and msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
