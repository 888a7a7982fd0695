"""Trend datasets as one long table of points: (series, date, value, unit, label, source, ...).

Three kinds of source feed it, so every fit works the same way on any of them:
- `paper`: the points of the paper's Figures 1 and 2, decoded from the authors' vector PDFs
  and bundled as CSV (normalised hardware values, exactly as plotted);
- `current`: today's hardware from the devices catalog (spec sheets, absolute units) and a
  bundled table of language models through 2026;
- any user CSV with a `date` column (long: `series,value`; or wide: one numeric column each).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from memwall.errors import MemwallError, suggest

DATASETS: tuple[str, ...] = ("paper", "current")
POINT_COLUMNS = ["series", "date", "year", "value", "unit", "label", "estimate", "source", "notes"]
MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_CSV_COLUMNS = 1000
MAX_SERIES_NAME = 100  # characters
# Values a log10 fit takes: far beyond any quantity measured, far from the float limits.
VALUE_RANGE = (1e-100, 1e100)
# Columns of a user CSV that describe a point rather than hold a value to fit.
_META_COLUMNS = {"date", "year", "series", "unit", "label", "estimate", "source", "notes", "name"}


def data_dir():
    return resources.files("memwall") / "data" / "trends"


@dataclass(frozen=True)
class SeriesInfo:
    """What a series is: its display name, unit and where its points come from."""

    series: str
    display: str
    unit: str
    color: str = "black"
    default: bool = False
    origin: str = "file"  # figure | catalog | catalog_column | models | file
    description: str = ""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named set of dated points grouped in series (`points` has POINT_COLUMNS)."""

    name: str
    description: str
    points: pd.DataFrame
    info: dict[str, SeriesInfo]
    notes: tuple[str, ...] = ()

    def series_names(self) -> list[str]:
        """Series that can be fitted: described and holding at least one point."""
        present = set(self.points["series"].unique())
        return [s for s in self.info if s in present]

    def default_series(self) -> list[str]:
        names = self.series_names()
        chosen = [s for s in names if self.info[s].default]
        return chosen or names

    def series_info(self, series: str) -> SeriesInfo:
        names = self.series_names()
        if series not in names:
            known = ", ".join(names) if names else "(none)"
            raise MemwallError(
                f"unknown series '{series}' for dataset '{self.name}'; accepted: {known}"
                + suggest(series, names)
            )
        return self.info[series]

    def select(
        self, series: str, since: float | None = None, until: float | None = None
    ) -> pd.DataFrame:
        """The points of one series inside [since, until] (fractional years), sorted by date."""
        self.series_info(series)
        df = self.points[self.points["series"] == series]
        if since is not None:
            df = df[df["year"] >= since]
        if until is not None:
            df = df[df["year"] <= until]
        return df.sort_values("year", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- dates


def fractional_year(dates: pd.Series) -> pd.Series:
    """Year + (day of year - 1) / days in that year: the x axis the paper's fits used."""
    d = pd.to_datetime(dates)
    days = np.where(d.dt.is_leap_year, 366.0, 365.0)
    return d.dt.year + (d.dt.day_of_year - 1) / days


def year_to_date(year: float) -> date:
    """Inverse of `fractional_year` (to the day), for displaying a date given as a number."""
    y = int(math.floor(year))
    days = 366 if pd.Timestamp(year=y, month=1, day=1).is_leap_year else 365
    day = math.floor((year - y) * days + 1e-6)  # tolerate float error, never round up
    return (pd.Timestamp(year=y, month=1, day=1) + pd.Timedelta(days=day)).date()


def parse_when(text: str | float | int | None, *, end: bool) -> float | None:
    """A --since/--until bound as a fractional year.

    `2016` means the whole year: since 2016 starts on 1 January, until 2016 ends on
    31 December. `2016-06-01` is that day (inclusive); `2016.5` is taken as given.
    """
    if text is None:
        return None
    s = str(text).strip()
    try:
        if s.isdigit() and len(s) == 4:
            y = int(s)
            return float(y) if not end else float(y) + 0.999999
        if "-" in s[1:]:
            d = datetime.strptime(s, "%Y-%m-%d")
            return float(fractional_year(pd.Series([d])).iloc[0])
        v = float(s)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or not 1900 <= v <= 2200:
        which = "--until" if end else "--since"
        raise MemwallError(
            f"{which} '{text}' is not a year; accepted: a year (2016), a date (2016-06-01) "
            "or a fractional year (2016.5) between 1900 and 2200"
        )
    return v


# ---------------------------------------------------------------- bundled files


def read_bundled(name: str) -> pd.DataFrame:
    with (data_dir() / name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def _points(df: pd.DataFrame) -> pd.DataFrame:
    """Normalise a raw table (series, date, value, ...) to POINT_COLUMNS."""
    out = pd.DataFrame()
    out["series"] = df["series"].astype(str)
    out["date"] = pd.to_datetime(df["date"], format="%Y-%m-%d")
    out["year"] = fractional_year(out["date"]).astype(float)
    out["value"] = pd.to_numeric(df["value"]).astype(float)
    for col in ("unit", "label", "source", "notes"):
        out[col] = df[col].astype(str) if col in df else ""
    if "estimate" in df:
        out["estimate"] = df["estimate"].astype(str).str.lower().isin(("true", "1", "yes"))
    else:
        out["estimate"] = False
    return out[POINT_COLUMNS]


@lru_cache(maxsize=1)
def _series_table() -> pd.DataFrame:
    return read_bundled("series.csv")


def _infos(dataset: str) -> dict[str, SeriesInfo]:
    t = _series_table()
    t = t[t["dataset"] == dataset]
    return {
        r.series: SeriesInfo(
            series=r.series,
            display=r.display,
            unit=r.unit,
            color=r.color,
            default=r.default == "1",
            origin=r.origin,
            description=r.description,
        )
        for r in t.itertuples(index=False)
    }


@lru_cache(maxsize=1)
def paper_points() -> pd.DataFrame:
    """All points of the paper's Figures 1 and 2 (hardware normalised, as plotted)."""
    hw = read_bundled("paper_hardware.csv")
    models = read_bundled("paper_models.csv")
    return pd.concat([_points(hw), _points(models)], ignore_index=True)


@lru_cache(maxsize=1)
def paper_hardware_inferred() -> pd.DataFrame:
    """The paper's hardware points rescaled to absolute units (our inference, not published)."""
    hw = read_bundled("paper_hardware.csv")
    out = _points(hw)
    out["abs_value_inferred"] = pd.to_numeric(hw["abs_value_inferred"]).astype(float)
    out["abs_unit"] = hw["abs_unit"]
    return out


def current_model_points() -> pd.DataFrame:
    return _points(read_bundled("current_models.csv"))


def load_paper() -> Dataset:
    return Dataset(
        name="paper",
        description=(
            "Gholami et al., 'AI and Memory Wall' (IEEE Micro 2024), Figures 1 and 2: every "
            "plotted point, decoded from the authors' vector figures "
            "(github.com/amirgholami/ai_and_memory_wall at commit e14c1ed)"
        ),
        points=paper_points(),
        info=_infos("paper"),
    )


# ---------------------------------------------------------------- devices catalog


def _catalog_frame() -> pd.DataFrame | None:
    """The devices catalog as a DataFrame, or None when the hardware module is unavailable."""
    try:
        from memwall import hardware  # the catalog lives beside, not inside, trends
    except ImportError:
        return None
    getter = getattr(hardware, "catalog_frame", None)
    if getter is None:
        return None
    try:
        return getter()
    except (OSError, MemwallError):
        return None


def _is_accelerator(kind: pd.Series) -> pd.Series:
    return ~kind.astype(str).str.strip().str.lower().isin(("cpu", ""))


def peak_tensor_flops(cat: pd.DataFrame) -> pd.Series:
    """Dense 16-bit tensor peak: the higher of bf16 and fp16 (the paper's accelerator FLOPS)."""
    bf16 = pd.to_numeric(cat["peak_bf16"], errors="coerce")
    fp16 = pd.to_numeric(cat["peak_fp16"], errors="coerce")
    return pd.concat([bf16, fp16], axis=1).max(axis=1, skipna=True)


def catalog_points(cat: pd.DataFrame, info: dict[str, SeriesInfo]) -> pd.DataFrame:
    """Turn catalog rows into trend points: derived accelerator series and raw columns."""
    cat = cat.copy()
    cat["_date"] = pd.to_datetime(cat["released"], errors="coerce", format="%Y-%m-%d")
    cat = cat[cat["_date"].notna()]
    label = cat["display_name"].where(cat["display_name"].astype(str) != "", cat["name"])
    acc = _is_accelerator(cat["kind"])
    peak = peak_tensor_flops(cat)
    bw = pd.to_numeric(cat["mem_bandwidth"], errors="coerce")
    derived = {
        "peak_flops": (peak, acc, "dense 16-bit tensor peak (max of bf16, fp16)"),
        "dram_bw": (bw, acc, "memory bandwidth"),
        "interconnect_bw": (
            pd.to_numeric(cat["interconnect_bandwidth"], errors="coerce"),
            acc,
            "interconnect bandwidth per device",
        ),
        "accelerator_memory": (
            pd.to_numeric(cat["mem_capacity"], errors="coerce"),
            acc & (peak > 0),
            "memory capacity of an AI accelerator (one with a 16-bit tensor peak)",
        ),
        "ridge_point": (peak / bw, acc, "dense 16-bit tensor peak / memory bandwidth"),
    }
    for s, i in info.items():
        if i.origin == "catalog_column" and s in cat:
            derived[s] = (
                pd.to_numeric(cat[s], errors="coerce"),
                pd.Series(True, index=cat.index),
                f"catalog column {s}",
            )
    frames = []
    for series, (values, mask, what) in derived.items():
        ok = mask & values.notna() & (values > 0)
        if not ok.any():
            continue
        sub = cat[ok]
        frames.append(
            pd.DataFrame(
                {
                    "series": series,
                    "date": sub["_date"],
                    "year": fractional_year(sub["_date"]).astype(float),
                    "value": values[ok].astype(float),
                    "unit": info[series].unit if series in info else "",
                    "label": label[ok].astype(str),
                    "estimate": False,
                    "source": sub["source"].astype(str) if "source" in sub else "",
                    "notes": "devices catalog '" + sub["name"].astype(str) + "': " + what,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=POINT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[POINT_COLUMNS]


def load_current(catalog: pd.DataFrame | None = None) -> Dataset:
    """Today's hardware (devices catalog) and language models through 2026."""
    info = _infos("current")
    cat = _catalog_frame() if catalog is None else catalog
    frames = [current_model_points()]
    notes: list[str] = []
    if cat is None or len(cat) == 0:
        notes.append("devices catalog not available: hardware series are missing")
    else:
        frames.append(catalog_points(cat, info))
    pts = pd.concat([f for f in frames if len(f)], ignore_index=True)
    return Dataset(
        name="current",
        description=(
            "Hardware from memwall's devices catalog (spec sheets, absolute units) and language "
            "models through 2026 (papers and model cards; estimates flagged)"
        ),
        points=pts,
        info=info,
        notes=tuple(notes),
    )


# ---------------------------------------------------------------- user CSV


def load_csv(path: str | Path) -> Dataset:
    """A user table with a `date` column: long (`series`, `value`) or wide (numeric columns)."""
    p = Path(path)
    if not p.is_file():
        raise MemwallError(f"dataset file '{path}' does not exist")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise MemwallError(f"dataset file '{path}' is larger than {MAX_CSV_BYTES >> 20} MiB")
    raw = _read_rectangular(p, path)
    if "date" not in raw.columns:
        raise MemwallError(
            f"dataset file '{path}' has no 'date' column; accepted: a CSV with a date column "
            "(YYYY-MM-DD or a year) and either series,value columns or one numeric column "
            "per series"
        )
    years = _csv_years(raw["date"], path)
    if "value" in raw.columns:
        long = raw.copy()
        if "series" not in long.columns:
            long["series"] = "value"
    else:
        value_cols = [c for c in raw.columns if c not in _META_COLUMNS]
        parts = []
        for c in value_cols:
            part = raw[[k for k in raw.columns if k in _META_COLUMNS and k != "series"]].copy()
            part["series"] = c
            part["value"] = raw[c]
            parts.append(part)
        if not parts:
            raise MemwallError(f"dataset file '{path}' has no value columns besides the date")
        long = pd.concat(parts, ignore_index=True)
        years = pd.concat([years] * len(parts), ignore_index=True)
    values = pd.to_numeric(long["value"].astype(str).str.strip(), errors="coerce")
    keep = values.notna() & (long["value"].astype(str).str.strip() != "")
    _check_values(values[keep], long, len(raw), path)
    long = long[keep].reset_index(drop=True)
    years = years[keep].reset_index(drop=True)
    values = values[keep].reset_index(drop=True)
    pts = pd.DataFrame(
        {
            "series": long["series"].astype(str),
            "date": [pd.Timestamp(year_to_date(y)) for y in years],
            "year": years.astype(float),
            "value": values.astype(float),
            "unit": long["unit"].astype(str) if "unit" in long else "",
            "label": long["label"].astype(str) if "label" in long else "",
            "estimate": long["estimate"].astype(str).str.lower().isin(("true", "1", "yes"))
            if "estimate" in long
            else False,
            "source": long["source"].astype(str) if "source" in long else str(p),
            "notes": long["notes"].astype(str) if "notes" in long else "",
        }
    ).reset_index(drop=True)
    info = {}
    for s in dict.fromkeys(pts["series"]):
        units = pts.loc[pts["series"] == s, "unit"].unique()
        info[s] = SeriesInfo(series=s, display=s, unit=str(units[0]) if len(units) == 1 else "")
    return Dataset(name=str(p), description=f"user file {p}", points=pts, info=info)


def _check_values(values: pd.Series, long: pd.DataFrame, n_rows: int, path: str | Path) -> None:
    """Refuse the first value a log10 fit cannot take exactly, naming its data row: not
    positive, not finite (1e400 reads as inf), or outside VALUE_RANGE (near the float limits
    log10 loses digits, 1e-320 is subnormal, and growth factors overflow)."""
    lo, hi = VALUE_RANGE
    bad = ~values.between(lo, hi)
    if not bad.any():
        return
    i = int(bad[bad].index[0])
    v = float(values.loc[i])
    why = "not positive" if v <= 0 else "not finite" if not math.isfinite(v) else "out of range"
    raise MemwallError(
        f"dataset file '{path}': value {long['value'].iloc[i]!r} of series "
        f"'{long['series'].iloc[i]}' on data row {i % n_rows + 1} is {why}; a log-linear fit "
        f"takes values from {lo:g} to {hi:g}"
    )


def _read_rectangular(p: Path, path: str | Path) -> pd.DataFrame:
    """The file as strings, refusing what a fit could silently misread: a row with more or fewer
    fields than the header, an empty or duplicate column name, a series name that is not one
    line of printable text, too many columns."""
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:  # a BOM (Excel) is not a name
            rows = [r for r in csv.reader(fh) if any(f.strip() for f in r)]
    except (csv.Error, UnicodeDecodeError, OSError) as e:
        raise MemwallError(f"dataset file '{path}' is not a readable CSV: {e}") from None
    if not rows:
        raise MemwallError(f"dataset file '{path}' is empty; accepted: a header and data rows")
    header = [h.strip().lower() for h in rows[0]]
    if len(header) > MAX_CSV_COLUMNS:
        raise MemwallError(
            f"dataset file '{path}' has {len(header):,} columns (at most {MAX_CSV_COLUMNS})"
        )
    if any(not h for h in header) or len(set(header)) != len(header):
        raise MemwallError(f"dataset file '{path}': column names must be unique and non-empty")
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise MemwallError(
                f"dataset file '{path}': line {i} has {len(r)} fields, the header has "
                f"{len(header)}; every row needs one value per column"
            )
    raw = pd.DataFrame(rows[1:], columns=header, dtype=str)
    names = raw["series"] if "series" in raw.columns else pd.Series(header, dtype=str)
    for name in names:
        _check_series_name(name, path)
    return raw


def _check_series_name(name: str, path: str | Path) -> None:
    if not name.strip() or len(name) > MAX_SERIES_NAME or not name.isprintable():
        raise MemwallError(
            f"dataset file '{path}': series name {name[:MAX_SERIES_NAME]!r} is not accepted; "
            f"a name is 1 to {MAX_SERIES_NAME} printable characters"
        )


def _csv_years(col: pd.Series, path: str | Path) -> pd.Series:
    s = col.astype(str).str.strip()
    numeric = pd.to_numeric(s, errors="coerce")
    dates = pd.to_datetime(s.where(numeric.isna()), errors="coerce", format="%Y-%m-%d")
    years = numeric.where(numeric.notna(), fractional_year(dates))
    bad = years.isna() | ~years.between(1900, 2200)
    if bad.any():
        i = int(bad[bad].index[0])
        raise MemwallError(
            f"dataset file '{path}': date {col.iloc[i]!r} on data row {i + 1} is not a date; "
            "accepted: YYYY-MM-DD or a (fractional) year between 1900 and 2200"
        )
    return years.astype(float).reset_index(drop=True)


# ---------------------------------------------------------------- entry point


def load_dataset(name: str | Path = "paper") -> Dataset:
    """`paper`, `current`, or a path to a CSV file."""
    key = str(name).strip()
    if key.lower() == "paper":
        return load_paper()
    if key.lower() == "current":
        return load_current()
    if key.lower().endswith(".csv") or Path(key).is_file():
        return load_csv(key)
    raise MemwallError(
        f"unknown dataset '{name}'; accepted: paper, current, or a path to a CSV file"
        + suggest(key, DATASETS)
    )
