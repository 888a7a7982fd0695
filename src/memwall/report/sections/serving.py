"""The memory wall of LLM serving (memwall.serve, through `memwall.api.serve`): one decoder on
one accelerator, requests arriving at a sweep of rates, every step priced by memwall's
realistic predictor. Where the latency curves bend, and whether the KV cache or the step time
is what caps the server, all simulated (predicted). Beside it, where one was saved, the real
engine measured on this machine against memwall.serve's simulation of the same requests
(`benchmarks/bench_serve.py`, `records.engine_check`; shown by `serving_engine`).

The rates are fractions of the server's own capacity: the throughput of the same requests all
queued at once, which no stable open-loop rate exceeds (`api/_serve_search.py` brackets its
search the same way).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from memwall.errors import MemwallError
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.figures import PALETTE, style
from memwall.report.fmt import nbytes, pct, si
from memwall.report.sections import serving_engine
from memwall.report.workloads import model_spec

PREFERRED_MODEL = "llama-3-8b"
PREFERRED_DEVICE = "h100-sxm"
PRECISION = "bf16"
REQUESTS = 2000  # enough for the stability test to see past the ramp-up at 0.9-1.0x capacity
INPUT_LEN = 1024  # vLLM benchmark_serving's random dataset (memwall serve's defaults)
OUTPUT_LEN = 128
FRACTIONS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.2)  # of the all-queued throughput
KV_FULL = 0.9  # the KV cache "saturates" when a run fills this share of its blocks
SEED = 0


def decoders(ctx: ReportContext) -> list[str]:
    """The chosen models that are decoder-only LLMs (what a serving engine runs)."""
    out = []
    for m in ctx.options.models:
        spec = model_spec(ctx, m)
        if spec.is_decoder and not spec.is_encoder_decoder:
            out.append(m)
    return out


def pick_model(ctx: ReportContext) -> str | None:
    """llama-3-8b when asked for, else the first decoder-only model (None: no decoder)."""
    ms = decoders(ctx)
    return PREFERRED_MODEL if PREFERRED_MODEL in ms else next(iter(ms), None)


def pick_device(ctx: ReportContext) -> str | None:
    """h100-sxm when chosen, else the first accelerator that is not this machine's measured
    roofline (None: none)."""
    free = [n for n, d in ctx.devices.items() if not d.measured]
    return PREFERRED_DEVICE if PREFERRED_DEVICE in free else next(iter(free), None)


def lengths(max_positions: int) -> tuple[int, int]:
    """(input, output) tokens: vLLM's 1024 + 128 where the context allows, else shrunk so one
    request fits the model's context."""
    out = max(1, min(OUTPUT_LEN, max_positions // 4))
    return max(1, min(INPUT_LEN, max_positions - out)), out


@contextmanager
def model_argument(ctx: ReportContext, name: str) -> Iterator[str]:
    """What `memwall.api.serve` takes as MODEL: the preset name (or config path) itself, or,
    for a config the caller supplied as a dict (tests' tiny models), that config written to a
    temporary config.json (the api reads models by name or path only)."""
    cfg = ctx.options.configs.get(name)
    if cfg is None:
        yield name
        return
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    with tempfile.TemporaryDirectory(prefix="memwall-serving-") as d:
        path = Path(d) / f"{stem}.json"
        path.write_text(json.dumps(cfg))
        yield str(path)


def serve_kwargs(device: str, input_len: int, output_len: int) -> dict[str, Any]:
    """The api.serve arguments every run of the sweep shares (rate aside)."""
    return {
        "device": device,
        "precision": PRECISION,
        "scheduler": "vllm",
        "requests": REQUESTS,
        "input_len": input_len,
        "output_len": output_len,
        "seed": SEED,
    }


def _row(p: dict[str, Any], fraction: float | None) -> dict[str, Any]:
    stable = bool(p["stable"])
    ttft, tpot = p.get("ttft") or {}, p.get("tpot") or {}
    return {
        "fraction": fraction,
        "rate": p["workload"]["rate"],
        "stable": stable,
        "ttft_p50": ttft.get("p50"),
        "ttft_p90": ttft.get("p90"),
        "tpot_p50": tpot.get("p50"),
        "output_tokens_per_s": p["output_tokens_per_s"],
        "requests_per_s": p["requests_per_s"],
        "kv_max": p["kv_utilization"]["max"],
        "kv_mean": p["kv_utilization"]["mean"],
        "mean_batch": p["mean_batch_size"],
        "preemptions": p["preemptions"],
        "j_per_output_token": p["energy"]["j_per_output_token"],
        "queue_growth_per_s": p.get("queue_growth_per_s"),
        "state": "stable" if stable else "unstable: queue grows, latencies withheld",
    }


def sweep(model: str, kwargs: dict[str, Any], progress: Any) -> tuple[dict, list[dict]]:
    """The all-queued run (capacity) and one run per fraction of its throughput."""
    from memwall.api import serve

    progress(f"serving: {model} capacity")
    cap = serve(model, **kwargs).payload
    bound = cap["requests_per_s"]
    rows = []
    for f in FRACTIONS:
        progress(f"serving: {model} at {f:g}x capacity")
        rows.append(_row(serve(model, rate=f * bound, **kwargs).payload, f))
    return cap, rows


def saturation(cap: dict[str, Any]) -> dict[str, Any]:
    """What caps the server when every request is queued: the KV cache (it fills, or requests
    are preempted) or the step time (blocks to spare, steps back to back)."""
    kv = cap["kv_cache"]
    per_request = cap["workload"]["mean_input_len"] + cap["workload"]["mean_output_len"]
    kv_bound = cap["kv_utilization"]["max"] >= KV_FULL or cap["preemptions"] > 0
    return {
        "limit": "kv_cache" if kv_bound else "compute",
        "kv_max": cap["kv_utilization"]["max"],
        "kv_mean": cap["kv_utilization"]["mean"],
        "kv_bytes": kv["bytes"],
        "kv_tokens": kv["tokens"],
        "sequences_that_fit": int(kv["tokens"] // per_request),
        "mean_batch": cap["mean_batch_size"],
        "max_seqs": cap["limits"]["max_seqs"],
        "busy_fraction": cap["busy_fraction"],
        "preemptions": cap["preemptions"],
    }


def _figure(rows: list[dict[str, Any]], cap: dict[str, Any], label: str) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("latency per request", "throughput"),
    )
    x = [r["rate"] for r in rows]
    lat = (
        ("ttft_p50", "TTFT p50", PALETTE[0], "solid"),
        ("ttft_p90", "TTFT p90", PALETTE[0], "dot"),
        ("tpot_p50", "TPOT p50", PALETTE[1], "solid"),
    )
    for key, name, color, dash in lat:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[r[key] for r in rows],
                name=f"{name} (predicted)",
                mode="lines+markers",
                line={"color": color, "dash": dash},
                hovertemplate=f"{name}: %{{y:.3s}}s at %{{x:.3g}} req/s<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["output_tokens_per_s"] for r in rows],
            name="output throughput (predicted)",
            mode="lines+markers",
            line={"color": PALETTE[2]},
            customdata=[[r["state"], pct(r["kv_max"])] for r in rows],
            hovertemplate=(
                "%{y:.4s} output tok/s at %{x:.3g} req/s<br>%{customdata[0]}"
                "<br>KV cache peak %{customdata[1]}<extra></extra>"
            ),
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=[0, max(x)],
            y=[cap["output_tokens_per_s"]] * 2,
            name="capacity: all requests queued at once",
            mode="lines",
            line={"color": PALETTE[3], "dash": "dash"},
            hoverinfo="skip",
        ),
        row=1,
        col=2,
    )
    bad = [r for r in rows if not r["stable"]]
    if bad:
        fig.add_trace(
            go.Scatter(
                x=[r["rate"] for r in bad],
                y=[r["output_tokens_per_s"] for r in bad],
                name="unstable (latency withheld)",
                mode="markers",
                marker={"symbol": "x", "size": 11, "color": PALETTE[1]},
                hoverinfo="skip",
            ),
            row=1,
            col=2,
        )
    style(fig, f"Serving {label} (simulated)", "", "")
    fig.update_xaxes(title_text="arrival rate (requests/s)")
    fig.update_yaxes(title_text="seconds (predicted)", type="log", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="output tokens/s (predicted)", rangemode="tozero", row=1, col=2)
    fig.update_layout(height=340, margin={"t": 75})  # room for the panel titles
    return fig


class ServingSection:
    name = "serving"
    title = "Serving"
    order = 80
    weight = 1.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        model, device = pick_model(ctx), pick_device(ctx)
        if model is None:
            raise MemwallError("none of the chosen models is a decoder-only LLM to serve")
        if device is None:
            raise MemwallError(
                "no catalog accelerator was chosen (this machine's measured roofline is not a "
                "serving GPU); add one with --devices, e.g. h100-sxm"
            )
        spec = model_spec(ctx, model)
        i_len, o_len = lengths(int(spec.max_positions))
        kwargs = serve_kwargs(device, i_len, o_len)
        with model_argument(ctx, model) as arg:
            cap, rows = sweep(arg, kwargs, ctx.progress)
        sat = saturation(cap)
        dev_name = cap["display_name"]
        label = f"{model} on {dev_name}, {PRECISION}"
        res.figure(
            _figure(rows, cap, label),
            f"{model} served on one {dev_name} ({PRECISION} weights and KV cache, vLLM V1 "
            f"scheduler and defaults), {REQUESTS:,} requests of {i_len:,} prompt and {o_len} "
            "output tokens, Poisson arrivals at fractions of the capacity (the throughput "
            "with every request queued at once). Left: time to first token (p50, p90) and time "
            "per output token (p50), seconds, log scale; right: output tokens per second. "
            "Simulated by memwall.serve, every step predicted by memwall's realistic model; "
            "nothing measured. Rates past capacity leave the queue growing: their latencies "
            "are withheld.",
            "serving",
            alt=self._alt(model, dev_name, rows, cap, sat),
        )
        res.text(self._finding(rows, cap, sat))
        res.table(
            f"Serving sweep: {model} on {dev_name} (simulated, predicted)",
            [
                Column("fraction", "x capacity", "ratio"),
                Column("rate", "rate", "rate", "req/s"),
                Column("ttft_p50", "TTFT p50", "seconds"),
                Column("ttft_p90", "TTFT p90", "seconds"),
                Column("tpot_p50", "TPOT p50", "seconds"),
                Column("output_tokens_per_s", "output", "rate", "tok/s"),
                Column("kv_max", "KV peak", "pct"),
                Column("mean_batch", "mean batch", "num"),
                Column("preemptions", "preemptions", "int"),
                Column("j_per_output_token", "energy", "si", "J/token"),
                Column("state", "state"),
            ],
            rows,
            folded=True,
        )
        checked = serving_engine.add(res)
        res.data = {
            "built": True,
            "predicted": True,
            "engine_check": checked,
            "model": model,
            "device": device,
            "display_name": dev_name,
            "precision": PRECISION,
            "scheduler": "vllm",
            "requests": REQUESTS,
            "input_len": i_len,
            "output_len": o_len,
            "seed": SEED,
            "fractions": list(FRACTIONS),
            "capacity": {
                "requests_per_s": cap["requests_per_s"],
                "output_tokens_per_s": cap["output_tokens_per_s"],
                "mean_batch": cap["mean_batch_size"],
                "kv_max": cap["kv_utilization"]["max"],
            },
            "kv_cache": cap["kv_cache"],
            "limits": cap["limits"],
            "saturation": sat,
            "rows": rows,
            "units": {
                "rate": "requests/s",
                "ttft/tpot": "s",
                "output_tokens_per_s": "token/s",
                "kv": "fraction of KV blocks",
                "j_per_output_token": "J/token",
            },
        }
        return res

    @staticmethod
    def _last_stable(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        stable = [r for r in rows if r["stable"] and r["ttft_p50"] is not None]
        return stable[-1] if stable else None

    def _alt(self, model: str, dev: str, rows: list, cap: dict, sat: dict) -> str:
        top = self._last_stable(rows)
        if top is None:
            return f"{model} on {dev}: no swept rate was stable (predicted)."
        return (
            f"{model} on {dev} (predicted): output throughput rises with the rate to "
            f"{si(cap['output_tokens_per_s'], 'tok/s')}; TTFT p50 grows to "
            f"{si(top['ttft_p50'], 's')} at {si(top['rate'], 'req/s')}, the highest stable rate "
            f"swept; the {'KV cache' if sat['limit'] == 'kv_cache' else 'step time'} caps it."
        )

    def _finding(self, rows: list, cap: dict, sat: dict) -> str:
        top, low = self._last_stable(rows), rows[0]
        head = (
            f"Queued all at once, the server delivers {si(cap['requests_per_s'], 'req/s')} "
            f"({si(cap['output_tokens_per_s'], 'tok/s')} of output, predicted)."
        )
        if top is not None:
            head += (
                f" From {si(low['rate'], 'req/s')} to {si(top['rate'], 'req/s')} TTFT p50 "
                "goes from "
                f"{si(low['ttft_p50'], 's')} to {si(top['ttft_p50'], 's')} (p90 "
                f"{si(top['ttft_p90'], 's')}) and TPOT p50 from {si(low['tpot_p50'], 's')} to "
                f"{si(top['tpot_p50'], 's')}."
            )
        if sat["limit"] == "kv_cache":
            why = (
                f" The KV cache is the wall: {nbytes(sat['kv_bytes'])} "
                f"({sat['kv_tokens']:,} tokens) holds about {sat['sequences_that_fit']:,} "
                f"requests, it peaks {pct(sat['kv_max'])} full and batches average "
                f"{sat['mean_batch']:.0f} sequences, well below the {sat['max_seqs']:,} the "
                "scheduler allows."
            )
            if sat["max_seqs"] <= sat["mean_batch"] * 1.25:
                why = (
                    f" The KV cache fills ({pct(sat['kv_max'])} at peak of "
                    f"{nbytes(sat['kv_bytes'])}) as batches reach the scheduler's "
                    f"{sat['max_seqs']:,}-sequence limit."
                )
        else:
            why = (
                f" The step time is the wall, not memory: the KV cache peaks at only "
                f"{pct(sat['kv_max'])} of {nbytes(sat['kv_bytes'])} while steps run back to "
                f"back ({pct(sat['busy_fraction'])} busy) at a mean batch of "
                f"{sat['mean_batch']:.0f} sequences."
            )
        return head + why


SECTION = ServingSection()
