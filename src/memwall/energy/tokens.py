"""Energy and cost per token and per request: what serving systems are compared by.

Cost per million tokens is the devices' hourly price times the predicted time the tokens
take (`--price-per-hour`: US dollars per device-hour, the rental price); it is not the
electricity bill, which `energy_j` gives in joules.
"""

from __future__ import annotations

import math
from typing import Any

from memwall.energy.model import Energy
from memwall.errors import MemwallError

KWH = 3.6e6  # joules


def check_price(price_per_hour: float | None) -> float | None:
    """A device-hour price in dollars: finite and > 0 (None: not given)."""
    if price_per_hour is None:
        return None
    p = float(price_per_hour)
    if not (math.isfinite(p) and 0 < p <= 1e6):
        raise MemwallError(
            f"--price-per-hour must be a price in US dollars per device-hour, above 0 and at "
            f"most 1,000,000, got {price_per_hour!r}"
        )
    return p


def per_token(
    energy: Energy,
    tokens: float,
    requests: float | None = None,
    price_per_hour: float | None = None,
    what: str = "output",
) -> dict[str, Any]:
    """Joules per token (and per request), average power and, with a price, dollars per
    million tokens, for `tokens` tokens that took `energy` (all devices)."""
    if not (tokens > 0 and math.isfinite(tokens)):
        raise MemwallError(f"tokens must be a positive number, got {tokens!r}")
    lo, hi = energy.low.total_j, energy.high.total_j
    out: dict[str, Any] = {
        f"j_per_{what}_token": energy.total_j / tokens,
        f"j_per_{what}_token_range": [lo / tokens, hi / tokens],
        f"{what}_tokens_per_kwh": tokens * KWH / energy.total_j if energy.total_j > 0 else None,
        "avg_power_w": energy.avg_power_w,
        "avg_power_per_device_w": energy.avg_power_w / energy.devices,
        "energy_j": energy.total_j,
        "shares": energy.shares(),
        "capped_at_tdp": energy.value.capped,
        "device_class": energy.device_class,
        "devices": energy.devices,
        "time_s": energy.time_s,
    }
    if requests:
        out["j_per_request"] = energy.total_j / requests
    price = check_price(price_per_hour)
    if price is not None:
        hours = energy.time_s * energy.devices / 3600.0
        out["price_per_device_hour_usd"] = price
        out[f"usd_per_million_{what}_tokens"] = price * hours / tokens * 1e6
    out["predicted"] = True
    return out


def describe(d: dict[str, Any], what: str = "output") -> str:
    """One line for a table caption, units and 'predicted' said."""
    j = d[f"j_per_{what}_token"]
    lo, hi = d[f"j_per_{what}_token_range"]
    s = d["shares"]
    line = (
        f"energy (predicted): {j:.4g} J per {what} token (range {lo:.3g}-{hi:.3g} J), average "
        f"power {d['avg_power_w']:.4g} W over {d['devices']} device(s); compute "
        f"{100 * s['compute']:.0f} %, moving bytes {100 * s['bytes']:.0f} %, static "
        f"{100 * s['static']:.0f} %"
    )
    if "j_per_request" in d:
        line += f"; {d['j_per_request']:.4g} J per request"
    key = f"usd_per_million_{what}_tokens"
    if key in d:
        line += f"; ${d[key]:.4g} per million {what} tokens at ${d['price_per_device_hour_usd']:g}"
        line += " per device-hour"
    if d["capped_at_tdp"]:
        line += "; capped at the TDP"
    if s["static"] == 0:
        line += "; no TDP in the catalog, so no static power counted (a lower bound)"
    return line
