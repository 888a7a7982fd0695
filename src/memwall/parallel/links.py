"""The links between devices: the interconnect catalog and collectives measured on this machine.

`memwall/data/interconnect.csv` gives, per catalog device, the scale-up link inside a node (its
bandwidth per direction, the node size) and the scale-out network per device, each with a
source. `memwall measure --collectives` saves a fitted alpha (seconds) and beta (bytes/s) per
collective under the user's data directory; `links_for("local")` reads them.

What-ifs: a device named `h100-sxm@nvlink=2` scales the scale-up link inside a node,
`@net=0.5` the scale-out network, `@link=2` both (`memwall.hardware.derived`). `with_topology`
sets another node size and, with `intra="ring"`, a node without a switch: its devices joined by
point-to-point links in a full mesh (AMD's MI300X platform: 7 xGMI links of 64 GB/s per
direction to each peer, 448 GB/s in all; a DGX-1 is a partial mesh of the same kind). A ring
collective's step then sends to one neighbour over one link, so it runs at the per-link
bandwidth, the device's scale-up bandwidth over its node_size - 1 peers (448e9 / 7 = 64e9 for
the MI300X, as its datasheet gives); an all-to-all sends to every peer at once, over every
link, so it keeps the whole bandwidth (`Links.intra_all_to_all`). Libraries that run several
rings at once over a mesh (RCCL) recover part of the difference, so the ring figure is the
pessimistic one.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError, suggest
from memwall.hardware.derived import canonical_name, is_derived_name, parse_derived
from memwall.records.collectives import COLLECTIVES_FORMAT as COLLECTIVES_FORMAT  # old name
from memwall.records.collectives import read_fits
from memwall.records.store import collectives_path


@dataclass(frozen=True)
class Link:
    """One level of the network: per-direction bandwidth per device and per-step latency."""

    name: str
    bandwidth: float  # bytes/s per direction per device
    latency: float  # seconds per algorithm step (alpha)


@dataclass(frozen=True)
class Links:
    """How a device talks to others: inside its node and between nodes."""

    device: str
    intra: Link
    inter: Link
    node_size: int
    source: str
    origin: str  # "catalog" or "measured"
    fitted: dict[str, tuple[float, float]] = field(default_factory=dict, hash=False)
    topology: str = "switch"  # inside a node: switch (all-to-all at full bandwidth) | ring
    mesh_bandwidth: float | None = None  # ring: the whole scale-up bandwidth, for all-to-alls

    @property
    def intra_all_to_all(self) -> Link:
        """The intra-node link an all-to-all sees: every mesh link at once under `ring`."""
        if self.mesh_bandwidth is None:
            return self.intra
        return replace(self.intra, bandwidth=self.mesh_bandwidth)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "intra_link": self.intra.name,
            "intra_bandwidth": self.intra.bandwidth,
            "intra_latency": self.intra.latency,
            "node_size": self.node_size,
            "inter_network": self.inter.name,
            "inter_bandwidth": self.inter.bandwidth,
            "inter_latency": self.inter.latency,
            "intra_topology": self.topology,
            "origin": self.origin,
            "source": self.source,
        }


def _pos(row: dict[str, str], col: str) -> float:
    try:
        v = float(row[col])
    except (TypeError, ValueError):
        raise MemwallError(f"interconnect.csv: {row.get('name')!r} has a bad {col}") from None
    if not math.isfinite(v) or v <= 0:
        raise MemwallError(f"interconnect.csv: {row.get('name')!r} has a non-positive {col}")
    return v


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, Links]:
    text = resources.files("memwall.data").joinpath("interconnect.csv").read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    out = {}
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        intra = Link(r["intra_link"], _pos(r, "intra_bandwidth"), _pos(r, "intra_latency"))
        inter = Link(r["inter_network"], _pos(r, "inter_bandwidth"), _pos(r, "inter_latency"))
        if not r["source"].strip():
            raise MemwallError(f"interconnect.csv: {r['name']!r} has no source")
        out[r["name"]] = Links(
            r["name"], intra, inter, int(_pos(r, "node_size")), r["source"], "catalog"
        )
    return out


def interconnect_names() -> list[str]:
    return sorted(_catalog())


def links_for(device: str) -> Links:
    """The links of a catalog device, or those measured here for `local`."""
    n = device.strip().lower()
    cat = _catalog()
    if n in cat:
        return cat[n]
    if is_derived_name(n):  # a what-if device: its base's links, scaled by link / nvlink / net
        base, scale = parse_derived(n)
        b = links_for(base)
        fi = scale.get("link", 1.0) * scale.get("nvlink", 1.0)
        fo = scale.get("link", 1.0) * scale.get("net", 1.0)
        what = [f"{w} bandwidth x{f:g}" for w, f in (("intra-node", fi), ("inter-node", fo))]
        return replace(
            b,
            device=canonical_name(base, scale),
            intra=replace(b.intra, bandwidth=b.intra.bandwidth * fi),
            inter=replace(b.inter, bandwidth=b.inter.bandwidth * fo),
            source=f"what-if: {b.source}; {', '.join(what)}" if (fi, fo) != (1, 1) else b.source,
        )
    if n == "local":
        return load_measured_links()
    raise MemwallError(
        f"no interconnect on record for device {device!r}{suggest(n, cat)}; devices with "
        f"links: {', '.join(sorted(cat))}, or local after `memwall measure --collectives`"
    )


TOPOLOGIES = ("switch", "ring")


def with_topology(links: Links, node_size: int | None = None, intra: str | None = None) -> Links:
    """`links` with another node size (devices joined by the scale-up link) and/or, with
    `intra="ring"`, point-to-point links in a full mesh instead of a switch (module docstring)."""
    out = links
    if node_size is not None:
        if isinstance(node_size, bool) or not isinstance(node_size, int) or node_size < 1:
            raise MemwallError(f"--node-size must be a positive integer, got {node_size!r}")
        if links.origin == "measured":
            raise MemwallError("--node-size and --intra apply to catalog links, not measured ones")
        out = replace(out, node_size=node_size)
    if intra is None or intra == "switch":
        return out
    if intra not in TOPOLOGIES:
        raise MemwallError(f"unknown --intra {intra!r}; accepted: {', '.join(TOPOLOGIES)}")
    if links.origin == "measured":
        raise MemwallError("--node-size and --intra apply to catalog links, not measured ones")
    peers = max(out.node_size - 1, 1)
    per_link = replace(out.intra, name=f"{out.intra.name}, one of {peers} mesh links",
                       bandwidth=out.intra.bandwidth / peers)  # fmt: skip
    return replace(out, intra=per_link, topology="ring", mesh_bandwidth=out.intra.bandwidth)


def load_measured_links(path: Path | None = None) -> Links:
    """Links from a saved `measure --collectives` result; the all-reduce fit sets alpha/beta."""
    p = path or collectives_path()
    if not p.is_file():
        raise MemwallError(
            "no collectives measured on this machine yet; run `memwall measure --collectives`"
        )
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MemwallError(
            f"saved collectives file {p} is malformed: {e.__class__.__name__}"
        ) from None
    return links_from_measurement(obj, str(p))


def links_from_measurement(obj: Any, where: str = "collectives measurement") -> Links:
    """The links of a collectives record (`memwall.records.collectives`): the all-reduce fit
    sets them; every kind's own fit prices that kind."""
    f = read_fits(obj, where)
    alpha, beta = f.fitted["all_reduce"]
    # beta is the fitted bus bandwidth; one ring step's latency is alpha / (2 (n - 1)).
    step = alpha / (2 * (f.world - 1))
    link = Link(f"{f.backend} (measured)", beta, step)
    src = f"memwall measure --collectives, world {f.world}, {f.date}"
    return Links("local", link, link, f.world, src, "measured", f.fitted)
