"""memwall.memory against real training steps of transformers models on this CPU.

Two measurements (see memwall.memory.measured for the method and why):
- what autograd keeps after a forward, tensor by tensor (saved_tensors_hooks, in process): exact,
  so the activation rules are checked to the byte for four families, two attention
  implementations, fp32 and bf16, with and without dropout;
- the peak resident memory of whole training steps (forward + backward + optimizer step) of small
  BERT and GPT-2 models, SGD and Adam, with and without checkpointing, in a fresh subprocess:
  the prediction must be within 15%, and checkpointing must lower the measured activation memory
  as predicted.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memwall.memory.measured import (  # noqa: E402
    Run,
    bert_config,
    compare,
    gpt2_config,
    llama_config,
    measure,
    measure_saved,
    opt_config,
)
from memwall.memory.training import training_memory  # noqa: E402
from memwall.spec import parse_precision  # noqa: E402

SMALL = {
    "bert": bert_config(layers=2, hidden=128, heads=4, vocab=500),
    "gpt2": gpt2_config(layers=2, hidden=128, heads=4, vocab=500),
    "llama": llama_config(layers=2, hidden=128, heads=4, kv_heads=2, vocab=500),
    "opt": opt_config(layers=2, hidden=128, heads=4, vocab=500),
}


@pytest.mark.parametrize("family", sorted(SMALL))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_saved_activations_match_autograd(family, attn, dtype):
    run = Run(family, SMALL[family], batch=2, seq_len=64, attn=attn)
    measured = measure_saved(run, dtype)
    prec = parse_precision("fp32" if dtype == "float32" else "bf16")
    predicted = training_memory(
        run.spec(), 2, 64, prec, "sgd", impl="eager", fused_attention=attn == "sdpa"
    ).activations
    assert predicted == pytest.approx(measured, rel=0.01)


@pytest.mark.parametrize("family", ["bert", "gpt2", "opt"])
def test_saved_activations_with_dropout(family):
    run = Run(family, SMALL[family], batch=2, seq_len=64, attn="eager", dropout=0.1)
    assert run.predict().activations == pytest.approx(measure_saved(run), rel=0.01)


def test_fused_impl_keeps_less_than_eager_gpt2():
    """GPT-2's gelu_new is an op chain in eager PyTorch: it keeps more than fused kernels."""
    run = Run("gpt2", SMALL["gpt2"], batch=2, seq_len=64)
    measured = measure_saved(run)
    fused = training_memory(run.spec(), 2, 64, parse_precision("fp32"), impl="fused").activations
    assert fused < measured


# ---------------------------------------------------------------- peak RSS of real steps

RUNS = [
    Run(name, cfg, batch=4, seq_len=256, optimizer=opt, checkpointing=ck)
    for name, cfg in (("bert", bert_config()), ("gpt2", gpt2_config()))
    for opt in ("sgd", "adam")
    for ck in (False, True)
]


@pytest.fixture(scope="module")
def rows():
    return compare(RUNS, measure(RUNS))


@pytest.mark.slow
def test_predicted_peak_within_15_percent(rows):
    for r in rows:
        assert r["n_params"] == r["predicted_n_params"], r["run"]
        assert abs(r["error"]) < 0.15, (
            f"{r['run']} {r['optimizer']} ckpt={r['checkpointing']}: measured "
            f"{r['measured_peak'] / 2**20:.1f} MiB, predicted {r['predicted_peak'] / 2**20:.1f} MiB"
        )


@pytest.mark.slow
def test_model_states_measured(rows):
    """RSS after the step (weights, gradients, optimizer state) against the prediction."""
    for r in rows:
        assert r["predicted_states"] == pytest.approx(r["measured_states"], rel=0.15)


@pytest.mark.slow
def test_forward_backward_memory_measured(rows):
    """What forward + backward add on top of weights and optimizer state (activations, their
    temporaries, gradients), measured on its own in the second step."""
    for r in rows:
        assert r["measured_fb_peak"] is not None
        assert r["predicted_fb_peak"] == pytest.approx(r["measured_fb_peak"], rel=0.15)


@pytest.mark.slow
def test_checkpointing_lowers_measured_activation_memory(rows):
    by = {(r["run"], r["optimizer"], r["checkpointing"]): r for r in rows}
    for run, opt, ck in by:
        if ck != "none":
            continue
        none, full = by[(run, opt, "none")], by[(run, opt, "full")]
        # predicted lower, measured lower: forward + backward memory and the whole peak
        assert full["predicted_fb_peak"] < none["predicted_fb_peak"]
        assert full["measured_fb_peak"] < none["measured_fb_peak"]
        assert full["measured_peak"] < none["measured_peak"]
        # and by about as much as predicted
        saved_m = none["measured_fb_peak"] - full["measured_fb_peak"]
        saved_p = none["predicted_fb_peak"] - full["predicted_fb_peak"]
        assert saved_p == pytest.approx(saved_m, rel=0.15)
