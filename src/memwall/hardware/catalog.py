"""The device catalog: spec-sheet roofs with a source per row, and the `Device` they become.

The catalog is a data file (`memwall/data/devices.csv`) in base units; this module only parses
and validates it, so a unit slip in the data is caught on load rather than printed as a number.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from memwall.errors import MemwallError, suggest

if TYPE_CHECKING:  # pandas is a dependency, but only catalog_frame needs it
    import pandas as pd

DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
KINDS: tuple[str, ...] = ("cpu", "gpu", "tpu", "accelerator")
COLUMNS: tuple[str, ...] = (
    "name",
    "display_name",
    "vendor",
    "kind",
    "released",
    *(f"peak_{d}" for d in DTYPES),
    "mem_type",
    "mem_capacity",
    "mem_bandwidth",
    "interconnect",
    "interconnect_bandwidth",
    "llc_bytes",
    "tdp_w",
    "source",
    "notes",
)
_ALIASES = {
    "float64": "fp64",
    "double": "fp64",
    "f64": "fp64",
    "float32": "fp32",
    "float": "fp32",
    "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "f16": "fp16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "i8": "int8",
    "i4": "int4",
    "float4": "fp4",
    "fp4_e2m1": "fp4",
    "mxfp4": "fp4",
    "nvfp4": "fp4",
}
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def normalize_dtype(dtype: str) -> str:
    """`bfloat16` -> `bf16` etc.; unknown names raise MemwallError listing the accepted ones."""
    d = str(dtype).strip().lower().removeprefix("torch.")
    d = _ALIASES.get(d, d)
    if d not in DTYPES:
        raise MemwallError(
            f"unknown dtype {dtype!r}{suggest(d, DTYPES)}; accepted: {', '.join(DTYPES)}"
        )
    return d


@dataclass(frozen=True)
class CacheLevel:
    """One memory level of a measured roofline: working-set size reached and its bandwidth."""

    name: str  # L1, L2, L3, ... (as found, not as the vendor names them)
    size: float  # bytes: the largest working set of the plateau
    bandwidth: float  # bytes/s

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "bandwidth": self.bandwidth}


@dataclass(frozen=True)
class Device:
    """A device's roofs and facts. Peaks are dense FLOP/s (OP/s for integers) per dtype."""

    name: str
    display_name: str
    vendor: str
    kind: str
    released: dt.date | None
    peaks: Mapping[str, float] = field(default_factory=dict, hash=False)
    mem_type: str = ""
    mem_capacity: float | None = None  # bytes
    mem_bandwidth: float | None = None  # bytes/s (DRAM / HBM)
    interconnect: str = ""
    interconnect_bandwidth: float | None = None  # bytes/s, both directions, per device
    llc_bytes: float | None = None
    tdp_w: float | None = None
    source: str = ""
    notes: str = ""
    measured: bool = False
    # Measured devices only (catalog rows leave these empty / zero):
    cache_levels: tuple[CacheLevel, ...] = ()
    op_overhead: float = 0.0  # seconds per op instance (eager dispatch)
    gemv_bandwidth: float | None = None  # bytes/s achieved by a matrix-vector product
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # What-if devices only: the device this one was scaled from, and the factors used.
    derived_from: str = ""
    scale: Mapping[str, float] = field(default_factory=dict, hash=False)

    @property
    def is_derived(self) -> bool:
        return bool(self.derived_from)

    def has_peak(self, dtype: str) -> bool:
        try:
            return normalize_dtype(dtype) in self.peaks
        except MemwallError:
            return False

    def peak(self, dtype: str) -> float:
        """Dense peak for `dtype`; MemwallError when the device has none (never a guess)."""
        d = normalize_dtype(dtype)
        if d not in self.peaks:
            have = ", ".join(k for k in DTYPES if k in self.peaks) or "none"
            origin = "measured" if self.measured else "catalog"
            raise MemwallError(
                f"device {self.name!r} has no {d} peak ({origin}); it has: {have}; "
                "choose a precision it supports (--precision)"
            )
        return self.peaks[d]

    def memory_bandwidth(self) -> float:
        """The main-memory roof in bytes/s; MemwallError when unknown."""
        if not self.mem_bandwidth or self.mem_bandwidth <= 0:
            raise MemwallError(f"device {self.name!r} has no memory bandwidth on record")
        return float(self.mem_bandwidth)

    def memory_roofs(self) -> list[tuple[str, float]]:
        """Memory ceilings, fastest first: measured cache levels then DRAM/HBM."""
        roofs = [(c.name, c.bandwidth) for c in self.cache_levels]
        if self.mem_bandwidth:
            roofs.append((self.mem_type or "DRAM", float(self.mem_bandwidth)))
        return roofs

    @property
    def roof_origin(self) -> str:
        base = "measured" if self.measured else "spec sheet"
        return f"what-if: {base} of {self.derived_from}, scaled" if self.is_derived else base

    def ridge(self, dtype: str) -> float:
        """FLOPs per byte where the compute roof of `dtype` meets the memory roof."""
        return self.peak(dtype) / self.memory_bandwidth()

    def row(self) -> dict[str, Any]:
        """A flat dict in the catalog's columns (peaks as peak_<dtype>), plus `measured`."""
        r: dict[str, Any] = {
            "name": self.name,
            "display_name": self.display_name,
            "vendor": self.vendor,
            "kind": self.kind,
            "released": self.released.isoformat() if self.released else None,
        }
        for d in DTYPES:
            r[f"peak_{d}"] = self.peaks.get(d)
        r.update(
            mem_type=self.mem_type,
            mem_capacity=self.mem_capacity,
            mem_bandwidth=self.mem_bandwidth,
            interconnect=self.interconnect,
            interconnect_bandwidth=self.interconnect_bandwidth,
            llc_bytes=self.llc_bytes,
            tdp_w=self.tdp_w,
            source=self.source,
            notes=self.notes,
            measured=self.measured,
        )
        return r

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, including the measured extras."""
        d = self.row()
        d["peaks"] = {k: self.peaks[k] for k in DTYPES if k in self.peaks}
        d["roof_origin"] = self.roof_origin
        if self.is_derived:
            d["what_if"] = {"derived_from": self.derived_from, "scale": dict(self.scale)}
        if self.measured:
            d["cache_levels"] = [c.to_dict() for c in self.cache_levels]
            d["op_overhead"] = self.op_overhead
            d["gemv_bandwidth"] = self.gemv_bandwidth
        return d


# ---------------------------------------------------------------- catalog


def _num(text: str, col: str, name: str, integer: bool = False) -> float | None:
    t = text.strip()
    if not t:
        return None
    try:
        v = float(t)
    except ValueError:
        raise MemwallError(f"devices.csv row {name!r}: {col} is not a number: {t!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise MemwallError(f"devices.csv row {name!r}: {col} must be positive, got {t!r}")
    return float(int(v)) if integer else v


def _parse_date(text: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise MemwallError(f"{where}: date must be YYYY-MM-DD, got {text!r}") from None


def _device_from_row(r: Mapping[str, str]) -> Device:
    name = (r.get("name") or "").strip()
    if not NAME_RE.fullmatch(name):
        raise MemwallError(f"devices.csv: bad device name {name!r}")
    kind = (r.get("kind") or "").strip()
    if kind not in KINDS:
        raise MemwallError(f"devices.csv row {name!r}: kind must be one of {KINDS}, got {kind!r}")
    peaks = {}
    for d in DTYPES:
        v = _num(r.get(f"peak_{d}") or "", f"peak_{d}", name)
        if v is not None:
            peaks[d] = v
    return Device(
        name=name,
        display_name=(r.get("display_name") or name).strip(),
        vendor=(r.get("vendor") or "").strip(),
        kind=kind,
        released=_parse_date(r.get("released") or "", f"devices.csv row {name!r}"),
        peaks=peaks,
        mem_type=(r.get("mem_type") or "").strip(),
        mem_capacity=_num(r.get("mem_capacity") or "", "mem_capacity", name, integer=True),
        mem_bandwidth=_num(r.get("mem_bandwidth") or "", "mem_bandwidth", name),
        interconnect=(r.get("interconnect") or "").strip(),
        interconnect_bandwidth=_num(
            r.get("interconnect_bandwidth") or "", "interconnect_bandwidth", name
        ),
        llc_bytes=_num(r.get("llc_bytes") or "", "llc_bytes", name, integer=True),
        tdp_w=_num(r.get("tdp_w") or "", "tdp_w", name),
        source=(r.get("source") or "").strip(),
        notes=(r.get("notes") or "").strip(),
    )


def parse_catalog(text: str) -> list[Device]:
    """Parse catalog CSV text; lines starting with '#' are comments."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise MemwallError(f"devices.csv lacks columns: {', '.join(missing)}")
    rows = list(reader)
    for r in rows:
        if None in r:  # more fields than the header: an unquoted comma shifted the row
            raise MemwallError(
                f"devices.csv row {r.get('name')!r} has {len(r[None])} field(s) more than the "
                "header (quote a field that holds a comma)"
            )
    devices = [_device_from_row(r) for r in rows]
    seen: set[str] = set()
    for d in devices:
        if d.name in seen:
            raise MemwallError(f"devices.csv: duplicate device name {d.name!r}")
        seen.add(d.name)
    return devices


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[Device, ...]:
    text = resources.files("memwall.data").joinpath("devices.csv").read_text(encoding="utf-8")
    return tuple(parse_catalog(text))


def load_catalog() -> list[Device]:
    """Every catalog device (spec-sheet roofs), in file order."""
    return list(_catalog())


def catalog_names() -> list[str]:
    return [d.name for d in _catalog()]


def catalog_frame(devices: list[Device] | None = None) -> pd.DataFrame:
    """The catalog as a DataFrame: the CSV's columns in base units, `released` as datetime64,
    plus `year` (fractional, for trend fits) and `measured`."""
    import pandas as pd

    rows = [d.row() for d in (devices if devices is not None else _catalog())]
    df = pd.DataFrame(rows, columns=[*COLUMNS, "measured"])
    df["released"] = pd.to_datetime(df["released"])
    df["year"] = df["released"].dt.year + (df["released"].dt.day_of_year - 1) / 365.25
    for c in df.columns:
        if c.startswith("peak_") or c in (
            "mem_capacity",
            "mem_bandwidth",
            "interconnect_bandwidth",
            "llc_bytes",
            "tdp_w",
        ):
            df[c] = df[c].astype(float)
    return df


def filter_devices(
    devices: list[Device],
    kind: str | None = None,
    vendor: str | None = None,
    since: int | None = None,
    name: str | None = None,
) -> list[Device]:
    """Devices matching every given filter (vendor and name: case-insensitive substrings)."""
    if since is not None and not 1950 <= since <= 2100:
        raise MemwallError(f"--since must be a year between 1950 and 2100, got {since}")
    out = devices
    if kind:
        out = [d for d in out if d.kind == kind]
    if vendor:
        v = vendor.strip().lower()
        vendors = sorted({d.vendor for d in devices if d.vendor})
        if not any(v in x.lower() for x in vendors):
            raise MemwallError(
                f"no vendor matches {vendor!r}{suggest(v, vendors)}; vendors: {', '.join(vendors)}"
            )
        out = [d for d in out if v in d.vendor.lower()]
    if since is not None:
        out = [d for d in out if d.released is not None and d.released >= dt.date(since, 1, 1)]
    if name:
        s = name.strip().lower()
        out = [d for d in out if s in d.name or s in d.display_name.lower()]
    return out
