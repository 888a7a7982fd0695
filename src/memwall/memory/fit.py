"""Does a footprint fit a device? Capacities come from the devices catalog (`memwall.hardware`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memwall.errors import MemwallError
from memwall.hardware import Device, get_device


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


def resolve_device(name: str) -> Device:
    """The catalog `Device` for `name` (as the command line gives it), with a memory capacity
    (MemwallError otherwise)."""
    return checked_capacity(get_device(name))


def checked_capacity(dev: Device) -> Device:
    """`dev` itself, when it states a memory capacity to check a footprint against."""
    if not dev.mem_capacity:
        raise MemwallError(
            f"device {dev.name!r} has no memory capacity in the catalog; "
            "pick a device with one (see `memwall devices`)"
        )
    return dev


def check_fit(need: float, device: Device) -> Fit:
    """`need` bytes per device against `device`'s memory (names are resolved by the caller:
    `resolve_device`)."""
    if not isinstance(device, Device):
        raise TypeError(f"check_fit takes a memwall.hardware.Device, got {device!r}")
    dev = checked_capacity(device)
    return Fit(
        device=dev.name,
        display_name=dev.display_name or dev.name,
        kind=dev.kind,
        capacity=float(dev.mem_capacity),
        need=float(need),
        origin="measured" if dev.measured else "spec sheet",
    )
