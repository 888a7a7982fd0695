"""`compress` and `pareto`: build each compressed model, count it, measure it, score it.

One result row per method: stored bytes (real, and memwall's count beside them), the speed-up
memwall predicts from the bytes one step moves, measured latency (with `measure`) and held-out
perplexity (on a model trained here; a preset has random weights, so none).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memwall.compress import prune, quant, variants
from memwall.compress.evaluate import decode_seconds, perplexity, prefill_seconds, real_bytes
from memwall.compress.footprint import check_memory
from memwall.compress.gpt import GPT, GPTShape
from memwall.compress.methods import Method, check_fits, parse_method, predicted
from memwall.compress.train import (
    Trained,
    get_recipe,
    heldout_loss,
    load_trained,
    recipe_spec,
    recipes,
    windows,
)
from memwall.errors import MemwallError
from memwall.spec import ModelSpec, Workload, load_model

PHASES = ("decode", "prefill")
PARETO_METHODS = (
    "fp32",
    "bf16",
    "int8",
    "int8-dynamic",
    "int4:32",
    "int4:128",
    "prune-structured:0.3",
    "prune-structured:0.5",
    "prune-unstructured:0.5",
    "prune-unstructured:0.8",
    "prune-unstructured:0.9",
)
DECODE_TOKENS = 16


@dataclass
class Subject:
    """The model compressed: trained here (perplexity meaningful) or a preset's random weights."""

    name: str
    spec: ModelSpec
    model: GPT
    trained: Trained | None


def load_subject(name: str, progress: bool = False) -> Subject:
    if name in recipes():
        t = load_trained(name, progress=progress)
        return Subject(name, t.spec, t.model, t)
    spec = load_model(name)
    check_fits(Method("fp32"), spec)
    torch.manual_seed(0)
    return Subject(name, spec, GPT(GPTShape.from_spec(spec)).eval(), None)


def build(subject: Subject, method: Method, progress: bool = False) -> tuple[Any, list[str], bool]:
    """The compressed model, what was done to it, and whether its weights came from the cache
    (a pruned variant's recovery fine-tune, only for a trained model: `variants`)."""
    m, k = subject.model, method.kind
    if k == "fp32":
        return m, ["fp32 weights and activations"], False
    if k == "bf16":
        return quant.bf16(m), ["bf16 weights and activations"], False
    if k == "int8":
        return (
            quant.int8_weight_only(m),
            [quant_note("int8 weight-only (aten._weight_int8pack_mm)")],
            False,
        )
    if k == "int8-dynamic":
        return (
            quant.int8_dynamic(m),
            ["torch.ao dynamic int8 (fbgemm); the rest of the model stays fp32 (counted so)"],
            False,
        )
    if k == "int4":
        note = f"int4 weight-only, group {method.group} (aten._weight_int4pack_mm_for_cpu)"
        return quant.int4_weight_only(m, method.group), [quant_note(note)], False
    assert method.fraction is not None
    cached = False
    if subject.trained is not None:
        dense, cached = variants.recovered(subject.trained, method, progress=progress)
    elif k == "prune-structured":
        dense = prune.prune_structured(m, method.fraction)
    else:
        dense = prune.prune_unstructured_dense(m, method.fraction)[0]
    if k == "prune-structured":
        what = "structured (heads and FFN neurons, weight-norm criterion)"
        return dense.eval(), [_prune_note(what, subject)], cached
    what = "unstructured magnitude, stored as CSR"
    return prune.to_csr(dense).eval(), [_prune_note(what, subject)], cached


def quant_note(what: str) -> str:
    return f"{what}; block matrices only, bf16 elsewhere (embeddings, tied LM head, norms, biases)"


def _prune_note(what: str, s: Subject) -> str:
    if s.trained is None or s.trained.recipe.recovery_steps == 0:
        return f"{what}; no recovery fine-tune"
    return (
        f"{what}; {s.trained.recipe.recovery_steps}-step recovery fine-tune (more training: on "
        "this small model it can end below the base perplexity)"
    )


def _check_workload(spec: ModelSpec, phase: str, context: int | None) -> Workload:
    if phase not in PHASES:
        raise MemwallError(f"compress measures phase decode or prefill, got {phase!r}")
    limit = spec.max_positions - DECODE_TOKENS
    ctx = min(128, limit) if context is None else context
    if not 1 <= ctx <= limit:
        raise MemwallError(f"context must be between 1 and {limit} for {spec.name}, got {ctx}")
    return Workload(phase, 1, ctx) if phase == "decode" else Workload("prefill", 1, ctx)


def _time(model: Any, wl: Workload) -> float:
    if wl.phase == "decode":
        return decode_seconds(model, wl.seq_len, DECODE_TOKENS)
    return prefill_seconds(model, wl.seq_len)


def evaluate(
    subject: Subject,
    method: Method,
    wl: Workload,
    measure: bool,
    base: dict[str, Any],
    progress: bool = False,
) -> tuple[dict[str, Any], bool]:
    """One result row (see module doc) and whether the model's weights came from the cache;
    `base` holds the fp32 row's loss and time."""
    model, notes, cached = build(subject, method, progress)
    pred = predicted(method, subject.spec, wl)
    real = real_bytes(model)
    row: dict[str, Any] = {
        "method": method.label,
        "weights_real": real["total"],
        "compressed_real": real["compressed"],
        **pred,
        "count_error": real["total"] / pred["weights_count"] - 1,
        "footprint_reduction": base.get("weights_real", real["total"]) / real["total"],
        "notes": "; ".join(notes),
    }
    if subject.trained is not None:
        w = windows(
            subject.trained.corpus.heldout,
            subject.trained.recipe.seq_len,
            subject.trained.recipe.eval_windows,
        )
        row["loss"] = heldout_loss(model, w)
        row["perplexity"] = perplexity(row["loss"])
        b = base.get("perplexity", row["perplexity"])
        row["perplexity_change"] = row["perplexity"] / b - 1
    if measure:
        row["latency_measured"] = _time(model, wl)
        t0 = base.get("latency_measured", row["latency_measured"])
        row["speedup_measured"] = t0 / row["latency_measured"]
        row["latency_predicted"] = t0 / pred["speedup_predicted"]
    return row, cached


@contextmanager
def _methods_bar(show: bool, total: int) -> Iterator[Any]:
    """One bar over the methods (stderr); `step(label)` names the one starting now."""
    if not show:
        yield lambda label: None
        return
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*cols, console=Console(stderr=True), transient=True) as p:
        task = p.add_task("compressing", total=total)
        first = [True]

        def step(label: str) -> None:
            p.update(task, advance=0 if first[0] else 1, description=f"building, scoring {label}")
            first[0] = False

        yield step


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(
    model: str,
    methods: list[str],
    measure: bool = False,
    phase: str = "decode",
    context: int | None = None,
    progress: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """The fp32 baseline and each method on `model`; methods are checked before any work.

    Timed on `threads` threads (default 1: the machine is shared; one thread is steadiest)."""
    parsed = [parse_method(m) for m in methods]
    if not 1 <= threads <= 4096:
        raise MemwallError(f"threads must be between 1 and 4096, got {threads}")
    spec = recipes_spec_or_preset(model)
    for m in parsed:  # before anything is trained or built
        check_fits(m, spec)
    wl = _check_workload(spec, phase, context)
    todo = [Method("fp32")] + [m for m in parsed if m.kind != "fp32"]
    check_memory(spec, todo, wl, trained=model in recipes())  # before any weights are built
    subject = load_subject(model, progress)
    rows: list[dict[str, Any]] = []
    from_cache: list[str] = []
    with _threads(threads), _methods_bar(progress, len(todo)) as step:
        for m in todo:
            step(m.label)
            row, cached = evaluate(subject, m, wl, measure, rows[0] if rows else {})
            rows.append(row)
            from_cache += [m.label] if cached else []
    return {
        "model": subject.name,
        "trained_here": subject.trained is not None,
        "phase": wl.phase,
        "batch": 1,
        "context": wl.seq_len,
        "threads": threads,
        "convention": "full",
        "measured": measure,
        "rows": rows,
        "base_heldout_loss": rows[0].get("loss"),
        "from_cache": from_cache,
        "notes": _run_notes(subject, wl, todo, from_cache),
    }


def _run_notes(
    subject: Subject, wl: Workload, todo: list[Method], from_cache: list[str]
) -> list[str]:
    notes = [
        "bytes: real = stored by the built model; count = memwall's closed form (convention "
        "full; int4 counts a 16-bit scale and zero point per group)",
        f"speedup_predicted: fp32 bytes / method bytes moved by one {wl.phase} step (memwall's "
        "count; a memory-bound step); latency_predicted = measured fp32 latency / that",
    ]
    if subject.trained is None:
        notes.append(f"{subject.name} has random weights: no perplexity (use stdlib-gpt)")
    else:
        notes.append("perplexity: per byte on held-out Python standard-library files")
    t = subject.trained
    tuned = [m.label for m in todo if m.is_pruning] if t and t.recipe.recovery_steps else []
    if tuned:
        built = [m for m in tuned if m not in from_cache]
        said = [f"from the cache: {', '.join(from_cache)}"] if from_cache else []
        said += [f"run now: {', '.join(built)}"] if built else []
        notes.append(
            f"recovery fine-tunes (cached in {variants.folder()}; delete it to rebuild): "
            + "; ".join(said)
        )
    return notes


def compress(
    model: str = "stdlib-gpt",
    method: str = "int8",
    measure: bool = False,
    phase: str = "decode",
    context: int | None = None,
    progress: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """One method beside the fp32 baseline."""
    return run(model, [method], measure, phase, context, progress, threads)


def pareto(
    model: str = "stdlib-gpt",
    measure: bool = True,
    phase: str = "decode",
    context: int | None = None,
    progress: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Every method (int4 groups that fit the model), with the Pareto-optimal rows marked."""
    subject_spec = recipes_spec_or_preset(model)
    methods = [m for m in PARETO_METHODS if _fits(m, subject_spec)]
    res = run(model, methods, measure, phase, context, progress, threads)
    mark_pareto(res["rows"], measure)
    return res


def recipes_spec_or_preset(name: str) -> ModelSpec:
    return recipe_spec(name, get_recipe(name)) if name in recipes() else load_model(name)


def _fits(method: str, spec: ModelSpec) -> bool:
    try:
        check_fits(parse_method(method), spec)
    except MemwallError:
        return False
    return True


def mark_pareto(rows: list[dict[str, Any]], measured: bool) -> None:
    """`pareto` = no other row is at least as good in bytes, perplexity (and latency)."""
    keys = ["weights_real"] + (["perplexity"] if rows and "perplexity" in rows[0] else [])
    keys += ["latency_measured"] if measured else []
    for r in rows:
        r["pareto"] = not any(
            all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys) for o in rows
        )
