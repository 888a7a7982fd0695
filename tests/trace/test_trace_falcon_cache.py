"""Falcon's new architecture (Falcon-40B) traces on the installed transformers (issue 21): the
static cache holds the K/V heads that release caches, and a failure inside transformers reaches
the user as one line naming the model and the release, never a traceback."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memwall.count import totals  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from memwall.spec import Workload, load_model, spec_from_config  # noqa: E402
from memwall.trace import models, trace_config  # noqa: E402
from memwall.trace import versions as tv  # noqa: E402
from memwall.trace.models import cached_kv_heads  # noqa: E402

F32 = 4
NEW_ARCH = dict(
    model_type="falcon", hidden_size=128, num_hidden_layers=2, num_attention_heads=8,
    num_kv_heads=2, new_decoder_architecture=True, vocab_size=1000,
)  # fmt: skip


def _heads_this_release() -> int:
    """8 (every query head) before transformers 5.25, 2 (the K/V heads) from 5.25 on."""
    return 2 if tv.transformers_at_least(tv.FALCON_CACHES_KV_HEADS) else 8


@pytest.mark.parametrize(("installed", "heads"), [("5.24.0", 128), ("5.25.0", 8), ("5.30", 8)])
def test_falcon_40b_cached_heads_by_release(monkeypatch, installed, heads):
    monkeypatch.setattr(tv, "installed_transformers", lambda: installed)
    assert cached_kv_heads(load_model("falcon-40b")) == heads
    assert cached_kv_heads(load_model("falcon-7b")) == 1  # multi-query: one K/V head always
    assert cached_kv_heads(load_model("llama-3-8b")) == 8  # grouped-query: as configured


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("wl", [Workload("decode", 1, 40), Workload("prefill", 2, 16)])
def test_falcon_new_architecture_traces_its_cache(device, wl):
    df = trace_config(NEW_ARCH, wl, device=device, name="falcon-new")
    spec = spec_from_config(NEW_ARCH, "falcon-new")
    slots = wl.seq_len + 1 if wl.phase == "decode" else wl.seq_len  # read / written per layer
    kv = 2 * 2 * slots * wl.batch * _heads_this_release() * spec.head_dim * F32
    assert totals(df)["bytes_kv"] == kv
    assert df.attrs["coverage"] == {}


def test_a_failure_inside_transformers_is_one_line(monkeypatch):
    """A cache of the wrong shape makes transformers' own `index_copy_` fail: the user gets the
    model, the release and the cause on one line (the exception stays chained)."""
    monkeypatch.setattr(models, "cached_kv_heads", lambda spec: spec.n_kv_heads + 1)
    with pytest.raises(MemwallError) as e:
        trace_config(NEW_ARCH, Workload("decode", 1, 8), device="meta", name="falcon-new")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"transformers {tv.installed_transformers()} failed to run 'falcon-new'")
    assert "RuntimeError" in msg and "--engine closed" in msg
    assert isinstance(e.value.__cause__, RuntimeError)


def test_memwall_own_errors_pass_through_unchanged():
    with pytest.raises(ZeroDivisionError), tv.transformers_failures("m"):
        1 / 0  # noqa: B018 - not inside transformers: a bug of memwall's keeps its traceback
    with pytest.raises(MemwallError, match="^bad input$"), tv.transformers_failures("m"):
        raise MemwallError("bad input")


def test_an_unsupported_release_is_refused_before_building(monkeypatch):
    monkeypatch.setattr(tv, "installed_transformers", lambda: "4.57.6")
    with pytest.raises(MemwallError, match="outside the supported range"):
        trace_config(NEW_ARCH, Workload("decode", 1, 8), device="meta", name="falcon-new")
