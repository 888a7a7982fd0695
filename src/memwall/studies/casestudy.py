"""The paper's case study (its Figure 3) on this machine.

BERT-Base, BERT-Large and GPT-2 at sequence lengths 128 .. 4096, batch 1:
- counted: FLOPs, MOPs (bytes) and arithmetic intensity under the paper's convention (8-bit,
  closed form; BERT: one encoder forward over L tokens; GPT-2: L tokens generated one at a time
  from no prompt with a KV cache);
- measured: end-to-end latency of the real models (random weights) on this CPU at the paper's
  8-bit setting (int8-dynamic: dynamic int8 Linear layers) and at fp32, normalised to
  BERT-Base at 128;
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
from memwall.measure.calibration import Calibration
from memwall.measure.models import LoadedModel, build, check_precision, resolve, with_precision
from memwall.measure.run import Runner, environment, time_runs
from memwall.measure.timing import Timing
from memwall.predict import predict_calibrated, roofline_baseline
from memwall.spec import ModelSpec, Workload, runnable_precision
from memwall.studies.profile import calibration_notes

MODELS = ("bert-base", "bert-large", "gpt2")
LENGTHS = (128, 256, 512, 1024, 2048, 4096)
PRECISIONS = ("int8-dynamic", "fp32")  # the paper's 8-bit setting first
BUDGET_S = 600.0
REFERENCE = ("bert-base", 128)
SETTLE_CAP_S = 30.0


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
    calibration: dict[str, Any] | None = None  # age, load, spread, noise flag

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
            "calibration": self.calibration,
            "notes": self.notes,
            "elapsed": self.elapsed,
        }


def _repeats_for(predicted: float, repeats: int) -> tuple[int, int]:
    """(warm-up, repeats) by predicted run time: long runs are not repeated as often."""
    if predicted < 5:
        return 1, repeats
    if predicted < 30:
        return 1, min(repeats, 2)
    return 0, 1


Progress = Callable[[str, float, float], None]  # (description, advance, total)


@dataclass
class _Plan:
    """What the case study will do: specs, counted rows, predictions and the runs chosen."""

    models: tuple[str, ...]
    lengths: tuple[int, ...]
    precisions: tuple[str, ...]
    specs: dict[str, tuple[ModelSpec, dict]]
    rows: dict[tuple[str, int], dict[str, Any]]
    terms: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[Planned] = field(default_factory=list)
    chosen: list[Planned] = field(default_factory=list)
    skipped: list[Planned] = field(default_factory=list)


def _check_inputs(models: Sequence[str], lengths: Sequence[int], precisions: Sequence[str]):
    if not models or not lengths or not precisions:
        raise MemwallError("the case study needs at least one model, length and precision")
    for L in lengths:
        if not isinstance(L, int) or L < 1 or L > 1_000_000:
            raise MemwallError(f"case-study lengths must be integers 1..1000000, got {L!r}")
    return tuple(models), tuple(lengths), tuple(runnable_precision(p) for p in precisions)


def plan_casestudy(
    models: Sequence[str],
    lengths: Sequence[int],
    precisions: Sequence[str],
    configs: dict[str, dict] | None = None,
) -> _Plan:
    """Resolve the models and count every (model, length): nothing is measured yet."""
    ms, ls, ps = _check_inputs(models, lengths, precisions)
    specs: dict[str, tuple[ModelSpec, dict]] = {}
    for m in ms:
        specs[m] = resolve(m, (configs or {}).get(m))
        for p in ps:
            check_precision(p, specs[m][0])
    rows = {
        (m, L): {
            "model": m,
            "length": L,
            "workload": describe_workload(specs[m][0], L),
            **counted(specs[m][0], L),
        }
        for m in ms
        for L in ls
    }
    return _Plan(ms, ls, ps, specs, rows)


def _baseline(plan: _Plan, spec: ModelSpec, wl: Workload, p: str, device: Any) -> float | None:
    try:
        return roofline_baseline(spec, wl, p, device)["time"]
    except MemwallError as e:
        if not any(str(e) in n for n in plan.notes):
            plan.notes.append(f"plain roofline skipped at {p}: {e}")
        return None


def predict_casestudy(plan: _Plan, cal: Calibration, device: Any, repeats: int) -> None:
    """Calibrated (and plain roofline) predictions of every run; the run list with repeats."""
    for m in plan.models:
        spec, cfg = plan.specs[m]
        for p in plan.precisions:
            for L in plan.lengths:
                wl = workload_for(spec, L)
                cal.ensure_for(spec, cfg, p, wl.phase)
                pred = predict_calibrated(spec, wl, p, cal.data)
                plan.terms.setdefault(f"{spec.family}/{p}", [t.to_dict() for t in pred.terms])
                plan.rows[(m, L)][f"predicted_{p}"] = pred.total
                if device is not None:
                    plan.rows[(m, L)][f"roofline_{p}"] = _baseline(plan, spec, wl, p, device)
                w, r = _repeats_for(pred.total, repeats)
                plan.runs.append(Planned(m, L, p, pred.total, w, r))


def choose_runs(plan: _Plan, full: bool, budget_s: float, spent: float) -> None:
    """Whole lengths in increasing order while the predicted cost fits the budget."""
    ps, ms = plan.precisions, plan.models
    plan.runs.sort(key=lambda x: (x.length, ps.index(x.precision), ms.index(x.model)))
    build_estimate = 5.0 * len(ms) * len(ps)
    stop = False
    for L in sorted(set(plan.lengths)):
        at = [x for x in plan.runs if x.length == L]
        cost = sum(x.cost for x in at)
        if not full and (stop or spent + build_estimate + cost > budget_s) and plan.chosen:
            stop = True
            plan.skipped += at
            continue
        plan.chosen += at
        spent += cost


def _build_models(plan: _Plan, progress: Progress) -> dict[tuple[str, str], LoadedModel]:
    """Each model once in fp32 (position tables extended to the longest length run), then
    converted to every other precision chosen."""
    loaded: dict[tuple[str, str], LoadedModel] = {}
    for m in plan.models:
        spec, cfg = plan.specs[m]
        need = [x for x in plan.chosen if x.model == m]
        if not need:
            continue
        positions = spec.max_positions
        longest = max(x.length for x in need)
        if spec.position == "learned" and longest > spec.max_positions:
            positions = longest
            plan.notes.append(
                f"{m}: position table extended from {spec.max_positions} to {longest} "
                "learned positions (random weights), deliberately, to run the paper's lengths"
            )
        progress(f"building {m}", 0.0, 0.0)
        base = build(spec, cfg, "fp32", positions)
        for p in plan.precisions:
            if any(x.precision == p for x in need):
                loaded[(m, p)] = base if p == "fp32" else with_precision(base, p)
                plan.notes.extend(n for n in loaded[(m, p)].notes if n not in plan.notes)
    return loaded


def _record(row: dict[str, Any], p: str, tm: Timing, passes: list[float]) -> None:
    """Store a row's pooled timing (every pass's runs together) and each pass's median."""
    for k in ("q1", "q3", "min", "max"):
        row[f"latency_{p}_{k}"] = getattr(tm, k)
    row[f"latency_{p}"], row[f"runs_{p}"] = tm.median, tm.n
    row[f"relative_iqr_{p}"] = tm.relative_iqr
    row[f"repeatability_{p}"] = tm.repeatability
    row[f"noisy_{p}"] = tm.noisy
    row[f"latency_{p}_passes"] = list(passes)
    row[f"pass_difference_{p}"] = (
        (max(passes) - min(passes)) / tm.median if len(passes) > 1 and tm.median else None
    )
    row[f"error_{p}"] = abs(row[f"predicted_{p}"] - tm.median) / tm.median
    if row.get(f"roofline_{p}") is not None:
        row[f"roofline_error_{p}"] = abs(row[f"roofline_{p}"] - tm.median) / tm.median


def _settle_budget(x: Planned) -> float:
    """Seconds of timed runs a row may take while its spread is wide: twice its plan, at
    most SETTLE_CAP_S (long rows are not repeated more: their runs are few and long)."""
    return min(2.0 * x.predicted * x.repeats, SETTLE_CAP_S)


def measure_casestudy(
    plan: _Plan,
    progress: Progress,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    passes: int = 1,
) -> bool:
    """Time every chosen run, `passes` times interleaved (every run once, then every run
    again: slow drifts of the machine show as a difference between passes); True when a
    KeyboardInterrupt stopped it (rows so far kept)."""
    total = sum(x.cost for x in plan.chosen) * passes
    measured = 0
    loaded: dict[tuple[str, str], LoadedModel] = {}
    pooled: dict[tuple[str, int, str], list[Timing]] = {}
    try:
        loaded = _build_models(plan, progress)
        progress("measuring", 0.0, total)
        for k in range(passes):
            for x in plan.chosen:
                lm = loaded[(x.model, x.precision)]
                what = f"{x.model} L={x.length} {x.precision}" + (
                    f" (pass {k + 1}/{passes})" if passes > 1 else ""
                )
                progress(what, 0.0, total)
                runner = Runner(lm, workload_for(lm.spec, x.length))
                tm = time_runs(runner, x.warmup, x.repeats, budget_s=_settle_budget(x))
                got = pooled.setdefault((x.model, x.length, x.precision), [])
                got.append(tm)
                both = Timing(
                    tuple(r for t in got for r in t.runs), x.warmup, sum(t.added for t in got)
                )
                _record(plan.rows[(x.model, x.length)], x.precision, both, [t.median for t in got])
                measured += 1
                progress(what, x.cost, total)
                if on_row is not None:
                    on_row(plan.rows[(x.model, x.length)])
    except KeyboardInterrupt:
        plan.notes.append(
            f"interrupted: {measured} of {len(plan.chosen) * passes} planned measurements done"
        )
        return True
    finally:
        loaded.clear()
    return False


_KEYS = (
    "latency_{p}",
    "latency_{p}_q1",
    "latency_{p}_q3",
    "latency_{p}_min",
    "latency_{p}_max",
    "runs_{p}",
    "relative_iqr_{p}",
    "repeatability_{p}",
    "noisy_{p}",
    "latency_{p}_passes",
    "pass_difference_{p}",
    "error_{p}",
    "predicted_{p}",
)


def assemble_casestudy(
    plan: _Plan, device: Any, budget_s: float, interrupted: bool, elapsed: float
) -> CaseStudy:
    """Normalise to the reference row, fill every key, name what was skipped."""
    rows = plan.rows
    for p in plan.precisions:
        ref = rows.get(REFERENCE, {}).get(f"latency_{p}")
        for r in rows.values():
            lat = r.get(f"latency_{p}")
            r[f"normalized_{p}"] = lat / ref if (lat is not None and ref) else None
            for k in _KEYS:
                r.setdefault(k.format(p=p), None)
            if device is not None:
                r.setdefault(f"roofline_{p}", None)
                r.setdefault(f"roofline_error_{p}", None)
            r[f"measured_{p}"] = r[f"latency_{p}"] is not None
    skipped = [
        {"model": x.model, "length": x.length, "precision": x.precision, "predicted": x.predicted}
        for x in plan.skipped
    ]
    noisy = [
        f"{r['model']} L={r['length']} {p} ({100 * r[f'relative_iqr_{p}']:.0f}%)"
        for r in rows.values()
        for p in plan.precisions
        if r.get(f"noisy_{p}")
    ]
    if noisy:
        plan.notes.append(
            "NOISY measurements (interquartile range over 10% of the median after the runs "
            "added to narrow it): " + ", ".join(noisy)
        )
    if skipped:
        lens = sorted({x.length for x in plan.skipped})
        d = f"~{budget_s / 60:.0f} min" if budget_s >= 120 else f"{budget_s:.0f} s"
        plan.notes.append(
            f"not measured (predicted to exceed the {d} budget): lengths "
            f"{', '.join(map(str, lens))}; run with --full to measure them"
        )
    return CaseStudy(
        rows=[rows[(m, L)] for m in plan.models for L in plan.lengths],
        precisions=plan.precisions,
        skipped=skipped,
        interrupted=interrupted,
        notes=plan.notes,
        env=environment(),
        terms=plan.terms,
        elapsed=elapsed,
    )


def run_casestudy(
    models: Sequence[str] = MODELS,
    lengths: Sequence[int] = LENGTHS,
    precisions: Sequence[str] = PRECISIONS,
    full: bool = False,
    budget_s: float = BUDGET_S,
    repeats: int = 3,
    cal: Calibration | None = None,
    device: Any = None,
    configs: dict[str, dict] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Progress | None = None,
    passes: int = 1,
) -> CaseStudy:
    """Count every (model, length), measure what fits the budget (all with `full`), each run
    `passes` times interleaved.

    `configs`: model name -> raw config dict, to run other (e.g. tiny) configs under these
    names. `on_row(row)` is called after each measured row; `on_progress(description,
    advance, total)` drives a progress bar (seconds of predicted work).
    A KeyboardInterrupt stops measuring; the rows measured so far are kept.
    """
    t_start = time.perf_counter()
    plan = plan_casestudy(models, lengths, precisions, configs)
    progress = on_progress or (lambda d, a, t: None)
    cal = cal if cal is not None else Calibration.load()
    cal.on_measure = lambda s: progress(s, 0.0, 0.0)
    predict_casestudy(plan, cal, device, repeats)
    plan.notes.extend(calibration_notes(cal))
    choose_runs(plan, full, budget_s, time.perf_counter() - t_start)
    interrupted = measure_casestudy(plan, progress, on_row, passes)
    case = assemble_casestudy(plan, device, budget_s, interrupted, time.perf_counter() - t_start)
    case.calibration = cal.status()
    return case
