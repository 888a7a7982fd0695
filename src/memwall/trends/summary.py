"""One JSON-ready summary of a dataset's growth rates, the paper's printed rates and the gap."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from memwall.trends.data import Dataset, load_current, load_dataset, read_bundled
from memwall.trends.fit import METHOD, Fit, expand_series, fit_all, year_bounds
from memwall.trends.gap import rate_gap, ridge_summary

HARDWARE_PAIRS = (("peak_flops", "dram_bw"), ("peak_flops", "interconnect_bw"))
ORIGIN_KIND = {
    "figure": "points decoded from the paper's published figure",
    "catalog": "spec sheets (memwall devices catalog)",
    "catalog_column": "spec sheets (memwall devices catalog)",
    "models": "papers and model cards (estimates flagged)",
    "file": "user file",
}


@dataclass(frozen=True)
class Printed:
    """A growth rate as printed in the paper's figures."""

    series: str
    per_2yr_text: str
    per_20yr_text: str
    text: str
    source: str

    @property
    def per_2yr(self) -> float:
        return float(self.per_2yr_text)

    @property
    def per_20yr(self) -> float | None:
        return float(self.per_20yr_text) if self.per_20yr_text else None


@lru_cache(maxsize=1)
def paper_printed() -> dict[str, Printed]:
    t = read_bundled("paper_rates.csv")
    return {
        r.series: Printed(r.series, r.printed_per_2yr, r.printed_per_20yr, r.printed_text, r.source)
        for r in t.itertuples(index=False)
    }


def sig_figs(text: str) -> int:
    """Significant figures of a number as printed ('3.0' -> 2, '410' -> 2, '60000' -> 1)."""
    s = text.strip().lstrip("+-")
    if "." in s:
        digits = s.replace(".", "").lstrip("0")
        return max(len(digits), 1)
    return max(len(s.lstrip("0").rstrip("0")), 1)


def rounds_to(value: float, printed: str) -> bool:
    """True when `value` rounded to the printed number's significant figures equals it."""
    n = sig_figs(printed)
    return float(f"{value:.{n}g}") == float(printed)


def _printed_block(fit: Fit, p: Printed) -> dict:
    block = {
        "per_2yr": p.per_2yr,
        "per_2yr_text": p.per_2yr_text,
        "per_20yr": p.per_20yr,
        "text": p.text,
        "source": p.source,
        "fit_rounds_to_printed_per_2yr": rounds_to(fit.growth_per_2yr, p.per_2yr_text),
    }
    if p.per_20yr is not None:
        block["fit_rounds_to_printed_per_20yr"] = rounds_to(fit.growth_per_20yr, p.per_20yr_text)
    off = abs(fit.growth_per_2yr - p.per_2yr) / p.per_2yr
    if off > 0.05:
        block["note"] = (
            f"the figure prints '{p.text}'; the least-squares fit of its own points gives "
            f"{fit.growth_per_2yr:.2f}x per 2 years, which rounds to {p.per_2yr_text} only at "
            f"{sig_figs(p.per_2yr_text)} significant figure"
            f"{'' if sig_figs(p.per_2yr_text) == 1 else 's'}"
        )
    return block


def _fit_entry(ds: Dataset, fit: Fit) -> dict:
    d = fit.to_dict()
    info = ds.info.get(fit.series)
    d["origin"] = ORIGIN_KIND.get(info.origin if info else "file", "user file")
    d["description"] = info.description if info else ""
    return d


def _paper_fits(since=None, until=None) -> dict[str, Fit]:
    """The paper's headline fits (no filters unless given), keyed by series."""
    paper = load_dataset("paper")
    return {f.series: f for f in fit_all(paper, None, since, until, strict=False)}


def _gap(ds: Dataset, fits: dict[str, Fit], lo, hi) -> dict:
    out = {}
    for a, b in HARDWARE_PAIRS:
        fa, fb = fits.get(a), fits.get(b)
        if fa is None or fb is None:
            extra = fit_all(ds, [s for s in (a, b) if s in ds.series_names()], lo, hi, strict=False)
            got = {f.series: f for f in extra}
            fa, fb = fa or got.get(a), fb or got.get(b)
        if fa is not None and fb is not None:
            out[f"{a}_vs_{b}"] = rate_gap(fa, fb)
    return out


def summarize(
    dataset: Dataset | str = "paper",
    series: list[str] | str | None = None,
    since: float | str | int | None = None,
    until: float | str | int | None = None,
    *,
    catalog: pd.DataFrame | None = None,
) -> dict:
    """Fits, printed-rate checks (paper), paper comparison (others) and the gap, as a dict."""
    if isinstance(dataset, Dataset):
        ds = dataset
    elif str(dataset).strip().lower() == "current" and catalog is not None:
        ds = load_current(catalog)
    else:
        ds = load_dataset(dataset)
    lo, hi = year_bounds(since, until)
    names = expand_series(series) or ds.default_series()
    fits = fit_all(ds, names, lo, hi)
    by_series = {f.series: f for f in fits}
    entries = []
    printed = paper_printed()
    paper_ref = _paper_fits() if ds.name != "paper" else {}
    for f in fits:
        e = _fit_entry(ds, f)
        if ds.name == "paper" and f.series in printed:
            e["printed"] = _printed_block(f, printed[f.series])
        elif f.series in paper_ref:
            p = paper_ref[f.series]
            lo2, hi2 = f.growth_ci(2.0)
            e["paper"] = {
                "fit_per_2yr": p.growth_per_2yr,
                "fit_per_2yr_ci95": list(p.growth_ci(2.0)),
                "printed_per_2yr": printed[f.series].per_2yr if f.series in printed else None,
                "n": p.n,
                "first_date": p.first_date.isoformat(),
                "last_date": p.last_date.isoformat(),
                "paper_fit_inside_this_ci95": bool(lo2 <= p.growth_per_2yr <= hi2),
            }
        entries.append(e)
    payload: dict = {
        "dataset": ds.name,
        "description": ds.description,
        "method": METHOD,
        "filters": {"series": names, "since": lo, "until": hi},
        "fits": entries,
        "gap": _gap(ds, by_series, lo, hi),
        "notes": list(ds.notes),
    }
    if ds.name == "current":
        payload["gap"]["paper"] = _gap(load_dataset("paper"), _paper_fits(), None, None)
        payload["gap"]["ridge_point"] = ridge_summary(catalog, since=lo, until=hi)
        n_est = sum(f.n_estimates for f in fits)
        if n_est:
            payload["notes"].append(
                f"{n_est} model point(s) in these fits are estimates (flagged in "
                "current_models.csv: 6 x active parameters x tokens, or third-party)"
            )
    if ds.name == "paper":
        payload["notes"].append(
            "hardware values are normalised as plotted (R10000, GDDR3, PCIe 1.0a = 1); "
            "growth rates do not depend on the normalisation"
        )
    return payload
