"""Devices: the bundled catalog (spec sheets), machines measured here, and what-if devices.

`get_device(name)` resolves every way a user can name a device: a catalog row (`h100-sxm`),
`local` or a name given to `memwall measure --save`, a saved JSON path, or a what-if device
derived from any of those (`h100-sxm@bw=2`, see `memwall.hardware.derived`). Importing this
package needs neither torch nor a measurement.
"""

from __future__ import annotations

from pathlib import Path

from memwall.errors import MemwallError, suggest
from memwall.hardware.catalog import (
    COLUMNS,
    DTYPES,
    KINDS,
    NAME_RE,
    CacheLevel,
    Device,
    catalog_frame,
    catalog_names,
    filter_devices,
    load_catalog,
    normalize_dtype,
    parse_catalog,
)
from memwall.hardware.derived import SCALE_KEYS, SYNTAX, derive, is_derived_name, parse_derived
from memwall.hardware.saved import (
    ENV_DATA_DIR,
    SAVED_FORMAT,
    check_save_name,
    data_dir,
    device_from_measurement,
    json_depth,
    load_json_device,
    load_saved,
    read_json_guarded,
    save_measurement,
    saved_names,
)

__all__ = [
    "COLUMNS",
    "DTYPES",
    "ENV_DATA_DIR",
    "KINDS",
    "SAVED_FORMAT",
    "SCALE_KEYS",
    "CacheLevel",
    "Device",
    "catalog_frame",
    "catalog_names",
    "check_save_name",
    "data_dir",
    "derive",
    "device_from_measurement",
    "filter_devices",
    "get_device",
    "json_depth",
    "load_catalog",
    "load_saved",
    "normalize_dtype",
    "parse_catalog",
    "read_json_guarded",
    "save_measurement",
    "saved_names",
]


def _unknown(name: str, n: str) -> MemwallError:
    choices = [c for c in (*catalog_names(), "local", *saved_names()) if c not in (n, name)]
    return MemwallError(
        f"unknown device {name!r}{suggest(n, choices)}; `memwall devices` lists the catalog, "
        f"`memwall measure --save NAME` adds this machine, {SYNTAX.split(',')[0]} scales one"
    )


def _real_device(name: str) -> Device:
    n = name.strip().lower()
    for d in load_catalog():
        if d.name == n:
            return d
    if n.endswith(".json") and Path(name.strip()).expanduser().is_file():
        p = Path(name.strip()).expanduser()
        return load_json_device(p, p.stem)
    if NAME_RE.fullmatch(n) and (n == "local" or n in saved_names()):
        return load_saved(n)
    raise _unknown(name, n)


def get_device(name: str) -> Device:
    """Resolve a catalog name, `local`, a saved name or JSON path, or BASE@KEY=FACTOR."""
    if not isinstance(name, str) or not name.strip():
        raise MemwallError("device name is empty; see `memwall devices` for the catalog")
    if is_derived_name(name):
        base, scale = parse_derived(name)
        return derive(_real_device(base), scale)
    return _real_device(name)
