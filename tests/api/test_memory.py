"""`memwall.api.memory` and `memwall memory` are one function: the same JSON, the same CSV
table, the same one-line refusals; the library's own extras (`.to_frame`, `.plot`, HTML)."""

from __future__ import annotations

import csv
import html
import io

import pytest

import memwall.api
from memwall.errors import MemwallError

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

# (library keywords, the same request on the command line)
SAME = [
    (dict(model="gpt2"), ["gpt2"]),
    (
        dict(model="llama-3-8b", batch=16, device="h100-sxm"),
        ["llama-3-8b", "--batch", "16", "--device", "h100-sxm"],
    ),
    (
        dict(model="llama-3-8b", phase="decode", seq_len=4096, precision="int4",
             quantize_head=True),
        ["llama-3-8b", "--phase", "decode", "--seq-len", "4096", "--precision", "int4",
         "--quantize-head"],
    ),
    (
        dict(model="llama-3-70b", mode="train", optimizer="adam", zero=3, devices=64,
             device="h100-sxm"),
        ["llama-3-70b", "--mode", "train", "--optimizer", "adam", "--zero", "3",
         "--devices", "64", "--device", "h100-sxm"],
    ),
    (
        dict(model="gpt2", mode="train", precision="fp32", checkpointing="every:3", impl="fused",
             unfused_attention=True, dropout=0.1, offload=True, overhead_gib=2.0),
        ["gpt2", "--mode", "train", "--precision", "fp32", "--checkpointing", "every:3",
         "--impl", "fused", "--unfused-attention", "--dropout", "0.1", "--offload",
         "--overhead-gib", "2"],
    ),
    (
        dict(model="bert-base", mode="train", tradeoff=True, seq_len=512, batch=8),
        ["bert-base", "--mode", "train", "--tradeoff", "--seq-len", "512", "--batch", "8"],
    ),
    (
        dict(model="mixtral-8x7b", device="h100-sxm", gen_len=64),
        ["mixtral-8x7b", "--device", "h100-sxm", "--gen-len", "64"],
    ),
    (
        dict(model="qwen3-30b-a3b", mode="train", checkpointing="full"),
        ["qwen3-30b-a3b", "--mode", "train", "--checkpointing", "full"],
    ),
    (
        dict(model="deepseek-v2-lite", phase="decode", seq_len=8192),
        ["deepseek-v2-lite", "--phase", "decode", "--seq-len", "8192"],
    ),
    (
        dict(model="vit-base-patch16-224", image_size=384),
        ["vit-base-patch16-224", "--image-size", "384"],
    ),
]  # fmt: skip


def assert_same(cli, result, args) -> None:
    """JSON equal, the CSV's columns and row count, and a notebook view naming the title."""
    r = cli("memory", *args, "--format", "json")
    assert r.code == 0, r.err
    assert result.to_dict() == r.json
    c = cli("memory", *args, "--format", "csv")
    assert c.code == 0, c.err
    rows = list(csv.DictReader(io.StringIO(c.out)))
    frame = result.to_frame()
    assert list(frame.columns) == c.out.splitlines()[0].split(",") and len(frame) == len(rows)
    assert html.escape(result.title) in result._repr_html_()


@pytest.mark.parametrize("kwargs,args", SAME, ids=[" ".join(a) for _, a in SAME])
def test_json_csv_and_html_equal_the_command_line(cli, kwargs, args):
    assert_same(cli, memwall.api.memory(**kwargs), args)


def test_notes_are_the_table_caption(cli):
    """The table's caption is the Result's notes: what is predicted, the MLA form, the fit."""
    r = memwall.api.memory("deepseek-v2-lite", phase="decode", seq_len=8192, device="h100-sxm")
    assert r.notes[0].startswith("predicted by memwall's closed form")
    assert any(n.startswith("note: ") and "latent" in n for n in r.notes)
    assert "largest batch that fits" in r.notes[-1]
    out = " ".join(cli("memory", "deepseek-v2-lite", "--phase", "decode", "--seq-len", "8192",
                       "--device", "h100-sxm").out.split())  # fmt: skip
    assert r.title in out and all(" ".join(n.split()) in out for n in r.notes)


@pytest.mark.slow  # the table traces the paper's CNNs: ~2.5 s a run, three runs
def test_paper_figure4_and_its_plot(cli, tmp_path):
    result = memwall.api.memory(paper_figure4=True)
    assert_same(cli, result, ["--paper-figure4"])
    svg = result.plot(tmp_path / "f4.svg")
    assert svg.read_text().lstrip().startswith("<?xml")


def test_plot_is_written_and_named_as_the_command_line_does(cli, tmp_path):
    target = tmp_path / "bd.png"
    result = memwall.api.memory("gpt2", mode="train", device="h100-sxm", plot=target)
    assert result.to_dict()["plot"] == str(target) and target.read_bytes()[:4] == b"\x89PNG"
    r = cli("memory", "gpt2", "--mode", "train", "--device", "h100-sxm", "--plot", target,
            "--format", "json")  # fmt: skip
    assert r.json == result.to_dict()
    again = result.plot(tmp_path / "again.png")
    assert again.read_bytes()[:4] == b"\x89PNG"


def test_torchvision_module_traced(cli):
    pytest.importorskip("torch")
    result = memwall.api.memory("torchvision:resnet18", mode="train", batch=2)
    assert_same(cli, result, ["torchvision:resnet18", "--mode", "train", "--batch", "2"])
    with pytest.raises(MemwallError, match="has no figure"):
        result.plot("m.png")


# (library keywords, the same request on the command line, a piece of the one line)
REFUSED = [
    (dict(model="gpt2", zero=2), ["gpt2", "--zero", "2"], "--zero does not apply here"),
    (
        dict(model="gpt2", mode="train", tradeoff=True, zero=1, device="h100-sxm"),
        ["gpt2", "--mode", "train", "--tradeoff", "--zero", "1", "--device", "h100-sxm"],
        "--device, --zero do not apply here: --tradeoff compares",
    ),
    (dict(paper_figure4=True, batch=2), ["--paper-figure4", "--batch", "2"], "--batch does"),
    (dict(model="gpt2", paper_figure4=True), ["gpt2", "--paper-figure4"], "takes no MODEL"),
    (dict(), [], "give a MODEL"),
    (dict(model="gpt2", mode="train", zero=4), ["gpt2", "--mode", "train", "--zero", "4"],
     "ZeRO stage"),
    (dict(model="vit-base-patch16-224", seq_len=512), ["vit-base-patch16-224", "--seq-len", "512"],
     "--seq-len does not apply here"),  # given, even at the default
    (dict(model="torchvision:resnet18", seq_len=4096),
     ["torchvision:resnet18", "--seq-len", "4096"], "a torchvision model takes images"),
    (dict(model="gpt2", mode="train", quantize_head=True), ["gpt2", "--mode", "train",
     "--quantize-head"], "--quantize-head does not apply"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args,needle", REFUSED, ids=[" ".join(a) for _, a, _ in REFUSED])
def test_refusals_are_the_command_lines_one_line(cli, kwargs, args, needle):
    with pytest.raises(MemwallError) as e:
        memwall.api.memory(**kwargs)
    assert needle in str(e.value)
    r = cli("memory", *args)
    r.assert_one_line_error(needle)
    assert r.err == f"memwall: error: {e.value}\n"


def test_library_only_checks(tmp_path):
    """What Typer checks on the command line (choices) is the library's one line too; a bad
    plot path is refused before any work and writes nothing."""
    with pytest.raises(MemwallError, match="--mode must be one of infer, train"):
        memwall.api.memory("gpt2", mode="serve")
    with pytest.raises(MemwallError, match="--impl must be one of"):
        memwall.api.memory("gpt2", mode="train", impl="compiled")
    with pytest.raises(MemwallError, match="format"):
        memwall.api.memory("gpt2", plot=tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())


def test_an_eager_training_answer_also_says_what_fused_kernels_keep():
    # memory counts PyTorch eager by default, parallel counts fused kernels: the eager answer
    # gives the fused one beside it, the same numbers `--impl fused` and `parallel` give
    import memwall.api as mapi

    eager = mapi.memory("llama-3-8b", mode="train", batch=1, seq_len=4096)
    alt = eager.to_dict()["fused_kernels"]
    fused = mapi.memory("llama-3-8b", mode="train", batch=1, seq_len=4096, impl="fused")
    assert "fused_kernels" not in fused.to_dict()
    fp = fused.extra["report"].footprint
    assert alt == {"activations": fp.activations, "peak": fp.peak}
    assert alt["activations"] < eager.extra["report"].footprint.activations
    assert any("with fused kernels" in n for n in eager.notes)
    par = mapi.parallel("llama-3-8b", devices=1, batch=1, seq_len=4096).to_dict()
    assert par["per_device"]["activations"] == pytest.approx(alt["activations"])
