"""Joules of a step from the work it does and how long it takes: the memory wall in energy.

    dynamic = sum over dtypes of FLOPs x J/FLOP(dtype)
              + DRAM bytes x J/byte(dram) + the same bytes x J/byte(onchip)
              + bytes sent over links x J/byte(link)
    static  = static power x predicted time            (per device, times the devices)
    energy  = min(dynamic + static, TDP x time x devices)

Moving a byte from DRAM costs tens of picojoules, a FLOP a fraction of one: at small batch the
bytes and the static power over a memory-bound step dominate, at large batch the FLOPs do. The
cap stands for the power limit: a device cannot draw more than its TDP on average, so a step
that would needs more time, which the time model (not this one) owns; `capped` says so.
Every number is predicted from `data/energy.json`'s coefficients, never measured here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from memwall.energy.coefficients import ENDS, Coefficients, coefficients_for, device_energy_class
from memwall.errors import MemwallError
from memwall.hardware import Device

UNITS = {
    "*_j": "J (predicted)",
    "*_w": "W (predicted, average over the step)",
    "time_s": "s (predicted)",
    "flops": "FLOP",
    "*_bytes": "byte",
}


@dataclass(frozen=True)
class Work:
    """What ONE device does in a step: FLOPs by compute dtype, bytes it reads and writes in
    its own memory, and bytes it sends over links (collectives)."""

    flops: Mapping[str, float] = field(default_factory=dict, hash=False)
    dram_bytes: float = 0.0
    link_bytes: float = 0.0

    def __post_init__(self) -> None:
        values = [*self.flops.values(), self.dram_bytes, self.link_bytes]
        if any(not (v >= 0 and v < float("inf")) for v in values):
            raise MemwallError(f"work must be finite and non-negative FLOPs and bytes, got {self}")

    def plus(self, other: Work, times: float = 1.0) -> Work:
        """This work and `times` x `other` (e.g. a decode step and a share of a prefill)."""
        fl = dict(self.flops)
        for d, v in other.flops.items():
            fl[d] = fl.get(d, 0.0) + times * v
        return Work(fl, self.dram_bytes + times * other.dram_bytes,
                    self.link_bytes + times * other.link_bytes)  # fmt: skip

    def scaled(self, k: float) -> Work:
        return Work({d: k * v for d, v in self.flops.items()}, k * self.dram_bytes,
                    k * self.link_bytes)  # fmt: skip

    @property
    def total_flops(self) -> float:
        return float(sum(self.flops.values()))


@dataclass(frozen=True)
class Parts:
    """Joules of one step at one end of the coefficient ranges, all devices together."""

    compute_j: float
    dram_j: float
    onchip_j: float
    link_j: float
    static_j: float
    total_j: float  # after the TDP cap
    capped: bool

    @property
    def bytes_j(self) -> float:
        """Energy of moving bytes: device memory, on-chip, links."""
        return self.dram_j + self.onchip_j + self.link_j


def parts(work: Work, time_s: float, c: Coefficients, devices: int = 1) -> Parts:
    """The energy of `work` on each of `devices` devices over a step of `time_s` seconds."""
    if not (time_s >= 0 and time_s < float("inf")):
        raise MemwallError(f"step time must be a finite number of seconds >= 0, got {time_s!r}")
    if not (isinstance(devices, int) and devices >= 1):
        raise MemwallError(f"devices must be a whole number >= 1, got {devices!r}")
    compute = sum(v * c.per_flop(d) for d, v in work.flops.items()) * devices
    dram = work.dram_bytes * c.j_per_byte["dram"] * devices
    onchip = work.dram_bytes * c.j_per_byte["onchip"] * devices
    link = work.link_bytes * c.j_per_byte["link"] * devices
    static = c.static_w * time_s * devices
    raw = compute + dram + onchip + link + static
    cap = c.tdp_w * time_s * devices if c.tdp_w else float("inf")
    return Parts(compute, dram, onchip, link, static, min(raw, cap), raw > cap)


@dataclass(frozen=True)
class Energy:
    """A step's predicted energy (with its low-high range) on `devices` devices."""

    device: str
    device_class: str
    devices: int
    time_s: float
    work: Work
    value: Parts
    low: Parts
    high: Parts
    byte_scale: float = 1.0

    @property
    def total_j(self) -> float:
        return self.value.total_j

    @property
    def avg_power_w(self) -> float:
        """Average power of all devices together over the step."""
        return self.total_j / self.time_s if self.time_s > 0 else 0.0

    def shares(self) -> dict[str, float]:
        """Fractions of the (uncapped) energy: computing, moving bytes, static power."""
        p = self.value
        raw = p.compute_j + p.bytes_j + p.static_j
        if raw <= 0:
            return {"compute": 0.0, "bytes": 0.0, "static": 0.0}
        return {"compute": p.compute_j / raw, "bytes": p.bytes_j / raw, "static": p.static_j / raw}

    def to_dict(self) -> dict[str, Any]:
        v = self.value
        return {
            "device": self.device,
            "device_class": self.device_class,
            "devices": self.devices,
            "time_s": self.time_s,
            "energy_j": v.total_j,
            "energy_range_j": [self.low.total_j, self.high.total_j],
            "avg_power_w": self.avg_power_w,
            "avg_power_per_device_w": self.avg_power_w / self.devices,
            "compute_j": v.compute_j,
            "dram_j": v.dram_j,
            "onchip_j": v.onchip_j,
            "link_j": v.link_j,
            "static_j": v.static_j,
            "shares": self.shares(),
            "capped_at_tdp": v.capped,
            "byte_energy_scale": self.byte_scale,
            "work_per_device": {
                "flops": dict(self.work.flops),
                "dram_bytes": self.work.dram_bytes,
                "link_bytes": self.work.link_bytes,
            },
            "predicted": True,
        }


def step_energy(work: Work, time_s: float, device: Device, devices: int = 1) -> Energy:
    """Predicted energy of a step: `work` on each of `devices` x `device` for `time_s` s."""
    ends = {e: parts(work, time_s, coefficients_for(device, e), devices) for e in ENDS}
    scale = float(device.scale.get("byte_energy", 1.0)) if device.scale else 1.0
    return Energy(device.name, device_energy_class(device), devices, time_s, work,
                  ends["value"], ends["low"], ends["high"], scale)  # fmt: skip


def combine(steps: list[tuple[Energy, float]]) -> Energy:
    """Several steps on the same devices, each counted `k` times (k may be a fraction: a
    prefill shared by the tokens of one request), as one energy over their summed time."""
    if not steps:
        raise MemwallError("combine needs at least one step")
    first = steps[0][0]

    def total(end: str) -> Parts:
        ps = [(getattr(e, end), k) for e, k in steps]
        return Parts(
            *(sum(k * getattr(p, f) for p, k in ps) for f in
              ("compute_j", "dram_j", "onchip_j", "link_j", "static_j", "total_j")),
            capped=any(p.capped for p, _ in ps),
        )  # fmt: skip

    work = Work()
    for e, k in steps:
        work = work.plus(e.work, k)
    time = sum(k * e.time_s for e, k in steps)
    return Energy(first.device, first.device_class, first.devices, time, work,
                  total("value"), total("low"), total("high"), first.byte_scale)  # fmt: skip
