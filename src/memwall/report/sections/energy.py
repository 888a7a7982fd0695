"""The memory wall in joules (memwall.energy.shares): per decoder, on one accelerator, the
predicted energy per generated token of a decode step, split into computing, moving bytes
(DRAM and on-chip) and static power, and how batching, 8- and 4-bit weights and an 8-bit KV
cache move it. Every number is predicted (FLOPs x J/FLOP + bytes x J/byte + static power x the
efficiency model's time, capped at the TDP), none measured.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from memwall.energy.shares import BATCHES, VARIANTS, energy_shares
from memwall.errors import MemwallError
from memwall.memory import inference_memory
from memwall.parallel.published_energy import EnergyComparison, compare
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import pct
from memwall.report.sections.serving import decoders, pick_device
from memwall.report.workloads import model_spec
from memwall.spec import Workload, parse_precision

CONTEXT = 2048  # cached tokens per sequence (energy_shares' default), less where a model's is
PREFERRED_MODEL = "llama-3-8b"
FIGURE_MODELS = 4  # panels in the figure; the table holds every model


def context_for(max_positions: int) -> int:
    return max(1, min(CONTEXT, int(max_positions) - 1))


def _fits(spec: Any, row: dict[str, Any], device: Any) -> tuple[float | None, bool | None]:
    """Weights + KV cache + activation peak of the row's batch at its context, and whether
    that fits the device's memory (None: no capacity on record)."""
    try:
        wl = Workload("decode", int(row["batch"]), int(row["context"]))
        need = inference_memory(spec, wl, parse_precision(row["precision"])).total
    except MemwallError:
        return None, None
    cap = device.mem_capacity
    return float(need), (bool(need <= cap) if cap else None)


def model_rows(ctx: ReportContext, model: str, device: Any) -> list[dict[str, Any]]:
    """energy_shares' rows for `model` (named as the report names it), each with its
    footprint and whether it fits one device."""
    spec = model_spec(ctx, model)
    df = energy_shares(spec, device, BATCHES, context_for(spec.max_positions), VARIANTS)
    rows = []
    for r in df.to_dict(orient="records"):
        need, fits = _fits(spec, r, device)
        rows.append({**r, "model": model, "footprint_bytes": need, "fits": fits})
    return rows


def _figure(rows: list[dict[str, Any]], models: list[str], dev: str) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=len(models), subplot_titles=models, shared_yaxes=True,
        horizontal_spacing=0.04,
    )  # fmt: skip
    for c, model in enumerate(models, start=1):
        for i, (_, label) in enumerate(VARIANTS):
            pts = [r for r in rows if r["model"] == model and r["variant"] == label]
            fig.add_trace(
                go.Scatter(
                    x=[r["batch"] for r in pts],
                    y=[r["j_per_token"] for r in pts],
                    name=label,
                    legendgroup=label,
                    showlegend=c == 1,
                    mode="lines+markers",
                    line={"color": PALETTE[i % len(PALETTE)]},
                    marker={
                        "symbol": [
                            "circle" if r["fits"] is not False else "circle-open" for r in pts
                        ],
                        "size": 8,
                    },  # fmt: skip
                    customdata=[
                        [
                            pct(r["bytes_share_dynamic"]),
                            pct(r["static_share"]),
                            "fits" if r["fits"] is not False else "does not fit one device",
                        ]
                        for r in pts
                    ],  # fmt: skip
                    hovertemplate=(
                        f"<b>{model}</b>, {label}<br>batch %{{x}}: %{{y:.3g}} J/token "
                        "(predicted)<br>bytes: %{customdata[0]} of dynamic energy<br>static: "
                        "%{customdata[1]} of total<br>%{customdata[2]}<extra></extra>"
                    ),
                ),
                row=1,
                col=c,
            )
    style(fig, f"Energy per generated token on {dev} (predicted)", "", "", logx=True, logy=True)
    fig.update_xaxes(title_text="batch (sequences)", type="log", tickvals=list(BATCHES))
    fig.update_yaxes(type="log", dtick=1)
    fig.update_yaxes(title_text="J per token (predicted)", row=1, col=1)
    fig.update_layout(height=340, margin={"t": 75})  # room for the panel titles
    return fig


def _finding(rows: list[dict[str, Any]], head: str, models: list[str]) -> str:
    def at(model: str, label: str, batch: int) -> dict[str, Any]:
        return next(
            r for r in rows
            if r["model"] == model and r["variant"] == label and r["batch"] == batch
        )  # fmt: skip

    lo, hi = min(BATCHES), max(BATCHES)
    base, kv8, w4 = VARIANTS[0][1], VARIANTS[1][1], VARIANTS[3][1]
    b1, bn = at(head, base, lo), at(head, base, hi)
    statics = [r["static_share"] for r in rows if r["model"] == head]
    text = (
        f"For {head} at a {b1['context']:,}-token context, moving bytes is "
        f"{pct(b1['bytes_share_dynamic'])} of the dynamic energy at batch {lo} and "
        f"{pct(bn['bytes_share_dynamic'])} at batch {hi}, while static power is "
        f"{pct(min(statics))}-{pct(max(statics))} of the total throughout: batching from "
        f"{lo} to {hi} takes a token from {b1['j_per_token']:.3g} J to "
        f"{bn['j_per_token']:.3g} J, 4-bit weights take batch {lo} to "
        f"{at(head, w4, lo)['j_per_token']:.3g} J, and an 8-bit KV cache, which matters once "
        f"the cache outweighs the weights, takes batch {hi} to "
        f"{at(head, kv8, hi)['j_per_token']:.3g} J (all predicted)."
    )
    if len(models) > 1:
        shares = [at(m, base, lo)["bytes_share_dynamic"] for m in models]
        text += (
            f" Over all {len(models)} decoders, bytes are {pct(min(shares))}-"
            f"{pct(max(shares))} of the dynamic energy at batch {lo}."
        )
    return text


def _validation() -> tuple[str, dict[str, Any]]:
    """How far the energy model is from published measurements (`benchmarks/bench_energy.py`'s
    comparison): the rows that chose no value, the held-out newer part, the trend with batch."""
    t = compare().table
    check, hold = t[t["role"] == "check"], t[t["role"] == "holdout"]
    tr = EnergyComparison(t).trend_check()
    trend = int(tr["ok"].sum()), len(tr)
    falls = int(tr["measured_falls"].sum())
    data = {
        "check_rows": len(check),
        "check_median_abs_error": float(check["error"].abs().median()),
        "check_worst_abs_error": float(check["error"].abs().max()),
        "holdout_rows": len(hold),
        "holdout_median_abs_error": float(hold["error"].abs().median()),
        "trend_sweeps_right": trend[0],
        "trend_sweeps": trend[1],
        "measured_falling_sweeps": falls,
        "source": "data/published_energy.csv (ML.ENERGY Leaderboard v3.0 and v1), "
        "benchmarks/bench_energy.py",
    }
    text = (
        f"Checked against published measurements (ML.ENERGY's leaderboards, measured with Zeus; "
        f"data/published_energy.csv, each row sourced): on the {len(check)} rows that chose no "
        f"value the predicted energy per output token is within "
        f"{pct(data['check_median_abs_error'])} (median |error|, worst "
        f"{pct(data['check_worst_abs_error'])}); on {len(hold)} B200 rows held out of every "
        f"choice, {pct(data['holdout_median_abs_error'])}. Measured energy per token falls at "
        f"every larger batch in {falls} of {trend[1]} sweeps, and the prediction moves the "
        f"way the measurement does at every step in {trend[0]} of {trend[1]} "
        "(benchmarks/bench_energy.py prints every row)."
    )
    return text, data


def _alt(rows: list[dict[str, Any]], head: str) -> str:
    base = [r for r in rows if r["model"] == head and r["variant"] == VARIANTS[0][1]]
    lo, hi = base[0], base[-1]
    series: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        series.setdefault((r["model"], r["variant"]), []).append(r["j_per_token"])
    falls = all(all(b < a for a, b in zip(v, v[1:], strict=False)) for v in series.values())
    return (
        "Predicted energy per token falls with the batch "
        + ("for every model and precision" if falls else "for most models and precisions")
        + "; "
        f"{head} in bf16 goes from {lo['j_per_token']:.3g} J at batch {lo['batch']} to "
        f"{hi['j_per_token']:.3g} J at batch {hi['batch']}."
    )


class EnergySection:
    name = "energy"
    title = "Energy"
    order = 85
    weight = 1.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        models, dname = decoders(ctx), pick_device(ctx)
        if not models:
            raise MemwallError(
                "none of the chosen models is a decoder: energy is priced per generated token"
            )
        if dname is None:
            raise MemwallError(
                "no catalog accelerator was chosen: energy is priced from a device's sourced "
                "coefficients (TDP, memory technology), which this machine's measured roofline "
                "does not have; add one with --devices, e.g. h100-sxm"
            )
        dev = ctx.devices[dname]
        rows: list[dict[str, Any]] = []
        for m in models:
            ctx.progress(f"energy: {m} on {dname}")
            try:
                rows += model_rows(ctx, m, dev)
            except MemwallError as e:
                res.notes.append(f"{m} on {dname}: {e}")
        done = [m for m in models if any(r["model"] == m for r in rows)]
        if not done:
            raise MemwallError(f"no decoder could be priced on {dname}: {'; '.join(res.notes)}")
        head = PREFERRED_MODEL if PREFERRED_MODEL in done else done[0]
        shown = done[:FIGURE_MODELS]
        misfits = sorted({r["model"] for r in rows if r["fits"] is False})
        res.figure(
            _figure(rows, shown, dev.display_name),
            f"Predicted energy per generated token (J/token, log scale) of one decode step at "
            f"a {CONTEXT:,}-token context (shorter where a model's is), against batch, on one "
            f"{dev.display_name}: bf16 weights and KV cache, an 8-bit KV cache, 8- and 4-bit "
            "weights (16-bit activations). memwall.energy: FLOPs x J/FLOP + bytes x J/byte + "
            "static power x the efficiency model's predicted time; predicted, not measured. "
            "Open markers: weights, KV cache and activations do not fit the device's memory "
            "(priced as if they did).",
            "energy",
            alt=_alt(rows, head),
        )
        res.text(_finding(rows, head, done))
        ctx.progress("energy: the published measurements")
        checked, validation = _validation()
        res.text(checked)
        res.table(
            f"Energy per generated token on {dev.display_name} (predicted)",
            [
                Column("model", "model"),
                Column("variant", "precision"),
                Column("batch", "batch", "int"),
                Column("j_per_token", "total", "si", "J/token"),
                Column("compute_j_per_token", "compute", "si", "J/token"),
                Column("bytes_j_per_token", "bytes", "si", "J/token"),
                Column("static_j_per_token", "static", "si", "J/token"),
                Column("bytes_share_dynamic", "bytes / dynamic", "pct"),
                Column("static_share", "static / total", "pct"),
                Column("time_per_step_s", "step", "seconds"),
                Column("footprint_bytes", "memory", "bytes"),
                Column("fits", "fits"),
            ],
            rows,
            folded=True,
        )
        res.data = {
            "built": True,
            "predicted": True,
            "device": dname,
            "display_name": dev.display_name,
            "models": done,
            "headline_model": head,
            "figure_models": shown,
            "batches": list(BATCHES),
            "variants": [{"precision": p, "label": lab} for p, lab in VARIANTS],
            "does_not_fit": misfits,
            "validation": validation,
            "rows": rows,
            "units": {
                "*_j_per_token": "J per generated token",
                "*_share*": "fraction",
                "time_per_step_s": "s",
                "footprint_bytes": "bytes",
            },
        }
        if len(done) > len(shown):
            res.notes.append(
                f"the figure shows {', '.join(shown)}; the table holds all {len(done)} models"
            )
        if misfits:
            res.notes.append(
                f"some batches of {', '.join(misfits)} do not fit one {dev.display_name}'s "
                "memory (table: fits); their energy is priced as if they did"
            )
        return res


SECTION = EnergySection()
