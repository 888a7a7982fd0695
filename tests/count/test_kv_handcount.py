"""Issue 21: the KV-cache bytes a decode step reads, by hand from each preset's published config.

For every bundled preset, `memwall analyze MODEL --phase decode --seq-len 8192` (batch 1 and 8)
through the command and the library's defaults must read exactly: layers x batch x keys x the
per-token cache width x the KV precision's bytes. Decode at seq-len C appends one token to a
cache of C and attends to C + 1 keys (README, "Counting conventions"); the new token's K and V
are written to the cache first (`bytes_written`) and read back with the rest (`bytes_kv`).
Sliding-window layers read min(C + 1, window) keys. Multi-head latent attention caches one
latent and one rotated key per token (no separate K and V); T5 reads its self-attention cache
(C + 1 keys) and its cross-attention cache (the C input tokens) in every decoder layer.

The counts below read the config JSON only (never memwall's spec or helpers), so a wrong
default anywhere (a fused kernel booking per-head copies, a cache read as activations, a
window ignored) shows as a mismatch here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from memwall.count import op_table, sweep, totals
from memwall.memory.inference import inference_memory
from memwall.spec import Workload, load_model, parse_precision, preset_config, preset_names

CONTEXT = 8192
BATCHES = (1, 8)
FP32 = 4  # `analyze`'s default precision: bytes per cached element

# The window rule of each attention family, as transformers' config classes set `layer_types`
# (https://github.com/huggingface/transformers/tree/v5.0.0/src/transformers/models):
# gemma2 windows every even layer; gemma3_text all but every `sliding_window_pattern`-th;
# mistral, mixtral and phi3 every layer when `sliding_window` is set; qwen2 / qwen3 / qwen2_moe /
# qwen3_moe only with `use_sliding_window` (layers from `max_window_layers` on); gpt_oss lists
# `layer_types`; llama4_text attends in chunks of `attention_chunk_size` in its RoPE layers
# (`no_rope_layers` 1), whose cache holds at most one chunk, read whole (masked keys included,
# as dense kernels compute the full square). Families in NO_WINDOW attend to every cached token.
NO_WINDOW = {"gpt2", "opt", "llama", "gpt_neox", "falcon", "deepseek_v2", "deepseek_v3", "t5"}
WINDOW_RULES = {"gemma2", "gemma3_text", "mistral", "mixtral", "phi3", "gpt_oss"}
QWEN = {"qwen2", "qwen3", "qwen2_moe", "qwen3_moe"}

# Presets whose count is known to differ from the hand count, with the reason (strict xfail:
# the test says when it is fixed).
KNOWN: dict[str, str] = {}  # preset -> why its count is known to differ (strict xfail)


def _layers(cfg: dict[str, Any]) -> int:
    return cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg["num_layers"]


def _heads(cfg: dict[str, Any]) -> int:
    return cfg.get("num_attention_heads") or cfg.get("n_head") or cfg["num_heads"]


def _kv_heads(cfg: dict[str, Any]) -> int:
    if cfg["model_type"] == "falcon":  # num_kv_heads (new architecture), 1 (multi-query) or all
        if cfg.get("new_decoder_architecture"):
            return cfg["num_kv_heads"]
        return 1 if cfg.get("multi_query", True) else _heads(cfg)
    return cfg.get("num_key_value_heads") or _heads(cfg)


def _head_dim(cfg: dict[str, Any]) -> int:
    width = cfg.get("hidden_size") or cfg.get("n_embd") or cfg["d_model"]
    return cfg.get("head_dim") or cfg.get("d_kv") or width // _heads(cfg)


def _window(cfg: dict[str, Any]) -> tuple[int, int]:
    """(layers whose attention is windowed, the window in tokens); (0, 0): none is."""
    if cfg["model_type"] == "llama4_text" and cfg.get("attention_chunk_size"):
        every = cfg.get("no_rope_layer_interval", 4)  # Llama4TextConfig's default: every 4th NoPE
        rope = cfg.get("no_rope_layers") or [(i + 1) % every != 0 for i in range(_layers(cfg))]
        return sum(rope), cfg["attention_chunk_size"]
    return _windowed_layers(cfg), cfg.get("sliding_window") or 0


def _windowed_layers(cfg: dict[str, Any]) -> int:
    """How many layers attend through `sliding_window` (0: every layer reads the whole cache)."""
    kind, n, window = cfg["model_type"], _layers(cfg), cfg.get("sliding_window")
    if kind in NO_WINDOW or window is None:
        return 0
    if kind in QWEN:
        return n - cfg.get("max_window_layers", n) if cfg.get("use_sliding_window") else 0
    if kind == "gpt_oss":
        return sum(t == "sliding_attention" for t in cfg["layer_types"])
    if kind == "gemma2":
        return sum(i % 2 == 0 for i in range(n))
    if kind == "gemma3_text":
        return sum((i + 1) % cfg["sliding_window_pattern"] != 0 for i in range(n))
    if kind in WINDOW_RULES:
        return n
    pytest.fail(f"no hand-counted window rule for model_type {kind!r}: add it to this test")


def hand_kv_bytes(cfg: dict[str, Any], batch: int, context: int, per_element: float) -> float:
    """KV-cache bytes one decode step reads, from the config's numbers alone."""
    keys = context + 1  # the C cached tokens and the new one
    if cfg["model_type"] == "t5":  # self-attention (C + 1 keys) and cross-attention (C inputs)
        layers = cfg.get("num_decoder_layers") or cfg["num_layers"]
        width = 2 * cfg["num_heads"] * cfg["d_kv"]  # K and V
        return layers * batch * (keys + context) * width * per_element
    if cfg.get("kv_lora_rank"):  # MLA: the latent and the shared rotated key, once per token
        width = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
        return _layers(cfg) * batch * keys * width * per_element
    width = 2 * _kv_heads(cfg) * _head_dim(cfg)  # K and V of the K/V heads
    windowed, window = _window(cfg)
    read = (_layers(cfg) - windowed) * keys + windowed * min(keys, window)
    return read * batch * width * per_element


def _decoders() -> list[Any]:
    out = []
    for name in preset_names():
        if not load_model(name).is_decoder:  # encoders (BERT, ViT) have no decode step
            continue
        marks = [pytest.mark.xfail(reason=KNOWN[name], strict=True)] if name in KNOWN else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


DECODERS = _decoders()


@pytest.fixture(scope="module")
def cli_json():
    from typer.testing import CliRunner

    from memwall.cli import app

    runner = CliRunner()

    def run(*args: str) -> dict[str, Any]:
        r = runner.invoke(app, ["analyze", *args, "--format", "json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    return run


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", DECODERS)
def test_default_analyze_reads_the_hand_counted_cache(cli_json, name, batch):
    """The command's default and the library's default read the cache the config implies."""
    expected = hand_kv_bytes(preset_config(name), batch, CONTEXT, FP32)
    args = ("--phase", "decode", "--seq-len", str(CONTEXT), "--batch", str(batch))
    out = cli_json(name, *args)
    lib = totals(op_table(load_model(name), Workload("decode", batch, CONTEXT)))
    assert out["totals"]["bytes_kv"] == pytest.approx(expected, rel=1e-12)
    assert lib["bytes_kv"] == pytest.approx(expected, rel=1e-12)
    assert out["totals"]["bytes"] == pytest.approx(lib["bytes"], rel=1e-12)  # one default


@pytest.mark.parametrize("name", DECODERS)
def test_every_attention_form_reads_the_cache_as_kv(name):
    """Fused or unfused, absorbed or expanded: the cache is read once, as cache bytes, at its
    cached width (a fused kernel never reads per-head copies)."""
    spec, cfg = load_model(name), preset_config(name)
    wl = Workload("decode", 8, CONTEXT)
    expected = hand_kv_bytes(cfg, 8, CONTEXT, FP32)
    fused = (None, True) if spec.is_encoder_decoder else (None, True, False)
    forms = ("absorbed", "expanded") if spec.is_mla else (None,)
    for f in fused:
        for mla in forms:
            t = totals(op_table(spec, wl, fused_attention=f, mla=mla))
            assert t["bytes_kv"] == pytest.approx(expected, rel=1e-12), (f, mla)


@pytest.mark.parametrize("name", DECODERS)
def test_integer_cache_bytes_include_the_scales(name):
    """An 8-bit cache stores one byte per element and one 16-bit scale per 128 elements."""
    prec = parse_precision("16/16/8")
    expected = hand_kv_bytes(preset_config(name), 1, CONTEXT, 1 + 2 / 128)
    t = totals(op_table(load_model(name), Workload("decode", 1, CONTEXT), prec))
    assert t["bytes_kv"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", DECODERS)
def test_sweep_memory_and_table_agree_on_the_default(name):
    """The vectorised sweep counts what `op_table` counts, and `memwall memory` holds the cache
    the step reads (after the step: C + 1 tokens, a window's worth in windowed layers)."""
    spec = load_model(name)
    wl = Workload("decode", 8, CONTEXT)
    table = totals(op_table(spec, wl))
    grid = sweep(spec, "decode", batch=[8], seq_len=[CONTEXT])
    assert float(grid["bytes"].iloc[0]) == pytest.approx(table["bytes"], rel=1e-12)
    assert float(grid["flops"].iloc[0]) == pytest.approx(table["flops"], rel=1e-12)
    held = inference_memory(spec, wl, parse_precision("fp32")).kv_cache
    assert held == pytest.approx(hand_kv_bytes(preset_config(name), 8, CONTEXT, FP32), rel=1e-12)


def test_every_decoder_preset_is_covered():
    names = {p.values[0] for p in DECODERS}
    assert {"gemma-2-2b", "gpt-oss-20b", "gpt-oss-120b", "deepseek-v3", "t5-base"} <= names


@pytest.mark.parametrize(
    ("name", "args", "fused"),
    [
        ("gemma-2-2b", (), False),  # transformers has no fused path: eager by default
        ("gemma-2-2b", ("--fused-attention",), True),
        ("gpt-oss-20b", (), False),
        ("llama-3-8b", (), True),
        ("llama-3-8b", ("--unfused-attention",), False),
    ],
)
def test_json_says_which_attention_was_counted(cli_json, name, args, fused):
    out = cli_json(name, "--phase", "decode", "--seq-len", "64", *args)
    assert out["fused_attention"] is fused
    names = {op["name"] for op in out["ops"]}
    assert ("attention" in names) is fused
    eager_note = any(n.startswith("attention counted unfused") for n in out["notes"])
    assert eager_note is (not fused and name != "llama-3-8b")  # eager families say so


def test_gemma2_fused_count_reads_the_cache_not_per_head_copies(cli_json):
    """Issue 21's case: the fused count booked no cache bytes and read K/V per query head as
    activations (+11% total bytes at batch 1, +88% at batch 64)."""
    cfg = preset_config("gemma-2-2b")
    for batch in (1, 64):
        args = ("--phase", "decode", "--seq-len", str(CONTEXT), "--batch", str(batch))
        out = cli_json("gemma-2-2b", *args, "--fused-attention")
        t = out["totals"]
        assert t["bytes_kv"] == pytest.approx(hand_kv_bytes(cfg, batch, CONTEXT, FP32))
        assert t["bytes_act"] < 0.01 * t["bytes_kv"]  # no per-head copies read as activations
