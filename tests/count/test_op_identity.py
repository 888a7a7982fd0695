"""Each matmul row of the op table carries its call shape (m, k, n), and its matmul FLOPs are
2*m*k*n per call, a row counting `count` layers x `steps` calls."""

from __future__ import annotations

import math

import pytest

from memwall.count import op_table
from memwall.spec import Workload, load_model

CASES = [
    ("llama-3-8b", Workload("decode", 2, 128)),
    ("llama-3-8b", Workload("prefill", 2, 128)),
    ("gpt2", Workload("prefill", 3, 64)),
]
HAND = {  # (k, n) from the configs
    "llama-3-8b": {
        "q_proj": (4096, 4096),
        "k_proj": (4096, 1024),
        "v_proj": (4096, 1024),
        "o_proj": (4096, 4096),
        "gate_proj": (4096, 14336),
        "up_proj": (4096, 14336),
        "down_proj": (14336, 4096),
        "lm_head": (4096, 128256),
    },
    "gpt2": {"qkv_proj": (768, 2304), "o_proj": (768, 768), "fc1": (768, 3072),
             "fc2": (3072, 768), "lm_head": (768, 50257)},
}  # fmt: skip


@pytest.mark.parametrize(("model", "wl"), CASES)
def test_matmul_rows_carry_their_shape(model: str, wl: Workload) -> None:
    df = op_table(load_model(model), wl)
    linear = df[df["k"].notna()]
    assert set(HAND[model]) == set(linear["name"])
    tokens = wl.batch * (wl.seq_len if wl.phase == "prefill" else 1)
    for r in linear.to_dict("records"):
        calls = r["count"] * r["steps"]
        assert r["matmul_flops"] == pytest.approx(2 * r["m"] * r["k"] * r["n"] * calls)
        assert (r["k"], r["n"]) == HAND[model][r["name"]]
        assert r["m"] == tokens  # the LM head too: it runs on every position here
    other = df[df["k"].isna()]
    assert (other["kind"] != "matmul").all()
    assert all(math.isnan(v) for v in other["m"])
