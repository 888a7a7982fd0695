"""Collectives priced with the alpha-beta model, per algorithm, over a link.

Bytes each rank moves (the nccl-tests bus-bandwidth definitions, for a message of S bytes on n
ranks; S is the all-reduce buffer, the all-gather output, the reduce-scatter input, the
all-to-all send buffer, the point-to-point message):
    all-reduce 2(n-1)/n S; all-gather, reduce-scatter, all-to-all (n-1)/n S; send/recv S.
Ring: 2(n-1) steps for all-reduce, n-1 for the others, each paying the link latency alpha, then
the bytes above over the link's per-direction bandwidth beta. Tree (all-reduce only, the double
binary tree of NCCL): 2 log2(n) steps of latency, and about 2 S over beta (reduce up and
broadcast down, pipelined). `auto` takes the faster, as NCCL's tuner does.
A group inside one node uses the node's link. A ring group that spans nodes with k of its ranks
in each node runs k rings at once (NCCL builds one ring per NIC, each entering and leaving a node
once), so its bus bandwidth is k devices' network bandwidth, up to the node's link
(`node_rings`): nccl-tests issue 119 measures 85-96 GB/s all-reduce bus bandwidth over 3 nodes of
8 A100s with 4 x 200 Gb/s NICs each (100 GB/s per node, 12.5 per GPU), and llm-foundry's MPT-13B
FSDP runs on H100 keep the same per-GPU throughput on 8, 16, 32 and 64 GPUs (39.6-40.0% MFU),
which a network of one NIC's bandwidth per ring would cut by two thirds from 16 GPUs on. A group
with one rank per node (data parallelism across tensor-parallel nodes) gets one NIC, as before;
all-to-all and point-to-point traffic leave each device through its own NIC. Collectives
measured on this machine (`local`) use their own fitted alpha and beta instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.parallel.links import Link, Links
from memwall.predict.efficiency import efficiency_terms
from memwall.records.collectives import KINDS as KINDS  # the kinds a record holds
from memwall.records.collectives import bus_factor

ALGORITHMS = ("auto", "ring", "tree")


def bytes_per_rank(kind: str, message: float, n: int) -> float:
    """Bytes one rank sends in a ring implementation of `kind` on `n` ranks."""
    return bus_factor(kind, n) * message


def ring_steps(kind: str, n: int) -> int:
    if kind == "send_recv":
        return 1
    if n <= 1:
        return 0
    return 2 * (n - 1) if kind == "all_reduce" else n - 1


def alpha_beta_time(kind: str, message: float, n: int, link: Link, algorithm: str = "auto"):
    """(seconds, algorithm used) for one collective of `message` bytes on `n` ranks."""
    if algorithm not in ALGORITHMS:
        raise MemwallError(f"unknown algorithm {algorithm!r}; accepted: {', '.join(ALGORITHMS)}")
    if n <= 1 and kind != "send_recv":
        return 0.0, "none"
    ring = ring_steps(kind, n) * link.latency + bytes_per_rank(kind, message, n) / link.bandwidth
    if kind != "all_reduce" or algorithm == "ring":
        return ring, "ring" if kind != "send_recv" else "p2p"
    tree = 2 * math.ceil(math.log2(n)) * link.latency + 2.0 * message / link.bandwidth
    if algorithm == "tree" or tree < ring:
        return tree, "tree"
    return ring, "ring"


@dataclass(frozen=True)
class Collective:
    """One kind of collective in a step: how often it runs and what it costs."""

    kind: str
    group: str  # tp | dp | pp | ep
    group_size: int
    message: float  # bytes per call (see the module docstring for what S is)
    calls: int  # per step on one device
    phase: str  # forward | backward | recompute | step | prefill | decode
    level: str  # intra | inter | measured
    algorithm: str
    time_each: float
    exposed: bool  # on the critical path (not hidden behind compute)

    @property
    def time(self) -> float:
        return self.time_each * self.calls

    @property
    def bytes_moved(self) -> float:
        """Bytes one device sends for all calls of this entry."""
        return bytes_per_rank(self.kind, self.message, self.group_size) * self.calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "group_size": self.group_size,
            "bytes": self.message,
            "calls": self.calls,
            "phase": self.phase,
            "link": self.level,
            "algorithm": self.algorithm,
            "time_each": self.time_each,
            "time": self.time,
            "bytes_per_rank": self.bytes_moved,
            "exposed": self.exposed,
        }


def price(
    kind: str,
    group: str,
    n: int,
    message: float,
    calls: int,
    phase: str,
    links: Links,
    spans_nodes: bool,
    algorithm: str = "auto",
    exposed: bool = True,
) -> Collective:
    """A Collective with its time on the right link (or this machine's fitted alpha-beta)."""
    if links.origin == "measured" and kind in links.fitted:
        alpha, beta = links.fitted[kind]
        t = (alpha + bytes_per_rank(kind, message, n) / beta) if n > 1 or kind == "send_recv" else 0
        return Collective(kind, group, n, message, calls, phase, "measured", "fit", t, exposed)
    link = links.inter if spans_nodes else links.intra
    t, algo = alpha_beta_time(kind, message, n, link, algorithm)
    level = "inter" if spans_nodes else "intra"
    return Collective(kind, group, n, message, calls, phase, level, algo, t, exposed)


def realistic_links(links: Links, device: Device) -> Links:
    """`links` at the bus bandwidth collectives reach (`coll_frac` of the line rate inside a
    node, `net_frac` across nodes; `data/efficiency.json`); measured links are kept as fitted."""
    if links.origin == "measured":
        return links
    t = efficiency_terms(device)
    mesh = getattr(links, "mesh_bandwidth", None)  # a switchless node: every link at once
    extra = {"mesh_bandwidth": mesh * t["coll_frac"].value} if mesh else {}
    return replace(
        links,
        **extra,
        intra=replace(links.intra, bandwidth=links.intra.bandwidth * t["coll_frac"].value),
        inter=replace(links.inter, bandwidth=links.inter.bandwidth * t["net_frac"].value),
    )


def node_rings(links: Links, per_node: int) -> Links:
    """The links a ring group with `per_node` ranks in each node sees across nodes: `per_node`
    rings at once, one per NIC, so `per_node` devices' network bandwidth, up to the node's link
    (module docstring). Measured links are kept as fitted."""
    if per_node <= 1 or links.origin == "measured":
        return links
    bw = min(links.inter.bandwidth * per_node, links.intra.bandwidth)
    name = f"{links.inter.name}, {per_node} rings per node"
    return replace(links, inter=replace(links.inter, name=name, bandwidth=bw))
