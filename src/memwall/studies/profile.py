"""Profiling real models: measured latency beside memwall's prediction, per op and end to end.

`profile_model("gpt2", Workload("generate", 1, 0, 128), "int8")` builds the model with random
weights (nothing downloaded), times the workload (warm-up, repeats, median and spread),
profiles one run per memwall operation, and predicts the same with the calibrated roofline
(`memwall.predict.predict_calibrated`, terms measured by `memwall.measure.calibration`) and,
when this machine has been measured, the plain roofline.
Needs the optional extra: `pip install 'memory-wall[torch]'`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.measure.calibration import Calibration
from memwall.measure.models import (
    PRECISIONS,
    LoadedModel,
    build,
    check_positions,
    check_precision,
    resolve,
    with_precision,
)
from memwall.measure.run import (
    OpProfile,
    Runner,
    environment,
    profile_ops,
    threads,
    time_runs,
)
from memwall.measure.timing import Timing, TimingInterrupted, check_repeats
from memwall.predict import (
    GROUPS,
    CalPrediction,
    predict_calibrated,
    roofline_baseline,
)
from memwall.spec import ModelSpec, Workload

SETTLE_BUDGET_S = 30.0  # timed runs may add up to this many seconds while the spread is wide
MAX_BUDGET_S = 86_400.0


@dataclass
class ProfileResult:
    """Everything one profile produced (JSON-able through `to_dict`)."""

    model: str
    family: str
    workload: Workload
    precision: str
    timing: Timing
    tokens: int
    predicted: CalPrediction | None
    ops: list[dict[str, Any]]  # per-op: predicted, measured, error
    op_profile: OpProfile | None
    baseline: dict[str, Any] | None
    env: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    planned_runs: int = 0  # timed runs asked for (more than `timing.n` when interrupted)
    calibration: dict[str, Any] | None = None  # age, load, spread, noise flag (Calibration.status)
    by_term: list[dict[str, Any]] = field(default_factory=list)  # `term_rows`

    @property
    def measured(self) -> float | None:
        return self.timing.median if self.timing.n else None

    @property
    def predicted_time(self) -> float | None:
        return self.predicted.total if self.predicted is not None else None

    @property
    def error(self) -> float | None:
        p, m = self.predicted_time, self.measured
        return abs(p - m) / m if (p is not None and m) else None

    @property
    def tokens_per_s(self) -> float | None:
        if self.workload.phase == "encode" or not self.measured:
            return None
        return self.tokens / self.measured

    def to_dict(self) -> dict[str, Any]:
        wl = self.workload
        out: dict[str, Any] = {
            "model": self.model,
            "family": self.family,
            "precision": self.precision,
            "workload": {
                "phase": wl.phase,
                "batch": wl.batch,
                "seq_len": wl.seq_len,
                "gen_len": wl.gen_len,
            },
            "measured": {"latency": self.measured, **self._timing_dict()},
            "interrupted": self.interrupted,
            "calibration": self.calibration,
            "predicted": {
                "latency": self.predicted_time,
                "error": self.error,
                "method": "roofline calibrated on this machine (memwall.predict)",
            },
            "tokens_per_s": self.tokens_per_s,
            "units": {"latency": "s", "tokens_per_s": "token/s", "error": "|pred-meas|/meas"},
            "ops": self.ops,
            "environment": self.env,
            "notes": self.notes,
        }
        if self.predicted is not None:
            out["predicted"]["terms"] = [t.to_dict() for t in self.predicted.terms]
            out["predicted"]["by_term"] = self.by_term
            out["predicted"]["by_term_method"] = (
                "per calibration term: predicted seconds it prices and their share of the "
                "prediction; measured seconds of the same ops (an op's measured time split "
                "between its kernel term and overhead in proportion to their predicted times); "
                "difference = predicted - measured; sorted by |difference|"
            )
        if self.op_profile is not None:
            out["per_op_profile"] = {
                "source": "torch.profiler, record_function ranges per module",
                "profiled_total": self.op_profile.total,
                "measured_per_op": "share of the profiled run x the unprofiled median latency",
                "coverage": self.op_profile.coverage,
                "framework": self.op_profile.framework,
                "sampled": self.op_profile.sampled,
            }
        if self.baseline is not None and self.measured:
            b = self.baseline
            out["roofline_uncalibrated"] = {
                "device": b["device"],
                "roof_origin": b["roof_origin"],
                "latency": b["time"],
                "error": abs(b["time"] - self.measured) / self.measured,
                "roofs": b["roofs"],
            }
        return out

    def _timing_dict(self) -> dict[str, Any]:
        if self.timing.n:
            return self.timing.to_dict()
        return {"runs": 0, "warmup": self.timing.warmup, "all": []}


def op_rows(
    pred: Any, prof: OpProfile | None, baseline: dict | None, latency: float | None = None
) -> list[dict[str, Any]]:
    """Per-op rows: predicted (calibrated), measured, error, share of the profiled time.

    Measured per op = the op's share of the profiled run x the unprofiled median `latency`
    (the profiler's own cost per range would otherwise inflate small ops); the raw profiler
    seconds are kept as `profiler_time`.
    """
    pred_t = pred.by_name() if pred is not None else {}
    raw = prof.times if prof is not None else {}
    total = prof.total if prof is not None else 0.0
    scale = latency / total if (latency and total > 0) else 1.0
    meas = {n: t * scale for n, t in raw.items()}
    names = list(pred_t) + [n for n in meas if n not in pred_t]
    kinds = dict(zip(pred.ops["name"], pred.ops["kind"], strict=True)) if pred is not None else {}
    terms = dict(zip(pred.ops["name"], pred.ops["term"], strict=True)) if pred is not None else {}
    flops = dict(zip(pred.ops["name"], pred.ops["flops"], strict=True)) if pred is not None else {}
    nbytes = dict(zip(pred.ops["name"], pred.ops["bytes"], strict=True)) if pred is not None else {}
    rows = []
    for n in names:
        p = pred_t.get(n)
        m = meas.get(n)
        base = None
        if baseline is not None:
            members = GROUPS.get(n, (n,))
            vals = [baseline["ops"][x] for x in members if x in baseline["ops"]]
            base = sum(vals) if vals else None
        rows.append(
            {
                "name": n,
                "kind": kinds.get(n, "framework" if n == "framework" else "other"),
                "flops": flops.get(n, 0.0),
                "bytes": nbytes.get(n, 0.0),
                "predicted": p,
                "measured": m,
                "error": abs(p - m) / m if (p is not None and m) else None,
                "share": raw[n] / total if (n in raw and total > 0) else None,
                "profiler_time": raw.get(n),
                "roofline_uncalibrated": base,
                "term": terms.get(n, ""),
            }
        )
    return rows


def term_rows(
    pred: CalPrediction | None, ops: list[dict[str, Any]], latency: float | None = None
) -> list[dict[str, Any]]:
    """Which calibration term carries the prediction's error: per term, the predicted seconds
    it prices (an op's kernel time goes to the term bounding it, its framework time to the
    overhead term), its share of the predicted total, the measured seconds of the same ops
    (an op's measured time split between its kernel and overhead terms in proportion to their
    predicted times; measured time no op owns, and the part of the measured `latency` the
    profiler did not attribute, go to overhead), and predicted - measured."""
    if pred is None:
        return []
    over = f"overhead({pred.overhead_key})"
    split = {
        r["name"]: (r["term"], r["time"] - r["t_overhead"], r["t_overhead"])
        for r in pred.ops.to_dict("records")
    }
    acc: dict[str, dict[str, float]] = {}

    def add(term: str, p: float, m: float | None) -> None:
        a = acc.setdefault(term, {"predicted": 0.0, "measured": 0.0})
        a["predicted"] += p
        a["measured"] += m or 0.0

    for row in ops:
        term, kern, ovh = split.get(row["name"], (over, 0.0, 0.0))
        m = row.get("measured")
        if kern <= 0 or term == over:  # framework-only rows and measured-only rows
            add(over, kern + ovh, m)
            continue
        share_k = kern / (kern + ovh)
        add(term, kern, None if m is None else m * share_k)
        add(over, ovh, None if m is None else m * (1 - share_k))
    if latency:
        rest = latency - sum(r["measured"] or 0.0 for r in ops)
        add(over, 0.0, max(rest, 0.0))
    total = pred.total or 1.0
    diff_total = sum(abs(a["predicted"] - a["measured"]) for a in acc.values()) or 1.0
    rows = [
        {
            "term": t,
            "predicted": a["predicted"],
            "predicted_share": a["predicted"] / total,
            "measured": a["measured"],
            "difference": a["predicted"] - a["measured"],
            "share_of_error": abs(a["predicted"] - a["measured"]) / diff_total,
        }
        for t, a in acc.items()
    ]
    return sorted(rows, key=lambda r: -abs(r["difference"]))


def calibration_notes(cal: Calibration) -> list[str]:
    """What the outputs say about a calibration that is noisy or could not be saved."""
    out = [cal.save_error] if cal.save_error else []
    st = cal.status()
    if st["noisy"]:
        out.append(
            "calibration measured on a busy or noisy machine (used for this run, not cached): "
            + "; ".join(st["noise"])
        )
    return out


def local_device(name: str | None = "local") -> tuple[Any, str]:
    """(device or None, note): the measured device for the uncalibrated roofline."""
    if name is None:
        return None, ""
    try:
        return get_device(name), ""
    except MemwallError as e:
        if name == "local":
            return None, (
                "no measurement of this machine yet: run `memwall measure` to add the "
                "uncalibrated roofline beside the calibrated prediction"
            )
        raise e


def _interrupted(
    lm: LoadedModel, workload: Workload, stop: TimingInterrupted, notes: list[str], runner: Runner
) -> ProfileResult:
    """What an interrupted profile keeps: the timed runs that finished, nothing predicted."""
    t = stop.timing
    return ProfileResult(
        model=lm.spec.name,
        family=lm.spec.family,
        workload=workload,
        precision=lm.precision,
        timing=t,
        tokens=runner.tokens,
        predicted=None,
        ops=[],
        op_profile=None,
        baseline=None,
        env=environment(),
        notes=[*lm.notes, *notes, f"interrupted: {t.n} of {stop.planned} timed runs finished"],
        interrupted=True,
        planned_runs=stop.planned,
    )


def profile_loaded(
    lm: LoadedModel,
    workload: Workload,
    repeats: int = 5,
    warmup: int = 1,
    per_op: bool = True,
    cal: Calibration | None = None,
    device: Any = None,
    notes: list[str] | None = None,
    on_run: Callable[[int], None] | None = None,
    budget_s: float = SETTLE_BUDGET_S,
) -> ProfileResult:
    """Time (and predict) `workload` on an already built model: `repeats` runs, then more
    while their spread is wide, up to `budget_s` seconds of timed runs. Ctrl-C during the
    timed runs returns the runs that finished (`interrupted` set), unpredicted."""
    check_repeats(repeats, warmup)
    runner = Runner(lm, workload)
    try:
        timing = time_runs(runner, warmup, repeats, on_run, budget_s)
    except TimingInterrupted as stop:
        return _interrupted(lm, workload, stop, list(notes or []), runner)
    prof = profile_ops(runner) if per_op else None
    pred = None
    all_notes = list(lm.notes) + list(notes or [])
    if cal is not None:
        cal.ensure_for(lm.spec, lm.config, lm.precision, workload.phase)
        pred = predict_calibrated(lm.spec, workload, lm.precision, cal.data)
        cal.speed(lm.precision)  # the machine now against the calibration (in its status)
        all_notes += calibration_notes(cal)
    if timing.noisy:
        all_notes.append(
            f"NOISY measurement: interquartile range {100 * timing.relative_iqr:.0f}% of the "
            f"median after {timing.n} runs ({timing.added} added to narrow it, "
            f"{budget_s:.0f} s budget); judge the prediction's error against it, or rerun "
            "on a quieter machine"
        )
    base = None
    if device is not None:
        try:
            base = roofline_baseline(lm.spec, workload, lm.precision, device)
        except MemwallError as e:
            all_notes.append(f"plain roofline skipped: {e}")
    if pred is not None:
        all_notes += pred.notes
    if prof is not None and prof.sampled:
        all_notes.append(f"per-op profile: {prof.sampled}")
    return ProfileResult(
        model=lm.spec.name,
        family=lm.spec.family,
        workload=workload,
        precision=lm.precision,
        timing=timing,
        tokens=runner.tokens,
        predicted=pred,
        ops=(rows := op_rows(pred, prof, base, timing.median)),
        op_profile=prof,
        baseline=base,
        env=environment(),
        notes=all_notes,
        planned_runs=repeats,
        calibration=cal.status() if cal is not None else None,
        by_term=term_rows(pred, rows, timing.median),
    )


def profile_model(
    model: str | ModelSpec,
    workload: Workload,
    precision: str = "fp32",
    repeats: int = 5,
    warmup: int = 1,
    n_threads: int | None = None,
    per_op: bool = True,
    extend_positions: bool = False,
    config: dict | None = None,
    cal: Calibration | None = None,
    device: str | None = "local",
    on_run: Callable[[int], None] | None = None,
    budget_s: float = SETTLE_BUDGET_S,
) -> ProfileResult:
    """Build `model` at `precision`, then time, profile and predict `workload` on it.

    `cal`: a `memwall.measure.calibration.Calibration` (None: load or measure the cached one).
    `device`: the measured device whose roofs give the uncalibrated roofline (None: skip).
    """
    spec, cfg = resolve(model, config)
    p = check_precision(precision, spec)
    positions, pos_note = check_positions(spec, workload, extend_positions)
    check_repeats(repeats, warmup)
    with threads(n_threads):
        lm = build(spec, cfg, p, positions, workload)
        dev, dev_note = local_device(device)
        cal = cal if cal is not None else Calibration.load()
        notes = [n for n in (pos_note, dev_note) if n]
        return profile_loaded(
            lm, workload, repeats, warmup, per_op, cal, dev, notes, on_run, budget_s
        )


__all__ = [
    "PRECISIONS",
    "ProfileResult",
    "local_device",
    "op_rows",
    "profile_loaded",
    "profile_model",
    "with_precision",
]
