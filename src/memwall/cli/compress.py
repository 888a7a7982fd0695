"""`memwall compress`: real quantised and pruned models: bytes, speed and perplexity."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from memwall.cli._common import Format, FormatOpt, app, binary, emit, rich_table, si

# memwall.compress (torch) and the figure code (matplotlib) are imported by the api function
# when it runs, so that registering the command keeps `memwall analyze` free of torch.


class CompressPhase(str, Enum):
    decode = "decode"
    prefill = "prefill"


def _pct(v: Any) -> str:
    return f"{v * 100:+.2f}%"


def _x(v: Any) -> str:
    return f"{v:.2f}x"


def _table(result: Any) -> list[Any]:
    """The Rich tables of `memwall.api.compress`'s Result: one row per method, then the
    paper's claims (with --pareto)."""
    res = result.payload
    claims = res["claims"]
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
    out: list[Any] = [rich_table(result.title, res["rows"], cols, "\n".join(result.notes))]
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
    from memwall.api import compress

    result = compress(
        model,
        method=method,
        measure=measure,
        pareto=do_pareto,
        phase=phase.value,
        context=context,
        threads=threads,
        plot=plot,
        progress=True,
    )
    emit(fmt, result.payload, result.rows, lambda: _table(result), result.columns)
