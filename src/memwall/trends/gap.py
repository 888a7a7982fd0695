"""The widening gap: compute outgrowing memory and interconnect bandwidth.

Two views of one fact. (1) The ratio of two growth rates: if peak FLOP/s grows 3.0x and DRAM
bandwidth 1.6x every 2 years, the FLOPs a kernel must do per byte to stay compute-bound grows
about 1.9x every 2 years. (2) The ridge point itself, measured on flagship accelerators
(peak dense 16-bit FLOP/s / memory bandwidth, from spec sheets), fitted and projected.
"""

from __future__ import annotations

import math

import pandas as pd

from memwall.trends.data import (
    _catalog_frame,
    _is_accelerator,
    fractional_year,
    peak_tensor_flops,
)
from memwall.trends.fit import Fit, fit_points

RIDGE_PRECISION = "dense 16-bit tensor peak (the higher of bf16 and fp16), spec sheet"
FLAGSHIP_RULE = (
    "per vendor and release year, the accelerator with the highest dense 16-bit peak "
    "among catalog devices that list both a 16-bit peak and a memory bandwidth"
)


def rate_gap(faster: Fit, slower: Fit) -> dict:
    """How much faster one series grows than another (e.g. FLOPS over DRAM bandwidth).

    The range combines the two slopes' 95% intervals at their extremes: a conservative
    bound, not a formal interval of the difference.
    """
    d = faster.slope - slower.slope
    lo = faster.slope_low - slower.slope_high
    hi = faster.slope_high - slower.slope_low
    return {
        "numerator": faster.series,
        "denominator": slower.series,
        "dataset": faster.dataset,
        "numerator_per_2yr": faster.growth_per_2yr,
        "denominator_per_2yr": slower.growth_per_2yr,
        "ratio_per_2yr": 10 ** (2 * d),
        "ratio_per_2yr_range": [10 ** (2 * lo), 10 ** (2 * hi)],
        "ratio_per_20yr": 10 ** (20 * d),
        "ratio_per_20yr_range": [10 ** (20 * lo), 10 ** (20 * hi)],
        "range_method": "extremes of the two slopes' 95% intervals (conservative)",
        "numerator_span": [faster.first_date.isoformat(), faster.last_date.isoformat()],
        "denominator_span": [slower.first_date.isoformat(), slower.last_date.isoformat()],
    }


def ridge_table(
    catalog: pd.DataFrame | None = None,
    *,
    flagship_only: bool = True,
    since: float | None = None,
    until: float | None = None,
) -> pd.DataFrame:
    """Accelerators' ridge points (FLOP per byte of DRAM traffic) by release date."""
    cat = _catalog_frame() if catalog is None else catalog
    cols = ["name", "label", "vendor", "date", "year", "peak_flops", "mem_bandwidth", "ridge"]
    if cat is None or len(cat) == 0:
        return pd.DataFrame(columns=cols)
    df = cat.copy()
    df["date"] = pd.to_datetime(df["released"], errors="coerce", format="%Y-%m-%d")
    df["peak_flops"] = peak_tensor_flops(df)
    df["mem_bandwidth"] = pd.to_numeric(df["mem_bandwidth"], errors="coerce")
    ok = (
        _is_accelerator(df["kind"])
        & df["date"].notna()
        & (df["peak_flops"] > 0)
        & (df["mem_bandwidth"] > 0)
    )
    df = df[ok].copy()
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["year"] = fractional_year(df["date"]).astype(float)
    df["ridge"] = df["peak_flops"] / df["mem_bandwidth"]
    df["label"] = df["display_name"].where(df["display_name"].astype(str) != "", df["name"])
    if since is not None:
        df = df[df["year"] >= since]
    if until is not None:
        df = df[df["year"] <= until]
    if flagship_only and not df.empty:
        df["_y"] = df["date"].dt.year
        idx = df.groupby(["vendor", "_y"])["peak_flops"].idxmax()
        df = df.loc[idx]
    return df.sort_values(["year", "name"])[cols].reset_index(drop=True)


def ridge_fit(table: pd.DataFrame, *, since=None, until=None) -> Fit:
    pts = pd.DataFrame({"year": table["year"], "value": table["ridge"], "date": table["date"]})
    return fit_points(
        pts, dataset="current", series="ridge_point_flagship", since=since, until=until
    )


def projection_years(fit: Fit, ahead: tuple[int, ...] = (2, 4)) -> list[int]:
    base = int(math.floor(fit.last_year))
    return [base + a for a in ahead]


def project(fit: Fit, years: list[int]) -> list[dict]:
    """Fitted value at mid-year of each year, with the slope-interval band."""
    out = []
    for y in years:
        x = y + 0.5
        lo, hi = fit.band(x)
        out.append({"year": y, "value": fit.predict(x), "band_low": lo, "band_high": hi})
    return out


def ridge_summary(catalog: pd.DataFrame | None = None, *, since=None, until=None) -> dict:
    """Ridge points of flagship accelerators, their fit and a projection (JSON-ready)."""
    table = ridge_table(catalog, since=since, until=until)
    out: dict = {
        "unit": "FLOP/byte",
        "definition": "peak FLOP/s / memory bandwidth: the arithmetic intensity an operation "
        "needs to be compute-bound on that device",
        "precision": RIDGE_PRECISION,
        "source": "spec sheets via memwall's devices catalog (src/memwall/data/devices.csv)",
        "flagship_rule": FLAGSHIP_RULE,
        "points": [
            {
                "name": r.name,
                "label": r.label,
                "vendor": r.vendor,
                "date": r.date.date().isoformat(),
                "peak_flops": float(r.peak_flops),
                "mem_bandwidth": float(r.mem_bandwidth),
                "ridge": float(r.ridge),
            }
            for r in table.itertuples(index=False)
        ],
        "fit": None,
        "projection": [],
    }
    if len(table) >= 3 and table["year"].nunique() > 1:
        f = ridge_fit(table, since=since, until=until)
        out["fit"] = f.to_dict()
        out["projection"] = project(f, projection_years(f))
    else:
        out["note"] = "fewer than 3 flagship accelerators with dates: no fit"
    return out
