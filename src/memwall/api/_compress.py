"""`memwall.api.compress`: real quantised and pruned models: their bytes, speed and perplexity.

The command's policy lives here: one of --method or --pareto (a Pareto sweep always times the
models), --plot only with --pareto, paths and methods checked before anything is trained or
built. torch (`memwall.compress`) and matplotlib are imported only when it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from memwall.api._common import model_text, plain
from memwall.api._result import Result
from memwall.errors import MemwallError

# The CSV columns of `memwall compress --format csv` (one row per method).
CSV_COLUMNS = [
    "method", "weights_real", "weights_count", "count_error", "compressed_real",
    "compressed_count", "footprint_reduction", "step_bytes", "speedup_predicted",
    "latency_predicted", "latency_measured", "speedup_measured", "loss", "perplexity",
    "perplexity_change", "pareto", "count_precision", "notes",
]  # fmt: skip


def compress(
    model: str | os.PathLike = "stdlib-gpt",
    method: str | None = None,
    measure: bool = False,
    pareto: bool = False,
    phase: str = "decode",
    context: int | None = None,
    threads: int = 1,
    plot: str | Path | None = None,
    progress: bool = False,
) -> Result:
    """Footprint, predicted and measured latency, and perplexity of quantised / pruned models.

    Builds `model` compressed by `method` beside its fp32 baseline (or by every method, with
    `pareto`): stored bytes (real, and memwall's count), the speed-up memwall predicts from the
    bytes one step moves, latency measured here (with `measure` or `pareto`), and held-out
    perplexity on a model trained here (a preset has random weights: no perplexity). With
    `pareto`, the paper's remedy claims are checked (`payload["claims"]`). A trained model's
    pruned variants are fine-tuned once and cached (`memwall.compress.variants`);
    `payload["from_cache"]` names those loaded from the cache, and a note says so.

    Args:
        model: stdlib-gpt (trained here on first use, cached), stdlib-gpt-tiny, or a gpt2
            preset / gpt2 config.json (random weights: no perplexity); default "stdlib-gpt".
        method: int8 | int8-dynamic | int4[:GROUP] | prune-structured:FRACTION |
            prune-unstructured:FRACTION (also fp32, bf16); default None (give it or `pareto`).
        measure: time the models here (default False).
        pareto: every method, Pareto-optimal ones marked (measures; default False).
        phase: what is timed: decode or prefill (default "decode").
        context: prompt tokens (decode) or tokens (prefill); default None: 128.
        threads: threads while timing (default 1).
        plot: write the Pareto figure here (png/svg/pdf; needs `pareto`; default None).
        progress: draw memwall.compress's own progress bars on stderr (the CLI does;
            default False).

    Example:
        >>> r = memwall.api.compress("stdlib-gpt-tiny", method="int4:32")
        >>> r.to_frame()[["method", "weights_real", "perplexity"]]
    """
    model = model_text(model)
    if not (pareto or method is not None):
        raise MemwallError("give --method METHOD or --pareto")
    if pareto and method:
        raise MemwallError("give either --method or --pareto, not both")
    if plot is not None and not pareto:
        raise MemwallError("--plot draws the --pareto figure: add --pareto")
    from memwall.compress import compress as run_one  # torch: only when run
    from memwall.compress import pareto as run_pareto
    from memwall.compress import remedy_claims
    from memwall.compress.methods import parse_method
    from memwall.plots.save import check_plot_path

    if plot is not None:
        check_plot_path(plot)
    if method is not None:
        parse_method(method)
        res = run_one(model, method, measure, phase, context, progress, threads)
    else:
        res = run_pareto(model, True, phase, context, progress, threads)
    claims = remedy_claims(res["rows"]) if pareto else []

    def plotter(path: Path) -> Any:
        from memwall.compress.figure import pareto_figure
        from memwall.plots.save import save_figure

        return save_figure(pareto_figure(res), path)

    if plot is not None:
        plotter(Path(plot))
    payload = {**res, "claims": claims, "plot": str(plot) if plot else None}
    return Result(
        command="compress",
        payload=plain(payload),
        rows=[{**dict.fromkeys(CSV_COLUMNS), **r} for r in res["rows"]],  # every CSV column
        columns=CSV_COLUMNS,
        title=(
            f"{res['model']}: compression, batch 1, {res['phase']} at context {res['context']}, "
            f"{res['threads']} thread(s), convention full"
        ),
        notes=[*res["notes"], *(f"{r['method']}: {r['notes']}" for r in res["rows"])],
        plotter=plotter if pareto else None,
    )
