"""`memwall.profile`: run a real model on this machine, time it, and set the measurement beside
memwall's prediction (the calibrated roofline), per operation and end to end.

The policy of `memwall profile` lives here, so that the command line and a notebook measure the
same way: which threads (`threads=None`: `measure.run.auto_threads`, every free core but one,
pinned), which calibration (the cached one, spot-checked, unless `recalibrate`), what is
checked before anything is built. torch is imported only when a profile runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from memwall.api._common import model_text, plain
from memwall.api._result import Result

# The CSV columns of `memwall profile --format csv` (one row per operation).
OP_CSV = [
    "name",
    "kind",
    "predicted",
    "measured",
    "error",
    "share",
    "roofline_uncalibrated",
    "flops",
    "bytes",
    "term",
]

Progress = Callable[[str, float], None]  # (description, runs done since the last call)


def profile(
    model: str | os.PathLike,
    phase: str | None = None,
    batch: int = 1,
    seq_len: int = 128,
    gen_len: int = 128,
    precision: str = "fp32",
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    extend_positions: bool = False,
    per_op: bool = True,
    device: str = "local",
    budget: float = 30.0,
    recalibrate: bool = False,
    progress: Progress | None = None,
) -> Result:
    """Measured latency beside predicted latency (calibrated roofline), per op and end to end.

    Builds the real model with random weights (nothing downloaded), times the workload
    (warm-up, then timed runs: median and spread), profiles one run per memwall operation,
    and predicts the same runs with the roofline calibrated on this machine (and the plain
    roofline of a measured device). Every input is checked before the model is built.

    Args:
        model: preset name, HF config.json path (torchvision and entry points are refused).
        phase: encode, prefill, decode or generate (default None: encode for encoders,
            prefill for decoders).
        batch: sequences per step (default 1).
        seq_len: tokens per sequence, or context already cached for decode/generate
            (default 128).
        gen_len: tokens generated (generate only; default 128).
        precision: fp32, bf16, or int8-dynamic (also spelled int8; default "fp32").
        repeats: timed runs (default 5).
        warmup: untimed runs first (default 1).
        threads: intra-op threads (default None: every free core but one, at least 1).
        extend_positions: enlarge a learned position table to run beyond the model's length
            (default False).
        per_op: profile one run per operation (default True).
        device: measured device for the plain roofline ("none" to skip; default "local").
        budget: seconds of timed runs that may be added while their spread is wide
            (interquartile range over 10% of the median); 0: exactly `repeats` runs
            (default 30.0).
        recalibrate: measure the calibration terms again (default False).
        progress: called as progress(description, runs_done) while it works (default None).

    A Ctrl-C during the timed runs returns the runs that finished (`payload["interrupted"]`).

    Example:
        >>> r = memwall.profile("gpt2", phase="generate", seq_len=0, gen_len=16, repeats=3)
        >>> r.to_dict()["measured"]["latency"]  # seconds, median of the timed runs
    """
    from memwall.errors import MemwallError
    from memwall.measure import models  # torch: only when a profile runs
    from memwall.measure.calibration import Calibration
    from memwall.measure.run import threads as measuring_threads
    from memwall.measure.timing import check_repeats
    from memwall.spec import Workload
    from memwall.studies import profile as study

    model = model_text(model)
    spec, cfg = models.resolve(model)
    ph = phase or ("prefill" if spec.is_decoder else "encode")
    wl = Workload(ph, batch, seq_len, gen_len if ph == "generate" else 0)
    prec = models.check_precision(precision, spec)
    positions, pos_note = models.check_positions(spec, wl, extend_positions)
    check_repeats(repeats, warmup)
    if not 0 <= budget <= study.MAX_BUDGET_S:  # also refuses NaN
        raise MemwallError(
            f"--budget must be 0 .. {study.MAX_BUDGET_S:.0f} seconds of timed runs, got {budget}"
        )
    dev, dev_note = study.local_device(None if device.lower() == "none" else device)
    said = [f"resolving {model}"]

    def status(text: str) -> None:
        said[0] = text
        if progress is not None:
            progress(text, 0.0)

    def on_run(_i: int) -> None:
        if progress is not None:
            progress(said[0], 1.0)

    # The thread policy of every measuring command: `threads`, or auto_threads when None; the
    # calibration is keyed by the thread count, so it is loaded (or measured) inside.
    with measuring_threads(threads):
        status(f"building {spec.name}")
        lm = models.build(spec, cfg, prec, positions, wl)
        status(f"timing {spec.name} {wl.phase} {prec}")
        cal = Calibration.load(recalibrate=recalibrate, on_measure=status)
        notes = [n for n in (pos_note, dev_note) if n]
        res = study.profile_loaded(lm, wl, repeats, warmup, per_op, cal, dev, notes, on_run, budget)
    return result(res)


def result(res: Any) -> Result:
    """A `ProfileResult` as the command prints it (the live result in `extra["profile"]`)."""
    return Result(
        command="profile",
        payload=plain(res.to_dict()),
        rows=res.ops,
        columns=OP_CSV,
        title=title(res),
        notes=notes(res),
        extra={"profile": res},
    )


def title(res: Any) -> str:
    wl = res.workload
    return (
        f"{res.model} {wl.phase} batch={wl.batch} seq_len={wl.seq_len}"
        + (f" gen_len={wl.gen_len}" if wl.phase == "generate" else "")
        + f" | precision={res.precision} | measured on this machine"
    )


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _spot_text(spot: dict[str, Any] | None) -> str:
    """The cached calibration's spot check, in words ("" when none was needed)."""
    if not spot:
        return ""
    r = spot["ratios"]
    verdict = "agreed" if spot["agreed"] else "disagreed: remeasured"
    return (
        f"; cached record spot-checked ({spot['dtype']}): Linear rate x{r['linear_rate']:.2f}, "
        f"dispatch x{r['dispatch']:.2f} of cached, {verdict}"
    )


def notes(res: Any) -> list[str]:
    """The lines printed under the tables: notes, the calibration's state, the environment."""
    env = res.env
    lines = [f"note: {n}" for n in res.notes]
    c = res.calibration
    if c:
        busy = c["others_busy_cores"]
        lines.append(
            f"calibration: {c['age_days'] * 24:.1f} h old, {c['rounds']} interleaved rounds, "
            f"largest spread {_pct(c['max_spread'])}, other processes "
            + (f"{busy:.1f} cores busy" if busy is not None else "not measured")
            + (", NOISY (not cached)" if c["noisy"] else "")
            + _spot_text(c.get("spot_check"))
        )
    lines.append(
        f"environment: {env['cpu_model']}, {env['threads']} threads "
        f"({env.get('threads_choice', '')}), torch {env['torch']}, "
        f"transformers {env['transformers']}, load average {env['load_average_1min']:.2f}, "
        f"{env['date']}"
    )
    return lines
