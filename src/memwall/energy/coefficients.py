"""The energy coefficients (`data/energy.json`), validated, and the set a device uses.

Energy per FLOP, per byte at each memory level and static power are not on spec sheets; each
value in the data file says where it comes from (Horowitz's ISSCC 2014 table scaled by process
node, vendor figures, published DRAM measurements, or a fit to published energy measurements,
named as a fit) and carries a low-high range, so a prediction can say how sure it is.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memwall.errors import MemwallError, first_problem
from memwall.hardware import DTYPES, Device, normalize_dtype

ENDS = ("value", "low", "high")
LEVELS = ("dram", "onchip", "link")
BASES = ("horowitz-scaled", "vendor", "measured", "fit", "assumed")


class Coefficient(BaseModel):
    """One sourced number and its range."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float = Field(ge=0, allow_inf_nan=False)
    low: float = Field(ge=0, allow_inf_nan=False)
    high: float = Field(ge=0, allow_inf_nan=False)
    basis: Literal["horowitz-scaled", "vendor", "measured", "fit", "assumed"]
    source: str = Field(min_length=20)

    @model_validator(mode="after")
    def _ordered(self) -> Coefficient:
        if not self.low <= self.value <= self.high:
            raise ValueError(f"needs low <= value <= high, got {self.low}, {self.value}, "
                             f"{self.high}")  # fmt: skip
        return self

    def at(self, end: str) -> float:
        return float(getattr(self, end))


class _Bytes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dram: Coefficient
    onchip: Coefficient
    link: Coefficient


class _Class(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    process: str = Field(min_length=2)
    pj_per_flop_bf16: Coefficient
    pj_per_byte: _Bytes
    static_tdp_fraction: Coefficient
    idle_tdp_fraction: Coefficient

    @model_validator(mode="after")
    def _fractions(self) -> _Class:
        for name in ("static_tdp_fraction", "idle_tdp_fraction"):
            if getattr(self, name).high > 1:
                raise ValueError(f"{name} is a fraction of the TDP: at most 1")
        return self


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    cls: str = Field(alias="class")
    vendor: str | None = None
    kind: str | None = None
    name_prefix: str | None = None
    mem_type_prefix: str | None = None

    def matches(self, d: Device) -> bool:
        return (
            (self.vendor is None or d.vendor == self.vendor)
            and (self.kind is None or d.kind == self.kind)
            and (self.name_prefix is None or d.name.startswith(self.name_prefix))
            and (self.mem_type_prefix is None or d.mem_type.startswith(self.mem_type_prefix))
        )


class EnergyTable(BaseModel):
    """The whole data file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    doc: list[str] = Field(alias="_doc", min_length=1)
    dtype_ratio: dict[str, Coefficient]
    class_rules: list[_Rule] = Field(min_length=1)
    classes: dict[str, _Class] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> EnergyTable:
        missing = [d for d in DTYPES if d not in self.dtype_ratio]
        if missing:
            raise ValueError(f"dtype_ratio lacks {', '.join(missing)}")
        unknown = [d for d in self.dtype_ratio if d not in DTYPES]
        if unknown:
            raise ValueError(f"dtype_ratio names unknown dtypes {', '.join(unknown)}")
        bad = sorted({r.cls for r in self.class_rules} - set(self.classes))
        if bad:
            raise ValueError(f"class_rules name undefined classes {', '.join(bad)}")
        last = self.class_rules[-1]
        if any((last.vendor, last.kind, last.name_prefix, last.mem_type_prefix)):
            raise ValueError("the last class rule must match every device (a fallback)")
        return self


def parse_table(text: str) -> EnergyTable:
    """The energy data file from its JSON text; MemwallError naming the first problem."""
    try:
        return EnergyTable.model_validate(json.loads(text))
    except json.JSONDecodeError as e:
        raise MemwallError(f"energy.json is not valid JSON: {e.msg} (line {e.lineno})") from None
    except ValidationError as e:
        raise MemwallError(f"energy.json: {first_problem(e)}") from None


@functools.lru_cache(maxsize=1)
def load_table() -> EnergyTable:
    """The bundled coefficients (`memwall/data/energy.json`), validated once."""
    return parse_table(resources.files("memwall.data").joinpath("energy.json").read_text("utf-8"))


@dataclass(frozen=True)
class Coefficients:
    """What prices energy on one device at one end of the ranges (`end`: value, low, high).
    Energies in joules per FLOP and per byte, powers in watts."""

    device: str
    device_class: str
    end: str
    j_per_flop: dict[str, float]  # by dtype
    j_per_byte: dict[str, float]  # by level: dram, onchip, link
    static_w: float
    idle_w: float
    tdp_w: float | None
    byte_scale: float  # a what-if device's factor on every byte energy (1 for real ones)

    def per_flop(self, dtype: str) -> float:
        return self.j_per_flop[normalize_dtype(dtype)]


def device_energy_class(device: Device, table: EnergyTable | None = None) -> str:
    """The class whose coefficients `device` uses (first matching rule; a what-if device is
    matched as itself: its name keeps the base's prefix)."""
    t = table or load_table()
    return next(r.cls for r in t.class_rules if r.matches(device))


def coefficients_for(
    device: Device, end: str = "value", table: EnergyTable | None = None
) -> Coefficients:
    """The coefficients of `device` at one end of their ranges. A what-if device with
    `byte_energy=F` multiplies every per-byte energy by F (HBM4 or processing-in-memory
    claims); its other scales (bandwidth, clocks) change times, not energy per operation."""
    if end not in ENDS:
        raise MemwallError(f"unknown range end {end!r}; accepted: {', '.join(ENDS)}")
    t = table or load_table()
    cls = device_energy_class(device, t)
    c = t.classes[cls]
    base = c.pj_per_flop_bf16.at(end) * 1e-12
    scale = float(device.scale.get("byte_energy", 1.0)) if device.scale else 1.0
    tdp = device.tdp_w if device.tdp_w and device.tdp_w > 0 else None
    if device.scale and "power" in device.scale and tdp is not None:
        tdp = min(tdp, float(device.scale["power"]))  # a power cap lowers the ceiling
    return Coefficients(
        device=device.name,
        device_class=cls,
        end=end,
        j_per_flop={d: base * t.dtype_ratio[d].at(end) for d in DTYPES},
        j_per_byte={lv: getattr(c.pj_per_byte, lv).at(end) * 1e-12 * scale for lv in LEVELS},
        static_w=(tdp or 0.0) * c.static_tdp_fraction.at(end),
        idle_w=(tdp or 0.0) * c.idle_tdp_fraction.at(end),
        tdp_w=tdp,
        byte_scale=scale,
    )


def sources_for(device: Device, table: EnergyTable | None = None) -> dict[str, dict]:
    """Every coefficient `device` uses with its range, basis and source (for JSON output)."""
    t = table or load_table()
    c = t.classes[device_energy_class(device, t)]
    out = {"pj_per_flop_bf16": c.pj_per_flop_bf16.model_dump()}
    out |= {f"pj_per_byte_{lv}": getattr(c.pj_per_byte, lv).model_dump() for lv in LEVELS}
    out["static_tdp_fraction"] = c.static_tdp_fraction.model_dump()
    out["idle_tdp_fraction"] = c.idle_tdp_fraction.model_dump()
    return out
