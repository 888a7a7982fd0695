"""The policy of `memwall.api.serve`: defaults, refusals, and the simulation's parts (model
shard, KV capacity, step model, request stream), checked before anything runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError

SLO_KEYS = ("ttft", "tpot", "e2e")
MAX_SEQS_LIMIT = 1_000_000
MAX_STEP_OVERHEAD = 10.0


@dataclass
class ServeConfig:
    spec: Any
    shard: Any
    device: Any
    precision: Any
    tp: int
    scheduler: str
    rate: float
    requests: Any
    kv: Any
    step_model: Any
    max_batch_tokens: int
    max_seqs: int
    slo: dict[str, float] | None
    predictor_info: dict[str, Any]
    workload_info: dict[str, Any]
    limits_info: dict[str, Any]
    arrivals_label: str
    notes: list[str]
    options: Any = None  # api._serve_options.Options: prefix caching, disagg, speculation

    @property
    def sim(self) -> dict[str, Any]:
        """simulate()'s keywords for the options in use."""
        return self.options.sim if self.options is not None else {}

    @property
    def instances(self) -> int:
        return self.options.instances if self.options is not None else 1


def _int(flag: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise MemwallError(f"{flag} must be an integer between {lo:,} and {hi:,}, got {v!r}")
    return v


def _positive(flag: str, v: Any, hi: float = math.inf, zero: bool = False) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise MemwallError(f"{flag} must be a number, got {v!r}") from None
    if math.isnan(x) or x < 0 or (x == 0 and not zero) or x > hi:
        lo = ">= 0" if zero else "> 0"
        top = f" and at most {hi:g}" if math.isfinite(hi) else ""
        raise MemwallError(f"{flag} must be a finite number {lo}{top}, got {v!r}")
    return x


def parse_slo(slo: str | dict[str, float] | None) -> dict[str, float] | None:
    """'ttft=0.5,tpot=0.05' (seconds) -> {'ttft': 0.5, 'tpot': 0.05}."""
    if slo is None:
        return None
    if isinstance(slo, dict):
        items = list(slo.items())
    else:
        items = []
        for part in str(slo).split(","):
            k, sep, v = part.partition("=")
            if not sep:
                raise MemwallError(
                    f"--slo must be KEY=SECONDS pairs like ttft=0.5,tpot=0.05, got {slo!r}"
                )
            items.append((k.strip().lower(), v.strip()))
    out: dict[str, float] = {}
    for k, v in items:
        if k not in SLO_KEYS:
            raise MemwallError(f"--slo key {k!r} unknown; accepted: {', '.join(SLO_KEYS)}")
        out[k] = _positive(f"--slo {k}", v, 1e6)
    if not out:
        raise MemwallError("--slo is empty; give e.g. ttft=0.5,tpot=0.05 (seconds)")
    return out


def _lengths(requests, input_len, output_len, lengths):
    from memwall.api._serve import INPUT_LEN_DEFAULT, OUTPUT_LEN_DEFAULT, REQUESTS_DEFAULT
    from memwall.serve.workload import MAX_REQUESTS, parse_lengths, read_lengths_csv

    if requests is not None:
        _int("--requests", requests, 1, MAX_REQUESTS)
    if lengths is not None:
        if input_len is not None or output_len is not None:
            raise MemwallError("--input-len and --output-len do not apply with --lengths (the "
                               "CSV gives each request's lengths)")  # fmt: skip
        ins, outs = read_lengths_csv(lengths)
        n = len(ins) if requests is None else requests
        if n > len(ins):
            raise MemwallError(f"--requests {n} but --lengths {lengths} has {len(ins)} rows")
        return n, ins[:n], outs[:n], f"from {Path(lengths).name}", f"from {Path(lengths).name}"
    il = parse_lengths("--input-len", INPUT_LEN_DEFAULT if input_len is None else input_len)
    ol = parse_lengths("--output-len", OUTPUT_LEN_DEFAULT if output_len is None else output_len)
    n = REQUESTS_DEFAULT if requests is None else requests
    return n, il, ol, il.label, ol.label


def prepare(
    model, device, tp, precision, scheduler, rate, burstiness, concurrency, requests,
    input_len, output_len, lengths, seed, max_batch_tokens, max_seqs, block_size, kv_blocks,
    gpu_memory_utilization, slo, predictor, launch, step_overhead, shared_prefix=None,
    prefix_caching=False, disagg=None, spec_draft=None, spec_k=None, spec_acceptance=None,
) -> ServeConfig:  # fmt: skip
    """Check every input (one line each), then build the parts of the simulation."""
    from memwall.api import _serve_options as options
    from memwall.serve.workload import check_rate, generate

    r = math.inf if rate is None else check_rate(rate)
    b = _positive("--burstiness", burstiness, 1e3)
    conc = 0 if concurrency is None else _int("--concurrency", concurrency, 1, 10_000_000)
    _int("--seed", seed, 0, 2**63 - 1)
    slo_d = parse_slo(slo)
    overhead = _positive("--step-overhead", step_overhead, MAX_STEP_OVERHEAD, zero=True)
    n, il, ol, il_label, ol_label = _lengths(requests, input_len, output_len, lengths)
    reqs = generate(n, r, b, il, ol, seed, conc)
    from memwall.hardware import get_device
    from memwall.precision import serving_precision
    from memwall.spec import load_model_config

    spec, _ = load_model_config(model)
    if not spec.is_decoder or spec.is_encoder_decoder:
        raise MemwallError(
            f"{spec.name} is not a decoder-only model: memwall serve simulates decoder LLM "
            "servers (e.g. llama-3-8b)"
        )
    opts = options.check(
        shared_prefix, prefix_caching, disagg, spec_draft, spec_k, spec_acceptance, scheduler,
        concurrency, int(reqs.input_len.min()), spec,
    )  # fmt: skip
    dev = get_device(device)
    prec = serving_precision(precision)
    if prec.gemm_dtype and not dev.has_peak(prec.gemm_dtype):
        dev.peak(prec.gemm_dtype)  # its one-line error naming the dtypes the device has
    longest = int((reqs.input_len + reqs.output_len).max())
    ctx = int(spec.max_positions)
    if longest > ctx:
        raise MemwallError(
            f"a request of {longest:,} tokens (input + output) exceeds {spec.name}'s context "
            f"of {ctx:,} tokens; shorten --input-len/--output-len"
        )
    from memwall.serve.setup import tp_comm, tp_shard, vllm_batch_defaults

    tp = tp if tp is not None else 1
    shard = tp_shard(spec, tp)
    mbt_default, seqs_default, limits_src = vllm_batch_defaults(dev)
    if scheduler == "prefill-first":
        mbt_default = max(2048, ctx)
        limits_src = "vLLM V0 without chunked prefill: max_num_batched_tokens = " \
            f"max(2048, max_model_len); max_num_seqs: {limits_src}"  # fmt: skip
    mbt = mbt_default if max_batch_tokens is None else _int(
        "--max-batch-tokens", max_batch_tokens, 1, 10_000_000
    )  # fmt: skip
    seqs = seqs_default if max_seqs is None else _int("--max-seqs", max_seqs, 1, MAX_SEQS_LIMIT)
    if scheduler == "vllm" and mbt < seqs:
        if max_batch_tokens is None or max_seqs is not None:
            raise MemwallError(
                f"--max-batch-tokens ({mbt}) must be >= --max-seqs ({seqs}), as vLLM requires"
            )
        seqs = mbt
    if scheduler == "prefill-first" and mbt < longest - 1:
        raise MemwallError(
            f"--max-batch-tokens {mbt} is below the longest prompt a prefill-first step must "
            f"take whole ({longest - 1:,} tokens, with a preempted request's output); raise it "
            "or use --scheduler vllm (chunked prefill)"
        )
    from memwall.serve.kvcache import blocks_for, kv_capacity

    if kv_blocks is None and not dev.mem_capacity:
        raise MemwallError(f"{dev.name} has no memory capacity on record: give --kv-blocks")
    util = _positive("--gpu-memory-utilization", gpu_memory_utilization, 1.0)
    draft = options.draft_shard(opts, tp)
    kv = kv_capacity(shard, dev, prec, block_size, mbt, seqs, util, kv_blocks, draft)
    if scheduler == "static":
        need = blocks_for(int(reqs.input_len.max() + reqs.output_len.max()) - 1, block_size)
    else:
        need = blocks_for(longest - 1, block_size)
    if need > kv.blocks:
        raise MemwallError(
            f"the KV cache ({kv.blocks:,} blocks of {block_size} tokens) cannot hold one "
            f"request of {longest:,} tokens ({need:,} blocks); give more --kv-blocks, use --tp "
            "or shorter requests"
        )
    pred, launch_used, description = _predictor(dev, predictor, launch)
    comm, comm_note = tp_comm(spec, device, tp, prec)
    from memwall.serve.costmodel import build_step_model, check

    t_max = mbt if scheduler == "vllm" else (
        seqs * int(reqs.input_len.max()) if scheduler == "static" else mbt
    )  # fmt: skip
    t_max += options.t_max_extra(opts, seqs)
    sm = build_step_model(shard, dev, prec, pred, launch_used, t_max, longest, seqs, comm, overhead)
    mid = max(1, min(int(reqs.input_len.mean()), ctx - 2))
    shapes = [("decode", 1, mid), ("decode", min(seqs, 64), mid), ("prefill", 1, mid)]
    checked = check(sm, shard, dev, prec, shapes, comm)
    options.build(
        opts, dict(shard=shard, device=dev, device_name=device, precision=prec, tp=tp,
                   predictor=pred, launch=launch_used, t_max=t_max, longest=longest, seqs=seqs),
        sm, kv, draft, float(reqs.input_len.mean()),
    )  # fmt: skip
    _check_slo_possible(slo_d, sm, reqs, opts, kv.block_size)
    notes = _notes(spec, shard, tp, comm_note, overhead, opts)
    arrivals = (
        ("all at t = 0" if math.isinf(r) else f"{r:g} req/s" + (
            "" if b == 1 else f" (gamma, burstiness {b:g})"))
        + (f", at most {conc} in flight" if conc else "")
    )  # fmt: skip
    return ServeConfig(
        spec=spec, shard=shard, device=dev, precision=prec, tp=tp, scheduler=scheduler,
        rate=r, requests=reqs, kv=kv, step_model=sm, max_batch_tokens=mbt, max_seqs=seqs,
        slo=slo_d,
        predictor_info={
            "model": pred, "launch": launch_used, "description": description,
            "step_overhead": overhead, "tp_communication": comm_note, **sm.about,
            "check": checked, "max_error_vs_full": max(c["error"] for c in checked),
        },
        workload_info={
            "requests": n, "rate": None if math.isinf(r) else r, "burstiness": b,
            "concurrency": conc or None, "input_len": il_label, "output_len": ol_label,
            "seed": seed, "mean_input_len": float(reqs.input_len.mean()),
            "mean_output_len": float(reqs.output_len.mean()),
            "shared_prefix": opts.shared_prefix,
        },
        limits_info={"max_batch_tokens": mbt, "max_seqs": seqs, "source": limits_src},
        arrivals_label=arrivals, notes=notes, options=opts,
    )  # fmt: skip


def _predictor(dev: Any, predictor: str | None, launch: str | None) -> tuple[str, Any, str]:
    from memwall.api._common import choice

    if predictor is not None:
        predictor = choice("--predictor", predictor, ("efficiency", "roofline"))
    if launch is not None:
        launch = choice("--launch", launch, ("graph", "eager"))
    if dev.measured and predictor == "efficiency":
        raise MemwallError(
            "--predictor efficiency is for catalog and what-if devices; a measured device is "
            "priced on its own measured roofline (--predictor roofline)"
        )
    pred = predictor or ("roofline" if dev.measured else "efficiency")
    if pred == "roofline":
        if launch is not None:
            raise MemwallError("--launch applies to --predictor efficiency")
        return pred, None, f"the roofline of {dev.display_name} ({dev.roof_origin} roofs)"
    lu = launch or "graph"
    return (
        pred,
        lu,
        (f"memwall's efficiency model (spec-sheet roofs x published efficiencies, launch={lu})"),
    )


def _check_slo_possible(
    slo: dict[str, float] | None, sm: Any, reqs: Any, opts: Any, bs: int
) -> None:
    """Refuse a target no request could meet even alone on an idle server."""
    if not slo:
        return
    from memwall.api._serve_options import floors as option_floors

    i_min, o_min = int(reqs.input_len.min()), int(reqs.output_len.min())
    floors = option_floors(opts, sm, i_min, o_min, bs)
    what = {
        "ttft": f"the prefill of the shortest prompt ({i_min} tokens) alone",
        "tpot": "one decode step of one request",
        "e2e": "the shortest request alone",
    }
    for k, v in slo.items():
        if v < floors[k]:
            raise MemwallError(
                f"--slo {k}={v:g} s cannot be met: {what[k]} takes {floors[k]:.3g} s on this "
                "server; raise the target"
            )


def _notes(spec: Any, shard: Any, tp: int, comm_note: str, overhead: float, opts: Any) -> list[str]:
    notes = [
        "a step: prefill chunks and one token per decoding sequence; linear layers over the "
        "step's tokens, attention per sequence at its own context (one fused kernel per layer), "
        "LM head at one position per sequence",
        "preemption by recompute (vLLM's default); prefix caching "
        + ("on (below)" if opts.prefix_caching else "off (every prompt is prefilled in full)"),
    ]
    if tp > 1:
        notes.append(f"tensor parallel {tp}: each device holds 1/{tp} of the heads and FFN; "
                     f"{comm_note}")  # fmt: skip
    if spec.is_mla:
        notes.append("multi-head latent attention priced in its absorbed form throughout")
    if shard.n_window_layers:
        notes.append("sliding-window layers: attention capped at the window; KV blocks kept "
                     "for the whole context (capacity understated)")  # fmt: skip
    if overhead == 0:
        notes.append("host work per step (scheduling, sampling, detokenising) not modelled: "
                     "set --step-overhead")  # fmt: skip
    return notes + opts.notes
