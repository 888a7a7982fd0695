"""The DLRM-style recommendation model: sizes, per-op counts with the embedding-lookup bytes,
inference and training memory (sharded or not), and memory-bound inference everywhere."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from memwall.count import totals  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from memwall.hardware import get_device  # noqa: E402
from memwall.hardware.catalog import catalog_names  # noqa: E402
from memwall.predict import predict_roofline  # noqa: E402
from memwall.trace.dlrm import bundled, dlrm_memory, dlrm_run, load_config  # noqa: E402
from memwall.trace.table import trace_run  # noqa: E402

F32 = 4
TINY = dict(
    dense_features=4,
    embedding_dim=8,
    table_sizes=[100, 50, 7],
    lookups_per_table=2,
    bottom_mlp=[16, 8],
    top_mlp=[16, 1],
)
WIDTH_BYTES = {"fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


@pytest.fixture(scope="module")
def criteo():
    cfg = bundled()
    return cfg, trace_run(dlrm_run(cfg, 1))


def test_sizes_match_the_hand_count():
    cfg = load_config(TINY)
    assert cfg.interaction_width == 8 + 4 * 3 // 2  # 4 vectors: 6 pairs below the diagonal
    mlp = (4 * 16 + 16 + 16 * 8 + 8) + (14 * 16 + 16 + 16 * 1 + 1)
    assert cfg.mlp_params == mlp
    run = dlrm_run(cfg, 3)
    assert run.n_params == cfg.table_params + cfg.mlp_params == 157 * 8 + mlp


def test_embedding_rows_read_not_tables(criteo):
    cfg, df = criteo
    emb = df[df.kind == "embedding"]
    lookups = len(cfg.table_sizes) * cfg.lookups_per_table
    rows = df.set_index("name").loc["tables.*"]
    assert rows["count"] == len(cfg.table_sizes)
    assert rows["bytes_weight"] == lookups * cfg.embedding_dim * F32  # 26 rows, not 96 GB
    assert emb.bytes_weight.sum() < 1e-6 * cfg.table_params * F32
    mm = df[df.kind == "matmul"]
    assert mm.bytes_weight.sum() == pytest.approx(cfg.mlp_params * F32, rel=1e-9)
    assert df.attrs["coverage"] == {}
    # the dot interaction: a batched (27 x 128) x (128 x 27) product
    inter = df[df.name.str.contains("bmm")]
    n = cfg.n_vectors
    assert inter.matmul_flops.sum() == 2 * n * n * cfg.embedding_dim


def test_batch_scales_lookups_and_work_not_weights(criteo):
    cfg, one = criteo
    big = trace_run(dlrm_run(cfg, 64))
    t1, t64 = totals(one), totals(big)
    r1 = one.set_index("name").loc["tables.*", "bytes_weight"]
    r64 = big.set_index("name").loc["tables.*", "bytes_weight"]
    assert r1 == len(cfg.table_sizes) * cfg.embedding_dim * F32
    # 64 rows from each table, but never more than a small table holds (3, 4, 10 rows ...)
    assert r64 == sum(min(64, n) for n in cfg.table_sizes) * cfg.embedding_dim * F32
    assert t64["flops"] == pytest.approx(64 * t1["flops"], rel=0.01)
    mm = one[one.kind == "matmul"].bytes_weight.sum()
    assert big[big.kind == "matmul"].bytes_weight.sum() == pytest.approx(mm)


def test_inference_is_memory_bound_on_every_catalog_device_at_batch_1(criteo):
    """Intensity ~0.5 FLOP/B in fp32 (every MLP weight read for one sample). The one exception
    the catalog holds is a 1998 CPU whose fp32 ridge is 0.50 FLOP/B: there it is balanced."""
    _, df = criteo
    t = totals(df)
    fp32_intensity = t["flops"] / t["bytes"]
    assert 0.3 < fp32_intensity < 1.0
    compute_bound, checked = [], 0
    for name in catalog_names():
        dev = get_device(name)
        if not dev.mem_bandwidth:
            continue
        for dtype, width in WIDTH_BYTES.items():
            if dev.has_peak(dtype):  # every byte at this width: intensity x (4 / width)
                checked += 1
                if fp32_intensity * F32 / width >= dev.ridge(dtype):
                    compute_bound.append((name, dtype))
        if dev.has_peak("fp32") and (name, "fp32") not in compute_bound:
            pred = predict_roofline(df, dev)
            assert pred.totals["t_memory"] > pred.totals["t_compute"], name
    assert compute_bound == [("pentium-ii-xeon", "fp32")]
    assert checked >= len(catalog_names())


def test_memory_sharded_and_not():
    cfg = bundled()
    one = dlrm_memory(cfg, 1, "infer", 1)
    eight = dlrm_memory(cfg, 1, "infer", 8)
    assert one.tables == cfg.table_params * F32
    assert eight.tables == pytest.approx(one.tables / 8)
    assert eight.mlp == one.mlp == cfg.mlp_params * F32  # replicated
    assert one.total > 90e9 and eight.total < 13e9  # 96 GB of tables does not fit one GPU
    train = dlrm_memory(cfg, 2048, "train", 8, optimizer="sgd")
    rows_touched = 2048 * len(cfg.table_sizes) * cfg.embedding_dim * F32 / 8
    assert train.gradients == pytest.approx(train.mlp + rows_touched)  # sparse table grads
    assert train.optimizer_state == 0  # plain SGD, as MLPerf's reference trains it
    assert train.activations > 0
    adam = dlrm_memory(cfg, 2048, "train", 8, optimizer="adam")
    assert adam.optimizer_state == pytest.approx(2 * (cfg.table_params / 8 + cfg.mlp_params) * 4)


def test_bad_config_is_one_line():
    with pytest.raises(MemwallError, match="table_sizes"):
        load_config(dict(TINY, table_sizes=[]))
    with pytest.raises(MemwallError, match="bottom MLP"):
        load_config(dict(TINY, bottom_mlp=[16, 4]))
    with pytest.raises(MemwallError, match="no bundled DLRM"):
        load_config("kaggle")
    with pytest.raises(MemwallError, match="devices"):
        dlrm_memory(load_config(TINY), 1, "infer", 0)
