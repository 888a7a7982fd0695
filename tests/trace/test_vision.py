"""Convolutional models through the trace engine: layer formulas by hand, torchvision's models
against the MACs and parameters torchvision documents (data/vision_models.json), on meta."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib import resources

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from memwall.count import totals  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from memwall.sources import check_image_size, module_source  # noqa: E402
from memwall.trace import kernels, trace_module  # noqa: E402
from memwall.trace.layers import NORM_APPLY, NORM_STATS  # noqa: E402
from memwall.trace.sources import build_run, torchvision_run  # noqa: E402
from memwall.trace.table import trace_run  # noqa: E402

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

F32 = 4
DOC = json.loads(resources.files("memwall.data").joinpath("vision_models.json").read_text())
ACCEPTANCE = ["resnet50", "vgg19", "densenet201", "resnext101_64x4d", "vit_b_16"]


def _recs(res, packet):
    return [r for r in res.records if r.packet == packet]


@pytest.mark.parametrize(
    "conv, shape",
    [
        (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 10, 10)),
        (nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4, bias=False), (2, 8, 10, 10)),
        (nn.Conv2d(8, 8, 5, stride=2, groups=8), (1, 8, 21, 21)),  # depthwise
        (nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), (1, 8, 7, 7)),
        (nn.Conv1d(6, 12, 5, groups=3), (3, 6, 40)),
        (nn.Conv3d(2, 4, 3), (1, 2, 6, 6, 6)),
    ],
)
def test_convolution_flops_by_hand(conv, shape):
    x = torch.randn(*shape)
    res = trace_module(conv, x)
    (rec,) = _recs(res, "convolution")
    out = conv(x)
    k = math.prod(conv.kernel_size)
    cin_per_group = conv.in_channels // conv.groups
    if conv.transposed:  # every input element meets every kernel tap of its group's outputs
        macs = x.numel() // x.shape[1] * conv.in_channels * (conv.out_channels // conv.groups) * k
    else:
        macs = out.numel() * cin_per_group * k
    assert rec.matmul_flops == 2 * macs
    bias = out.numel() if conv.bias is not None else 0
    assert rec.flops == 2 * macs + bias
    read, written = rec.eager_bytes(res.storages)
    w_bytes = sum(p.numel() for p in conv.parameters()) * F32
    assert read == x.numel() * F32 + w_bytes
    assert written == out.numel() * F32
    assert not res.coverage
    (k0,) = kernels(res)
    assert k0.kind == "conv"


def test_pooling_norms_and_interpolation_by_hand():
    x = torch.randn(2, 4, 16, 16)
    cases = [
        (nn.MaxPool2d(3, 2, 1), lambda o: o.numel() * 9),
        (nn.AvgPool2d(2), lambda o: o.numel() * 4),
        (nn.AdaptiveAvgPool2d(1), lambda o: o.numel() * 256),
        (nn.AdaptiveMaxPool2d((4, 4)), lambda o: o.numel() * 16),
        (nn.Upsample(scale_factor=2, mode="bilinear"), lambda o: o.numel() * 2 * 4),
        (nn.Upsample(scale_factor=2, mode="bicubic"), lambda o: o.numel() * 2 * 16),
        (nn.Upsample(scale_factor=2, mode="nearest"), None),  # a gather: index math only
        (nn.BatchNorm2d(4).eval(), lambda o: NORM_APPLY * o.numel()),
        (nn.BatchNorm2d(4).train(), lambda o: NORM_STATS * o.numel()),
        (nn.GroupNorm(2, 4), lambda o: NORM_STATS * o.numel()),
        (nn.InstanceNorm2d(4), lambda o: NORM_STATS * o.numel()),
    ]
    for mod, want in cases:
        out = mod(x)
        res = trace_module(mod, x)
        assert not res.coverage, (mod, res.coverage)
        if want is None:
            assert res.flops <= out.numel() / 8, mod  # source rows and columns, not pixels
        else:
            assert res.flops == pytest.approx(want(out), rel=1e-3), mod  # + batch counter


def test_embedding_bag_reads_the_rows_it_sums():
    bag = nn.EmbeddingBag(100_000, 32, mode="sum")
    ids = torch.randint(0, 100_000, (12,))
    offsets = torch.tensor([0, 5, 9])  # 3 bags of 5, 4 and 3 rows
    res = trace_module(bag, ids, offsets)
    (rec,) = [r for r in res.records if "embedding_bag" in r.packet]
    w = next(s for s in rec.reads if res.storages[s].role == "param")
    assert sum(rec.reads[w].values()) == 12 * 32 * F32  # not the 100k-row table
    assert rec.flops == 12 * 32
    (k,) = [k for k in kernels(res) if k.kind == "embedding"]
    assert k.bytes_weight == 12 * 32 * F32


@pytest.mark.parametrize("name", ACCEPTANCE)
def test_torchvision_flops_match_documented_macs(name):
    doc = DOC["models"][name]
    run = torchvision_run(name, 1, doc["image_size"])
    assert run.n_params == doc["params"]
    df = trace_run(run)
    assert df.attrs["device"] == "meta" and df.attrs["coverage"] == {}
    flops = totals(df)["flops"]
    assert flops == pytest.approx(2 * doc["gmacs"] * 1e9, rel=0.02)
    assert flops >= df["matmul_flops"].sum()  # pointwise work on top of the MACs
    assert df.attrs["flop_counter_flops"] == pytest.approx(df["matmul_flops"].sum())
    assert (df.bytes_weight.sum()) >= doc["params"] * F32 * 0.99  # every weight read once


def test_every_documented_model_has_its_documented_macs_and_parameters():
    """The rest of the table: mobile nets, Inception at 299, Swin, ConvNeXt, EfficientNet. Their
    pointwise work is a larger share (up to ~7% of all FLOPs), so the MACs are checked."""
    for name, doc in DOC["models"].items():
        if name in ACCEPTANCE:
            continue
        run = torchvision_run(name, 1, doc["image_size"])
        df = trace_run(run, cross_check=False)
        assert run.n_params == doc["params"], name
        assert df.attrs["coverage"] == {}, (name, df.attrs["coverage"])
        assert df.matmul_flops.sum() == pytest.approx(2 * doc["gmacs"] * 1e9, rel=0.005), name


def test_batch_and_image_size_scale_the_work():
    one = totals(trace_run(torchvision_run("resnet18", 1, 224)))
    four = totals(trace_run(torchvision_run("resnet18", 4, 224)))
    big = totals(trace_run(torchvision_run("resnet18", 1, 448)))
    assert four["flops"] == pytest.approx(4 * one["flops"], rel=1e-3)
    assert four["bytes_weight"] == pytest.approx(one["bytes_weight"])  # read once per batch
    assert big["flops"] == pytest.approx(4 * one["flops"], rel=0.02)  # 4x the pixels


def test_bad_sources_are_one_clear_error():
    with pytest.raises(MemwallError, match="did you mean resnet50"):
        torchvision_run("resnet5")
    with pytest.raises(MemwallError, match="module:function"):
        module_source("not a:valid/entry")
    with pytest.raises(MemwallError, match="detection"):
        torchvision_run("fasterrcnn_resnet50_fpn")
    for bad in (0, -3, 2.5, True, 10**6):
        with pytest.raises(MemwallError, match="positive integer"):
            check_image_size(bad)
    assert module_source("gpt2") is None and module_source("llama-3-8b") is None
    assert module_source("torchvision:vgg19").target == "vgg19"
    with pytest.raises(MemwallError, match="cannot import"):
        build_run(module_source("memwall_no_such_module:build"))


def test_torchvision_and_transformers_import_after_memwall():
    """A torchvision built for another torch (the CUDA wheel beside a CPU torch) must not break
    `import torchvision` nor transformers, which imports it when installed."""
    code = (
        "import memwall.trace, torchvision.models as m\n"
        "from transformers import GPT2LMHeadModel\n"
        "assert 'resnet50' in m.list_models()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
