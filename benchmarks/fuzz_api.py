"""Randomised sweep of the library's commands: every preset with random option combinations,
looking for what must never happen (a crash other than a MemwallError line, a NaN or infinite
number, a negative size or time, an MFU past 100%).

    .venv/bin/python benchmarks/fuzz_api.py [--command parallel] [--seconds 120] [--seed 1]

Prints each distinct finding once, with the call that produced it, then how many calls ran.
Negative values are findings except where they mean a difference (errors, headroom, the
queue's growth rate). Run on demand; a clean run prints only the counts.
"""

from __future__ import annotations

import argparse
import math
import random
import time
import warnings
from collections.abc import Iterator
from typing import Any

import memwall.api as api
from memwall.errors import MemwallError
from memwall.spec import preset_names

SIGNED = ("error", "delta", "saving", "change", "headroom", "slack", "growth")
DEVICES = ["h100-sxm", "a100-sxm-80gb", "b200", "gb200", "mi300x", "h200-sxm", "l40s",
           "rtx-4090", "apple-m3-max", "h100-sxm@power=500"]  # fmt: skip
SERVE_MODELS = ["llama-3-8b", "mistral-7b", "gpt-oss-20b", "qwen3-30b-a3b", "gemma-2-2b",
                "deepseek-v2-lite", "gemma-3-1b", "mixtral-8x7b", "gpt2",
                "llama-4-scout-17b-16e"]  # fmt: skip
OPTIONS: dict[str, tuple[tuple[str, list[Any]], ...]] = {
    "parallel": (
        ("mode", ["train", "infer"]),
        ("device", DEVICES),
        ("devices", [1, 2, 8, 16, 64]),
        ("tp", [1, 2, 4, 8]),
        ("pp", [1, 2, 4, 8]),
        ("cp", [1, 2]),
        ("ep", [1, 2, 8]),
        ("zero", [0, 1, 2, 3]),
        ("sequence_parallel", [True]),
        ("interleave", [1, 2]),
        ("checkpointing", ["none", "selective", "full"]),
        ("micro_batch", [1, 2, 4]),
        ("precision", ["bf16", "fp8", "fp16", "int8", "int4"]),
        ("tp_overlap", [True]),
        ("search", [True]),
        ("seq_len", [128, 4096, 32768]),
        ("roofline", [True]),
        ("attention", ["auto", "fa2", "fa3", "cudnn", "triton", "torch"]),
        ("node_size", [4, 8]),
        ("intra", ["ring"]),
    ),
    "analyze": (
        ("phase", ["prefill", "decode", "generate", "encode"]),
        ("batch", [1, 4, 64]),
        ("seq_len", [1, 128, 2048, 16384]),
        ("gen_len", [1, 64, 512]),
        ("precision", ["fp32", "bf16", "int8", "int4", "fp8"]),
        ("group_size", [32, 128]),
        ("quantize_head", [True]),
        ("convention", ["full", "paper"]),
        ("fused_attention", [True, False]),
        ("mla", ["absorbed", "expanded"]),
        ("device", DEVICES),
        ("launch", ["eager", "graph", "kernel"]),
        ("price_per_hour", [2.0]),
        ("accumulate", ["fp16", "fp32"]),
    ),
    "memory": (
        ("mode", ["train", "infer"]),
        ("optimizer", ["adam", "sgd", "adafactor", "lion"]),
        ("precision", ["fp32", "bf16", "int8", "int4", "fp8"]),
        ("zero", [0, 1, 2, 3]),
        ("checkpointing", ["none", "selective", "full"]),
        ("devices", [1, 8]),
        ("device", DEVICES),
        ("offload", [True]),
        ("no_master", [True]),
        ("impl", ["eager", "fused"]),
        ("unfused_attention", [True]),
        ("dropout", [0.1]),
        ("phase", ["prefill", "decode", "generate"]),
        ("batch", [1, 8]),
        ("seq_len", [128, 4096, 32768]),
        ("tradeoff", [True]),
    ),
    "serve": (
        ("tp", [1, 2, 4]),
        ("precision", ["bf16", "fp8", "int4", "16/16/8"]),
        ("scheduler", ["vllm", "prefill-first", "static"]),
        ("rate", [0.5, 5.0, 50.0]),
        ("concurrency", [1, 16]),
        ("input_len", [1, 128, 2048, "100:4000"]),
        ("output_len", [1, 64, "10:500"]),
        ("max_batch_tokens", [512, 8192]),
        ("max_seqs", [1, 64]),
        ("kv_blocks", [10, 1000]),
        ("predictor", ["roofline"]),
        ("launch", ["eager", "graph"]),
        ("search", [True]),
        ("shared_prefix", [0, 512]),
        ("prefix_caching", [True]),
        ("disagg", ["1:1", "2:1"]),
        ("spec_draft", ["gpt2"]),
        ("spec_acceptance", [0.5]),
    ),
}


def _numbers(x: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(x, float):
        yield path, x


def _findings(d: dict[str, Any], kw: dict[str, Any]) -> list[str]:
    out = [
        f"{p} = {v}" for p, v in _numbers(d)
        if not math.isfinite(v) or (v < 0 and not any(s in p for s in SIGNED))
    ]  # fmt: skip
    if (d.get("mfu") or 0) > 1 and not kw.get("roofline"):
        out.append(f"mfu = {d['mfu']:.3f}")
    return out


def _call(command: str, rng: random.Random) -> dict[str, Any]:
    models = SERVE_MODELS if command == "serve" else [n for n in preset_names() if "t5" not in n]
    kw: dict[str, Any] = {"model": rng.choice(models)}
    if command == "serve":
        kw.update(device=rng.choice(DEVICES[:7]), requests=rng.choice([20, 60]))
    for key, values in OPTIONS[command]:
        if rng.random() < 0.25:
            kw[key] = rng.choice(values)
    return kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--command", choices=sorted(OPTIONS), action="append")
    ap.add_argument("--seconds", type=float, default=60.0, help="per command")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    rng = random.Random(a.seed)
    for command in a.command or sorted(OPTIONS):
        fn, seen, calls, refused = getattr(api, command), set(), 0, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            kw = _call(command, rng)
            calls += 1
            try:
                found = _findings(fn(**kw).to_dict(), kw)
            except MemwallError:
                refused += 1
                continue
            except Exception as e:  # noqa: BLE001 (what the sweep is for)
                found = [f"{type(e).__name__}: {str(e)[:120]}"]
            for f in found:
                key = f.split(" = ")[0].split("[")[0] + kw["model"]
                if key not in seen:
                    seen.add(key)
                    print(f"{command}: {f}  <- {kw}")
        print(f"{command}: {calls} calls in {a.seconds:.0f} s, {refused} refused with one "
              f"line, {len(seen)} distinct findings")  # fmt: skip


if __name__ == "__main__":
    main()
