"""`memwall report`: the whole memory-wall analysis of this machine as one HTML file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from memwall.cli._common import FormatOpt, app, fail_line, print_json

DEFAULT_MODELS = "bert-base,bert-large,gpt2,llama-3-8b,mixtral-8x7b"
DEFAULT_DEVICES = "local,a100-sxm-80gb,h100-sxm,b200,mi300x"


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))


@app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Option(help="Folder for index.html and results.json.")] = Path(
        "build/report"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Under 2 minutes: fewer lengths and repeats.")
    ] = False,
    devices: Annotated[
        str, typer.Option(help="Comma-separated devices (`memwall devices`; local = here).")
    ] = DEFAULT_DEVICES,
    models: Annotated[str, typer.Option(help="Comma-separated presets or config.json paths.")] = (
        DEFAULT_MODELS
    ),
    measure: Annotated[
        bool,
        typer.Option(
            "--measure/--no-measure",
            help="--no-measure: time nothing (saved roofs of this machine, if any; no case study).",
        ),
    ] = True,
    wait: Annotated[
        float | None,
        typer.Option(
            help="Longest wait (s) for a busy machine to calm before measuring (default 60, "
            "0 with --quick; $MEMWALL_REPORT_WAIT). Then it measures and the verdict warns.",
        ),
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Measure this machine, reproduce the paper's analyses, write one self-contained HTML."""
    # Imported here: the report pulls in Jinja2 and Plotly, which other commands do not need.
    from memwall.report import ReportOptions, build_report

    opts = ReportOptions(
        out=str(out),
        quick=quick,
        models=_names(models),
        devices=_names(devices),
        measure=measure,
        calm_wait_s=wait,
    )
    done = build_report(opts, show_progress=sys.stderr.isatty())
    summary = {
        "index": str(done.out / "index.html"),
        "results": str(done.out / "results.json"),
        "complete": done.complete,
        "interrupted": done.interrupted,
        "stages": done.stages,
    }
    calm = done.calm or {}
    if calm.get("warning"):
        summary["warning"] = calm["warning"]
    if fmt.value == "json":
        print_json(summary)
    else:
        for s in done.stages:
            sys.stdout.write(f"  {s['section']:<10} {s['seconds']:7.1f} s  {s['status']}\n")
        sys.stdout.write(f"report written to {summary['index']} (data: {summary['results']})\n")
    if calm.get("warning"):
        fail_line(f"busy machine: {calm['warning']}", prefix="memwall: warning: ")
    if done.interrupted:
        fail_line(
            f"interrupted: the sections finished so far are in {summary['index']}",
            prefix="memwall: ",
        )
        sys.exit(130)
    if not done.complete:
        fail_line(
            f"incomplete: sections {', '.join(done.failed)} could not be built (see their notes "
            f"in {summary['index']})",
            prefix="memwall: warning: ",
        )
        sys.exit(1)


__all__ = ["report_cmd"]
