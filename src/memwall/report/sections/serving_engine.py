"""The serving section's real engine: `benchmarks/bench_serve.py`'s saved comparison
(`records.engine_check`) shown as measured against simulated, in a figure and a table, with the
errors, the engine's own repeatability and how steady this machine was; or, where none was
saved, how to make one. Measured and simulated, never predicted for another device.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from memwall.errors import MemwallError
from memwall.records import engine_check
from memwall.report.base import Column, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import pct

ENGINE_METRICS = (("ttft_p50", "TTFT p50"), ("tpot_p50", "TPOT p50"), ("e2e_p50", "E2E p50"))


def _engine_figure(rec: Any) -> go.Figure:
    """Measured (x) against simulated (y) p50 latencies per workload, with the diagonal."""
    fig = go.Figure()
    values = []
    for (key, name), color in zip(ENGINE_METRICS, PALETTE, strict=False):
        xs = [getattr(w.measured, key) for w in rec.workloads]
        ys = [getattr(w.simulated, key) for w in rec.workloads]
        values += xs + ys
        labels = [f"{w.mix} at {w.rate:.3g} req/s ({w.load:.2g}x capacity)" for w in rec.workloads]
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="markers", name=name, text=labels,
                marker={"color": color, "size": 9},
                hovertemplate="%{text}<br>measured %{x:.3g} s<br>simulated %{y:.3g} s",
            )
        )  # fmt: skip
    lo, hi = min(values) / 1.5, max(values) * 1.5
    fig.add_trace(
        go.Scatter(
            x=[lo, hi, hi, lo], y=[lo * 0.9, hi * 0.9, hi * 1.1, lo * 1.1], fill="toself",
            mode="none", fillcolor="rgba(120,120,120,0.15)", name="within 10%",
            hoverinfo="skip",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[lo, hi], y=[lo, hi], mode="lines", name="exact",
            line={"color": "#555", "dash": "dash", "width": 1}, hoverinfo="skip",
        )
    )  # fmt: skip
    style(fig, "Real engine here: measured vs simulated", "measured (s)", "simulated (s)",
          logx=True, logy=True)  # fmt: skip
    fig.update_layout(height=340)
    return fig


def _engine_alt(rec: Any) -> str:
    s = rec.summary
    return (
        f"Measured against simulated p50 latencies of {len(rec.workloads)} workloads of a real "
        f"engine here: median errors TTFT {pct(s.ttft_p50)}, TPOT {pct(s.tpot_p50)}, E2E "
        f"{pct(s.e2e_p50)}."
    )


def add(res: SectionResult) -> dict[str, Any] | None:
    """The real engine measured here (`benchmarks/bench_serve.py`'s saved comparison)
    beside memwall.serve's simulation of the same requests; a line saying how to make one
    where none was saved. Its data, or None."""
    try:
        rec = engine_check.load()
    except MemwallError as e:
        res.text(f"The saved real-engine check could not be read: {e}", "A real engine here")
        return None
    if rec is None:
        res.text(
            "No real engine has been checked on this machine yet. `python "
            "benchmarks/bench_serve.py` (with the `serve` extra and guidellm installed, as "
            "`make test` does) serves a small model with transformers' own continuous-"
            "batching server, drives it with guidellm, simulates the same requests with "
            "memwall.serve and saves the comparison, which this section then shows.",
            "A real engine here",
        )
        return None
    s, r, m = rec.summary, rec.rolling, rec.machine
    spread = max(m.steadiness_before, m.steadiness_after)
    size = f"{rec.model.get('hidden_size', '?')}-wide, {rec.model.get('num_hidden_layers', '?')}"
    text = (
        f"Measured on this machine ({rec.date[:10]}): {rec.engine} serving a {size}-layer "
        f"random-weight model on this CPU, driven by {rec.load_generator} over "
        f"{len(rec.workloads)} workload{'s' if len(rec.workloads) != 1 else ''} of "
        f"{rec.requests_per_run} requests per run; "
        "memwall.serve simulated the same requests (their send times and lengths) with "
        "step costs fitted to the engine's own timed steps. Median |error| of TTFT / TPOT "
        f"/ E2E p50: {pct(s.ttft_p50)} / {pct(s.tpot_p50)} / {pct(s.e2e_p50)} calibrated, "
        f"{pct(r.ttft_p50)} / {pct(r.tpot_p50)} / {pct(r.e2e_p50)} re-priced at the "
        f"previous run's step speed; throughput {pct(s.throughput)}. The engine's own "
        f"run-to-run difference: {pct(rec.repeatability.ttft_p50)} / "
        f"{pct(rec.repeatability.tpot_p50)} / {pct(rec.repeatability.e2e_p50)}."
    )
    if spread > 1.1:
        text += (
            f" The machine's own speed was not steady: a fixed loop took {pct(spread - 1)} "
            "longer in its slow quarter seconds (p90) than in its fast ones (p10), measured "
            "before and after the run, which no calibration can foresee."
        )
    res.text(text, "A real engine here")
    res.figure(
        _engine_figure(rec),
        "The real engine measured on this machine against memwall.serve's simulation of the "
        "same requests: p50 of time to first token, time per output token and end-to-end "
        "latency per workload (mean over its runs), seconds, log scales; on the diagonal the "
        "simulation is exact, the shaded band is within 10%. Measured by "
        f"`benchmarks/bench_serve.py` on {rec.date[:10]}; simulated with step costs "
        "calibrated on the engine's own timed steps.",
        "serving-engine",
        alt=_engine_alt(rec),
        half=True,
    )
    rows = [
        {
            "mix": w.mix,
            "rate": w.rate,
            "load": w.load,
            "ttft_m": w.measured.ttft_p50,
            "ttft_s": w.simulated.ttft_p50,
            "ttft_e": w.error.ttft_p50,
            "tpot_m": w.measured.tpot_p50,
            "tpot_s": w.simulated.tpot_p50,
            "tpot_e": w.error.tpot_p50,
            "e2e_e": w.error.e2e_p50,
            "tp_e": w.error.throughput,
            "rep": w.repeatability.e2e_p50,
        }  # fmt: skip
        for w in rec.workloads
    ]
    res.table(
        "Real engine on this machine (measured) vs memwall.serve (simulated, calibrated "
        "here); p50 latencies, errors as mean |simulated / measured - 1| over runs",
        [
            Column("mix", "lengths"),
            Column("rate", "rate", "rate", "req/s"),
            Column("load", "x capacity", "ratio"),
            Column("ttft_m", "TTFT measured", "seconds"),
            Column("ttft_s", "TTFT simulated", "seconds"),
            Column("ttft_e", "TTFT |error|", "pct"),
            Column("tpot_m", "TPOT measured", "seconds"),
            Column("tpot_s", "TPOT simulated", "seconds"),
            Column("tpot_e", "TPOT |error|", "pct"),
            Column("e2e_e", "E2E |error|", "pct"),
            Column("tp_e", "throughput |error|", "pct"),
            Column("rep", "engine run-to-run (E2E)", "pct"),
        ],
        rows,
    )
    return rec.model_dump(mode="json")
