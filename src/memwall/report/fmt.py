"""How numbers are shown in the report: SI prefixes with units, percentages, ratios.

Shared by the page template (as filters) and the sections' sentences, so a number reads the
same everywhere and a test can recompute the text from results.json.
"""

from __future__ import annotations

import math
from typing import Any

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_SMALL = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
_BINARY = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def _bad(v: Any) -> bool:
    return (
        v is None or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
    )


def si(v: Any, unit: str = "") -> str:
    """1.23e12 -> '1.23 T' + unit; seconds below 1 use m/µ/n."""
    if _bad(v):
        return "–"
    a = abs(v)
    sep = " " if unit else ""
    if a >= 1e3:
        for scale, p in _PREFIXES:
            if a >= scale:
                return f"{v / scale:.3g} {p}{unit}"
    if unit == "s" and 0 < a < 1:
        for scale, p in _SMALL:
            if a >= scale:
                return f"{v / scale:.3g} {p}{unit}"
        return f"{v:.3g}{sep}{unit}"
    return f"{v:.3g}{sep}{unit}"


def nbytes(v: Any) -> str:
    """Bytes in binary units (GiB), as memory capacities are sold and reported."""
    if _bad(v):
        return "–"
    for scale, name in _BINARY:
        if abs(v) >= scale:
            return f"{v / scale:.3g} {name}"
    return f"{v:.0f} B"


def pct(v: Any) -> str:
    return "–" if _bad(v) else f"{100 * v:.1f}%"


def ratio(v: Any) -> str:
    return "–" if _bad(v) else f"{v:.3g}x"


def num(v: Any) -> str:
    if _bad(v):
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.3g}"


FORMATS = {
    "si": lambda v, u: si(v, u),
    "seconds": lambda v, u: si(v, "s"),
    "flops": lambda v, u: si(v, u or "FLOP"),
    "rate": lambda v, u: si(v, u),
    "bytes": lambda v, u: nbytes(v),
    "pct": lambda v, u: pct(v),
    "ratio": lambda v, u: ratio(v),
    "num": lambda v, u: num(v),
    "int": lambda v, u: "–" if _bad(v) else f"{int(v):,}",
    "text": lambda v, u: "–" if v is None else str(v),
    "mark": lambda v, u: "–" if v is None else str(v),  # a noise mark (report.noise)
}


def cell(value: Any, fmt: str, unit: str = "") -> str:
    """The text of one table cell."""
    return FORMATS.get(fmt, FORMATS["text"])(value, unit)
