"""The collectives of each parallel group in one micro-batch of a step, for `memwall.parallel.plan`.

Ranks are placed tp-innermost (tp, cp, dp, pp from the inside out, `parallel.layout`), which
decides which groups cross nodes (`placement`) and how many of a group's ranks share a node
(`per_node`: the rings a node-spanning group runs at once, `collectives.node_rings`).
Tensor parallelism: two all-reduces per layer and pass (with sequence parallelism an
all-gather and a reduce-scatter each), exposed unless overlapped with the GEMMs beside them
(`tp_overlapped`); expert parallelism: an all-to-all out and back per layer and pass;
pipeline parallelism: one send/recv of the activations per stage boundary, split over the
tensor-parallel ranks.
"""

from __future__ import annotations

import math
from dataclasses import replace

from memwall.parallel.collectives import node_rings, price
from memwall.parallel.comm import overlapped, with_exposed
from memwall.parallel.layout import Layout


def placement(layout: Layout, node: int) -> dict[str, bool]:
    """Which groups span more than one node (True) under tp-innermost placement (tp, cp, dp,
    pp from the inside out; the data-parallel sync runs over dp x cp ranks)."""
    t, c, d, p = layout.tp, layout.cp, layout.dp, layout.pp
    return {
        "tp": t > node,
        "cp": t * c > node,
        "dp": t * c * d > node,
        "ep": t * layout.ep > node,
        "pp": p > 1 and t * c * d * p > node,
    }


def per_node(stride: int, size: int, node: int) -> int:
    """Ranks of a group of `size` ranks, `stride` apart in tp-innermost placement, that share
    one node of `node` devices (the rings it runs across nodes, `collectives.node_rings`)."""
    if stride >= node:
        return 1
    return max(1, min(size, node // stride))


def tp_collectives(spec, layout, act, calls_per_layer_pass, passes, phase, links, span, o):
    """Tensor-parallel collectives of `passes` passes over the stage's layers."""
    if layout.tp == 1:
        return []
    links = node_rings(links, per_node(1, layout.tp, links.node_size))
    layers = math.ceil(spec.n_layers / layout.pp)
    calls = calls_per_layer_pass * layers * passes
    if layout.sequence_parallel:
        return [
            price("all_gather", "tp", layout.tp, act, calls, phase, links, span, o.algorithm),
            price("reduce_scatter", "tp", layout.tp, act, calls, phase, links, span, o.algorithm),
        ]
    return [price("all_reduce", "tp", layout.tp, act, calls, phase, links, span, o.algorithm)]


def tp_overlapped(mb, t_matmul, fwd_passes, rate):
    """Tensor-parallel collectives overlapped with the GEMMs of their pass (Transformer
    Engine's userbuffers split each all-gather / reduce-scatter into chunks pipelined with the
    GEMM that consumes or produces it): per micro-batch, the forward passes' collectives
    behind their matmuls, the backward's behind its two matmuls per forward one; what is
    left exposed (`comm.overlapped`), and the collectives flagged accordingly."""
    out, exposed = [], 0.0
    for phase, hide in (("forward", fwd_passes * t_matmul), ("backward", 2 * t_matmul)):
        group = [c for c in mb if c.group == "tp" and c.phase == phase]
        total = sum(c.time for c in group)
        e = overlapped(total, hide, rate)
        exposed += e
        out += [with_exposed(c, total > hide) for c in group]
    return out + [c for c in mb if c.group != "tp"], exposed


def ep_collectives(spec, layout, tokens, prec, passes, phase, links, span, o):
    """The expert-parallel all-to-alls of one micro-batch: per layer and pass a dispatch of each
    token's copies to the ranks of its experts and a combine of the experts' outputs back.
    The dispatch carries the GEMM input format (`act_bytes`: FP8 when activations are 8-bit, as
    DeepEP's and vLLM's FP8 dispatch quantize before sending), the combine the experts' 16-bit
    outputs (`hidden_bytes`: DeepEP's combine is BF16 only); equal widths give one entry."""
    if layout.ep == 1:
        return []
    layers = math.ceil(spec.n_layers / layout.pp)
    per_byte = tokens * spec.experts_per_token * spec.d_model
    a2a = replace(links, intra=links.intra_all_to_all)  # a switchless mesh: every link at once
    widths = (prec.act_bytes, prec.hidden_bytes)
    if widths[0] == widths[1]:
        return [price("all_to_all", "ep", layout.ep, per_byte * widths[0], 2 * layers * passes,
                      phase, a2a, span)]  # fmt: skip
    return [
        price("all_to_all", "ep", layout.ep, per_byte * w, layers * passes, phase, a2a, span)
        for w in widths
    ]


def pp_collectives(layout, act, passes, phase, links, span):
    if layout.pp == 1:
        return []
    msg = act / layout.tp  # Megatron's scatter/gather over the tensor-parallel ranks
    return [price("send_recv", "pp", 2, msg, passes * layout.interleave, phase, links, span)]
