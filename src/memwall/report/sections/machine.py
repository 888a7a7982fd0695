"""This machine: its measured roofs (or a saved measurement younger than a day), versions,
date and load, and the roofline with the chosen models' operations on it (hover for numbers)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import device_from_measurement, get_device
from memwall.measure.busy import is_busy
from memwall.measure.record import save_result
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import roofline_figure
from memwall.report.fmt import nbytes, si
from memwall.report.lib import is_complete, measure_machine
from memwall.report.workloads import headline, op_prediction


def _age_s(device: Any) -> float | None:
    date = (device.metadata or {}).get("date")
    try:
        when = dt.datetime.fromisoformat(str(date))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return (dt.datetime.now(dt.timezone.utc) - when).total_seconds()


def _saved_local() -> Any | None:
    try:
        return get_device("local")
    except MemwallError:
        return None


def _busy(dev: Any) -> bool:
    return bool((dev.metadata or {}).get("busy"))


def _measure_now(ctx: ReportContext) -> tuple[Any, dict[str, Any]]:
    """Time this machine (quick or default) and save it as `memwall measure` does: a busy run
    never replaces a calm `local` (it goes to `local-busy`), so `local` afterwards is what to
    show: the new roofs, or the calm record kept when the new ones were busy."""
    ctx.progress("measuring this machine (memory bandwidth, GEMM peaks, overhead)")
    load_before = os.getloadavg()[0]
    result = measure_machine(ctx.options.quick)
    load_after = os.getloadavg()[0]
    if result["metadata"].get("interrupted"):
        raise KeyboardInterrupt
    if not is_complete(result):
        raise MemwallError(
            "measuring this machine gave no DRAM bandwidth or peak; run memwall measure"
        )
    facts: dict[str, Any] = {
        "source": "measured now",
        "load_before": load_before,
        "load_after": load_after,
        "age_s": 0.0,
        "measured_now_busy": is_busy(result),
        "measured_now_load": result["metadata"].get("load"),
    }
    names, _, why = save_result(result)
    if why:
        facts["save_error"] = why
    if names["local"] != "local":  # busy now: the calm saved record is kept, and shown
        kept = get_device("local")
        facts.update(
            source=f"saved calm measurement kept: measured now but busy (saved as "
            f"{names['local']!r})",
            age_s=_age_s(kept),
        )
        return kept, facts
    # not saved (unwritable data directory): show what was measured
    return (device_from_measurement(result, "local") if why else get_device("local")), facts


def resolve_local(ctx: ReportContext) -> tuple[Any | None, dict[str, Any]]:
    """The `local` device: a saved measurement younger than max_age_s and not measured busy,
    else measured now (a busy record would carry its load into every prediction)."""
    saved = _saved_local()
    age = _age_s(saved) if saved is not None else None
    busy = saved is not None and _busy(saved)
    if saved is not None and age is not None and age < ctx.options.max_age_s and not busy:
        return saved, {"source": "saved measurement reused", "age_s": age}
    if not ctx.options.measure:
        if saved is not None:
            return saved, {"source": "saved measurement reused (measuring disabled)", "age_s": age}
        return None, {"source": "not measured (measuring disabled, nothing saved)"}
    dev, facts = _measure_now(ctx)
    if busy:
        facts["remeasured"] = "the saved measurement was measured busy"
    return dev, facts


def _busy_warning(dev: Any) -> str:
    """The banner for roofs measured under load ("" for calm ones)."""
    if not _busy(dev):
        return ""
    why = "; ".join((dev.metadata or {}).get("busy_reasons") or []) or "flagged busy"
    return (
        f"These roofs were measured while the machine was busy ({why}), so they may be low and "
        "every prediction for this machine with them too; no calm measurement is saved. Re-run "
        "`memwall measure` on a quiet machine."
    )


def _roof_rows(dev: Any) -> list[dict[str, Any]]:
    rows = [{"roof": "DRAM bandwidth (STREAM triad)", "value": dev.mem_bandwidth, "unit": "B/s"}]
    if dev.gemv_bandwidth:
        rows.append({"roof": "GEMV bandwidth", "value": dev.gemv_bandwidth, "unit": "B/s"})
    for c in dev.cache_levels:
        rows.append(
            {
                "roof": f"{c.name} bandwidth (≤ {nbytes(c.size)})",
                "value": c.bandwidth,
                "unit": "B/s",
            }
        )
    for d, v in dev.peaks.items():
        rows.append({"roof": f"peak {d} (best GEMM)", "value": v, "unit": "FLOP/s"})
    rows.append({"roof": "overhead per op (eager dispatch)", "value": dev.op_overhead, "unit": "s"})
    return rows


class MachineSection:
    name = "machine"
    title = "This machine"
    order = 20
    weight = 10.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        dev, facts = resolve_local(ctx)
        if dev is not None:
            facts["busy"] = _busy(dev)
        ctx.machine.update(facts)
        if dev is None:
            res.text(
                "No measurement of this machine: run `memwall measure` or the report without "
                "--no-measure. The sections below use spec-sheet devices only."
            )
            res.data = {"measurement": facts}
            return res
        if "local" in ctx.options.devices:  # this machine is one of the compared devices
            ctx.devices = {"local": dev, **ctx.devices}
        meta = dict(dev.metadata or {})
        age = facts.get("age_s")
        how = facts["source"] + (f", {age / 3600:.1f} h old" if age else "")
        how += f"; {facts['remeasured']}" if facts.get("remeasured") else ""
        res.text(
            f"{meta.get('cpu_model', dev.display_name)}: {meta.get('threads', '?')} threads, "
            f"{nbytes(meta.get('mem_total'))} memory. Roofs measured on {meta.get('date', '?')} "
            f"({meta.get('mode', '?')} mode; {how}). Main-memory bandwidth "
            f"{si(dev.mem_bandwidth, 'B/s')}; fp32 peak {si(dev.peaks.get('fp32'), 'FLOP/s')}."
        )
        if warning := _busy_warning(dev):
            res.warn(warning)
        rows = _roof_rows(dev)
        res.table(
            "Measured roofs of this machine (measured by memwall, base units)",
            [Column("roof", "roof"), Column("value", "measured", "si", ""), Column("unit", "unit")],
            [{**r, "value": r["value"]} for r in rows],
            folded=True,
        )
        env = {
            "cpu_model": meta.get("cpu_model"),
            "threads": meta.get("threads"),
            "logical_cpus": meta.get("logical_cpus"),
            "mem_total": meta.get("mem_total"),
            "torch": meta.get("torch"),
            "numpy": meta.get("numpy"),
            "python": meta.get("python") or platform.python_version(),
            "platform": meta.get("platform"),
            "date": meta.get("date"),
            "mode": meta.get("mode"),
            "load_before": facts.get("load_before"),
            "load_after": facts.get("load_after"),
            "load_now": os.getloadavg()[0],
        }
        res.table(
            "Versions, date and load (1-minute load average; before/after: measured now)",
            [Column("key", "what"), Column("value", "value", "text")],
            [{"key": k, "value": v} for k, v in env.items() if v is not None],
            folded=True,
        )
        res.data = {
            "measurement": facts,
            "device": dev.to_dict(),
            "environment": env,
            "roofs": rows,
        }
        self._roofline(ctx, dev, res)
        return res

    def _roofline(self, ctx: ReportContext, dev: Any, res: SectionResult) -> None:
        points = []
        for model in ctx.options.models:
            try:
                wl, prec = headline(ctx, model)
                points.append((model, wl, prec, op_prediction(ctx, model, wl, prec, dev)))
            except MemwallError as e:
                res.notes.append(f"{model}: no roofline points ({e})")
        if points:
            fig, data = roofline_figure(dev, points)
            res.figure(
                fig,
                "Roofline of this machine (measured roofs) with every operation of "
                "each model's headline workload (full convention, predicted). Hover a "
                "point: FLOPs, bytes, intensity, predicted time, bound.",
                "roofline-local",
            )
            res.data["roofline_points"] = data


SECTION = MachineSection()
