"""The paper's case study (its Figure 3) on this machine.

BERT-Base, BERT-Large and GPT-2 at sequence lengths 128 .. 4096, batch 1:
- counted: FLOPs, MOPs (bytes) and arithmetic intensity under the paper's convention (8-bit,
  closed form; BERT: one encoder forward over L tokens; GPT-2: L tokens generated one at a time
  from no prompt with a KV cache);
- measured: end-to-end latency of the real models (random weights) on this CPU at the paper's
  8-bit setting (dynamic int8 Linear layers) and at fp32, normalised to BERT-Base at 128;
- predicted: the calibrated roofline's latency for the same runs, and its error.

The default measures the lengths whose predicted cost fits a time budget (about 10 minutes)
and names the rows it skipped; `full=True` measures all. Ctrl-C keeps the rows measured so far.
Learned position tables (BERT 512, GPT-2 1024) are deliberately extended to the longest length
measured, with random weights; this is said in the output.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memwall.count import op_table, totals
from memwall.errors import MemwallError
from memwall.spec import ModelSpec, Workload

MODELS = ("bert-base", "bert-large", "gpt2")
LENGTHS = (128, 256, 512, 1024, 2048, 4096)
PRECISIONS = ("int8", "fp32")  # the paper's 8-bit setting first
BUDGET_S = 600.0
REFERENCE = ("bert-base", 128)


def workload_for(spec: ModelSpec, length: int) -> Workload:
    """BERT: one encoder forward over L tokens; a decoder: L tokens generated from no prompt."""
    if spec.is_decoder:
        return Workload("generate", 1, 0, length)
    return Workload("encode", 1, length, 0)


def describe_workload(spec: ModelSpec, length: int) -> str:
    if spec.is_decoder:
        return f"generate {length} tokens one at a time from no prompt (KV cache), batch 1"
    return f"one encoder forward over {length} tokens, batch 1"


def counted(spec: ModelSpec, length: int) -> dict[str, float]:
    """Paper-convention totals (8-bit, closed form): FLOPs, MOPs (bytes), intensity."""
    t = totals(op_table(spec, workload_for(spec, length), convention="paper"))
    return {"flops": t["flops"], "mops": t["bytes"], "intensity": t["intensity"]}


@dataclass
class Planned:
    model: str
    length: int
    precision: str
    predicted: float
    warmup: int
    repeats: int

    @property
    def cost(self) -> float:
        return self.predicted * (self.warmup + self.repeats)


@dataclass
class CaseStudy:
    """The case study's rows (one per model and length) and what was (not) measured."""

    rows: list[dict[str, Any]]
    precisions: tuple[str, ...]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    terms: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    elapsed: float = 0.0

    def row(self, model: str, length: int) -> dict[str, Any] | None:
        for r in self.rows:
            if r["model"] == model and r["length"] == length:
                return r
        return None

    def errors(self) -> list[float]:
        """Prediction errors of every measured (row, precision)."""
        out = []
        for r in self.rows:
            for p in self.precisions:
                e = r.get(f"error_{p}")
                if e is not None:
                    out.append(e)
        return out

    def ratio(self, precision: str, model: str = "gpt2", length: int = 128) -> float | None:
        """Measured latency of `model` at `length` over BERT-Base's at 128 (same precision)."""
        a, b = self.row(model, length), self.row(*REFERENCE)
        if a is None or b is None:
            return None
        x, y = a.get(f"latency_{precision}"), b.get(f"latency_{precision}")
        return x / y if (x is not None and y) else None

    def to_dict(self) -> dict[str, Any]:
        errs = self.errors()
        return {
            "figure": "AI and Memory Wall (Gholami et al., IEEE Micro 2024), Figure 3, "
            "on this machine",
            "counted": {
                "convention": "paper",
                "engine": "closed form",
                "precision": "8-bit (paper)",
                "note": "BERT: one encoder forward over L tokens; GPT-2: L tokens generated one "
                "at a time from no prompt with a KV cache; batch 1",
            },
            "measured": {
                "precisions": list(self.precisions),
                "what": "end-to-end latency, median of timed runs, random weights",
                "normalised_to": f"{REFERENCE[0]} at length {REFERENCE[1]}, per precision",
                "environment": self.env,
            },
            "units": {
                "flops": "FLOP",
                "mops": "byte",
                "intensity": "FLOP/byte",
                "latency": "s",
                "error": "|predicted - measured| / measured",
            },
            "rows": self.rows,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "prediction_error": {
                "n": len(errs),
                "median": statistics.median(errs) if errs else None,
                "worst": max(errs) if errs else None,
            },
            "gpt2_over_bert_base_at_128": {p: self.ratio(p) for p in self.precisions},
            "calibration_terms": self.terms,
            "notes": self.notes,
            "elapsed": self.elapsed,
        }


def _duration(seconds: float) -> str:
    return f"~{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _repeats_for(predicted: float, repeats: int) -> tuple[int, int]:
    """(warm-up, repeats) by predicted run time: long runs are not repeated as often."""
    if predicted < 5:
        return 1, repeats
    if predicted < 30:
        return 1, min(repeats, 2)
    return 0, 1


def run_casestudy(
    models: Sequence[str] = MODELS,
    lengths: Sequence[int] = LENGTHS,
    precisions: Sequence[str] = PRECISIONS,
    full: bool = False,
    budget_s: float = BUDGET_S,
    repeats: int = 3,
    cal: Any = None,
    device: Any = None,
    configs: dict[str, dict] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[str, float, float], None] | None = None,
) -> CaseStudy:
    """Count every (model, length), measure what fits the budget (all with `full`).

    `configs`: model name -> raw config dict, to run other (e.g. tiny) configs under these
    names. `on_row(row)` is called after each measured row; `on_progress(description,
    advance, total)` drives a progress bar (seconds of predicted work).
    A KeyboardInterrupt stops measuring; the rows measured so far are kept.
    """
    from memwall.calibrate import Calibration, predict, roofline_baseline
    from memwall.profile.models import build, check_precision, resolve, with_precision
    from memwall.profile.run import Runner, environment, time_runs

    t_start = time.perf_counter()
    if not models or not lengths or not precisions:
        raise MemwallError("the case study needs at least one model, length and precision")
    for L in lengths:
        if not isinstance(L, int) or L < 1 or L > 1_000_000:
            raise MemwallError(f"case-study lengths must be integers 1..1000000, got {L!r}")
    progress = on_progress or (lambda d, a, t: None)
    specs: dict[str, tuple[ModelSpec, dict]] = {}
    for m in models:
        specs[m] = resolve(m, (configs or {}).get(m))
        for p in precisions:
            check_precision(p, specs[m][0])
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for m in models:
        spec = specs[m][0]
        for L in lengths:
            rows[(m, L)] = {
                "model": m,
                "length": L,
                "workload": describe_workload(spec, L),
                **counted(spec, L),
            }
    cal = cal if cal is not None else Calibration.load()
    cal.on_measure = lambda s: progress(s, 0.0, 0.0)
    for p in precisions:
        cal.ensure(p)
    terms: dict[str, list[dict[str, Any]]] = {}
    base_notes: list[str] = []
    plan: list[Planned] = []
    for m in models:
        spec, cfg = specs[m]
        for p in precisions:
            for L in lengths:
                wl = workload_for(spec, L)
                pred = predict(spec, wl, p, cal, cfg)
                terms.setdefault(f"{spec.family}/{p}", [t.to_dict() for t in pred.terms])
                rows[(m, L)][f"predicted_{p}"] = pred.total
                if device is not None:
                    try:
                        base = roofline_baseline(spec, wl, p, device)["time"]
                    except MemwallError as e:
                        base = None
                        if not any(str(e) in n for n in base_notes):
                            base_notes.append(f"plain roofline skipped at {p}: {e}")
                    rows[(m, L)][f"roofline_{p}"] = base
                w, r = _repeats_for(pred.total, repeats)
                plan.append(Planned(m, L, p, pred.total, w, r))
    # What fits: whole lengths in increasing order while the predicted cost fits the budget.
    plan.sort(key=lambda x: (x.length, precisions.index(x.precision), models.index(x.model)))
    chosen: list[Planned] = []
    skipped: list[Planned] = []
    spent = time.perf_counter() - t_start
    build_estimate = 5.0 * len(models) * len(precisions)
    stop = False
    for L in sorted(set(lengths)):
        at = [x for x in plan if x.length == L]
        cost = sum(x.cost for x in at)
        if not full and (stop or spent + build_estimate + cost > budget_s) and chosen:
            stop = True
            skipped += at
            continue
        chosen += at
        spent += cost
    env = environment()
    notes: list[str] = list(base_notes)
    loaded: dict[tuple[str, str], Any] = {}
    total = sum(x.cost for x in chosen)
    interrupted = False
    measured = 0
    try:
        for m in models:
            spec, cfg = specs[m]
            need = [x for x in chosen if x.model == m]
            if not need:
                continue
            positions = spec.max_positions
            longest = max(x.length for x in need)
            if spec.position == "learned" and longest > spec.max_positions:
                positions = longest
                notes.append(
                    f"{m}: position table extended from {spec.max_positions} to {longest} "
                    "learned positions (random weights), deliberately, to run the paper's lengths"
                )
            progress(f"building {m}", 0.0, 0.0)
            base = build(spec, cfg, "fp32", positions)
            for p in precisions:
                if any(x.precision == p for x in need):
                    loaded[(m, p)] = base if p == "fp32" else with_precision(base, p)
                    for n in loaded[(m, p)].notes:
                        if n not in notes:
                            notes.append(n)
            del base
        progress("measuring", 0.0, total)
        for x in chosen:
            lm = loaded[(x.model, x.precision)]
            progress(f"{x.model} L={x.length} {x.precision}", 0.0, total)
            tm = time_runs(Runner(lm, workload_for(lm.spec, x.length)), x.warmup, x.repeats)
            row = rows[(x.model, x.length)]
            p = x.precision
            row[f"latency_{p}"] = tm.median
            row[f"latency_{p}_q1"] = tm.q1
            row[f"latency_{p}_q3"] = tm.q3
            row[f"latency_{p}_min"] = tm.min
            row[f"latency_{p}_max"] = tm.max
            row[f"runs_{p}"] = tm.n
            row[f"error_{p}"] = abs(row[f"predicted_{p}"] - tm.median) / tm.median
            if row.get(f"roofline_{p}") is not None:
                row[f"roofline_error_{p}"] = abs(row[f"roofline_{p}"] - tm.median) / tm.median
            measured += 1
            progress(f"{x.model} L={x.length} {x.precision}", x.cost, total)
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        interrupted = True
        notes.append(f"interrupted: {measured} of {len(chosen)} planned measurements done")
    finally:
        loaded.clear()
    for p in precisions:
        ref = rows.get(REFERENCE, {}).get(f"latency_{p}")
        for r in rows.values():
            lat = r.get(f"latency_{p}")
            r[f"normalized_{p}"] = lat / ref if (lat is not None and ref) else None
    keys = (
        "latency_{p}",
        "latency_{p}_q1",
        "latency_{p}_q3",
        "latency_{p}_min",
        "latency_{p}_max",
        "runs_{p}",
        "error_{p}",
        "predicted_{p}",
    )
    for r in rows.values():
        for p in precisions:
            for k in keys:
                r.setdefault(k.format(p=p), None)
            if device is not None:
                r.setdefault(f"roofline_{p}", None)
                r.setdefault(f"roofline_error_{p}", None)
            r[f"measured_{p}"] = r[f"latency_{p}"] is not None
    skipped_rows = [
        {"model": x.model, "length": x.length, "precision": x.precision, "predicted": x.predicted}
        for x in skipped
    ]
    if skipped_rows:
        lens = sorted({x.length for x in skipped})
        notes.append(
            f"not measured (predicted to exceed the {_duration(budget_s)} budget): lengths "
            f"{', '.join(map(str, lens))}; run with --full to measure them"
        )
    ordered = [rows[(m, L)] for m in models for L in lengths]
    return CaseStudy(
        rows=ordered,
        precisions=tuple(precisions),
        skipped=skipped_rows,
        interrupted=interrupted,
        notes=notes,
        env=env,
        terms=terms,
        elapsed=time.perf_counter() - t_start,
    )
