"""`memwall.casestudy`: the paper's Figure 3 (BERT-Base, BERT-Large, GPT-2) on this machine.

The case study's policy lives here, once, for `memwall casestudy`, `memwall.casestudy()` and the
report (`casestudy_here`): the thread policy (`threads=None`: `measure.run.auto_threads`, every
free core but one, pinned; the calibration record is keyed by that count), the calibration
choice (measured fresh unless `reuse_calibration`), the budget and input checks. torch is
imported only when the study runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memwall.api._common import plain
from memwall.api._result import Result
from memwall.errors import MemwallError

TITLE = "AI and Memory Wall, Figure 3, on this machine (batch 1)"
CAPTION = (
    "FLOPs / MOPs / intensity: counted, paper convention (8-bit, closed form). "
    "Latency: measured median on this machine (random weights), normalised to "
    "BERT-Base at 128 per precision; predicted: calibrated roofline; "
    "error = |predicted - measured| / measured; spread = interquartile range of "
    "the timed runs over their median. BERT: encoder forward over L; "
    "GPT-2: L tokens generated from no prompt."
)
CSV_COLUMNS_BASE = ["model", "length", "flops", "mops", "intensity"]
_PER_PRECISION = [
    "latency_{p}",
    "latency_{p}_q1",
    "latency_{p}_q3",
    "runs_{p}",
    "relative_iqr_{p}",
    "noisy_{p}",
    "pass_difference_{p}",
    "normalized_{p}",
    "predicted_{p}",
    "error_{p}",
    "roofline_{p}",
]

Progress = Callable[[str, float, float], None]  # (description, advance, total): predicted s
OnRow = Callable[[dict[str, Any]], None]


def casestudy(
    full: bool = False,
    budget: float = 600.0,
    models: str | Sequence[str] = "bert-base,bert-large,gpt2",
    lengths: str | Sequence[int] = "128,256,512,1024,2048,4096",
    precisions: str | Sequence[str] = "int8,fp32",
    repeats: int = 3,
    threads: int | None = None,
    device: str = "local",
    reuse_calibration: bool = False,
    plot: str | Path | None = None,
    progress: Progress | None = None,
    on_row: OnRow | None = None,
) -> Result:
    """FLOPs, MOPs, intensity (counted) and latency (measured and predicted) of the case study.

    Counts every (model, length) under the paper's convention, measures the real models
    (random weights) at each precision on this machine, normalised to BERT-Base at 128, and
    predicts each run with the calibrated roofline. By default only the lengths whose predicted
    cost fits `budget` are measured (the rest are named in the notes). A Ctrl-C keeps the rows
    measured so far (`payload["interrupted"]`).

    Args:
        full: measure every length (may take an hour on 2 cores; default False).
        budget: seconds the default run may spend, predicted (default 600.0).
        models: comma-separated models, or a list (default "bert-base,bert-large,gpt2").
        lengths: comma-separated lengths, or a list (default "128,256,512,1024,2048,4096").
        precisions: comma-separated, of int8, fp32, bf16, or a list (default "int8,fp32").
        repeats: timed runs of short rows; long rows get fewer (default 3).
        threads: intra-op threads (default None: every free core but one, at least 1).
        device: measured device for the plain roofline ("none" to skip; default "local").
        reuse_calibration: use the cached calibration instead of measuring it now
            (default False).
        plot: write the four-panel figure here (.png or .svg; default None). A figure that
            cannot be written at the end is said in the notes (`extra["plot_error"]`).
        progress: called as progress(description, advance, total) in predicted seconds of
            work (default None).
        on_row: called with each measured row (default None).

    Example:
        >>> r = memwall.casestudy(models="bert-base", lengths="128", precisions="fp32")
        >>> r.to_frame()[["model", "length", "latency_fp32", "predicted_fp32"]]
    """
    model_list = _names(models)
    if not model_list:
        raise MemwallError("--models is empty")
    length_list = _ints(lengths, "lengths")
    prec_list = [p.lower() for p in _names(precisions)]
    if plot is not None:
        from memwall.plots.casestudy import FORMATS
        from memwall.plots.save import check_plot_path

        check_plot_path(plot, FORMATS)  # before any work
    case = casestudy_here(
        model_list,
        length_list,
        prec_list,
        full,
        budget,
        repeats,
        threads,
        None if device.lower() == "none" else device,
        reuse_calibration,
        on_row,
        progress,
    )
    plot_error = ""
    if plot is not None:
        from memwall.plots.casestudy import plot_casestudy

        try:
            plot_casestudy(case, plot)
            case.notes.append(f"figure written to {plot}")
        except (MemwallError, OSError) as e:
            plot_error = f"figure not written to {plot}: {e}; the rows are printed above"
            case.notes.append(plot_error)
    return result(case, plot_error)


def casestudy_here(
    models: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    precisions: Sequence[str] | None = None,
    full: bool = False,
    budget_s: float | None = None,
    repeats: int = 3,
    n_threads: int | None = None,
    device: str | None = "local",
    reuse_calibration: bool = False,
    on_row: OnRow | None = None,
    on_progress: Progress | None = None,
    cal_config: Any = None,
    configs: dict[str, dict] | None = None,
) -> Any:
    """The case study as every caller runs it (a `studies.casestudy.CaseStudy`): the plain
    roofline from the measured `device` (None: skip), a fresh calibration unless
    `reuse_calibration` (`cal_config`: its configuration), `n_threads` threads (None: the
    thread policy, `auto_threads`, whose count keys the calibration). `configs`: model name ->
    raw config, to run other (e.g. tiny) configs under those names. None for models, lengths,
    precisions, budget_s: the study's defaults."""
    from memwall.measure.calibration import Calibration  # torch + transformers
    from memwall.measure.run import threads as measuring_threads
    from memwall.measure.timing import check_repeats
    from memwall.studies import casestudy as study
    from memwall.studies.profile import local_device

    models = study.MODELS if models is None else models
    lengths = study.LENGTHS if lengths is None else lengths
    precisions = study.PRECISIONS if precisions is None else precisions
    budget_s = study.BUDGET_S if budget_s is None else budget_s
    check_repeats(repeats, 0, max_repeats=1000)
    if not budget_s > 0:
        raise MemwallError(f"--budget must be a positive number of seconds, got {budget_s}")
    study._check_inputs(models, lengths, precisions)  # the study's own checks, before any work
    dev, dev_note = local_device(device)
    with measuring_threads(n_threads):  # the calibration is keyed by this thread count
        cal = Calibration.load(cal_config, recalibrate=not reuse_calibration)
        case = study.run_casestudy(
            models,
            lengths,
            precisions,
            full=full,
            budget_s=budget_s,
            repeats=repeats,
            cal=cal,
            device=dev,
            configs=configs,
            on_row=on_row,
            on_progress=on_progress,
        )
    if dev_note:
        case.notes.append(dev_note)
    return case


def result(case: Any, plot_error: str = "") -> Result:
    """A `CaseStudy` as the command prints it: `notes` is the table's caption, then the lines
    under it; `extra`: the live study (`case`) and why the figure was not written, if so."""

    def plotter(path: Path) -> Any:
        from memwall.plots.casestudy import plot_casestudy  # matplotlib: only when drawn

        return plot_casestudy(case, path)

    columns = CSV_COLUMNS_BASE + [c.format(p=p) for p in case.precisions for c in _PER_PRECISION]
    return Result(
        command="casestudy",
        payload=plain(case.to_dict()),
        rows=[{**dict.fromkeys(columns), **r} for r in case.rows],  # every CSV column
        columns=columns,
        title=TITLE,
        notes=[CAPTION, *summary_lines(case)],
        extra={"case": case, "plot_error": plot_error},
        plotter=plotter,
    )


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def summary_lines(case: Any) -> list[str]:
    """The lines under the table: GPT-2 over BERT-Base, prediction error, notes, the
    calibration's state, the environment."""
    d = case.to_dict()
    lines = []
    for p, r in d["gpt2_over_bert_base_at_128"].items():
        if r is not None:
            lines.append(
                f"GPT-2 (generate 128) / BERT-Base (encode 128), measured at {p}: {r:.3g}x"
            )
    pe = d["prediction_error"]
    if pe["n"]:
        lines.append(
            f"prediction error over {pe['n']} measured runs: median {_pct(pe['median'])}, "
            f"worst {_pct(pe['worst'])}"
        )
    lines += [f"note: {n}" for n in case.notes]
    c = case.calibration
    if c:
        busy = c.get("others_busy_cores")
        lines.append(
            f"calibration: {c['age_days'] * 24:.1f} h old, {c['rounds']} interleaved rounds, "
            f"largest spread {_pct(c.get('max_spread'))}, other processes "
            + (f"{busy:.1f} cores busy" if busy is not None else "not measured")
            + (", NOISY (not cached)" if c["noisy"] else "")
        )
    env = case.env
    if env:
        lines.append(
            f"environment: {env['cpu_model']}, {env['threads']} threads "
            f"({env.get('threads_choice', '')}), torch {env['torch']}, "
            f"transformers {env['transformers']}, load average {env['load_average_1min']:.2f}"
        )
    return lines


def _names(text: str | Sequence[str]) -> list[str]:
    parts = text.split(",") if isinstance(text, str) else text
    return [str(m).strip() for m in parts if str(m).strip()]


def _ints(text: str | Sequence[int], what: str) -> list[int]:
    if isinstance(text, str):
        try:
            vals = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise MemwallError(f"--{what} must be comma-separated integers, got {text!r}") from None
    else:
        vals = list(text)  # the study checks each is an integer in range
    if not vals:
        raise MemwallError(f"--{what} is empty")
    return vals
