"""Scaling trends: the paper's growth rates reproduced, then extended to today's hardware.

Python API (used by the CLI and the HTML report):
- `load_dataset("paper" | "current" | path) -> Dataset` (points: series, date, year, value, ...)
- `fit_all(dataset, series=None, since=None, until=None) -> list[Fit]`
- `fit_series(dataset, series, since, until) -> Fit`; `fit_column(frame, column, date_column)`
- `summarize(dataset, series, since, until) -> dict` (what `memwall trends --format json` prints)
- `ridge_table()`, `ridge_summary()`, `rate_gap(faster, slower)`: the widening gap
- plots: `memwall.plots.trends.plot_paper_figures(outdir) -> list[Path]` and friends
"""

from memwall.trends.data import DATASETS, Dataset, SeriesInfo, load_dataset
from memwall.trends.fit import METHOD, MIN_POINTS, Fit, fit_all, fit_column, fit_series
from memwall.trends.gap import rate_gap, ridge_summary, ridge_table
from memwall.trends.summary import paper_printed, rounds_to, summarize

__all__ = [
    "DATASETS",
    "METHOD",
    "MIN_POINTS",
    "Dataset",
    "Fit",
    "SeriesInfo",
    "fit_all",
    "fit_column",
    "fit_series",
    "load_dataset",
    "paper_printed",
    "rate_gap",
    "ridge_summary",
    "ridge_table",
    "rounds_to",
    "summarize",
]
