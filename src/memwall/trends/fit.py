"""Log-linear growth fits: OLS of log10(value) on the date as a fractional year.

This is exactly how the paper drew its trend lines (every plotted point of a series, least
squares on log10 against the date); its printed "Nx / 2 yrs" is 10**(2 * slope). The
regression and its interval come from scipy.stats (`linregress` and the Student t
distribution with n - 2 degrees of freedom), not from formulas written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats

from memwall.errors import MemwallError
from memwall.trends.data import (
    VALUE_RANGE,
    Dataset,
    SeriesInfo,
    fractional_year,
    load_dataset,
    parse_when,
    year_to_date,
)

MIN_POINTS = 3  # a slope with a confidence interval needs at least one residual degree of freedom
CONFIDENCE = 0.95
# The steepest slope (log10 per year) reported, the fit's and its interval's bounds: 1e5x a year
# is far beyond any real trend, and 10**(20 x slope) and the gap between two series
# (10**(20 x difference)) stay finite; steeper means wrong values or dates, or too few points.
MAX_SLOPE = 5.0
METHOD = {
    "regression": "ordinary least squares of log10(value) on the date as a fractional year "
    "(year + (day of year - 1) / days in year), scipy.stats.linregress",
    "interval": "95% two-sided confidence interval of the slope: slope +/- t(0.975, n-2) x "
    "standard error (scipy.stats.t)",
    "growth": "growth per N years = 10**(N x slope); its interval is 10**(N x slope bounds)",
    "projection": "fitted line 10**(intercept + slope x year); the band pivots the slope's "
    "95% interval about the data's centroid (intercept uncertainty not included)",
}


@dataclass(frozen=True)
class Fit:
    """One fitted series: slope in log10 units per year, with what is needed to report it."""

    dataset: str
    series: str
    display: str
    unit: str
    n: int
    first_date: date
    last_date: date
    first_year: float
    last_year: float
    slope: float  # log10(value) per year
    slope_stderr: float
    slope_low: float
    slope_high: float
    intercept: float  # log10(value) at year 0 (use `predict`)
    r2: float
    p_value: float
    x_mean: float
    y_mean: float
    n_estimates: int = 0
    since: float | None = None
    until: float | None = None

    @property
    def span_years(self) -> float:
        return self.last_year - self.first_year

    def growth(self, years: float) -> float:
        """Factor the fitted value grows by in `years` years."""
        return 10 ** (self.slope * years)

    def growth_ci(self, years: float) -> tuple[float, float]:
        a, b = 10 ** (self.slope_low * years), 10 ** (self.slope_high * years)
        return (min(a, b), max(a, b))

    @property
    def growth_per_2yr(self) -> float:
        return self.growth(2.0)

    @property
    def growth_per_20yr(self) -> float:
        return self.growth(20.0)

    @property
    def doubling_years(self) -> float | None:
        """Years to double (None when the fit does not grow)."""
        return math.log10(2.0) / self.slope if self.slope > 0 else None

    def predict(self, year: float) -> float:
        return 10 ** (self.intercept + self.slope * year)

    def band(self, year: float) -> tuple[float, float]:
        """Projection band from the slope's interval, pivoting on the data's centroid."""
        dx = year - self.x_mean
        a = 10 ** (self.y_mean + self.slope_low * dx)
        b = 10 ** (self.y_mean + self.slope_high * dx)
        return (min(a, b), max(a, b))

    def to_dict(self) -> dict:
        lo2, hi2 = self.growth_ci(2.0)
        lo20, hi20 = self.growth_ci(20.0)
        return {
            "dataset": self.dataset,
            "series": self.series,
            "display": self.display,
            "unit": self.unit,
            "n": self.n,
            "n_estimates": self.n_estimates,
            "first_date": self.first_date.isoformat(),
            "last_date": self.last_date.isoformat(),
            "span_years": self.span_years,
            "growth_per_2yr": self.growth_per_2yr,
            "growth_per_2yr_ci95": [lo2, hi2],
            "growth_per_20yr": self.growth_per_20yr,
            "growth_per_20yr_ci95": [lo20, hi20],
            "doubling_time_years": self.doubling_years,
            "slope_log10_per_year": self.slope,
            "slope_stderr": self.slope_stderr,
            "slope_ci95": [self.slope_low, self.slope_high],
            "intercept_log10": self.intercept,
            "r2": self.r2,
            "p_value": self.p_value,
        }


def loglinear(years, values) -> dict:
    """OLS of log10(values) on years via scipy; returns slope, its 95% CI, R^2 and more."""
    x = np.asarray(years, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise MemwallError("years and values must be 1-D and of equal length")
    if len(x) < MIN_POINTS:
        raise MemwallError(f"a fit needs at least {MIN_POINTS} points, got {len(x)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(y > 0)):
        raise MemwallError("a log-linear fit needs finite dates and positive finite values")
    if np.ptp(x) == 0:
        raise MemwallError("all points share one date; a growth rate needs a spread of dates")
    lo, hi = VALUE_RANGE
    if not (np.all(y >= lo) and np.all(y <= hi)):
        raise MemwallError(f"a log-linear fit takes values from {lo:g} to {hi:g}")
    ly = np.log10(y)
    res = stats.linregress(x, ly)
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 2)
    return {
        "slope": float(res.slope),
        "intercept": float(res.intercept),
        "stderr": float(res.stderr),
        "slope_low": float(res.slope - t * res.stderr),
        "slope_high": float(res.slope + t * res.stderr),
        "r2": float(res.rvalue**2),
        "p_value": float(res.pvalue),
        "x_mean": float(np.mean(x)),
        "y_mean": float(np.mean(ly)),
        "n": int(len(x)),
    }


def fit_points(
    points: pd.DataFrame,
    *,
    dataset: str = "",
    info: SeriesInfo | None = None,
    series: str = "",
    since: float | None = None,
    until: float | None = None,
) -> Fit:
    """Fit a frame with `year` (fractional) and `value` columns (and optional date/estimate)."""
    name = info.series if info else series
    if len(points) < MIN_POINTS:
        where = _window(since, until)
        raise MemwallError(
            f"series '{name}' of dataset '{dataset}' has {len(points)} point"
            f"{'' if len(points) == 1 else 's'}{where}; a fit needs at least {MIN_POINTS}"
        )
    r = loglinear(points["year"], points["value"])
    _check_slope(r, name, dataset)
    dates = (
        pd.to_datetime(points["date"])
        if "date" in points
        else pd.Series(pd.to_datetime([f"{int(y)}-01-01" for y in points["year"]]))
    )
    return Fit(
        dataset=dataset,
        series=name,
        display=info.display if info else name,
        unit=info.unit if info else "",
        n=r["n"],
        first_date=dates.min().date(),
        last_date=dates.max().date(),
        first_year=float(points["year"].min()),
        last_year=float(points["year"].max()),
        slope=r["slope"],
        slope_stderr=r["stderr"],
        slope_low=r["slope_low"],
        slope_high=r["slope_high"],
        intercept=r["intercept"],
        r2=r["r2"],
        p_value=r["p_value"],
        x_mean=r["x_mean"],
        y_mean=r["y_mean"],
        n_estimates=int(points["estimate"].sum()) if "estimate" in points else 0,
        since=since,
        until=until,
    )


def _check_slope(r: dict, name: str, dataset: str) -> None:
    """Refuse a fit whose slope or 95% interval is steeper than MAX_SLOPE (see there)."""
    steep = max(abs(r["slope"]), abs(r["slope_low"]), abs(r["slope_high"]))
    if not steep <= MAX_SLOPE:  # also nan
        raise MemwallError(
            f"series '{name}' of dataset '{dataset}' changes by up to 10^{steep:.3g}x a year "
            f"(fit and 95% interval); a growth rate is reported up to {10**MAX_SLOPE:g}x a "
            "year: check its values and dates, or give more points over a longer span"
        )


def _window(since: float | None, until: float | None) -> str:
    if since is None and until is None:
        return ""
    a = year_to_date(since).isoformat() if since is not None else "the start"
    b = year_to_date(until).isoformat() if until is not None else "the end"
    return f" between {a} and {b}"


def _as_dataset(dataset: Dataset | str) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def year_bounds(since, until) -> tuple[float | None, float | None]:
    """--since and --until as fractional years (None: open), refusing an empty range."""
    lo = since if isinstance(since, float) or since is None else parse_when(since, end=False)
    hi = until if isinstance(until, float) or until is None else parse_when(until, end=True)
    if lo is not None and hi is not None and lo > hi:
        raise MemwallError(
            f"--since ({year_to_date(lo)}) is after --until ({year_to_date(hi)}); nothing to fit"
        )
    return lo, hi


def fit_series(
    dataset: Dataset | str,
    series: str,
    since: float | str | int | None = None,
    until: float | str | int | None = None,
) -> Fit:
    """Fit one series of a dataset inside an optional date window."""
    ds = _as_dataset(dataset)
    lo, hi = year_bounds(since, until)
    info = ds.series_info(series)
    return fit_points(ds.select(series, lo, hi), dataset=ds.name, info=info, since=lo, until=hi)


def fit_all(
    dataset: Dataset | str = "paper",
    series: list[str] | None = None,
    since: float | str | int | None = None,
    until: float | str | int | None = None,
    *,
    strict: bool = True,
) -> list[Fit]:
    """Fit every requested series (default: the dataset's headline series).

    With strict=False a series left with too few points is skipped instead of raising.
    """
    ds = _as_dataset(dataset)
    names = expand_series(series) or ds.default_series()
    for s in names:  # name errors first, before any work
        ds.series_info(s)
    fits = []
    for s in names:
        try:
            fits.append(fit_series(ds, s, since, until))
        except MemwallError:
            if strict:
                raise
    return fits


def fit_column(
    frame: pd.DataFrame, column: str, date_column: str = "date", *, dataset: str = ""
) -> Fit:
    """Fit any numeric column of any DataFrame against a date (or year) column."""
    for c in (column, date_column):
        if c not in frame.columns:
            raise MemwallError(
                f"column '{c}' not in the table; accepted: {', '.join(map(str, frame.columns))}"
            )
    v = pd.to_numeric(frame[column], errors="coerce")
    d = frame[date_column]
    if pd.api.types.is_numeric_dtype(d):
        years = d.astype(float)
        dates = pd.to_datetime([f"{int(y)}-01-01" for y in years])
    else:
        dates = pd.to_datetime(d, errors="coerce")
        years = fractional_year(dates)
    pts = pd.DataFrame({"year": years.to_numpy(), "value": v.to_numpy(), "date": dates})
    pts = pts[pts["value"].notna() & (pts["value"] > 0) & pts["year"].notna()]
    return fit_points(pts, dataset=dataset, series=column)


def expand_series(series: list[str] | str | None) -> list[str]:
    """Accept repeated names and comma-separated lists; drop duplicates, keep order.
    None (not given) is []; given but naming nothing (`--series ''`) is an error."""
    if series is None:
        return []
    items = [series] if isinstance(series, str) else list(series)
    out: list[str] = []
    for item in items:
        for s in str(item).split(","):
            s = s.strip()
            if s and s not in out:
                out.append(s)
    if not out and items:
        raise MemwallError(
            "--series names no series; give one or more names (comma-separated), or leave it "
            "out for the dataset's headline series"
        )
    return out
