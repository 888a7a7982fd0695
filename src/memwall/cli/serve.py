"""`memwall serve`: simulate an LLM server (continuous batching, KV blocks, preemption, SLOs).

Parses the flags, calls `memwall.api.serve` (all policy: defaults, refusals, the predictor)
and renders its Result: a table of the latency percentiles, JSON (the summary), or CSV (one
row per request)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from memwall.cli._common import (
    PRICE_HELP,
    ConfigModelArg,
    FormatOpt,
    app,
    emit,
    rich_table,
    si,
    typed_options,
)


class Scheduler(str, Enum):
    vllm = "vllm"
    prefill_first = "prefill-first"
    static = "static"


class Predictor(str, Enum):
    efficiency = "efficiency"
    roofline = "roofline"


class Launch(str, Enum):
    graph = "graph"
    eager = "eager"


def _opt(help: str, *names: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help)


@app.command("serve")
def serve(
    model: ConfigModelArg,
    device: Annotated[str, _opt("Device: a catalog name (h100-sxm), NAME@KEY=F or measured.")],
    tp: Annotated[int, _opt("Tensor-parallel degree.")] = 1,
    precision: Annotated[str, _opt("bf16, fp16, fp8, int8, int4 or W/A/KV bits.")] = "bf16",
    scheduler: Annotated[
        Scheduler,
        _opt("vllm (V1: token budget, chunked prefill), prefill-first (V0) or static."),
    ] = Scheduler.vllm,
    rate: Annotated[
        float | None, _opt("Requests per second (inf: all at t = 0, the default).")
    ] = None,
    burstiness: Annotated[float, _opt("Gamma shape of arrival gaps (1: Poisson).")] = 1.0,
    concurrency: Annotated[int | None, _opt("At most N requests in flight (closed loop).")] = None,
    requests: Annotated[int | None, _opt("Requests to simulate (default 1000).")] = None,
    input_len: Annotated[
        str | None, _opt("Prompt tokens: 1024 (default) or a range LOW:HIGH.", "--input-len")
    ] = None,
    output_len: Annotated[
        str | None, _opt("Output tokens: 128 (default) or a range LOW:HIGH.", "--output-len")
    ] = None,
    lengths: Annotated[
        Path | None, _opt("CSV of input_len,output_len, one row per request.")
    ] = None,
    seed: Annotated[int, _opt("Seed of lengths and arrivals.")] = 0,
    max_batch_tokens: Annotated[
        int | None, _opt("Tokens per step (vLLM max_num_batched_tokens; default vLLM's).")
    ] = None,
    max_seqs: Annotated[
        int | None, _opt("Sequences per step (vLLM max_num_seqs; default vLLM's).")
    ] = None,
    block_size: Annotated[int, _opt("KV block size in tokens.")] = 16,
    kv_blocks: Annotated[
        int | None, _opt("KV blocks per device (default: from the device memory).")
    ] = None,
    gpu_memory_utilization: Annotated[float, _opt("Share of device memory used.")] = 0.9,
    slo: Annotated[
        str | None, _opt("Targets in seconds for goodput, e.g. ttft=0.5,tpot=0.05.")
    ] = None,
    predictor: Annotated[
        Predictor | None,
        _opt("efficiency (default for catalog devices) or roofline (plain; measured devices)."),
    ] = None,
    launch: Annotated[Launch | None, _opt("With efficiency: graph (default) or eager.")] = None,
    step_overhead: Annotated[float, _opt("Host seconds added to every step.")] = 0.0,
    plot: Annotated[Path | None, _opt("Write the timeline (.png, .svg, .pdf).")] = None,
    search: Annotated[
        bool, _opt("Find the highest rate (requests/s) within --slo, and run there.")
    ] = False,
    target_rate: Annotated[
        float | None,
        _opt("With --search: requests/s to serve; finds the fewest devices (copies x tp)."),
    ] = None,
    attainment: Annotated[
        float, _opt("With --search: share of requests that must meet every SLO target.")
    ] = 0.9,
    price_per_hour: Annotated[
        float | None, typer.Option("--price-per-hour", metavar="USD", help=PRICE_HELP)
    ] = None,
    shared_prefix: Annotated[
        int | None,
        typer.Option(
            "--shared-prefix",
            metavar="TOKENS",
            help="Tokens every prompt begins with (a system prompt; default 0).",
        ),
    ] = None,  # fmt: skip
    prefix_caching: Annotated[
        bool,
        _opt(
            "vLLM's automatic prefix caching: cached full KV blocks of the shared prefix are "
            "reused, not prefilled again.",
            "--prefix-caching",
        ),
    ] = False,  # fmt: skip
    disagg: Annotated[
        str | None,
        typer.Option(
            "--disagg",
            metavar="P:D",
            help="Prefill/decode disaggregation: P prefill and D decode instances of --tp "
            "devices each; KV moved over the link (seconds = alpha + bytes / bandwidth).",
        ),
    ] = None,  # fmt: skip
    spec_draft: Annotated[
        str | None,
        typer.Option(
            "--spec-draft",
            metavar="MODEL",
            help="Speculative decoding with this draft model (same vocabulary), or ngram "
            "(prompt lookup, no device time).",
        ),
    ] = None,  # fmt: skip
    spec_k: Annotated[
        int | None,
        typer.Option("--spec-k", metavar="TOKENS", help="Drafted tokens per step (default 3)."),
    ] = None,
    spec_acceptance: Annotated[
        float | None,
        typer.Option(
            "--spec-acceptance",
            metavar="A",
            help="Probability (0-1) a drafted token is accepted; required with --spec-draft.",
        ),
    ] = None,  # fmt: skip
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Simulate serving a model: TTFT, TPOT, ITL, E2E, throughput, goodput, KV use."""
    from memwall.api import serve as run

    typed = typed_options()
    result = run(
        model,
        device=device,
        tp=tp,
        precision=precision,
        scheduler=scheduler.value,
        rate=rate,
        burstiness=burstiness,
        concurrency=concurrency,
        requests=requests,
        input_len=input_len,
        output_len=output_len,
        lengths=lengths,
        seed=seed,
        max_batch_tokens=max_batch_tokens,
        max_seqs=max_seqs,
        block_size=block_size,
        kv_blocks=kv_blocks,
        gpu_memory_utilization=gpu_memory_utilization,
        slo=slo,
        search=search,
        target_rate=target_rate,
        attainment=attainment,
        predictor=predictor.value if predictor is not None else None,
        launch=launch.value if "--launch" in typed and launch is not None else None,
        step_overhead=step_overhead,
        plot=plot,
        price_per_hour=price_per_hour,
        shared_prefix=shared_prefix,
        prefix_caching=prefix_caching,
        disagg=disagg,
        spec_draft=spec_draft,
        spec_k=spec_k,
        spec_acceptance=spec_acceptance,
    )
    p = result.payload

    def table():
        rows = [{"metric": k.upper(), **(p[k] or {})} for k in ("ttft", "tpot", "itl", "e2e")]
        cols = [("metric", "metric", None)] + [
            (s, s, lambda v: si(v, "s")) for s in ("mean", "p50", "p90", "p99")
        ]
        return [rich_table(result.title, rows, cols, "\n".join(result.notes))]

    emit(fmt, p, result.rows, table, result.columns)
