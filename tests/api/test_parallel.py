"""`memwall.api.parallel` and `memwall parallel` are one function: the same JSON, the same CSV
(the collectives), the same one-line refusals of flags that do not apply."""

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
    (
        dict(model="llama-3-70b", mode="infer", devices=8, tp=8, device="h100-sxm"),
        ["llama-3-70b", "--mode", "infer", "--devices", "8", "--tp", "8", "--device", "h100-sxm"],
    ),
    (
        dict(model="gpt2", devices=4, pp=2, batch=8, seq_len=256),
        ["gpt2", "--devices", "4", "--pp", "2", "--batch", "8", "--seq-len", "256"],
    ),
    (
        dict(model="gpt2", devices=4, tp=2, sequence_parallel=True, checkpointing="selective",
             zero=2, no_overlap=True, algorithm="ring", roofline=True, seq_len=128),
        ["gpt2", "--devices", "4", "--tp", "2", "--sequence-parallel", "--checkpointing",
         "selective", "--zero", "2", "--no-overlap", "--algorithm", "ring", "--roofline",
         "--seq-len", "128"],
    ),
    (
        dict(model="mixtral-8x7b", devices=8, ep=2, tp=2),
        ["mixtral-8x7b", "--devices", "8", "--ep", "2", "--tp", "2"],
    ),
    (
        dict(model="gpt2", devices=2, batch=8, seq_len=128, search=True),
        ["gpt2", "--devices", "2", "--batch", "8", "--seq-len", "128", "--search"],
    ),
    (
        dict(model="gpt2", mode="infer", devices=2, search=True),
        ["gpt2", "--mode", "infer", "--devices", "2", "--search"],
    ),
    (dict(model="gpt2", devices=1, batch=2, seq_len=64), ["gpt2", "--devices", "1", "--batch",
                                                          "2", "--seq-len", "64"]),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args", SAME, ids=[" ".join(a) for _, a in SAME])
def test_json_csv_and_html_equal_the_command_line(cli, kwargs, args):
    result = memwall.api.parallel(**kwargs)
    r = cli("parallel", *args, "--format", "json")
    assert r.code == 0, r.err
    assert result.to_dict() == r.json
    c = cli("parallel", *args, "--format", "csv")
    assert c.code == 0, c.err
    frame = result.to_frame()
    if not c.out:  # one device: no collective, no CSV at all
        assert frame.empty and result.rows == []
    else:
        rows = list(csv.DictReader(io.StringIO(c.out)))
        assert list(frame.columns) == c.out.splitlines()[0].split(",")
        assert len(frame) == len(rows) > 0
    assert html.escape(result.title) in result._repr_html_()
    t = cli("parallel", *args)
    assert t.code == 0 and result.title in " ".join(t.out.split())


def test_moe_routing_is_a_note(cli):
    result = memwall.api.parallel("mixtral-8x7b", devices=8, ep=2, tp=2)
    assert f"note: {result['moe_routing']}" in result.notes
    assert "moe_routing" not in memwall.api.parallel("gpt2", devices=2).to_dict()


# (library keywords, the same request on the command line, a piece of the one line)
REFUSED = [
    (dict(mode="infer", zero=0), ["--mode", "infer", "--zero", "0"], "--zero does not apply"),
    (
        dict(mode="infer", checkpointing="none", no_overlap=True),
        ["--mode", "infer", "--checkpointing", "none", "--no-overlap"],
        "--checkpointing, --no-overlap do not apply here: for --mode train only",
    ),
    (
        dict(search=True, tp=2, interleave=1, sequence_parallel=True),
        ["--search", "--tp", "2", "--interleave", "1", "--sequence-parallel"],
        "--tp, --sequence-parallel, --interleave do not apply here: --search chooses",
    ),
    (
        dict(search=True, mode="infer", micro_batch=2),
        ["--search", "--mode", "infer", "--micro-batch", "2"],
        "--micro-batch does not apply",
    ),
    (dict(tp=3), ["--tp", "3"], "does not divide --devices"),
    (dict(devices=0), ["--devices", "0"], "devices must be"),
    (dict(ep=0), ["--ep", "0"], "ep must be an integer between 1"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args,needle", REFUSED, ids=[" ".join(a) for _, a, _ in REFUSED])
def test_refusals_are_the_command_lines_one_line(cli, kwargs, args, needle):
    with pytest.raises(MemwallError) as e:
        memwall.api.parallel("llama-3-8b", **kwargs)
    assert needle in str(e.value)
    r = cli("parallel", "llama-3-8b", *args)
    r.assert_one_line_error(needle)
    assert r.err == f"memwall: error: {e.value}\n"


def test_library_only_checks():
    """The choices Typer checks on the command line are the library's one line too; a
    training flag left out (None) is not refused for inference."""
    with pytest.raises(MemwallError, match="--mode must be one of train, infer"):
        memwall.api.parallel("gpt2", mode="serve")
    with pytest.raises(MemwallError, match="--checkpointing must be one of"):
        memwall.api.parallel("gpt2", checkpointing="sqrt")
    with pytest.raises(MemwallError, match="--algorithm must be one of"):
        memwall.api.parallel("gpt2", algorithm="butterfly")
    r = memwall.api.parallel("gpt2", mode="infer", devices=2)
    assert r["mode"] == "infer" and r["layout"]["zero"] == 0


def test_training_sets_published_runs_of_the_same_architecture_beside_the_prediction():
    """NVIDIA's measured MFU of Llama 3.1 70B in bf16 on H100s comes with memwall's prediction
    of that very run; a model with no published run on the device gets none."""
    from memwall.parallel.published import predict_row, published_rows

    res = memwall.api.parallel("llama-3-70b", devices=64, device="h100-sxm", tp=4, pp=2,
                               batch=64, micro_batch=1)  # fmt: skip
    pub = res.payload["published"]
    assert pub and pub[0]["id"] == "dgxc-llama31-70b-h100-64"  # nearest in GPU count first
    row = next(r for r in published_rows() if r["id"] == pub[0]["id"])
    assert pub[0]["published"] == row["value"] == 0.541
    assert pub[0]["predicted"] == pytest.approx(predict_row(row)["predicted"])
    assert pub[0]["error"] == pytest.approx(pub[0]["predicted"] / 0.541 - 1)
    assert all(p["id"].find("fp8") < 0 for p in pub)  # bf16 asked: no FP8 runs beside it
    assert any("published runs of this architecture" in n for n in res.notes)
    none = memwall.api.parallel("gpt2", devices=2, device="h100-sxm", batch=8, seq_len=128)
    assert none.payload["published"] == []
    assert not any("published runs" in n for n in none.notes)


def test_plot_draws_the_step_of_each_layout_and_refuses_a_bad_path_first(tmp_path):
    """`plot` writes a real image named in the payload; a path in a missing folder is one
    MemwallError before any pricing."""
    out = tmp_path / "step.png"
    res = memwall.api.parallel("gpt2", devices=2, batch=8, seq_len=128, search=True, plot=out)
    assert res.payload["plot"] == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    svg = tmp_path / "one.svg"
    memwall.api.parallel("gpt2", devices=2, tp=2, batch=8, seq_len=128, plot=svg)
    assert "tp2" in svg.read_text() and "MFU" in svg.read_text()
    inf = tmp_path / "infer.svg"  # an inference plan with engines' runs beside it
    memwall.api.parallel("llama-2-70b", mode="infer", devices=4, tp=4, device="a100-sxm-80gb",
                         precision="fp16", plot=inf)  # fmt: skip
    assert "throughput_tok_s" in inf.read_text()
    with pytest.raises(MemwallError, match="--plot file"):
        memwall.api.parallel("gpt2", devices=2, batch=8, plot=tmp_path / "no" / "x.png")
    with pytest.raises(MemwallError, match="--plot file"):
        memwall.api.parallel("gpt2", devices=2, batch=8, plot=tmp_path / "x.txt")


def test_inference_sets_published_runs_at_the_same_tensor_parallelism_beside():
    """An inference plan over 4 A100s at tp 4 comes with TensorRT-LLM's fp16 Llama-2-70B runs at
    tp 4 (not its 1- or 2-GPU ones), each with memwall's prediction of that very run."""
    from memwall.parallel.published_inference import compare, load_published

    res = memwall.api.parallel("llama-2-70b", mode="infer", devices=4, tp=4,
                               device="a100-sxm-80gb", precision="fp16")  # fmt: skip
    pub = res.payload["published"]
    assert pub and all(p["tp"] == 4 for p in pub) and 146 in [p["id"] for p in pub]
    want = compare([r for r in load_published() if r.id == 146]).table.iloc[0]
    got = next(p for p in pub if p["id"] == 146)
    assert got["measured"] == want["measured"] and got["predicted"] == want["predicted"]
    assert any("tp 4" in n for n in res.notes)
    two = memwall.api.parallel("llama-2-70b", mode="infer", devices=2, tp=2,
                               device="a100-sxm-80gb", precision="bf16").payload  # fmt: skip
    assert [p["id"] for p in two["published"]] == [164]  # gpt-fast's bf16 decode at tp 2 only
    gpt2 = memwall.api.parallel("gpt2", mode="infer", devices=2, tp=2, device="a100-sxm-80gb")
    assert gpt2.payload["published"] == []
