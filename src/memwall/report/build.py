"""Build the report: check the output folder, run every registered section in order under one
progress bar, stop cleanly on Ctrl-C keeping what was finished, write index.html and
results.json atomically."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.io import check_output_dir, write_json, write_text
from memwall.report import calm
from memwall.report.base import ReportContext, ReportOptions, SectionResult, registered
from memwall.report.lib import speed_probe
from memwall.report.render import plain, render_page, section_json
from memwall.report.workloads import model_spec
from memwall.version import __version__

QUICK_NOTE = (
    "fewer case-study lengths (128 and 256), one precision (the paper's 8-bit), one "
    "timed run each, and this machine measured with the quick settings"
)


@dataclass
class Outcome:
    out: Path
    complete: bool
    interrupted: bool = False
    stages: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # sections built incompletely
    calm: dict[str, Any] = field(default_factory=dict)  # was the machine quiet (report.calm)


def check_options(opts: ReportOptions) -> Path:
    """Everything the run needs, checked before any work: the folder, models and devices."""
    if not opts.models:
        raise MemwallError("--models is empty; give preset names such as gpt2,llama-3-8b")
    if not opts.devices:
        raise MemwallError("--devices is empty; give names from `memwall devices` or local")
    ctx = ReportContext(opts)
    for m in opts.models:
        model_spec(ctx, m)
    for d in opts.devices:
        if d != "local":
            get_device(d)
    calm.wait_bound(opts.quick, opts.calm_wait_s)
    return check_output_dir(opts.out, "--out")


@contextlib.contextmanager
def _bar(show: bool, total: float) -> Iterator[Callable[[str, float], None]]:
    if not show:
        yield lambda desc, adv: None
        return
    with Progress(
        TextColumn("[bold]report[/bold] {task.description}", markup=False),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task("starting", total=total)
        yield lambda desc, adv: prog.update(task, description=desc, advance=adv)


def _run_sections(ctx: ReportContext, step: Callable[[str, float], None]) -> list[dict]:
    """Build sections in registration order; a KeyboardInterrupt stops after saving state."""
    stages = []
    for sec in registered():
        ctx.progress = lambda s, title=sec.title: step(f"{title}: {s}", 0.0)
        step(sec.title, 0.0)
        t0 = time.perf_counter()
        try:
            res = sec.build(ctx)
        except KeyboardInterrupt:
            ctx.shared["interrupted"] = True
            stages.append(
                {"section": sec.name, "seconds": time.perf_counter() - t0, "status": "interrupted"}
            )
            break
        except MemwallError as e:  # a section that cannot be built says why; others go on
            res = SectionResult(notes=[f"not built: {e}"], complete=False)
        except Exception as e:  # noqa: BLE001 - a bug in one section must not lose the others
            res = SectionResult(
                notes=[f"not built: internal error {type(e).__name__}: {e}"], complete=False
            )
        ctx.results[sec.name] = res
        stages.append(
            {
                "section": sec.name,
                "seconds": time.perf_counter() - t0,
                "status": "done" if res.complete else "partial",
            }
        )
        step(sec.title, sec.weight)
        if ctx.shared.get("interrupted"):
            break
    return stages


def build_report(opts: ReportOptions, show_progress: bool = True) -> Outcome:
    """Run the whole analysis and write OUT/index.html and OUT/results.json."""
    out = check_options(opts)
    ctx = ReportContext(opts)
    ctx.devices = {d: get_device(d) for d in opts.devices if d != "local"}
    started = dt.datetime.now(dt.timezone.utc)
    total = sum(s.weight for s in registered())
    with _bar(show_progress, total) as step:
        try:
            step("checking that the machine is quiet", 0.0)
            calm.start(ctx, lambda: speed_probe(opts.quick), lambda s: step(s, 0.0))
            stages = _run_sections(ctx, step)
        except KeyboardInterrupt:  # between sections
            ctx.shared["interrupted"] = True
            stages = []
    interrupted = bool(ctx.shared.get("interrupted"))
    complete = not interrupted and all(r.complete for r in ctx.results.values())
    write(out, ctx, stages, started, complete)
    failed = [n for n, r in ctx.results.items() if not r.complete]
    return Outcome(out, complete, interrupted, stages, failed, dict(ctx.machine.get("calm", {})))


def write(
    out: Path, ctx: ReportContext, stages: list[dict], started: dt.datetime, complete: bool
) -> None:
    """results.json first (the page links it), then index.html; both atomic."""
    built = sorted(
        ((s, ctx.results[s.name]) for s in registered() if s.name in ctx.results),
        key=lambda p: p[0].order,
    )
    missing = [
        (s.name, s.title)
        for s in sorted(registered(), key=lambda s: s.order)
        if s.name not in ctx.results
    ]
    opts = ctx.options
    why = "interrupted" if ctx.shared.get("interrupted") else "some sections could not be built"
    status = (
        "complete"
        if complete
        else f"incomplete: {why}; {len(built)} of {len(built) + len(missing)} sections built"
    )
    results = plain(
        {
            "report": "memwall report",
            "memwall": __version__,
            "complete": complete,
            "status": status,
            "generated": started.isoformat(timespec="seconds"),
            "quick": opts.quick,
            "quick_note": QUICK_NOTE if opts.quick else "",
            "options": {k: v for k, v in asdict(opts).items() if k != "configs"},
            "stages": stages,
            "machine": ctx.machine,
            "sections": {s.name: {"title": s.title, **section_json(r)} for s, r in built},
            "sections_missing": [n for n, _ in missing],
        }
    )
    write_json(out / "results.json", results)
    page = {
        "title": "The memory wall, on this machine",
        "version": __version__,
        "subtitle": "Gholami et al., \u201cAI and Memory Wall\u201d (IEEE Micro 2024), reproduced "
        f"and extended: models {', '.join(opts.models)}; devices {', '.join(opts.devices)}.",
        "generated": results["generated"],
        "quick": opts.quick,
        "quick_note": QUICK_NOTE,
        "complete": complete,
        "incomplete_note": status,
        "sections": built,
        "missing": missing,
    }
    write_text(out / "index.html", render_page(page))


def dumps(obj: Any) -> str:
    return json.dumps(plain(obj), indent=2)
