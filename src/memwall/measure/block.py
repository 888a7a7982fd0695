"""The block term of a calibration: seconds per layer of the real model at its own width,
from the model cut to 1 and 3 layers (decode: cycled over copies, so weights leave the cache
as they do in the full model)."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from memwall.measure.models import (
    available_bytes,
    build,
    estimate_bytes,
    layers_config,
)
from memwall.measure.run import Runner, timed_run
from memwall.measure.terms import CalConfig
from memwall.records.calibration import BLOCK_LAYERS, block_workload
from memwall.spec import ModelSpec, spec_from_config

BLOCK_CHUNKS = 3  # the block term's runs are split in time into this many estimates


def _headless(lm: Any) -> Any:
    """The decoder without its LM head (an identity in its place): in a decode step the head
    streams more bytes than a few layers, so its noise would swamp the layers' difference."""
    if lm.module.get_output_embeddings() is not None:
        lm.module.set_output_embeddings(torch.nn.Identity())
    return lm


def _per_layer_estimate(times: dict[int, list[float]]) -> float:
    lo, hi = BLOCK_LAYERS
    return (statistics.median(times[hi]) - statistics.median(times[lo])) / (hi - lo)


def measure_block(
    spec: ModelSpec, config: dict, precision: str, phase: str, cfg: CalConfig
) -> dict[str, Any]:
    """Seconds per layer of the real model at its own width: the same model cut to 1 and to
    3 layers (decode: without the LM head), run in turn (interleaved, so a drift of the
    machine hits both) at `block_workload` for at least `block_reps` rounds and
    `block_min_time` seconds; the difference of their medians over 2.

    Kernels timed alone miss what a layer costs among its neighbours (operands evicted by
    the kernels between, allocations, the eager code around them); this is the one term
    measured on the model's own layers, at one workload, and applied at every other. Its
    spread is how far the estimates of BLOCK_CHUNKS consecutive stretches of the runs
    disagree (over their median): a stall of a second or two moves one stretch, not all.

    A decode step reads each layer's weights once, and the full model's layers evict each
    other's; two small cuts run in turn keep theirs in cache. So a decode block cycles over
    `block_copies` copies of each cut (sharing one embedding table), as many layers as the
    model has: on this VM the two cuts alone measured a GPT-2 decode layer 12-20% faster
    than the 12-layer model ran one, four copies within 1-4% of it."""
    wl = block_workload(spec, phase)
    cfgs = {n: layers_config(spec, config, n) for n in BLOCK_LAYERS}
    cuts = {n: spec_from_config(c, name=f"{spec.name}-{n}layers") for n, c in cfgs.items()}
    lo, hi = BLOCK_LAYERS
    layer_bytes = (estimate_bytes(cuts[hi], precision) - estimate_bytes(cuts[lo], precision)) / (
        hi - lo
    )
    copies = block_copies(spec, phase, layer_bytes, available_bytes())
    runners: dict[int, list[Runner]] = {}
    shared = None  # the embedding table of the first copy, given to the others
    for n in BLOCK_LAYERS:
        c, cut = cfgs[n], cuts[n]
        runners[n] = []
        for _ in range(copies):
            lm = build(cut, c, precision, None, wl)
            if wl.phase == "decode":
                lm = _headless(lm)
                if shared is None:
                    shared = lm.module.get_input_embeddings()
                else:
                    lm.module.set_input_embeddings(shared)
            runners[n].append(Runner(lm, wl))
    times: dict[int, list[float]] = {n: [] for n in BLOCK_LAYERS}
    with torch.inference_mode():
        for _ in range(2):  # warm-up rounds
            for rs in runners.values():
                for r in rs:
                    timed_run(r)
        t_end = time.perf_counter() + cfg.block_min_time
        turn = 0
        while len(times[lo]) < cfg.block_reps or time.perf_counter() < t_end:
            for n, rs in runners.items():
                times[n].append(timed_run(rs[turn % copies]))
            turn += 1
    per_layer = max(0.0, _per_layer_estimate(times))
    k = len(times[BLOCK_LAYERS[0]]) // BLOCK_CHUNKS
    chunks = (
        [
            _per_layer_estimate({n: ts[i * k : (i + 1) * k] for n, ts in times.items()})
            for i in range(BLOCK_CHUNKS)
        ]
        if k >= 3
        else []
    )
    spread = (max(chunks) - min(chunks)) / per_layer if chunks and per_layer > 0 else 0.0
    return {
        "per_layer": per_layer,
        "spread": spread,
        "runs": len(times[BLOCK_LAYERS[0]]),
        "medians": {str(n): statistics.median(ts) for n, ts in times.items()},
        "workload": {"phase": wl.phase, "batch": wl.batch, "seq_len": wl.seq_len},
        "lm_head": wl.phase != "decode",
        "copies": copies,
    }


def block_copies(
    spec: ModelSpec, phase: str, layer_bytes: float = 0.0, available: float = math.inf
) -> int:
    """Copies of each cut the block term cycles over: decode, enough that the cuts' layers
    together number at least the model's (its weights leave the cache as the model's do),
    but no more than half the `available` memory holds at `layer_bytes` a layer; forward
    reuses each weight over every token, so one copy."""
    if block_workload(spec, phase).phase != "decode":
        return 1
    want = math.ceil(spec.n_layers / sum(BLOCK_LAYERS))
    if layer_bytes > 0:
        want = min(want, 1 + int(0.5 * available // (sum(BLOCK_LAYERS) * layer_bytes)))
    return max(1, want)
