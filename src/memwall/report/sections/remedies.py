"""The paper's remedies, measured here (memwall.compress): a small GPT trained on this machine,
quantised and pruned for real, each variant's stored bytes, decode latency timed on this CPU
and held-out perplexity, the Pareto-optimal variants marked, and the paper's remedy claims
checked against them (`compress.remedy_claims`).

Time: built from nothing, the full sweep (`memwall compress stdlib-gpt --pareto`) spends most of
its minutes on the pruned variants' recovery fine-tunes (about 30 s each on 2 cores); they are
cached like the trained model (`compress.variants`), so a later report loads them in a moment
and says which came from the cache (the default section, calm 2-core machine: 110 s with none
cached, 20 s with all cached). The default report also leaves out the two pruned variants
no claim reads, and --quick runs the tiny model trained in seconds. With --no-measure nothing
is timed: bytes and perplexity only.
"""

from __future__ import annotations

import time
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import nbytes, pct, ratio, si
from memwall.report.noise import MARK

MODEL = "stdlib-gpt"
QUICK_MODEL = "stdlib-gpt-tiny"
# Pruned variants read by no remedy claim, left out of the default report (a recovery
# fine-tune each); `memwall compress --pareto` runs them.
LEFT_OUT = ("prune-structured:0.5", "prune-unstructured:0.9")
THREADS = 1  # compress' default: one thread is steadiest on a shared machine
MIB = 2**20


def sweep(model: str, quick: bool, measure: bool) -> dict[str, Any]:
    """compress' Pareto sweep (`compress.pareto`; without LEFT_OUT unless quick) and the
    paper's remedy claims checked on its rows, as `memwall.api.compress(pareto=True)` gives
    them (which always times)."""
    from memwall.compress import PARETO_METHODS, pareto, remedy_claims, run
    from memwall.compress.run import mark_pareto

    if quick:
        res = pareto(model, measure=measure, threads=THREADS)
    else:
        methods = [m for m in PARETO_METHODS if m not in LEFT_OUT]
        res = run(model, methods, measure, threads=THREADS)
        mark_pareto(res["rows"], measure)
    return {**res, "claims": remedy_claims(res["rows"])}


def timed_sweep(model: str, quick: bool, measure: bool) -> tuple[dict[str, Any], list[str]]:
    """`sweep`, watching the cores other processes keep busy meanwhile (measure.busy's rule):
    the result and why its latencies are noisy (empty: calm, or nothing timed)."""
    if not measure:
        return sweep(model, quick, measure), []
    from memwall.measure.busy import busy_reasons, cpus
    from memwall.measure.machine import LoadMonitor

    with LoadMonitor() as mon:
        res = sweep(model, quick, measure)
    return res, busy_reasons(mon.others_busy_cores, cpus())


def cache_note(res: dict[str, Any]) -> list[str]:
    """Which pruned variants' recovery fine-tunes came from compress' cache, which ran now."""
    pruned = [r["method"] for r in res["rows"] if family(r["method"]) == "pruned"]
    if not pruned or not res.get("trained_here", True):
        return []
    cached = [m for m in pruned if m in res.get("from_cache", [])]
    ran = [m for m in pruned if m not in cached]
    said = [f"from the cache: {', '.join(cached)}"] if cached else []
    said += [f"run now and cached: {', '.join(ran)}"] if ran else []
    return [
        "pruned variants' recovery fine-tunes: "
        + "; ".join(said)
        + " (memwall's cache, compress/variants/; delete it to fine-tune again)"
    ]


def mark(rows: list[dict[str, Any]], noise: list[str]) -> list[dict[str, Any]]:
    """Copies of the rows with `mark` (the noise cell: MARK and why, "clean", None when not
    timed) and `noisy_row` (the page shades it), as report.noise marks the case study's."""
    out = []
    for r in rows:
        timed = r.get("latency_measured") is not None
        m = dict(r)
        m["noisy_row"] = bool(timed and noise)
        m["mark"] = (f"{MARK} " + "; ".join(noise) if noise else "clean") if timed else None
        m["pareto_mark"] = "Pareto" if r.get("pareto") else ""
        out.append(m)
    return out


FAMILIES = (("fp32 / bf16", PALETTE[4]), ("quantised", PALETTE[0]), ("pruned", PALETTE[1]))


def family(method: str) -> str:
    if method.startswith("prune"):
        return "pruned"
    return "fp32 / bf16" if method in ("fp32", "bf16") else "quantised"


def _figure(rows: list[dict[str, Any]], res: dict[str, Any], noisy: bool) -> go.Figure:
    timed = bool(res["measured"])
    ppl = "perplexity" in rows[0]
    y_key = "perplexity" if ppl else "speedup_predicted"
    panels = [("weights_real", MIB, "stored weights (MiB, measured)")]
    if timed:
        what = f"{res['phase']} latency (ms/token, measured" + (", noisy)" if noisy else ")")
        panels.append(("latency_measured", 1e-3, what))
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.06)
    for c, (key, scale, _) in enumerate(panels, start=1):
        for name, color in FAMILIES:
            # Pareto points first: the legend draws a family with its first point's marker
            pts = sorted(
                (r for r in rows if family(r["method"]) == name), key=lambda r: not r["pareto"]
            )
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r[key] / scale for r in pts],
                    y=[r[y_key] for r in pts],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=c == 1,
                    marker={
                        "color": color,
                        "size": 10,
                        "symbol": ["circle" if r.get("pareto") else "circle-open" for r in pts],
                        "line": {"width": 2, "color": color},
                    },
                    customdata=[
                        [
                            r["method"],
                            nbytes(r["weights_real"]),
                            ratio(r["footprint_reduction"]),
                            si(r.get("latency_measured"), "s"),
                            pct(r.get("perplexity_change")),
                            "Pareto-optimal" if r.get("pareto") else "dominated",
                        ]
                        for r in pts
                    ],
                    hovertemplate=(
                        "<b>%{customdata[0]}</b> (%{customdata[5]})<br>stored: "
                        "%{customdata[1]} (%{customdata[2]} smaller than fp32)<br>latency: "
                        "%{customdata[3]}/token (measured)<br>perplexity %{y:.4g} "
                        "(%{customdata[4]} vs fp32)<extra></extra>"
                    ),
                ),
                row=1,
                col=c,
            )
    y_label = "held-out perplexity per byte" if ppl else "speed-up predicted from bytes"
    style(fig, f"{res['model']}: compressed variants (measured here)", "", "")
    for c, (_, _, label) in enumerate(panels, start=1):
        fig.update_xaxes(title_text=label, row=1, col=c)
    fig.update_yaxes(title_text=y_label, row=1, col=1)
    fig.update_layout(height=340)
    return fig


def _row(rows: list[dict[str, Any]], *methods: str) -> dict[str, Any] | None:
    by = {r["method"]: r for r in rows}
    return next((by[m] for m in methods if m in by), None)


def signed(v: Any) -> str:
    return "–" if v is None else f"{100 * v:+.1f}%"


def _finding(res: dict[str, Any], rows: list[dict[str, Any]], noise: list[str]) -> str:
    int4 = _row(rows, "int4:128", "int4:32")
    worst = max(rows, key=lambda r: r.get("perplexity_change") or 0.0)
    text = ""
    if int4 is not None and "perplexity" in int4:
        text = (
            f"On {res['model']}, trained here, {int4['method']} stores the weights in "
            f"{nbytes(int4['weights_real'])}, {ratio(int4['footprint_reduction'])} less than "
            f"fp32, at {signed(int4['perplexity_change'])} perplexity; {worst['method']} costs "
            f"the most ({signed(worst['perplexity_change'])})."
        )
    if res["measured"] and int4 is not None:
        got, want = int4["speedup_measured"], int4["speedup_predicted"]
        why = (
            ": dequantising and the work that does not shrink eat the saving"
            if got < 0.75 * want
            else ""
        )
        text += (
            f" Timed on this CPU ({res['threads']} thread, {res['phase']} at context "
            f"{res['context']}), {int4['method']} runs at {ratio(got)} fp32's speed against "
            f"{ratio(want)} predicted from bytes moved{why}"
            + (f" ({MARK} timed on a busy machine: {'; '.join(noise)})." if noise else ".")
        )
    elif not res["measured"]:
        text += " Nothing was timed (--no-measure): bytes and perplexity only."
    return text.strip()


def claim_rows(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims with their numbers as text in their own units (x for ratios, % change)."""
    out = []
    for c in claims:
        is_ratio = c["claimed"] is not None
        show = ratio if is_ratio else signed
        paper = ratio(c["claimed"]) if is_ratio else "minimal change"
        out.append({**c, "paper": paper, "here": show(c["measured"])})
    return out


VERBS = {  # verdict -> (one claim, several)
    "holds": ("holds", "hold"),
    "partly": ("holds partly", "hold partly"),
    "does not hold here": ("does not hold here", "do not hold here"),
    "not measured": ("was not measured", "were not measured"),
}


def _claims_sentence(claims: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for c in claims:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    parts = [f"{n} {VERBS.get(v, (v, v))[n != 1]}" for v, n in counts.items()]
    said = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Of the paper's {len(claims)} remedy claims, {said} on these variants."


class RemediesSection:
    name = "remedies"
    title = "Remedies measured"
    order = 88
    weight = 6.0

    def build(self, ctx: ReportContext) -> SectionResult:
        quick, measure = ctx.options.quick, ctx.options.measure
        model = QUICK_MODEL if quick else MODEL
        ctx.progress(
            f"remedies: {model}, quantised and pruned"
            + (", timed" if measure else ", not timed")
            + ("" if quick else " (pruned variants fine-tune to recover once, about 2 minutes)")
        )
        t0 = time.perf_counter()
        res, noise = timed_sweep(model, quick, measure)
        seconds = time.perf_counter() - t0
        rows = mark(res["rows"], noise)
        out = SectionResult()
        noisy = bool(noise)
        out.figure(
            _figure(rows, res, noisy),
            f"Each compressed variant of {res['model']} (a GPT trained on this machine): "
            "weights as really stored (MiB"
            + (
                f"; right: {res['phase']} latency in ms per token at context "
                f"{res['context']}, batch 1, {res['threads']} thread, measured on this CPU, "
                "fastest of 5 runs"
                if res["measured"]
                else "; nothing timed"
            )
            + ") against held-out perplexity per byte (measured). Filled markers: "
            "Pareto-optimal over "
            + ("bytes, perplexity and latency" if res["measured"] else "bytes and perplexity")
            + " together; open: dominated"
            + (f"; {MARK} the machine was busy while timing" if noisy else "")
            + ". Hover for the method.",
            "remedies",
            alt=self._alt(res, rows),
        )
        out.text(_finding(res, rows, noise) + " " + _claims_sentence(res["claims"]))
        out.table(
            f"{res['model']}: compressed variants (bytes, perplexity"
            + (", latency measured here" if res["measured"] else "")
            + ")",
            [
                Column("method", "method"),
                Column("weights_real", "stored", "bytes"),
                Column("footprint_reduction", "smaller", "ratio"),
                Column("perplexity", "perplexity", "num"),
                Column("perplexity_change", "vs fp32", "pct"),
                Column("latency_measured", "latency/token", "seconds"),
                Column("speedup_measured", "speed-up", "ratio"),
                Column("speedup_predicted", "speed-up predicted", "ratio"),
                Column("pareto_mark", "front"),
                Column("mark", "noise", "mark"),
            ],
            rows,
            folded=True,
        )
        out.table(
            "The paper's remedy claims, checked on these variants",
            [
                Column("claim", "claim"),
                Column("paper", "paper"),
                Column("here", "here"),
                Column("method", "method"),
                Column("verdict", "verdict"),
            ],
            claim_rows(res["claims"]),
        )
        out.data = {
            **{k: v for k, v in res.items() if k != "rows"},
            "rows": rows,
            "left_out": [] if quick else list(LEFT_OUT),
            "noisy": noisy,
            "noise": noise,
            "seconds": seconds,
            "units": {
                "weights_real": "bytes",
                "latency_measured": "s per token",
                "perplexity": "per byte, held out",
                "*_change": "fraction",
            },
        }
        out.notes += cache_note(res)
        if not quick:
            out.notes.append(
                f"left out to keep the report short: {', '.join(LEFT_OUT)} (no claim reads "
                f"them); `memwall compress {MODEL} --pareto` runs every variant"
            )
        return out

    @staticmethod
    def _alt(res: dict[str, Any], rows: list[dict[str, Any]]) -> str:
        front = [r["method"] for r in rows if r.get("pareto")]
        smallest = min(rows, key=lambda r: r["weights_real"])
        return (
            f"{len(rows)} variants of {res['model']} measured here; Pareto-optimal: "
            f"{', '.join(front) or 'none'}; the smallest, {smallest['method']}, stores "
            f"{ratio(smallest['footprint_reduction'])} less than fp32."
        )


SECTION = RemediesSection()
