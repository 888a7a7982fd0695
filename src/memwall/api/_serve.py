"""`memwall.api.serve`: a discrete-event simulation of an LLM server with continuous batching
(`memwall.serve`), each step priced by memwall's predictor. `memwall serve` parses its flags
and calls this; every default and refusal is decided here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memwall.api._common import choice, config_model, plain, si
from memwall.api._result import Result
from memwall.errors import MemwallError

SCHEDULERS = ("vllm", "prefill-first", "static")
REQUESTS_DEFAULT = 1000  # vLLM benchmark_serving --num-prompts
INPUT_LEN_DEFAULT = "1024"  # vLLM benchmark_serving random dataset --random-input-len
OUTPUT_LEN_DEFAULT = "128"  # --random-output-len
REQUEST_COLUMNS = [
    "request", "arrival", "sent", "input_len", "output_len", "ttft", "tpot", "e2e",
    "preemptions",
]  # fmt: skip
UNITS = {
    "ttft/tpot/itl/e2e/duration/time": "s",
    "requests_per_s": "request/s",
    "*_tokens_per_s": "token/s",
    "kv_utilization": "fraction of KV blocks",
    "queue_growth_per_s": "request/s",
}


def serve(
    model: str,
    device: str,
    tp: int = 1,
    precision: str = "bf16",
    scheduler: str = "vllm",
    rate: float | None = None,
    burstiness: float = 1.0,
    concurrency: int | None = None,
    requests: int | None = None,
    input_len: str | int | None = None,
    output_len: str | int | None = None,
    lengths: str | Path | None = None,
    seed: int = 0,
    max_batch_tokens: int | None = None,
    max_seqs: int | None = None,
    block_size: int = 16,
    kv_blocks: int | None = None,
    gpu_memory_utilization: float = 0.9,
    slo: str | dict[str, float] | None = None,
    predictor: str | None = None,
    launch: str | None = None,
    step_overhead: float = 0.0,
    plot: str | Path | None = None,
    search: bool = False,
    target_rate: float | None = None,
    attainment: float = 0.9,
    price_per_hour: float | None = None,
    shared_prefix: int | None = None,
    prefix_caching: bool = False,
    disagg: str | None = None,
    spec_draft: str | None = None,
    spec_k: int | None = None,
    spec_acceptance: float | None = None,
) -> Result:
    """Simulate serving `model` on `device` (x `tp` with tensor parallelism): requests arrive,
    a scheduler batches them step by step, a paged KV cache holds them, and each step's time
    comes from memwall's predictor. Reports vLLM benchmark_serving's metrics.

    Args:
        model: a decoder preset or config.json (e.g. llama-3-8b).
        device: a catalog device (h100-sxm), a what-if NAME@KEY=F, or a measured one.
        tp: tensor-parallel degree (the model's heads and FFN split over tp devices).
        precision: bf16 (default), fp16, fp8, int8, int4 or W/A/KV bits like 16/16/8.
        scheduler: vllm (V1: token budget, chunked prefill, decodes first; default),
            prefill-first (V0 without chunked prefill) or static (padded batches run to end).
        rate: requests per second (gamma arrivals; inf: every request at t = 0, vLLM's
            default). Default inf, or with `concurrency` a pure closed loop.
        burstiness: gamma shape of the gaps (1: Poisson; lower: burstier).
        concurrency: at most this many requests in flight (a closed loop).
        requests: how many (default 1000, or the rows of `lengths`).
        input_len, output_len: tokens, fixed (128) or a uniform range (64:256). Defaults
            1024 and 128 (vLLM's random dataset).
        lengths: a CSV with columns input_len and output_len, one row per request.
        seed: seed of the lengths and arrivals.
        max_batch_tokens, max_seqs: vLLM's max_num_batched_tokens and max_num_seqs. Default:
            vLLM's for `vllm serve` on this device (8192 and 1024 on GPUs of 70 GiB or more
            that are not A100s, else 2048 and 256); prefill-first: max(2048, the model's
            context), as vLLM V0 without chunked prefill.
        block_size: KV block size in tokens (vLLM's 16).
        kv_blocks: KV blocks per device (default: from the device's memory, as vLLM sizes it).
        gpu_memory_utilization: share of device memory the server may use (vLLM's 0.9).
        slo: targets in seconds, e.g. "ttft=0.5,tpot=0.05" (keys ttft, tpot, e2e): goodput.
        predictor: efficiency (spec-sheet roofs x published efficiencies; default for catalog
            and what-if devices) or roofline (the plain roofline; measured devices' own).
        launch: with efficiency: graph (CUDA graphs, default) or eager.
        step_overhead: seconds of host work per step (scheduling, sampling) added to each
            step; default 0 (not modelled).
        plot: write the timeline (batch size, KV use, queue) to this .png/.svg/.pdf.
        search: find the highest rate that meets `slo` (at least `attainment` of requests
            within every target, the server stable) and simulate there; with `target_rate`,
            over tensor-parallel degrees 1, 2, 4, 8, the fewest devices (copies x tp) that
            serve that rate (`_serve_search`). `payload["search"]` holds every degree's answer.
        price_per_hour: US dollars per device-hour: adds the predicted cost per million
            output tokens (devices paid for the whole run) to the energy block
            (`j_per_output_token`, joules per request, average power) every run carries.
        shared_prefix: tokens every prompt begins with (a system prompt; default 0, at most
            the shortest prompt). Prompts are otherwise unique.
        prefix_caching: vLLM's automatic prefix caching (off by default): the shared prefix's
            full KV blocks, once computed, are reused by later requests (not prefilled again,
            their memory shared); unreferenced cached blocks evicted least recently used first.
            `payload["prefix_caching"]` gives the hit rate.
        disagg: "P:D": prefill/decode disaggregation over P prefill and D decode instances of
            `tp` devices each (vllm scheduler, open-loop arrivals). TTFT ends at the prefill
            instance's first token; each prompt's KV cache then moves to a decode instance in
            alpha + bytes / bandwidth (NCCL point-to-point at bus bandwidth, NVLink inside a
            node, the network across nodes); `payload["disaggregation"]`.
        spec_draft: speculative decoding with this draft model (sharing the target's
            vocabulary; priced by memwall at the target's tp, its weights and KV taking KV-cache
            memory), or "ngram" (prompt-lookup proposals, no device time).
        spec_k: tokens drafted per step (default 3).
        spec_acceptance: probability a drafted token is accepted, in [0, 1] (required with
            spec_draft). Each verify step keeps (1 - A^(k+1)) / (1 - A) tokens on average and
            is priced at its batch x (k + 1) tokens; `payload["speculative_decoding"]` gives
            the decode speed-up at several batch sizes.

    Returns a `Result`: `.to_dict()` is `memwall serve ... --format json`; `.to_frame()` one
    row per request; `.extra["timeline"]` every step. Bad input raises `MemwallError`.
    """
    from memwall.api._energy import needs_device, serve_energy
    from memwall.api._serve_setup import prepare

    model = config_model(model, "serve")
    needs_device(price_per_hour, device)
    scheduler = choice("--scheduler", scheduler, SCHEDULERS)
    if plot is not None:
        from memwall.io import check_output_path

        check_output_path(plot, ("png", "svg", "pdf"), "--plot file")
    base = dict(
        model=model, device=device, tp=tp, precision=precision, scheduler=scheduler, rate=rate,
        burstiness=burstiness, concurrency=concurrency, requests=requests, input_len=input_len,
        output_len=output_len, lengths=lengths, seed=seed, max_batch_tokens=max_batch_tokens,
        max_seqs=max_seqs, block_size=block_size, kv_blocks=kv_blocks,
        gpu_memory_utilization=gpu_memory_utilization, slo=slo, predictor=predictor,
        launch=launch, step_overhead=step_overhead, shared_prefix=shared_prefix,
        prefix_caching=prefix_caching, disagg=disagg, spec_draft=spec_draft, spec_k=spec_k,
        spec_acceptance=spec_acceptance,
    )  # fmt: skip
    found = None
    if search:
        found = _search(base, target_rate, attainment)
        base.update(tp=found["best"]["tp"], rate=found["best"]["max_rate"])
    elif target_rate is not None:
        raise MemwallError("--target-rate is a --search target: add --search")
    cfg = prepare(**base)
    from memwall.serve import simulate
    from memwall.serve.metrics import metrics

    trace = simulate(
        cfg.requests, cfg.step_model, scheduler, cfg.max_batch_tokens, cfg.max_seqs,
        cfg.kv.block_size, cfg.kv.blocks, **cfg.sim,
    )  # fmt: skip
    m = metrics(trace, cfg.rate, cfg.slo)
    req = m.pop("_requests")
    payload = _payload(cfg, m, trace)
    payload["energy"] = serve_energy(cfg, trace, m, req, price_per_hour)
    # the headline energy number beside the latency metrics, as issue 26 names it (the
    # energy block holds its range, the shares and the cost)
    payload["j_per_output_token"] = payload["energy"]["j_per_output_token"]
    if found is not None:
        payload["search"] = found
    rows = [
        {"request": i, **{k: plain(float(req[k][i])) for k in REQUEST_COLUMNS[1:]}}
        for i in range(len(req["e2e"]))
    ]
    for r in rows:
        r["input_len"], r["output_len"] = int(r["input_len"]), int(r["output_len"])
        r["preemptions"] = int(r["preemptions"])
    plotter = _plotter(trace, cfg)
    if plot is not None:
        plotter(Path(plot))
        payload["plot"] = str(plot)
    title = (
        f"{cfg.spec.name} on {cfg.device.display_name}"
        + (f" x{cfg.tp} (tp)" if cfg.tp > 1 else "")
        + (" | disagg {}:{}".format(*cfg.options.disagg) if cfg.instances > 1 else "")
        + f" | {payload['precision']} | scheduler={scheduler} | {cfg.arrivals_label}"
    )
    return Result(
        command="serve",
        payload=plain(payload),
        rows=rows,
        columns=REQUEST_COLUMNS,
        title=title,
        notes=_notes(payload),
        extra={
            "timeline": trace.arrays(),
            "step_model": cfg.step_model,
            "trace": trace,
            "sim": cfg.sim,
        },  # fmt: skip
        plotter=plotter,
    )


def _search(base: dict[str, Any], target_rate: float | None, attainment: float) -> dict:
    """`_serve_search.search` over the given tp, or over 1, 2, 4, 8 for a target rate."""
    from memwall.api._serve_search import TP_CANDIDATES, search

    if base["rate"] is not None or base["concurrency"] is not None:
        raise MemwallError("--search finds the rate itself: drop --rate and --concurrency")
    if base["scheduler"] == "static":
        raise MemwallError("--search needs a continuous scheduler (vllm or prefill-first)")
    tps = TP_CANDIDATES if target_rate is not None else (base["tp"],)
    found = search(base, target_rate, attainment, tps)
    if found["best"] is None:
        raise MemwallError(
            f"no request rate meets --slo {base['slo']} for {attainment:.0%} of requests on "
            "this server, even a trickle: relax the targets or use a faster device"
        )
    return found


def _payload(cfg: Any, m: dict[str, Any], trace: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "model": cfg.spec.name,
        "device": cfg.device.name,
        "display_name": cfg.device.display_name,
        "tp": cfg.tp,
        "precision": cfg.precision.label,
        "scheduler": cfg.scheduler,
        "predictor": cfg.predictor_info,
        "workload": cfg.workload_info,
        "limits": cfg.limits_info,
        "kv_cache": cfg.kv.to_dict(),
        "prefix_caching": False,
        "disaggregation": None,
        "speculative_decoding": None,
    }
    opts = cfg.options.info if cfg.options is not None else {}
    p.update(opts)
    if isinstance(p["prefix_caching"], dict):  # no shared full block: nothing was looked up
        none = {"queried_tokens": int(cfg.requests.input_len.sum()), "hit_tokens": 0,
                "hit_rate": 0.0}  # fmt: skip
        p["prefix_caching"] = {**p["prefix_caching"], **trace.extra.get("prefix", none)}
    if "disagg" in trace.extra and p["disaggregation"]:
        p["disaggregation"] = {**p["disaggregation"], **trace.extra["disagg"]}
    stable = m.pop("stable")
    p["stable"] = stable
    p.update(m)
    if not stable:
        g = m["queue_growth_per_s"]
        p["message"] = (
            f"unstable: {cfg.rate:g} requests/s is above what this server sustains; requests "
            f"in the server grow by {g:.3g}/s (it serves about {cfg.rate - g:.3g}/s), so "
            "latency percentiles would only measure the run's length and are withheld"
        )
        for k in ("ttft", "tpot", "itl", "e2e"):
            p[k] = None
        if p.get("goodput"):
            p["goodput"] = {**p["goodput"], "fraction": None, "requests_per_s": None}
    p["notes"] = cfg.notes
    p["units"] = dict(UNITS)
    return p


def _notes(p: dict[str, Any]) -> list[str]:
    lines = []
    s = p.get("search")
    if s:
        att = f"{100 * s['attainment']:.0f} %"
        for r in s["rows"]:
            rate = "none" if r["max_rate"] is None else f"{r['max_rate']:.3g} req/s"
            need = f", {r['copies']} copies = {r['devices']} devices" if "devices" in r else ""
            lines.append(f"search: tp {r['tp']}: highest rate within the SLO for {att} of "
                         f"requests {rate}{need}")  # fmt: skip
        for tp, why in s["refused"].items():
            lines.append(f"search: tp {tp} refused: {why}")
        b = s["best"]
        if s["target_rate"] is not None:
            what = f"fewest devices for {s['target_rate']:g} req/s: {b['devices']} (tp {b['tp']})"
        else:
            what = f"highest rate {b['max_rate']:.3g} req/s"
        at = f"{b['max_rate']:.3g} req/s, tp {b['tp']}"
        lines.append(f"search: {what}; the run below is at {at}")
    if not p["stable"]:
        lines.append(p["message"])
    lines.append(
        f"{p['completed']} requests in {si(p['duration'], 's')}: {p['requests_per_s']:.3g} "
        f"req/s, {p['output_tokens_per_s']:.4g} output tok/s; mean batch "
        f"{p['mean_batch_size']:.3g}, busy {100 * p['busy_fraction']:.0f} %"
    )
    kv = p["kv_cache"]
    lines.append(
        f"KV cache: {kv['blocks']:,} blocks of {kv['block_size']} tokens ({kv['source']}); "
        f"use mean {100 * p['kv_utilization']['mean']:.1f} %, max "
        f"{100 * p['kv_utilization']['max']:.1f} %; preemptions {p['preemptions']}"
    )
    g = p.get("goodput")
    if g and g.get("fraction") is not None:
        slo = ", ".join(f"{k} <= {si(v, 's')}" for k, v in g["slo"].items())
        lines.append(
            f"goodput ({slo}): {g['requests_per_s']:.3g} req/s, {100 * g['fraction']:.1f} % "
            "of requests"
        )
    pr = p["predictor"]
    lines.append(
        f"steps priced by {pr['description']}; closed-form step model within "
        f"{100 * pr['max_error_vs_full']:.2g} % of the full predictor on {len(pr['check'])} "
        "shapes"
    )
    pc = p["prefix_caching"]
    if pc:
        lines.append(f"prefix cache: {100 * pc['hit_rate']:.1f} % of prompt tokens found "
                     f"cached ({pc['hit_tokens']:,} of {pc['queried_tokens']:,})")  # fmt: skip
    dg = p["disaggregation"]
    if dg and dg.get("transfer_s"):
        lines.append(
            f"disaggregated: KV transfer mean {si(dg['transfer_s']['mean'], 's')}; busy "
            f"prefill {si(dg['prefill_busy_s'], 's')}, decode {si(dg['decode_busy_s'], 's')}; "
            f"mean batch prefill {dg['prefill_mean_batch']:.3g}, decode "
            f"{dg['decode_mean_batch']:.3g}"
        )
    lines.append(p["energy"]["caption"])
    lines += [f"note: {n}" for n in p["notes"]]
    return lines


def _plotter(trace: Any, cfg: Any):
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        from memwall.plots.save import save_figure

        tl = trace.arrays()
        fig = Figure(figsize=(9, 6.5))
        axes = fig.subplots(3, 1, sharex=True)
        series = (
            (tl["batch"], "sequences per step"),
            (tl["kv_used"] / trace.kv_blocks, "share of KV blocks used"),
            (tl["waiting"], "requests waiting"),
        )
        for ax, (y, label) in zip(axes, series, strict=True):
            ax.step(tl["t_start"], y, where="post", lw=0.8)
            ax.set_ylabel(label)
        axes[-1].set_xlabel("time (s)")
        axes[0].set_title(f"{cfg.spec.name}, {cfg.device.display_name}: {cfg.arrivals_label}")
        fig.tight_layout()
        save_figure(fig, path)

    return draw
