"""The links between devices: the interconnect catalog and collectives measured on this machine.

`memwall/data/interconnect.csv` gives, per catalog device, the scale-up link inside a node (its
bandwidth per direction, the node size) and the scale-out network per device, each with a
source. `memwall measure --collectives` saves a fitted alpha (seconds) and beta (bytes/s) per
collective under the user's data directory; `links_for("local")` reads them.
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
    if is_derived_name(n):  # a what-if device: its base's links, `link=` scaling their bandwidth
        base, scale = parse_derived(n)
        b, f = links_for(base), scale.get("link", 1.0)
        return replace(
            b,
            device=canonical_name(base, scale),
            intra=replace(b.intra, bandwidth=b.intra.bandwidth * f),
            inter=replace(b.inter, bandwidth=b.inter.bandwidth * f),
            source=f"what-if: {b.source}, bandwidth x{f:g}" if f != 1.0 else b.source,
        )
    if n == "local":
        return load_measured_links()
    raise MemwallError(
        f"no interconnect on record for device {device!r}{suggest(n, cat)}; devices with "
        f"links: {', '.join(sorted(cat))}, or local after `memwall measure --collectives`"
    )


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
