"""Machines measured here: `memwall measure` results saved as JSON and read back as `Device`s.

Files live in the user's data directory (platformdirs; `MEMWALL_DATA_DIR` overrides it) and
resolve by name like catalog rows, `local` being the latest. A saved file is data someone could
have edited, so it is size- and depth-checked before JSON parsing (a deeply nested file would
otherwise raise RecursionError) and then validated by a strict pydantic schema: a number is a
finite number, never a string or a bool, and every problem is one `MemwallError` line.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
)

from memwall.errors import MemwallError
from memwall.hardware.catalog import NAME_RE, CacheLevel, Device, catalog_names, normalize_dtype
from memwall.io import write_json
from memwall.records.store import ENV_DATA_DIR as ENV_DATA_DIR  # the one place records live
from memwall.records.store import data_dir as data_dir
from memwall.records.store import devices_dir as _saved_dir

SAVED_FORMAT = "memwall-measurement/1"
MAX_FILE_BYTES = 4 << 20  # a real measurement is a few KB
MAX_DEPTH = 32  # a real measurement nests 3 levels


def _within(lo: float, hi: float, unit: str) -> Any:
    """A finite number in [lo, hi]: a saved value outside what any machine can measure (a
    bandwidth of 1e-300 B/s, say) would print inf ridges and nan times, so it is refused."""

    def check(v: float) -> float:
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo:g} to {hi:g} {unit}")
        return v

    return Annotated[StrictInt | StrictFloat, Field(allow_inf_nan=False), AfterValidator(check)]


# Physically sane ranges, each far wider than any real machine's measurement.
Bandwidth = _within(1e6, 1e16, "bytes/s")  # 1 MB/s .. 10 PB/s
FlopRate = _within(1e6, 1e19, "FLOP/s")  # 1 MFLOP/s .. 10 EFLOP/s
Bytes = _within(1, 1e15, "bytes")  # a cache level's working set
Capacity = _within(1 << 20, 1e18, "bytes")  # memory: 1 MiB .. 1 EB
Overhead = _within(0, 1, "seconds")  # per-op dispatch cost


def _flag(v: Any) -> bool:
    """true or false only (text such as "no" would read as true)."""
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


Flag = Annotated[bool, BeforeValidator(_flag)]


class _Level(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None
    size: Bytes
    bandwidth: Bandwidth


class _Meta(BaseModel):
    """Free-form metadata (every key kept) whose one roof, the memory capacity, is checked,
    and the busy flag (a bool: it decides whether the record is reused or replaced)."""

    model_config = ConfigDict(extra="allow")
    mem_total: Capacity | None = None
    busy: Flag | None = None  # measured while others kept the CPUs busy (measure.busy)


class _Measurement(BaseModel):
    """The schema of a saved measurement (unknown keys are kept out, not refused)."""

    model_config = ConfigDict(extra="ignore")
    format: Literal["memwall-measurement/1"] = SAVED_FORMAT
    dram_bandwidth: Bandwidth
    peak_flops: dict[str, FlopRate | None]
    cache_levels: list[_Level] = []
    op_overhead: Overhead = 0.0
    gemv_bandwidth: Bandwidth | None = None
    metadata: _Meta = _Meta()


def _first_error(e: ValidationError) -> str:
    """One readable line from pydantic's first error: the field, what is wanted, what was got."""
    err = e.errors()[0]
    loc = ".".join(
        str(x) for x in err.get("loc", ()) if not str(x).startswith(("int", "float", "constr"))
    )
    kind = err.get("type", "")
    if kind in ("int_type", "float_type", "int_from_float", "bool_type"):
        want = "must be a number (not text, a bool or a list)"
    elif kind in ("model_type", "dict_type"):
        want = "must be a JSON object"
    else:
        want = str(err.get("msg", "is invalid")).lower().removeprefix("value error, ")
    got = repr(err.get("input"))
    got = got if len(got) <= 40 else got[:37] + "..."
    return f"{loc or 'file'}: {want}, got {got}"


def json_depth(text: str) -> int:
    """Deepest nesting of [ and { in JSON text, not counting brackets inside strings."""
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def read_json_guarded(p: Path, where: str, hint: str = "") -> Any:
    """Parse a user-editable JSON file after checking its size and nesting depth."""
    try:
        if not p.is_file():
            raise MemwallError(f"{where} is not a regular file")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MemwallError(f"{where} is malformed: {size} bytes, more than {MAX_FILE_BYTES}")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MemwallError(f"{where} cannot be read: {e.__class__.__name__}") from None
    if json_depth(text) > MAX_DEPTH:
        raise MemwallError(f"{where} is malformed: nested deeper than {MAX_DEPTH} levels{hint}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        line = getattr(e, "lineno", "?")
        raise MemwallError(f"{where} is malformed: not JSON (line {line}){hint}") from None


def _peaks(raw: Mapping[str, float | None], bad) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for k, v in raw.items():
        if v is None:
            continue  # measured as unavailable
        try:
            peaks[normalize_dtype(k)] = float(v)
        except MemwallError:
            raise bad(f"peak_flops has unknown dtype {k!r}") from None
    return peaks


def device_from_measurement(m: Mapping[str, Any], name: str, where: str = "measurement") -> Device:
    """Build a Device from the JSON object `memwall measure` writes; MemwallError if malformed."""

    def bad(why: str) -> MemwallError:
        return MemwallError(f"{where} is malformed: {why}")

    if not isinstance(m, Mapping):
        raise bad("not a JSON object")
    try:
        rec = _Measurement.model_validate(dict(m))
    except ValidationError as e:
        raise bad(_first_error(e)) from None
    peaks = _peaks(rec.peak_flops, bad)
    levels = tuple(
        CacheLevel(c.name or f"L{i + 1}", float(c.size), float(c.bandwidth))
        for i, c in enumerate(rec.cache_levels)
    )
    meta = rec.metadata.model_dump(exclude_unset=True)
    released = None
    if isinstance(meta.get("date"), str):
        try:
            released = dt.date.fromisoformat(meta["date"][:10])
        except ValueError:
            raise bad("metadata.date must start with YYYY-MM-DD") from None
    cap = meta.get("mem_total")
    kind = meta.get("device_kind") if meta.get("device_kind") in ("cpu", "gpu") else "cpu"
    return Device(
        name=name,
        display_name=f"{meta.get('device_name') or meta.get('cpu_model') or 'this machine'}"
        " (measured)",
        vendor=str(meta.get("cpu_vendor") or ""),
        kind=kind,
        released=released,
        peaks=peaks,
        mem_type="DRAM" if kind == "cpu" else "device memory",
        mem_capacity=float(cap) if cap is not None else None,
        mem_bandwidth=float(rec.dram_bandwidth),
        llc_bytes=max((c.size for c in levels), default=None),
        source=f"memwall measure ({meta.get('mode', '?')} mode) on {meta.get('date', '?')}",
        notes=f"{meta.get('threads', '?')} threads; torch {meta.get('torch', '?')}"
        + ("; measured on a busy machine" if meta.get("busy") else ""),
        measured=True,
        cache_levels=levels,
        op_overhead=float(rec.op_overhead),
        gemv_bandwidth=float(rec.gemv_bandwidth) if rec.gemv_bandwidth is not None else None,
        metadata=dict(meta),
    )


def check_save_name(name: str) -> str:
    """A name for `measure --save`: a slug that does not shadow a catalog device."""
    n = name.strip().lower()
    if not NAME_RE.fullmatch(n):
        raise MemwallError(
            f"bad device name {name!r}: use 1-64 characters a-z, 0-9, '.', '_', '-' "
            "starting with a letter or digit"
        )
    if n in catalog_names():
        raise MemwallError(f"{name!r} is a catalog device; choose another name for a measurement")
    return n


def saved_names() -> list[str]:
    """Names of saved measurements (files whose stem is a valid device name)."""
    d = _saved_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if NAME_RE.fullmatch(p.stem))


def save_measurement(
    result: Mapping[str, Any], name: str | None = None, local: bool = True
) -> list[Path]:
    """Save a measurement as `local` (unless `local` is False) and as `name` when given;
    returns the paths."""
    device_from_measurement(result, "local")  # refuse to save something unreadable
    names = (["local"] if local else []) + (
        [check_save_name(name)] if name and name.strip().lower() != "local" else []
    )
    paths = []
    for n in names:
        obj = {"format": SAVED_FORMAT, "name": n, **dict(result)}
        p = _saved_dir() / f"{n}.json"
        write_json(p, obj, indent=2, mkdir=True)
        paths.append(p)
    return paths


def load_saved(name: str) -> Device:
    """A saved measurement (`local` = the latest); MemwallError when missing or malformed."""
    p = _saved_dir() / f"{name}.json"
    if not p.exists():
        if name == "local":
            raise MemwallError(
                "no measurement of this machine saved yet; run `memwall measure` (or --quick) first"
            )
        raise MemwallError(f"no saved device {name!r} in {p.parent}")
    return load_json_device(p, name)


def load_json_device(p: Path, name: str) -> Device:
    """A Device from a saved-measurement file anywhere on disk; MemwallError if unusable."""
    where = f"saved device file {p}"
    obj = read_json_guarded(p, where, f"; re-run `memwall measure --save {name}`")
    if isinstance(obj, Mapping) and obj.get("format", SAVED_FORMAT) != SAVED_FORMAT:
        raise MemwallError(f"{where} is malformed: unknown format {obj.get('format')!r}")
    return device_from_measurement(obj, name, where)
