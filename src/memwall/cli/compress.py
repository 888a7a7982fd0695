"""`memwall compress`: real quantised and pruned models: bytes, speed and perplexity."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from memwall.cli._common import Format, FormatOpt, app, binary, emit, require, rich_table, si

# memwall.compress (torch) and the figure code (matplotlib) are imported inside the command, so
# that registering it keeps `memwall analyze` free of torch.

CSV_COLUMNS = [
    "method", "weights_real", "weights_count", "count_error", "compressed_real",
    "compressed_count", "footprint_reduction", "step_bytes", "speedup_predicted",
    "latency_predicted", "latency_measured", "speedup_measured", "loss", "perplexity",
    "perplexity_change", "pareto", "count_precision", "notes",
]  # fmt: skip


class CompressPhase(str, Enum):
    decode = "decode"
    prefill = "prefill"


def _pct(v: Any) -> str:
    return f"{v * 100:+.2f}%"


def _x(v: Any) -> str:
    return f"{v:.2f}x"


def _table(res: dict[str, Any], claims: list[dict[str, Any]]) -> list[Any]:
    cols = [
        ("method", "method", None),
        ("weights_real", "stored (meas.)", binary),
        ("weights_count", "stored (count)", binary),
        ("count_error", "meas. vs count", _pct),
        ("footprint_reduction", "smaller (meas.)", _x),
        ("speedup_predicted", "speed-up (pred.)", _x),
        (
            "latency_measured",
            "s/token (meas.)" if res["phase"] == "decode" else "s (meas.)",
            lambda v: si(v, "s"),
        ),
        ("speedup_measured", "speed-up (meas.)", _x),
        ("perplexity", "ppl (meas.)", lambda v: f"{v:.3f}"),
        ("perplexity_change", "ppl change", _pct),
    ]
    if any("pareto" in r for r in res["rows"]):
        cols.append(("pareto", "Pareto", lambda v: "yes" if v else ""))
    caption = "\n".join(res["notes"] + [f"{r['method']}: {r['notes']}" for r in res["rows"]])
    title = (
        f"{res['model']}: compression, batch 1, {res['phase']} at context {res['context']}, "
        f"{res['threads']} thread(s), convention full"
    )
    out: list[Any] = [rich_table(title, res["rows"], cols, caption)]
    if claims:
        ccols = [
            ("claim", "the paper's claim", None),
            ("claimed", "claimed", lambda v: f"{v:g}x"),
            ("method", "method", None),
            ("measured", "measured here", lambda v: f"{v:.3g}"),
            ("unit", "unit", None),
            ("verdict", "verdict", None),
        ]
        out.append(rich_table("The paper's remedies, measured here", claims, ccols))
    return out


@app.command("compress")
def compress_cmd(
    model: Annotated[
        str,
        typer.Argument(
            help="stdlib-gpt (trained here on first use, cached), stdlib-gpt-tiny, or a gpt2 "
            "preset / gpt2 config.json (random weights: no perplexity)."
        ),
    ] = "stdlib-gpt",
    method: Annotated[
        str | None,
        typer.Option(
            help="int8 | int8-dynamic | int4[:GROUP] | prune-structured:FRACTION | "
            "prune-unstructured:FRACTION (also fp32, bf16)."
        ),
    ] = None,
    measure: Annotated[bool, typer.Option("--measure", help="Time the models here.")] = False,
    do_pareto: Annotated[
        bool, typer.Option("--pareto", help="Every method, Pareto-optimal ones marked (measures).")
    ] = False,
    phase: Annotated[CompressPhase, typer.Option(help="What is timed.")] = CompressPhase.decode,
    context: Annotated[
        int | None, typer.Option(help="Prompt tokens (decode) or tokens (prefill); default 128.")
    ] = None,
    threads: Annotated[int, typer.Option(help="Threads while timing.")] = 1,
    plot: Annotated[Path | None, typer.Option(help="Pareto figure (png/svg/pdf).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Footprint, predicted and measured latency, and perplexity of quantised / pruned models."""
    from memwall.compress import compress, pareto, remedy_claims
    from memwall.compress.figure import pareto_figure
    from memwall.compress.methods import parse_method
    from memwall.plots.save import check_plot_path, save_figure

    require(do_pareto or method is not None, "give --method METHOD or --pareto")
    require(not (do_pareto and method), "give either --method or --pareto, not both")
    require(plot is None or do_pareto, "--plot draws the --pareto figure: add --pareto")
    if plot is not None:
        check_plot_path(plot)
    if method is not None:
        parse_method(method)
        res = compress(model, method, measure, phase.value, context, True, threads)
    else:
        res = pareto(model, True, phase.value, context, True, threads)
    claims = remedy_claims(res["rows"]) if do_pareto else []
    if plot is not None:
        save_figure(pareto_figure(res), plot)
    payload = {**res, "claims": claims, "plot": str(plot) if plot else None}
    emit(fmt, payload, res["rows"], lambda: _table(res, claims), CSV_COLUMNS)
