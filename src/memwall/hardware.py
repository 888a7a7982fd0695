"""Devices: the bundled catalog (spec sheets, with a source per row) and machines measured here.

The catalog is a data file (`memwall/data/devices.csv`) in base units; this module only parses
and validates it. Measurements made by `memwall measure` are saved as JSON in the user's data
directory (platformdirs; `MEMWALL_DATA_DIR` overrides it) and resolve by name like catalog rows,
`local` being the latest one. Importing this module needs neither torch nor a measurement.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memwall.errors import MemwallError, suggest

if TYPE_CHECKING:  # pandas is a dependency, but only catalog_frame needs it
    import pandas as pd

DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")
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
}
SAVED_FORMAT = "memwall-measurement/1"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ENV_DATA_DIR = "MEMWALL_DATA_DIR"


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
        return "measured" if self.measured else "spec sheet"

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
    if not _NAME_RE.fullmatch(name):
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
    devices = [_device_from_row(r) for r in reader]
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


# ---------------------------------------------------------------- measured devices


def data_dir() -> Path:
    """Where measurements live: $MEMWALL_DATA_DIR, else the platformdirs user data dir."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("memwall", appauthor=False))


def _saved_dir() -> Path:
    return data_dir() / "devices"


def check_save_name(name: str) -> str:
    """A name for `measure --save`: a slug that does not shadow a catalog device."""
    n = name.strip().lower()
    if not _NAME_RE.fullmatch(n):
        raise MemwallError(
            f"bad device name {name!r}: use 1-64 characters a-z, 0-9, '.', '_', '-' "
            "starting with a letter or digit"
        )
    if n in catalog_names():
        raise MemwallError(f"{name!r} is a catalog device; choose another name for a measurement")
    return n


def saved_names() -> list[str]:
    d = _saved_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json"))


def _finite_pos(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def device_from_measurement(m: Mapping[str, Any], name: str, where: str = "measurement") -> Device:
    """Build a Device from the JSON object `memwall measure` writes; MemwallError if malformed."""

    def bad(why: str) -> MemwallError:
        return MemwallError(f"{where} is malformed: {why}")

    if not isinstance(m, Mapping):
        raise bad("not a JSON object")
    dram = m.get("dram_bandwidth")
    if not _finite_pos(dram):
        raise bad("dram_bandwidth must be a positive number (bytes/s)")
    pf = m.get("peak_flops")
    if not isinstance(pf, Mapping):
        raise bad("peak_flops must be an object {dtype: FLOP/s}")
    peaks: dict[str, float] = {}
    for k, v in pf.items():
        if v is None:
            continue  # measured as unavailable
        if not _finite_pos(v):
            raise bad(f"peak_flops[{k!r}] must be a positive number or null")
        try:
            peaks[normalize_dtype(k)] = float(v)
        except MemwallError:
            raise bad(f"peak_flops has unknown dtype {k!r}") from None
    levels = []
    raw_levels = m.get("cache_levels", [])
    if not isinstance(raw_levels, list):
        raise bad("cache_levels must be a list")
    for i, c in enumerate(raw_levels):
        if not (
            isinstance(c, Mapping)
            and _finite_pos(c.get("size"))
            and _finite_pos(c.get("bandwidth"))
        ):
            raise bad(f"cache_levels[{i}] needs positive size and bandwidth")
        levels.append(
            CacheLevel(str(c.get("name", f"L{i + 1}")), float(c["size"]), float(c["bandwidth"]))
        )
    ovh = m.get("op_overhead", 0.0)
    if not (
        isinstance(ovh, int | float)
        and not isinstance(ovh, bool)
        and math.isfinite(ovh)
        and ovh >= 0
    ):
        raise bad("op_overhead must be a non-negative number of seconds")
    gemv = m.get("gemv_bandwidth")
    if gemv is not None and not _finite_pos(gemv):
        raise bad("gemv_bandwidth must be a positive number or null")
    meta = m.get("metadata", {})
    if not isinstance(meta, Mapping):
        raise bad("metadata must be an object")
    released = None
    if isinstance(meta.get("date"), str):
        try:
            released = dt.date.fromisoformat(meta["date"][:10])
        except ValueError:
            raise bad("metadata.date must start with YYYY-MM-DD") from None
    cpu = str(meta.get("cpu_model") or "this machine")
    cap = meta.get("mem_total")
    return Device(
        name=name,
        display_name=f"{cpu} (measured)",
        vendor=str(meta.get("cpu_vendor") or ""),
        kind="cpu",
        released=released,
        peaks=peaks,
        mem_type="DRAM",
        mem_capacity=float(cap) if _finite_pos(cap) else None,
        mem_bandwidth=float(dram),
        llc_bytes=max((c.size for c in levels), default=None),
        source=f"memwall measure ({meta.get('mode', '?')} mode) on {meta.get('date', '?')}",
        notes=f"{meta.get('threads', '?')} threads; torch {meta.get('torch', '?')}",
        measured=True,
        cache_levels=tuple(levels),
        op_overhead=float(ovh),
        gemv_bandwidth=float(gemv) if gemv is not None else None,
        metadata=dict(meta),
    )


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_measurement(result: Mapping[str, Any], name: str | None = None) -> list[Path]:
    """Save a measurement as `local` (always) and as `name` when given; returns the paths."""
    device_from_measurement(result, "local")  # refuse to save something unreadable
    names = ["local"] + (
        [check_save_name(name)] if name and name.strip().lower() != "local" else []
    )
    paths = []
    for n in names:
        obj = {"format": SAVED_FORMAT, "name": n, **dict(result)}
        p = _saved_dir() / f"{n}.json"
        _write_json_atomic(p, obj)
        paths.append(p)
    return paths


def load_saved(name: str) -> Device:
    """A saved measurement (`local` = the latest); MemwallError when missing or malformed."""
    p = _saved_dir() / f"{name}.json"
    if not p.is_file():
        if name == "local":
            raise MemwallError(
                "no measurement of this machine saved yet; run `memwall measure` (or --quick) first"
            )
        raise MemwallError(f"no saved device {name!r} in {p.parent}")
    return _load_json_device(p, name)


def _load_json_device(p: Path, name: str) -> Device:
    where = f"saved device file {p}"
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise MemwallError(f"{where} cannot be read: {e.__class__.__name__}") from None
    except json.JSONDecodeError as e:
        raise MemwallError(
            f"{where} is malformed: not JSON (line {e.lineno}); "
            f"re-run `memwall measure --save {name}`"
        ) from None
    if isinstance(obj, Mapping) and obj.get("format", SAVED_FORMAT) != SAVED_FORMAT:
        raise MemwallError(f"{where} is malformed: unknown format {obj.get('format')!r}")
    return device_from_measurement(obj, name, where)


def get_device(name: str) -> Device:
    """Resolve a catalog name, `local`, a name given to `measure --save`, or a saved JSON path."""
    if not isinstance(name, str) or not name.strip():
        raise MemwallError("device name is empty; see `memwall devices` for the catalog")
    n = name.strip().lower()
    for d in _catalog():
        if d.name == n:
            return d
    if n.endswith(".json") and Path(name).expanduser().is_file():
        p = Path(name).expanduser()
        return _load_json_device(p, p.stem)
    if _NAME_RE.fullmatch(n) and (n == "local" or n in saved_names()):
        return load_saved(n)
    choices = [*catalog_names(), "local", *saved_names()]
    raise MemwallError(
        f"unknown device {name!r}{suggest(n, choices)}; `memwall devices` lists the catalog, "
        "`memwall measure --save NAME` adds this machine"
    )
