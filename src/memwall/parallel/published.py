"""Published training measurements (`data/published_training.csv`) and memwall's prediction for
each: the same architecture, layout, batch and GPU, priced by `memwall.parallel.plan`."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import replace
from importlib import resources
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.layout import Layout
from memwall.parallel.links import links_for
from memwall.parallel.plan import Options, plan
from memwall.precision import training_precision
from memwall.predict.efficiency import check_attention
from memwall.spec import ModelSpec, load_model, spec_from_config

ARCH_COLUMNS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff", "vocab_size")
INTS = (*ARCH_COLUMNS, "seq_len", "gpus", "tp", "pp", "dp", "cp", "interleave", "zero",
        "global_batch", "micro_batch")  # fmt: skip


# mfu, hfu: fractions of the dense peak; tokens_per_gpu: training tokens per second per GPU (a
# source whose FLOP count memwall does not reproduce, as for MoE models: throughput needs none)
METRICS = ("mfu", "hfu", "tokens_per_gpu")
FAMILIES = ("gpt2", "llama")


def published_rows(text: str | None = None) -> list[dict[str, Any]]:
    """Every row (of the data file, or of `text` in its format), typed; MemwallError naming the
    row when one is malformed or unsourced."""
    if text is None:
        data = resources.files("memwall.data").joinpath("published_training.csv")
        text = data.read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    rows = []
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        try:
            row: dict[str, Any] = {**r, **{k: int(r[k]) for k in INTS}}
            row["value"] = float(r["value"])
            row["sequence_parallel"] = r["sequence_parallel"].strip().lower() == "true"
            if (r.get("tp_overlap") or "").strip().lower() not in ("true", "false"):
                raise ValueError("tp_overlap")
            row["tp_overlap"] = r["tp_overlap"].strip().lower() == "true"
            tied = (r.get("tied_embeddings") or "").strip().lower()
            if tied not in ("", "true", "false"):
                raise ValueError("tied_embeddings")
            row["tied_embeddings"] = None if tied == "" else tied == "true"
            row["activation"] = (r.get("activation") or "").strip().lower()
            row["ep"] = int(r.get("ep") or 1)
        except (TypeError, ValueError):
            raise MemwallError(
                f"published_training.csv: row {r.get('id')!r} is malformed"
            ) from None
        if row["gpus"] != row["tp"] * row["cp"] * row["pp"] * row["dp"] or row["dp"] % row["ep"]:
            raise MemwallError(
                f"published_training.csv: row {r['id']!r}: gpus != tp x cp x pp x dp, or ep "
                "does not divide dp"
            )
        try:
            row["attention"] = check_attention(r.get("attention") or "")
        except MemwallError as e:
            raise MemwallError(f"published_training.csv: row {r['id']!r}: {e}") from None
        if r.get("fitted") not in ("yes", "no"):
            raise MemwallError(f"published_training.csv: row {r['id']!r}: fitted must be yes or no")
        if not r["source"].strip() or row["metric"] not in METRICS:
            raise MemwallError(f"published_training.csv: row {r['id']!r} lacks source or metric")
        if row["family"] not in FAMILIES:  # a preset: it exists and agrees with the columns
            try:
                row_spec(row)
            except MemwallError as e:
                msg = str(e).removeprefix(f"published_training.csv: row {r['id']!r}: ")
                raise MemwallError(f"published_training.csv: row {r['id']!r}: {msg}") from None
        rows.append(row)
    return rows


def row_spec(r: dict[str, Any]) -> ModelSpec:
    if r["family"] not in FAMILIES:  # a memwall preset (MoE models: experts, routing, MLA)
        spec = load_model(r["family"])
        off = [k for k in ARCH_COLUMNS if getattr(spec, k) != r[k]]
        if off:
            raise MemwallError(
                f"published_training.csv: row {r['id']!r}: {', '.join(off)} differ from the "
                f"{r['family']} preset"
            )
        return replace(spec, name=r["id"])
    if r["family"] == "gpt2":
        cfg = {"model_type": "gpt2", "n_embd": r["d_model"], "n_layer": r["n_layers"],
               "n_head": r["n_heads"], "n_inner": r["d_ff"], "vocab_size": r["vocab_size"],
               "n_positions": r["seq_len"],
               "tie_word_embeddings": r.get("tied_embeddings") is not False}  # fmt: skip
        if r.get("activation"):
            cfg["activation_function"] = r["activation"]
        spec = spec_from_config(cfg, name=r["id"])
        # a GPT with grouped-query attention (Nemotron-4): GPT-2's config has no KV-head key,
        # so the row's count is set on the spec (count prices K/V projections from it)
        return replace(spec, n_kv_heads=r["n_kv_heads"])
    else:
        cfg = {"model_type": "llama", "hidden_size": r["d_model"],
               "num_hidden_layers": r["n_layers"], "num_attention_heads": r["n_heads"],
               "num_key_value_heads": r["n_kv_heads"], "intermediate_size": r["d_ff"],
               "vocab_size": r["vocab_size"], "max_position_embeddings": r["seq_len"]}  # fmt: skip
        if r.get("tied_embeddings") is not None:
            cfg["tie_word_embeddings"] = r["tied_embeddings"]
        if r.get("activation"):
            cfg["hidden_act"] = r["activation"]
    return spec_from_config(cfg, name=r["id"])


def predict_row(
    r: dict[str, Any], efficiency: bool = True, kernel_rate: float | None = None
) -> dict[str, Any]:
    """memwall's prediction of the row's metric, with the step time and memory fit: by default
    the realistic model (published kernel efficiencies, the attention kernel the row ran, NCCL
    bus bandwidth, the training work outside the op table); `efficiency=False` the plain
    roofline (an upper bound); `kernel_rate` replaces the fitted training_step term (the fit
    itself prices rows with it, `row_kernel_rate`). An fp8 row's
    MFU is of the fp8 peak, as its source states it."""
    lay = Layout(r["tp"], r["pp"], r["dp"], r.get("ep", 1), r["sequence_parallel"], r["zero"],
                 r["interleave"], r["checkpointing"], r["cp"])  # fmt: skip
    prec = training_precision(r["precision"])
    o = Options("train", r["global_batch"], r["micro_batch"], r["seq_len"], prec,
                efficiency=efficiency, attention=r["attention"],
                tp_overlap=r.get("tp_overlap", False), kernel_rate=kernel_rate)  # fmt: skip
    dev = get_device(r["device"])
    p = plan(row_spec(r), dev, links_for(r["device"]), lay, o)
    pred = {"mfu": p.mfu, "hfu": p.hfu, "tokens_per_gpu": p.tokens_per_s / p.devices}[r["metric"]]
    if r["precision"] == "fp8" and r["metric"] != "tokens_per_gpu":  # MFU of the 16-bit peak
        pred *= p.peak_flops / dev.peak("fp8")
    return {
        "id": r["id"],
        "metric": r["metric"],
        "device": r["device"],
        "fitted": r["fitted"] == "yes",
        "attention": r["attention"],
        "published": r["value"],
        "predicted": pred,
        "error": pred / r["value"] - 1,
        "step_time": p.step_time,
        "fits": p.fits,
        "peak_memory": p.per_device["peak"],
        "capacity": p.capacity,
        "communication_fraction": p.communication / p.step_time,
        "bubble": p.breakdown["bubble"] / p.step_time,
        "breakdown": dict(p.breakdown),
    }


def row_kernel_rate(r: dict[str, Any], lo: float = 0.3, hi: float = 1.5) -> float:
    """The training_step kernel rate at which memwall's prediction of row `r` equals what it
    measured (bisection: the prediction rises with the rate); clipped to [lo, hi]."""
    for _ in range(40):
        mid = (lo + hi) / 2
        if predict_row(r, kernel_rate=mid)["predicted"] > r["value"]:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def fit_kernel_rate() -> tuple[list[tuple[dict[str, Any], float]], tuple[float, float, float]]:
    """The stated rule of `training_step.kernel_rate` (benchmarks/bench_parallel.py --fit): on the
    rows marked fitted = yes alone, each row's matching rate; (low, value, high) = their
    quartiles and median."""
    rates = [(r, row_kernel_rate(r)) for r in published_rows() if r["fitted"] == "yes"]
    q1, med, q3 = statistics.quantiles([k for _, k in rates], n=4)
    return rates, (q1, med, q3)
