"""Whether this machine can be measured fairly, checked before the report times anything.

Two signals: the load other processes put on the CPUs (the 1-minute load average, and the
cores they keep busy over a one-second look) and the speed probe of the calibration
(`Calibration.speed`: the same kernels timed now against the saved calibration record). When
either says the machine is busy, the report waits, polling, up to a bound for it to calm
(`wait_bound`: 60 s by default, none with --quick, `--wait` / $MEMWALL_REPORT_WAIT), then
measures anyway. The facts (before, after, how long it waited) go into results.json
(`machine.calm`) and, when the measurement was not fair, a warning into the verdict.

While waiting, "calm" is judged on the one-second look and the probe, not on the load
average: the 1-minute average decays with a one-minute time constant, so after other work
ends it stays high for a minute although the machine is already quiet.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from typing import Any

from memwall.errors import MemwallError
from memwall.measure.busy import busy_limit
from memwall.measure.machine import LoadMonitor, load_average
from memwall.report.base import ReportContext, ReportOptions

LOAD_PER_CORE = 0.5  # busy: a 1-minute load average above this x cores
# busy: other processes keeping more than `measure.busy.busy_limit(cores)` cores busy (a quarter
# of them: one busy process on 2 cores is caught), the rule saved measurements are judged by
PROBE_SLOW = 1.3  # busy: the speed probe this many times slower than the saved calibration
DEFAULT_WAIT_S = 60.0
POLL_S = 5.0
SAMPLE_S = 1.0
ENV_WAIT = "MEMWALL_REPORT_WAIT"

Probe = Callable[[], dict[str, float] | None]  # time factors now / calibrated; None: no record


def wait_bound(quick: bool, asked: float | None) -> float:
    """Seconds the report may wait for a busy machine: `asked` (--wait), else
    $MEMWALL_REPORT_WAIT, else none under --quick and DEFAULT_WAIT_S otherwise."""
    if asked is None:
        text = os.environ.get(ENV_WAIT, "").strip()
        if not text:
            return 0.0 if quick else DEFAULT_WAIT_S
        try:
            asked = float(text)
        except ValueError:
            raise MemwallError(f"${ENV_WAIT} must be a number of seconds, got {text!r}") from None
    if not 0 <= asked <= 3600:
        raise MemwallError(f"the wait for a calm machine must be 0 to 3600 s, got {asked:g}")
    return float(asked)


def limit(cores: int) -> float:
    return LOAD_PER_CORE * cores


def look(cores: int, probe: Probe, sample_s: float = SAMPLE_S) -> dict[str, Any]:
    """One look at the machine: load average, cores others keep busy, probe ratios."""
    with LoadMonitor() as mon:
        time.sleep(sample_s)
    ratios = probe()
    slow = max(ratios["compute"], ratios["memory"]) if ratios else None
    return {
        "load_1min": load_average(),
        "others_busy_cores": mon.others_busy_cores,
        "probe": ratios,
        "probe_ratio": slow,
    }


def reasons(x: dict[str, Any], cores: int, with_load: bool = True) -> list[str]:
    """Why a look says the machine is busy (empty: calm)."""
    lim, out = limit(cores), []
    load = x.get("load_1min")
    if with_load and load is not None and load > lim:
        out.append(f"load average {load:.2f} on {cores} cores (limit {lim:.2g})")
    if x["others_busy_cores"] > busy_limit(cores):
        out.append(
            f"other processes kept {x['others_busy_cores']:.1f} cores busy "
            f"(limit {busy_limit(cores):.2g})"
        )
    if x["probe_ratio"] is not None and x["probe_ratio"] > PROBE_SLOW:
        out.append(
            f"the speed probe ran {x['probe_ratio']:.2f}x slower than when this machine was "
            f"calibrated (limit {PROBE_SLOW:g}x)"
        )
    return out


def before(
    bound_s: float,
    probe: Probe,
    progress: Callable[[str], None] = lambda s: None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Look at the machine; while it is busy, wait and look again every POLL_S seconds, up to
    `bound_s`. Returns the facts (first and last look, waited, calm or not)."""
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    cores = os.cpu_count() or 1
    first = look(cores, probe)
    t0 = clock()  # the wait starts after the first look (whose probe may import torch)
    why = reasons(first, cores)
    last, looks = first, 1
    while why and clock() - t0 + POLL_S <= bound_s:
        progress(f"machine busy ({why[0]}): waiting up to {bound_s:.0f} s for it to calm")
        sleep(POLL_S)
        last, looks = look(cores, probe), looks + 1
        why = reasons(last, cores, with_load=False)
    return {
        "checked": True,
        "cores": cores,
        "limit_load": limit(cores),
        "limit_others_busy": busy_limit(cores),
        "limit_probe": PROBE_SLOW,
        "wait_bound_s": bound_s,
        "waited_s": clock() - t0,
        "looks": looks,
        "first": first,
        "first_busy": reasons(first, cores),
        "last": last,
        "busy_at_start": why,
        "calmed": bool(reasons(first, cores)) and not why,
    }


def after(facts: dict[str, Any], others_busy_during: float) -> dict[str, Any]:
    """Add what the machine did while measured; `fair` and, when not, `busy` (reasons)."""
    cores = facts["cores"]
    facts["load_1min_after"] = load_average()
    facts["others_busy_cores_during"] = others_busy_during
    busy = list(facts["busy_at_start"])
    if others_busy_during > busy_limit(cores):
        busy.append(
            f"other processes kept {others_busy_during:.1f} cores busy while it was measured "
            f"(limit {busy_limit(cores):.2g})"
        )
    facts["busy"] = busy
    facts["fair"] = not busy
    return facts


def start(ctx: ReportContext, probe: Probe, progress: Callable[[str], None]) -> None:
    """Before anything is measured: look, wait while busy (bounded), then watch the load."""
    opts = ctx.options
    if not opts.measure:
        ctx.machine["calm"] = {"checked": False, "why": "nothing measured (--no-measure)"}
        return
    ctx.machine["calm"] = before(wait_bound(opts.quick, opts.calm_wait_s), probe, progress)
    ctx.shared["calm_monitor"] = LoadMonitor().__enter__()


def finish(ctx: ReportContext) -> dict[str, Any]:
    """After the measurements (once; later calls return the same facts): the load after, the
    cores others kept busy meanwhile, whether it was fair, and the verdict's warning."""
    facts = ctx.machine.get("calm") or {}
    mon = ctx.shared.pop("calm_monitor", None)
    if mon is not None and facts.get("checked"):
        after(facts, mon.so_far())
        facts["rerun"] = rerun_command(ctx.options, ReportOptions())
        roofs = "this machine's roofs, " if ctx.machine.get("source") == "measured now" else ""
        what = f"{roofs}case-study latencies and prediction errors"
        facts["warning"] = warning(facts, facts["rerun"], what)
    return facts


def rerun_command(opts: ReportOptions, defaults: ReportOptions) -> str:
    """The command that makes this report again (`make report` for the default one)."""
    parts = ["memwall", "report", "--out", str(opts.out)]
    if opts.quick:
        parts.append("--quick")
    for name in ("models", "devices"):
        if getattr(opts, name) != getattr(defaults, name):
            parts += [f"--{name}", ",".join(getattr(opts, name))]
    cmd = " ".join(shlex.quote(p) for p in parts)
    plain = not opts.quick and parts[4:] == [] and str(opts.out) == str(defaults.out)
    return "make report" if plain else cmd


def warning(facts: dict[str, Any], command: str, measured: str = "") -> str:
    """The verdict's warning for an unfair measurement ("" when it was fair); `measured`:
    what this run timed (default: the case study)."""
    if facts.get("fair", True):
        return ""
    first, last, cores = facts["first"], facts["last"], facts["cores"]
    load = " and ".join(
        f"{v:.2f} {w}"
        for w, v in (
            ("before", first["load_1min"]),
            ("when measuring began", last["load_1min"] if facts["looks"] > 1 else None),
            ("after", facts.get("load_1min_after")),
        )
        if v is not None
    )
    probe = last["probe_ratio"] or first["probe_ratio"]
    return (
        "This machine was busy while the report measured it, so the numbers measured now "
        f"({measured or 'case-study latencies and prediction errors'}) may be off. 1-minute "
        "load average "
        f"{load or 'unavailable'}, on {cores} cores (limit {facts['limit_load']:.2g}); other "
        f"processes kept {last['others_busy_cores']:.1f} cores busy when measuring began and "
        f"{facts['others_busy_cores_during']:.1f} on average while it measured; speed probe "
        + (
            f"{probe:.2f}x the calibrated time (limit {facts['limit_probe']:g}x)"
            if probe
            else "not compared (no saved calibration yet)"
        )
        + f". The report waited {facts['waited_s']:.0f} s for it to calm (at most "
        f"{facts['wait_bound_s']:.0f} s; `--wait SECONDS` sets it). Re-run `{command}` on a "
        "quiet machine."
    )
