"""`memwall.api.trends`: growth rates of hardware and models, the paper's and today's.
`memwall trends` parses its flags and calls this. (`memwall.trends` is the package that fits
the data, so this function is reached as `memwall.api.trends`.)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memwall.api._common import plain
from memwall.api._result import Result
from memwall.errors import MemwallError

CSV_COLUMNS = [
    "dataset", "series", "display", "unit", "n", "n_estimates", "first_date", "last_date",
    "span_years", "growth_per_2yr", "growth_per_2yr_ci95_low", "growth_per_2yr_ci95_high",
    "growth_per_20yr", "growth_per_20yr_ci95_low", "growth_per_20yr_ci95_high",
    "doubling_time_years", "r2", "slope_log10_per_year", "printed_per_2yr", "paper_fit_per_2yr",
    "origin",
]  # fmt: skip


class TrendsResult(Result):
    """A trends Result: its figures are several files, so `plot` takes a folder."""

    def plot(self, path: str | Path) -> Path:
        """Write the figures (PNG) into the folder `path` (created if missing), as
        `memwall trends --plot DIR` does; returns the folder."""
        out = Path(path)
        if self.plotter is None:  # pragma: no cover - every trends result has figures
            raise MemwallError("memwall trends has no figure for this result")
        self.plotter(out)
        return out


def trends(
    dataset: str = "paper",
    series: str | Sequence[str] | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    plot: str | Path | None = None,
) -> Result:
    """Growth per 2 and 20 years (with 95% confidence intervals) of hardware and model series,
    and the widening gap between compute and memory bandwidth: the paper's Figures 1 and 2
    refitted, or today's devices and models, or your own CSV.

    Args:
        dataset: paper (the paper's figures; default), current (devices catalog + models
            through 2026), or a CSV path with a date column.
        series: series to fit (a list, or comma-separated text). Default: the headline series.
        since: only points from this year (2016) or date (2016-06-01). Default: all.
        until: only points up to this year (inclusive) or date. Default: all.
        plot: write the figures (PNG) into this folder (`payload["plots"]` lists them).

    Returns a `Result` (`TrendsResult`): `.to_dict()` is `memwall trends ... --format json`;
    `.to_frame()` one row per fitted series (the CSV); `.plot(folder)` writes the figures.

    Example:
        >>> memwall.api.trends(series="peak_flops,dram_bw").to_dict()["fits"][0]["growth_per_2yr"]
    """
    from memwall.trends import summarize

    payload = summarize(dataset, list(series) if _is_list(series) else series, since, until)
    plotter = _plotter(dataset, payload["filters"])
    if plot is not None:
        payload["plots"] = [str(p) for p in plotter(Path(plot))]
    if not payload["fits"]:
        raise MemwallError(f"dataset '{dataset}' has no series to fit")
    return TrendsResult(
        command="trends",
        payload=plain(payload),
        rows=[_csv_row(f) for f in payload["fits"]],
        columns=CSV_COLUMNS,
        title=f"Growth rates: dataset {payload['dataset']}",
        notes=_caption(payload),
        extra={"summary": payload},  # as fitted (the payload is its JSON form)
        plotter=plotter,
    )


def _is_list(series: Any) -> bool:
    return series is not None and not isinstance(series, str)


def _plotter(dataset: str, filters: dict):
    """Draws the dataset's figures into a folder, with the same series and dates as the fit."""

    def draw(folder: Path) -> list[Path]:
        from memwall.plots.trends import plot_dataset

        return plot_dataset(
            dataset, folder, filters["series"], filters["since"], filters["until"]
        )  # fmt: skip

    return draw


def _csv_row(f: dict) -> dict:
    r = dict(f)
    r["growth_per_2yr_ci95_low"], r["growth_per_2yr_ci95_high"] = f["growth_per_2yr_ci95"]
    r["growth_per_20yr_ci95_low"], r["growth_per_20yr_ci95_high"] = f["growth_per_20yr_ci95"]
    r["printed_per_2yr"] = (f.get("printed") or {}).get("per_2yr")
    r["paper_fit_per_2yr"] = (f.get("paper") or {}).get("fit_per_2yr")
    return r


def _caption(payload: dict) -> list[str]:
    """The lines under the growth-rate table: the method, where each series comes from, the
    paper's notes on its printed rates, the summary's own notes."""
    caption = [
        "OLS of log10(value) on date (fractional year), scipy.stats; 95% CI of the slope "
        "(t, n-2). Growth per 2 yrs = 10^(2 x slope).",
    ]
    origins: dict[str, list[str]] = {}
    for f in payload["fits"]:
        origins.setdefault(f["origin"], []).append(f["display"])
    for origin, names in origins.items():
        caption.append(f"{', '.join(names)}: {origin}.")
    for f in payload["fits"]:
        note = (f.get("printed") or {}).get("note")
        if note:
            caption.append(f"{f['display']}: {note}.")
    return caption + list(payload.get("notes", []))
