"""`memwall.analyze` and `memwall analyze` are one function: the same JSON, the same CSV table,
the same one-line refusals; the library's own extras (`.ops`, `.plot`, HTML)."""

from __future__ import annotations

import csv
import io
import textwrap

import pytest

import memwall
from memwall.errors import MemwallError

# (library keywords, the same request on the command line)
SAME = [
    (
        dict(model="llama-3-8b", phase="decode", seq_len=4096, precision="bf16", device="h100-sxm"),
        ["llama-3-8b", "--phase", "decode", "--seq-len", "4096", "--precision", "bf16",
         "--device", "h100-sxm"],
    ),
    (
        dict(model="gpt2", phase="generate", seq_len=0, gen_len=128, convention="paper"),
        ["gpt2", "--phase", "generate", "--seq-len", "0", "--gen-len", "128",
         "--convention", "paper"],
    ),
    (dict(model="bert-base"), ["bert-base"]),
    (
        dict(model="llama-3-8b", phase="decode", seq_len=1024, batch=8, precision="int4",
             group_size=64, quantize_head=True),
        ["llama-3-8b", "--phase", "decode", "--seq-len", "1024", "--batch", "8",
         "--precision", "int4", "--group-size", "64", "--quantize-head"],
    ),
    (
        dict(model="deepseek-v2-lite", phase="decode", seq_len=2048, mla="expanded",
             device="h100-sxm@bw=2", launch="eager"),
        ["deepseek-v2-lite", "--phase", "decode", "--seq-len", "2048", "--mla", "expanded",
         "--device", "h100-sxm@bw=2", "--launch", "eager"],
    ),
    (
        dict(model="gemma-2-2b", phase="prefill", seq_len=256, fused_attention=True),
        ["gemma-2-2b", "--phase", "prefill", "--seq-len", "256", "--fused-attention"],
    ),
    (dict(model="vit-base-patch16-224", image_size=384), ["vit-base-patch16-224",
                                                          "--image-size", "384"]),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args", SAME, ids=[a[0] for _, a in SAME])
def test_json_csv_and_html_equal_the_command_line(cli, kwargs, args):
    result = memwall.analyze(**kwargs)
    r = cli("analyze", *args, "--format", "json")
    assert r.code == 0, r.err
    assert result.to_dict() == r.json
    c = cli("analyze", *args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(c.out)))
    frame = result.to_frame()
    assert list(frame.columns) == list(rows[0]) and len(frame) == len(rows)
    assert [str(n) for n in frame["name"]] == [row["name"] for row in rows]
    assert result.title in result._repr_html_()


def test_the_issue_acceptance_gives_the_cli_time(cli):
    kwargs = dict(phase="decode", seq_len=4096, precision="bf16", device="h100-sxm")
    r = cli("analyze", "llama-3-8b", "--phase", "decode", "--seq-len", "4096",
                "--precision", "bf16", "--device", "h100-sxm", "--format", "json")  # fmt: skip
    result = memwall.analyze("llama-3-8b", **kwargs)
    time = result["prediction"]["totals"]["time"]
    assert time == r.json["prediction"]["totals"]["time"] > 0
    assert result.ops["time"].sum() == pytest.approx(time, rel=1e-9)  # per op, adding up
    assert {"time", "time_low", "time_high", "bound"} <= set(result.ops.columns)
    assert "time" not in memwall.analyze("llama-3-8b").ops.columns  # no device: counts only


# (library keywords, command-line arguments): refused with the same one line
BAD = [
    (dict(model="gpt-2"), ["gpt-2"]),
    (dict(model="gpt2", seq_len=-1), ["gpt2", "--seq-len", "-1"]),
    (dict(model="gpt2", batch=0), ["gpt2", "--batch", "0"]),
    (dict(model="gpt2", precision="fp12"), ["gpt2", "--precision", "fp12"]),
    (dict(model="gpt2", phase="encode"), ["gpt2", "--phase", "encode"]),
    (dict(model="llama-3-8b", convention="paper"), ["llama-3-8b", "--convention", "paper"]),
    (dict(model="gpt2", plot="x.png"), ["gpt2", "--plot", "x.png"]),
    (dict(model="gpt2", launch="eager"), ["gpt2", "--launch", "eager"]),
    (dict(model="gpt2", phase="decode", gen_len=5), ["gpt2", "--phase", "decode", "--gen-len",
                                                     "5"]),
    (dict(model="gpt2", mla="absorbed"), ["gpt2", "--mla", "absorbed"]),
    (dict(model="gpt2", engine="trace", convention="paper"),
     ["gpt2", "--engine", "trace", "--convention", "paper"]),
    (dict(model="gpt2", device="h200-nope"), ["gpt2", "--device", "h200-nope"]),
    (dict(model="gpt2", image_size=224), ["gpt2", "--image-size", "224"]),
    (dict(model="vit-base-patch16-224", seq_len=128), ["vit-base-patch16-224", "--seq-len",
                                                       "128"]),
    (dict(model="torchvision:resnet18", seq_len=64), ["torchvision:resnet18", "--seq-len", "64"]),
    (dict(model="torchvision:resnet18", engine="closed"),
     ["torchvision:resnet18", "--engine", "closed"]),
    (dict(model="torchvision:resnet18", group_size=64, quantize_head=True),
     ["torchvision:resnet18", "--group-size", "64", "--quantize-head"]),
    (dict(model="torchvision:resnet18", phase="decode"), ["torchvision:resnet18", "--phase",
                                                          "decode"]),
    (dict(model=""), [""]),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args", BAD, ids=[" ".join(a) for _, a in BAD])
def test_bad_input_raises_the_cli_line(cli, kwargs, args):
    r = cli("analyze", *args)
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.analyze(**kwargs)
    assert r.err.strip() == f"memwall: error: {e.value}"


def test_library_values_are_checked_like_the_cli_choices():
    for kwargs, needle in [
        (dict(phase="decoding"), "--phase must be one of encode, prefill, decode, generate"),
        (dict(convention="figure3"), "--convention must be one of full, paper"),
        (dict(engine="exact"), "--engine must be one of closed, trace"),
        (dict(mla="latent"), "--mla must be one of absorbed, expanded"),
    ]:
        with pytest.raises(MemwallError, match=needle):
            memwall.analyze("gpt2", **kwargs)
    with pytest.raises(MemwallError, match="the model must be text"):
        memwall.analyze(42)


def test_not_given_is_not_the_default_value(cli):
    """The CLI refuses a flag the user typed even at its default value; the library refuses
    a keyword given (not None), so both agree on `--gen-len 128` and the ViT's `--seq-len`."""
    ok = memwall.analyze("gpt2", phase="decode", gen_len=128)  # the default: accepted by both
    assert ok.to_dict() == cli("analyze", "gpt2", "--phase", "decode", "--gen-len", "128",
                               "-f", "json").json  # fmt: skip
    vit = memwall.analyze("vit-base-patch16-224")
    assert vit["workload"]["seq_len"] == 197  # the image's patches and class token


ENTRY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build(batch=1, device="cpu"):
        with torch.device(device):
            net = nn.Sequential(nn.Linear(16, 32, bias=False), nn.Linear(32, 8, bias=False))
            x = torch.zeros(batch, 16)
        return net, (x,)
    """
)


def test_entry_point_same_as_cli_and_refuses_what_it_does_not_declare(cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "api_user_net.py").write_text(ENTRY)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = memwall.analyze("api_user_net:build", batch=4, device="h100-sxm")
    r = cli("analyze", "api_user_net:build", "--batch", "4", "--device", "h100-sxm", "-f", "json")
    assert result.to_dict() == r.json
    assert result["totals"]["flops"] == 2 * 4 * (16 * 32 + 32 * 8)
    assert result.to_dict()["workload"]["batch"] == 4
    default = memwall.analyze("api_user_net:build")  # seq_len not given: nothing to refuse
    assert default["workload"]["batch"] == 1
    with pytest.raises(MemwallError, match="declares no seq_len argument") as e:
        memwall.analyze("api_user_net:build", seq_len=128)
    bad = cli("analyze", "api_user_net:build", "--seq-len", "128")
    assert bad.err.strip() == f"memwall: error: {e.value}"


@pytest.mark.slow
def test_plot_where_the_cli_would(cli, tmp_path):
    kwargs = dict(phase="decode", seq_len=512, device="h100-sxm")
    result = memwall.analyze("gpt2", **kwargs, plot=tmp_path / "a.png")
    assert result["plot"] == str(tmp_path / "a.png") and (tmp_path / "a.png").stat().st_size
    r = cli("analyze", "gpt2", "--phase", "decode", "--seq-len", "512", "--device", "h100-sxm",
            "--plot", tmp_path / "a.png", "-f", "json")  # fmt: skip
    assert r.json == result.to_dict()
    out = result.plot(tmp_path / "b.svg")
    assert out.read_text().lstrip().startswith("<?xml")
    with pytest.raises(MemwallError, match="has no figure"):
        memwall.analyze("gpt2").plot(tmp_path / "c.png")


def test_published_runs_of_the_model_and_device_come_beside_the_prediction():
    """llama.cpp's measured fp16 decode of Llama-2-7B on an RTX 3090 comes with memwall's
    prediction of that very run; another precision, no device, or a device without runs: none."""
    from memwall.parallel.published_inference import compare, load_published

    r = memwall.analyze("llama-2-7b", device="rtx-3090", precision="fp16", phase="generate",
                            seq_len=0, gen_len=16)  # fmt: skip
    pub = r.payload["published"]
    assert [p["id"] for p in pub] == [2] and pub[0]["metric"] == "decode_tok_s"
    row = compare([x for x in load_published() if x.id == 2]).table.iloc[0]
    assert pub[0]["measured"] == row["measured"] and pub[0]["predicted"] == row["predicted"]
    assert pub[0]["error"] == pytest.approx(pub[0]["predicted"] / pub[0]["measured"] - 1)
    assert any(n.startswith("published runs of this model") for n in r.notes)
    # row 2 chose efficiency values (llama.cpp tables): its line says it is in sample
    assert pub[0]["fitted"] and any("a fit row, in sample" in n for n in r.notes)
    q4 = memwall.analyze("llama-2-7b", device="rtx-3090", precision="4/16/16")
    assert 1 in [p["id"] for p in q4.payload["published"]]  # Q4 rows, not the fp16 one
    assert 2 not in [p["id"] for p in q4.payload["published"]]
    assert "published" not in memwall.analyze("llama-2-7b").payload
    assert memwall.analyze("gpt2", device="h100-sxm").payload["published"] == []
