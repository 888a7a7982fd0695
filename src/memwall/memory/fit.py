"""Does a footprint fit a device? Capacities come from the devices catalog (`memwall.hardware`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memwall.errors import MemwallError


@dataclass(frozen=True)
class Fit:
    device: str
    display_name: str
    kind: str
    capacity: float  # bytes, from the catalog (spec sheet) or a measurement
    need: float  # bytes per device
    origin: str  # "spec sheet" or "measured"

    @property
    def fits(self) -> bool:
        return self.need <= self.capacity

    @property
    def headroom(self) -> float:
        """Bytes left (negative: missing)."""
        return self.capacity - self.need

    @property
    def utilisation(self) -> float:
        return self.need / self.capacity

    @property
    def verdict(self) -> str:
        word = "fits" if self.fits else "does not fit"
        return f"{word} on {self.display_name} ({self.utilisation:.0%} of its memory)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "display_name": self.display_name,
            "capacity": self.capacity,
            "capacity_origin": self.origin,
            "need": self.need,
            "fits": self.fits,
            "headroom": self.headroom,
            "utilisation": self.utilisation,
            "verdict": self.verdict,
        }


def resolve_device(name: str) -> Any:
    """The catalog `Device` for `name`, with a memory capacity (MemwallError otherwise)."""
    from memwall.hardware import get_device

    dev = get_device(name)
    if not dev.mem_capacity:
        raise MemwallError(
            f"device {dev.name!r} has no memory capacity in the catalog; "
            "pick a device with one (see `memwall devices`)"
        )
    return dev


def check_fit(need: float, device: Any) -> Fit:
    dev = resolve_device(device) if isinstance(device, str) else device
    return Fit(
        device=dev.name,
        display_name=dev.display_name or dev.name,
        kind=dev.kind,
        capacity=float(dev.mem_capacity),
        need=float(need),
        origin="measured" if getattr(dev, "measured", False) else "spec sheet",
    )


def largest(fits: Callable[[int], bool], hi: int) -> int:
    """Largest n in [1, hi] with fits(n), for a monotone `fits`; 0 when fits(1) is false."""
    if not fits(1):
        return 0
    lo, top = 1, 2
    while top <= hi and fits(top):
        lo, top = top, top * 2
    top = min(top, hi + 1)
    while top - lo > 1:
        mid = (lo + top) // 2
        if fits(mid):
            lo = mid
        else:
            top = mid
    return lo
