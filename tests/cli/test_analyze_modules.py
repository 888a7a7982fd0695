"""`memwall analyze` / `memwall memory` on MODELs that are Python code: torchvision:NAME and
module:function entry points; the acceptance command and the bad-input contract."""

from __future__ import annotations

import json
import textwrap
from importlib import resources

import pytest

pytest.importorskip("torch")

DOC = json.loads(resources.files("memwall.data").joinpath("vision_models.json").read_text())
ENTRY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build(batch=1, device="cpu"):
        with torch.device(device):
            conv = nn.Conv2d(3, 8, 3)
            net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
            x = torch.zeros(batch, 3, 32, 32)
        return net, (x,)

    def not_a_model():
        return 42
    """
)


def test_acceptance_resnet50_json(cli):
    r = cli("analyze", "torchvision:resnet50", "--batch", "1", "--image-size", "224",
            "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    d = r.json
    doc = DOC["models"]["resnet50"]
    assert d["totals"]["flops"] == pytest.approx(2 * doc["gmacs"] * 1e9, rel=0.02)
    assert d["params"] == doc["params"] and d["engine"] == "trace"
    assert d["coverage"] == {} and d["device_traced"] == "meta"
    assert {op["kind"] for op in d["ops"]} >= {"conv", "pool", "matmul"}


def test_table_and_device_prediction(cli):
    r = cli("analyze", "torchvision:mobilenet_v2", "--device", "h100-sxm")
    assert r.code == 0, r.err
    text = " ".join(r.out.split())  # the caption wraps
    assert "pred. time" in text and "ops without a FLOP formula: none" in text
    r = cli("analyze", "torchvision:resnet18", "--format", "csv", "--batch", "2")
    assert r.code == 0 and r.out.splitlines()[0].startswith("name,kind,count,flops")


def test_entry_point_and_memory(cli, tmp_path, monkeypatch):
    (tmp_path / "h8_user_net.py").write_text(ENTRY)
    monkeypatch.syspath_prepend(str(tmp_path))
    r = cli("analyze", "h8_user_net:build", "--batch", "4", "--format", "json")
    assert r.code == 0, r.err
    d = r.json
    conv = 2 * 4 * 8 * 30 * 30 * 3 * 9  # batch x out pixels x channels x 27 taps, 2 per MAC
    fc = 2 * 4 * 8 * 30 * 30 * 10
    assert d["totals"]["flops"] >= conv + fc and d["device_traced"] == "meta"
    assert "code you chose to run" in d["note"]
    r = cli("memory", "h8_user_net:build", "--mode", "train", "--precision", "fp32",
            "--optimizer", "adam", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    fp = r.json["footprint"]
    assert fp["optimizer_state"] == 2 * fp["weights"] and fp["activations"] > 0
    cli("analyze", "h8_user_net:not_a_model").assert_one_line_error("must return")
    cli("analyze", "h8_user_net:nope").assert_one_line_error("no function 'nope'")


def test_memory_of_a_torchvision_model(cli):
    r = cli("memory", "torchvision:resnet152", "--mode", "train", "--batch", "32",
            "--precision", "fp32", "--optimizer", "momentum", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    fp = r.json["footprint"]
    assert fp["weights"] == fp["gradients"] == fp["optimizer_state"] == 60192808 * 4
    assert 4 * 2**30 < fp["activations"] < 7 * 2**30  # the paper prints 5.14 GB (2^30)
    r = cli("memory", "torchvision:resnet50", "--format", "json")
    assert r.code == 0 and r.json["mode"] == "infer"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["analyze", "torchvision:resnet5"], "did you mean resnet50"),
        (["analyze", "torchvision:fasterrcnn_resnet50_fpn"], "detection"),
        (["analyze", "a-b:c"], "module:function"),
        (["analyze", "pkg.mod:fn()"], "module:function"),
        (["analyze", "torchvision:resnet50", "--image-size", "0"], "positive integer"),
        (["analyze", "torchvision:resnet50", "--image-size", "-224"], "positive integer"),
        (["analyze", "torchvision:resnet50", "--image-size", "big"], "--image-size"),
        (["analyze", "gpt2", "--image-size", "224"], "--image-size is for"),
        (["analyze", "torchvision:resnet50", "--phase", "decode"], "--phase"),
        (["analyze", "torchvision:resnet50", "--convention", "paper"], "convention"),
        (["analyze", "memwall_no_such_mod:build"], "cannot import"),
        (["memory", "torchvision:resnet50", "--zero", "2"], "--zero"),
        (["memory", "torchvision:vgg19", "--image-size", "0"], "positive integer"),
    ],
)
def test_bad_input_is_one_line(cli, args, needle):
    cli(*args).assert_one_line_error(needle)


def test_dlrm_entry_point_is_memory_bound(cli):
    r = cli("analyze", "memwall.trace.dlrm:criteo_terabyte", "--device", "h100-sxm",
            "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    d = r.json
    assert d["totals"]["intensity"] < 1.0
    assert d["prediction"]["totals"]["t_memory"] > d["prediction"]["totals"]["t_compute"]
    r = cli("memory", "memwall.trace.dlrm:criteo_terabyte", "--precision", "fp32",
            "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    assert r.json["footprint"]["weights"] > 96e9  # the embedding tables: ~188M rows x 128 x 4 B
