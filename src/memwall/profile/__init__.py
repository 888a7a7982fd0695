"""Profiling real models: measured latency beside memwall's prediction, per op and end to end.

`profile_model("gpt2", Workload("generate", 1, 0, 128), "int8")` builds the model with random
weights (nothing downloaded), times the workload (warm-up, repeats, median and spread),
profiles one run per memwall operation, and predicts the same with the calibrated roofline
(`memwall.calibrate`) and, when this machine has been measured, the plain roofline.
Needs the optional extra: `pip install 'memory-wall[torch]'`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memwall.errors import MemwallError
from memwall.spec import ModelSpec, Workload

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise MemwallError(
        "profiling needs torch and transformers: pip install 'memory-wall[torch]'"
    ) from e

from memwall.profile.models import (  # noqa: E402
    PRECISIONS,
    LoadedModel,
    build,
    check_positions,
    check_precision,
    resolve,
    with_precision,
)
from memwall.profile.run import (
    OpProfile,
    Runner,
    Timing,
    environment,
    profile_ops,
    threads,
    time_runs,
)  # noqa: E402,E501


@dataclass
class ProfileResult:
    """Everything one profile produced (JSON-able through `to_dict`)."""

    model: str
    family: str
    workload: Workload
    precision: str
    timing: Timing
    tokens: int
    predicted: Any  # memwall.calibrate.CalPrediction | None
    ops: list[dict[str, Any]]  # per-op: predicted, measured, error
    op_profile: OpProfile | None
    baseline: dict[str, Any] | None
    env: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> float:
        return self.timing.median

    @property
    def predicted_time(self) -> float | None:
        return self.predicted.total if self.predicted is not None else None

    @property
    def error(self) -> float | None:
        p = self.predicted_time
        return abs(p - self.measured) / self.measured if p is not None else None

    @property
    def tokens_per_s(self) -> float | None:
        if self.workload.phase == "encode":
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
            "measured": {"latency": self.measured, **self.timing.to_dict()},
            "predicted": {
                "latency": self.predicted_time,
                "error": self.error,
                "method": "roofline calibrated on this machine (memwall.calibrate)",
            },
            "tokens_per_s": self.tokens_per_s,
            "units": {"latency": "s", "tokens_per_s": "token/s", "error": "|pred-meas|/meas"},
            "ops": self.ops,
            "environment": self.env,
            "notes": self.notes,
        }
        if self.predicted is not None:
            out["predicted"]["terms"] = [t.to_dict() for t in self.predicted.terms]
        if self.op_profile is not None:
            out["per_op_profile"] = {
                "source": "torch.profiler, record_function ranges per module",
                "profiled_total": self.op_profile.total,
                "measured_per_op": "share of the profiled run x the unprofiled median latency",
                "coverage": self.op_profile.coverage,
                "framework": self.op_profile.framework,
                "sampled": self.op_profile.sampled,
            }
        if self.baseline is not None:
            b = self.baseline
            out["roofline_uncalibrated"] = {
                "device": b["device"],
                "roof_origin": b["roof_origin"],
                "latency": b["time"],
                "error": abs(b["time"] - self.measured) / self.measured,
                "roofs": b["roofs"],
            }
        return out


def op_rows(
    pred: Any, prof: OpProfile | None, baseline: dict | None, latency: float | None = None
) -> list[dict[str, Any]]:
    """Per-op rows: predicted (calibrated), measured, error, share of the profiled time.

    Measured per op = the op's share of the profiled run x the unprofiled median `latency`
    (the profiler's own cost per range would otherwise inflate small ops); the raw profiler
    seconds are kept as `profiler_time`.
    """
    from memwall.profile.opmap import GROUPS

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


def local_device(name: str | None = "local") -> tuple[Any, str]:
    """(device or None, note): the measured device for the uncalibrated roofline."""
    if name is None:
        return None, ""
    from memwall.hardware import get_device

    try:
        return get_device(name), ""
    except MemwallError as e:
        if name == "local":
            return None, (
                "no measurement of this machine yet: run `memwall measure` to add the "
                "uncalibrated roofline beside the calibrated prediction"
            )
        raise e


def profile_loaded(
    lm: LoadedModel,
    workload: Workload,
    repeats: int = 5,
    warmup: int = 1,
    per_op: bool = True,
    cal: Any = None,
    device: Any = None,
    notes: list[str] | None = None,
    on_run: Callable[[int], None] | None = None,
) -> ProfileResult:
    """Time (and predict) `workload` on an already built model."""
    from memwall.calibrate import predict, roofline_baseline

    if repeats < 1 or repeats > 10_000:
        raise MemwallError(f"repeats must be between 1 and 10000, got {repeats}")
    if warmup < 0 or warmup > 1000:
        raise MemwallError(f"warmup must be between 0 and 1000, got {warmup}")
    runner = Runner(lm, workload)
    timing = time_runs(runner, warmup, repeats, on_run)
    prof = profile_ops(runner) if per_op else None
    pred = predict(lm.spec, workload, lm.precision, cal, lm.config) if cal is not None else None
    all_notes = list(lm.notes) + list(notes or [])
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
        ops=op_rows(pred, prof, base, timing.median),
        op_profile=prof,
        baseline=base,
        env=environment(),
        notes=all_notes,
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
    cal: Any = None,
    device: str | None = "local",
    on_run: Callable[[int], None] | None = None,
) -> ProfileResult:
    """Build `model` at `precision`, then time, profile and predict `workload` on it.

    `cal`: a `memwall.calibrate.Calibration` (None: load or measure the cached one).
    `device`: the measured device whose roofs give the uncalibrated roofline (None: skip).
    """
    from memwall.calibrate import Calibration

    spec, cfg = resolve(model, config)
    p = check_precision(precision, spec)
    positions, pos_note = check_positions(spec, workload, extend_positions)
    with threads(n_threads):
        lm = build(spec, cfg, p, positions, workload)
        dev, dev_note = local_device(device)
        cal = cal if cal is not None else Calibration.load()
        notes = [n for n in (pos_note, dev_note) if n]
        return profile_loaded(lm, workload, repeats, warmup, per_op, cal, dev, notes, on_run)


__all__ = [
    "PRECISIONS",
    "LoadedModel",
    "OpProfile",
    "ProfileResult",
    "Runner",
    "Timing",
    "build",
    "check_positions",
    "check_precision",
    "environment",
    "local_device",
    "op_rows",
    "profile_loaded",
    "profile_model",
    "profile_ops",
    "resolve",
    "threads",
    "time_runs",
    "with_precision",
]
