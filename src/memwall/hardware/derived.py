"""What-if devices: a real device with its bandwidth, compute, capacity, clock or links scaled.

The paper's closing argument is to rethink accelerators (give up compute for bandwidth); this
lets any command ask "what if this chip had 2x the bandwidth?" by naming a device as

    BASE@KEY=FACTOR[,KEY=FACTOR...]      e.g.  h100-sxm@bw=2   h100-sxm@bw=2,flops=0.5

KEY is one of `SCALE_KEYS`; FACTOR a number in [MIN_FACTOR, MAX_FACTOR]: outside it the scaled
roofs reach the float limits and times come out as inf/nan instead of numbers. The result keeps
the canonical spelling as its name and says "what-if" and every factor in its display name,
notes and JSON, so a derived device is never mistaken for a real one.

Links (read by `memwall.parallel.links`): `link` scales both levels, `nvlink` the scale-up link
inside a node, `net` the scale-out network between nodes. Clocks: `clock=F` scales every compute
peak by F (peak FLOP/s is units x FLOPs per clock x clock, so linear in the clock; memory
bandwidth unchanged); `power=W` is a power cap in watts, turned into a clock factor by the
relation of `data/power_scaling.json` (`power_clock_factor`): below the device's TDP the clock
falls as (W / TDP)^(1/exponent), at or above it the spec-sheet clock stays. Energy:
`byte_energy=F` multiplies the energy of every byte moved (DRAM, on-chip, links) by F, as HBM4
or processing-in-memory claims would (`memwall.energy` reads it; times do not change).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from importlib import resources
from typing import Any

from memwall.errors import MemwallError, suggest
from memwall.hardware.catalog import Device

SEP = "@"
SCALE_KEYS: dict[str, str] = {  # key: what it scales (in that order in names)
    "bw": "memory bandwidth",
    "flops": "peak FLOP/s (every dtype)",
    "mem": "memory capacity",
    "link": "interconnect bandwidth",
    "nvlink": "scale-up link bandwidth (inside a node)",
    "net": "scale-out network bandwidth (between nodes)",
    "clock": "compute clock (every peak)",
    "power": "power cap (watts)",
    "byte_energy": "energy per byte moved (every memory level and link)",
}
LINK_KEYS = ("link", "nvlink", "net")
_ALIASES = {
    "bandwidth": "bw",
    "mem_bandwidth": "bw",
    "compute": "flops",
    "peak": "flops",
    "capacity": "mem",
    "memory": "mem",
    "interconnect": "link",
    "scaleup": "nvlink",
    "intra": "nvlink",
    "network": "net",
    "scaleout": "net",
    "inter": "net",
    "clocks": "clock",
    "watts": "power",
    "power_cap": "power",
    "energy_per_byte": "byte_energy",
    "ebyte": "byte_energy",
}
MIN_FACTOR = 1e-6  # below this, times overflow to inf and the efficiency model to nan
MAX_FACTOR = 1e6
SYNTAX = (
    "BASE@KEY=FACTOR[,KEY=FACTOR], KEY one of bw, flops, mem, link, nvlink, net, clock, "
    "byte_energy, or power=WATTS (e.g. h100-sxm@bw=2, h100-sxm@nvlink=2,net=0.5, "
    "h100-sxm@power=500, h100-sxm@byte_energy=0.5)"
)


def is_derived_name(name: str) -> bool:
    return SEP in name


def _factor(key: str, text: str, whole: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and MIN_FACTOR <= v <= MAX_FACTOR):
        raise MemwallError(
            f"bad factor {key}={text!r} in device {whole!r}: a factor must be a positive finite "
            f"number from {MIN_FACTOR:g} to {MAX_FACTOR:g}; syntax {SYNTAX}"
        )
    return v


def parse_derived(name: str) -> tuple[str, dict[str, float]]:
    """Split 'base@bw=2,flops=0.5' into ('base', {'bw': 2.0, 'flops': 0.5}); MemwallError if bad."""
    base, _, spec = name.strip().partition(SEP)
    if not base.strip() or not spec.strip():
        raise MemwallError(f"what-if device {name!r} needs a base and factors: {SYNTAX}")
    if SEP in spec:
        raise MemwallError(f"what-if device {name!r} has more than one '{SEP}': {SYNTAX}")
    scale: dict[str, float] = {}
    for part in spec.split(","):
        key, eq, val = part.strip().partition("=")
        if not eq:
            key, eq, val = part.strip().partition("*")
        k = _ALIASES.get(key.strip().lower(), key.strip().lower())
        if not eq or k not in SCALE_KEYS:
            raise MemwallError(
                f"unknown scale {part.strip()!r} in device {name!r}"
                f"{suggest(k, [*SCALE_KEYS, *_ALIASES])}; {SYNTAX}"
            )
        if k in scale:
            raise MemwallError(f"scale {k!r} given twice in device {name!r}")
        scale[k] = _factor(k, val.strip(), name)
    return base.strip().lower(), {k: scale[k] for k in SCALE_KEYS if k in scale}


def canonical_name(base: str, scale: dict[str, float]) -> str:
    return base + SEP + ",".join(f"{k}={v:g}" for k, v in scale.items())


def describe_scale(scale: dict[str, float]) -> str:
    """'memory bandwidth x2, peak FLOP/s (every dtype) x0.5' ('power cap 500 W')."""
    return ", ".join(
        f"power cap {v:g} W" if k == "power" else f"{SCALE_KEYS[k]} x{v:g}"
        for k, v in scale.items()
    )


@functools.lru_cache(maxsize=1)
def power_scaling() -> dict[str, Any]:
    """The sourced relation between a power cap and the compute clock (data/power_scaling.json)."""
    text = resources.files("memwall.data").joinpath("power_scaling.json").read_text("utf-8")
    d = json.loads(text)
    if not (isinstance(d.get("exponent"), (int, float)) and d["exponent"] > 0 and d["source"]):
        raise MemwallError("power_scaling.json: needs a positive exponent and a source")
    return d


def power_clock_factor(tdp_w: float | None, cap_w: float, name: str = "") -> float:
    """Clock (and so compute peak) factor of a device capped at `cap_w` watts: (cap / TDP) to
    the power 1 / exponent of `data/power_scaling.json`, 1 at or above the TDP."""
    if not tdp_w:
        raise MemwallError(f"device {name!r} has no TDP in the catalog; use @clock=F instead")
    return min(1.0, cap_w / tdp_w) ** (1.0 / float(power_scaling()["exponent"]))


def compute_factor(base: Device, scale: dict[str, float]) -> float:
    """What `flops`, `clock` and `power` together multiply every compute peak by."""
    f = scale.get("flops", 1.0) * scale.get("clock", 1.0)
    if "power" in scale:
        f *= power_clock_factor(base.tdp_w, scale["power"], base.name)
    return f


def _times(v: float | None, f: float) -> float | None:
    return None if v is None else v * f


def derive(base: Device, scale: dict[str, float]) -> Device:
    """`base` with the given factors applied; the result is marked what-if everywhere."""
    if base.is_derived:
        raise MemwallError(f"{base.name!r} is already a what-if device; scale the real one")
    for k, v in scale.items():
        if k not in SCALE_KEYS:
            raise MemwallError(f"unknown scale {k!r}{suggest(k, SCALE_KEYS)}; {SYNTAX}")
        _factor(k, str(v), base.name)
    s = dict(scale)
    f = {k: s.get(k, 1.0) for k in SCALE_KEYS}
    what = describe_scale(s)
    compute = compute_factor(base, s)
    if "power" in s:
        what += f" (compute clock x{compute / f['flops'] / f['clock']:.3g})"
    caches = tuple(
        dataclasses.replace(c, bandwidth=c.bandwidth * f["bw"]) for c in base.cache_levels
    )
    gemv = _times(base.gemv_bandwidth, f["bw"])
    return dataclasses.replace(
        base,
        name=canonical_name(base.name, s),
        display_name=f"{base.display_name} [what-if: {what}]",
        peaks={k: v * compute for k, v in base.peaks.items()},
        mem_capacity=_times(base.mem_capacity, f["mem"]),
        mem_bandwidth=_times(base.mem_bandwidth, f["bw"]),
        interconnect_bandwidth=_times(base.interconnect_bandwidth, f["link"] * f["nvlink"]),
        cache_levels=caches,
        gemv_bandwidth=gemv,
        source=f"what-if derived from {base.name} ({base.source})",
        notes=f"NOT A REAL DEVICE: {base.name} with {what}. {base.notes}".strip(),
        derived_from=base.name,
        scale=s,
    )
