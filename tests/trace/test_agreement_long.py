"""The closed form and the meta-device trace agree at long decode contexts.

At short contexts the weights dominate the bytes, so a wrong count of the KV cache's reads hides
under the 5% tolerance; at 5000 tokens the cache is a large share and every slot read counts.
8192 puts Gemma's sliding-window layers (window 4096) well past their window, where they read
4096 keys while the global layers read all of them. Meta device: shapes only, a few seconds each.
"""

from __future__ import annotations

from functools import partial

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memwall.count import op_table, totals  # noqa: E402
from memwall.precision import parse_precision  # noqa: E402
from memwall.spec import Workload, load_model  # noqa: E402
from memwall.trace import trace_table  # noqa: E402

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

SHOW = ["name", "count", "flops", "matmul_flops", "bytes_read", "bytes_written", "bytes"]

CASES = [
    ("deepseek-v2-lite", 5000),
    ("gemma-2-2b", 5000),
    ("gemma-2-2b", 8192),
    ("gemma-3-1b", 5000),
    ("gemma-3-1b", 8192),
    ("mistral-7b", 5000),
    ("qwen2.5-7b", 5000),
]


def _tables(preset: str, context: int):
    spec = load_model(preset)
    wl = Workload("decode", 1, context)
    # the trace runs transformers' code: MLA expanded (decode defaults to the absorbed form)
    return spec, op_table(spec, wl, mla="expanded"), trace_table(spec, wl, device="meta")


def _explain(closed, traced) -> str:
    return "\nclosed form:\n" + closed[SHOW].to_string() + "\ntrace:\n" + traced[SHOW].to_string()


@pytest.mark.parametrize(("preset", "context"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_long_decode_agrees(preset, context):
    _, closed, traced = _tables(preset, context)
    c, t = totals(closed), totals(traced)
    why = _explain(closed, traced)
    assert t["flops"] == pytest.approx(c["flops"], rel=0.01), why
    # tighter than the suite's 5%: at these contexts the cache reads are a large share, and
    # both engines count every key read once
    assert t["bytes"] == pytest.approx(c["bytes"], rel=0.01), why
    assert t["matmul_flops"] == pytest.approx(c["matmul_flops"], rel=0.001), why


SHORT = 16


def _growth(preset: str, context: int) -> tuple[dict, dict]:
    """What grows with the context (mostly the KV cache's reads), per engine: totals at
    `context` minus totals at SHORT."""
    spec = load_model(preset)
    out = []
    closed = partial(op_table, mla="expanded")  # MLA as transformers runs it
    for table in (closed, lambda s, w: trace_table(s, w, device="meta")):
        long = totals(table(spec, Workload("decode", 1, context)))
        short = totals(table(spec, Workload("decode", 1, SHORT)))
        out.append({k: long[k] - short[k] for k in ("flops", "bytes", "bytes_kv")})
    return out[0], out[1]


@pytest.mark.parametrize(("preset", "context"), CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_what_grows_with_the_context_agrees(preset, context):
    """Where the weights dominate (Gemma 3's 512-token windows, Qwen2.5's 4 K/V heads) the
    cache is 2-4% of the bytes, inside any total's tolerance: compare the growth itself."""
    closed, traced = _growth(preset, context)
    assert closed["bytes"] > 0
    assert traced["bytes"] == pytest.approx(closed["bytes"], rel=0.02)
    assert traced["flops"] == pytest.approx(closed["flops"], rel=0.02)
    # the cache's own bytes: every slot each layer attends, read once, in both engines
    assert traced["bytes_kv"] == pytest.approx(closed["bytes_kv"], rel=0.005)


def test_gemma2_sliding_layers_stop_growing_past_the_window():
    """Up to 4096 keys every layer of Gemma 2 reads one more key per token of context; past the
    window only the global half does: the attention bytes then grow half as fast."""
    spec = load_model("gemma-2-2b")
    assert spec.max_positions >= 8190

    def attn_bytes(context: int) -> float:
        df = op_table(spec, Workload("decode", 1, context))
        return float(df[df["name"].isin(["kv_repeat", "attn_score", "attn_value"])]["bytes"].sum())

    early = attn_bytes(4095) - attn_bytes(1)  # 2 -> 4096 keys on every layer
    late = attn_bytes(8189) - attn_bytes(4095)  # 4096 -> 8190 keys on the global layers only
    assert late == pytest.approx(early / 2, rel=1e-3)


def test_mla_decode_reads_the_latent_cache_not_per_head_keys():
    """DeepSeek-V2-Lite caches one latent (kv_lora_rank) and one rotated key (qk_rope_head_dim)
    per token and layer: the KV bytes a decode step reads grow by exactly that per token."""
    spec = load_model("deepseek-v2-lite")
    prec = parse_precision("bf16")

    def kv(context: int) -> float:
        return totals(op_table(spec, Workload("decode", 1, context), prec))["bytes_kv"]

    per_token = (kv(5000) - kv(4000)) / 1000
    assert per_token == pytest.approx(
        spec.n_layers * (spec.kv_lora_rank + spec.rope_head_dim) * 2, rel=1e-9
    )
