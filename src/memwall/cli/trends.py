"""`memwall trends`: growth rates of hardware and models, the paper's and today's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memwall.cli._common import FormatOpt, app, emit, err_console, rich_table, si
from memwall.errors import MemwallError

CSV_COLUMNS = [
    "dataset",
    "series",
    "display",
    "unit",
    "n",
    "n_estimates",
    "first_date",
    "last_date",
    "span_years",
    "growth_per_2yr",
    "growth_per_2yr_ci95_low",
    "growth_per_2yr_ci95_high",
    "growth_per_20yr",
    "growth_per_20yr_ci95_low",
    "growth_per_20yr_ci95_high",
    "doubling_time_years",
    "r2",
    "slope_log10_per_year",
    "printed_per_2yr",
    "paper_fit_per_2yr",
    "origin",
]


def _x(v: Any) -> str:
    """A growth factor to 3 significant figures: 3.03x, 413x, 64,300x, 1.46e+26x."""
    if v is None:
        return "-"
    if 1e3 <= v < 1e7:
        return f"{float(f'{v:.3g}'):,.0f}x"
    return f"{v:.3g}x"


def _csv_row(f: dict) -> dict:
    r = dict(f)
    r["growth_per_2yr_ci95_low"], r["growth_per_2yr_ci95_high"] = f["growth_per_2yr_ci95"]
    r["growth_per_20yr_ci95_low"], r["growth_per_20yr_ci95_high"] = f["growth_per_20yr_ci95"]
    r["printed_per_2yr"] = (f.get("printed") or {}).get("per_2yr")
    r["paper_fit_per_2yr"] = (f.get("paper") or {}).get("fit_per_2yr")
    return r


def _table_row(f: dict) -> dict:
    lo, hi = f["growth_per_2yr_ci95"]
    row = {
        "series": f["display"],
        "n": str(f["n"]) + (f" ({f['n_estimates']} est.)" if f["n_estimates"] else ""),
        "span": f"{f['first_date']}\n{f['last_date']}",
        "g2": f"{_x(f['growth_per_2yr'])} [{_x(lo)}, {_x(hi)}]",
        "g20": _x(f["growth_per_20yr"]),
        "r2": f"{f['r2']:.2f}",
    }
    if "printed" in f:
        p = f["printed"]
        ok = p["fit_rounds_to_printed_per_2yr"] and p.get("fit_rounds_to_printed_per_20yr", True)
        per20 = f"; {p['per_20yr']:,.0f}x/20y" if p["per_20yr"] else ""
        row["paper"] = f"{p['per_2yr_text']}x{per20}" + (" (ok)" if ok else " (DIFFERS)")
    elif "paper" in f:
        p = f["paper"]
        printed = f" ({p['printed_per_2yr']:g}x)" if p["printed_per_2yr"] else ""
        row["paper"] = f"{_x(p['fit_per_2yr'])}{printed}"
    else:
        row["paper"] = "-"
    return row


def _tables(payload: dict) -> list[Any]:
    rows = [_table_row(f) for f in payload["fits"]]
    paper_header = "Printed" if payload["dataset"] == "paper" else "Paper fit (printed)"
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
    caption += payload.get("notes", [])
    out: list[Any] = [
        rich_table(
            f"Growth rates: dataset {payload['dataset']}",
            rows,
            [
                ("series", "Series", None),
                ("n", "n", str),
                ("span", "Date span", None),
                ("g2", "x / 2 yrs [95% CI]", str),
                ("g20", "x / 20 yrs", str),
                ("r2", "R²", str),
                ("paper", paper_header, None),
            ],
            caption="\n".join(caption),
        )
    ]
    gap = payload.get("gap", {})
    gap_rows = []
    for g in gap.values():
        if not isinstance(g, dict) or "ratio_per_2yr" not in g:
            continue
        gap_rows.append(_gap_row(g, payload["dataset"]))
    for g in (gap.get("paper") or {}).values():
        gap_rows.append(_gap_row(g, "paper"))
    if gap_rows:
        out.append(
            rich_table(
                "The widening gap: how much faster FLOPS grow than bandwidth",
                gap_rows,
                [
                    ("dataset", "Dataset", None),
                    ("pair", "Ratio", None),
                    ("r2", "per 2 yrs [range]", str),
                    ("r20", "per 20 yrs", str),
                ],
                caption="Ratio of growth rates = growth of the FLOPs per byte (or per "
                "interconnect byte) needed to stay compute-bound. Range: extremes of the two "
                "slopes' 95% intervals. The two fits may cover different date spans.",
            )
        )
    ridge = gap.get("ridge_point")
    if ridge and ridge.get("points"):
        out.append(_ridge_table(ridge))
    return out


def _gap_row(g: dict, dataset: str) -> dict:
    lo, hi = g["ratio_per_2yr_range"]
    return {
        "dataset": dataset,
        "pair": f"{g['numerator']} / {g['denominator']}",
        "r2": f"{g['ratio_per_2yr']:.2f}x [{lo:.2f}, {hi:.2f}]",
        "r20": _x(g["ratio_per_20yr"]),
    }


def _ridge_table(ridge: dict) -> Any:
    rows = [
        {
            "device": p["label"],
            "date": p["date"],
            "peak": si(p["peak_flops"], "FLOP/s"),
            "bw": si(p["mem_bandwidth"], "B/s"),
            "ridge": f"{p['ridge']:.0f}",
        }
        for p in ridge["points"]
    ]
    cap = [f"Precision: {ridge['precision']}. Flagships: {ridge['flagship_rule']}."]
    fit = ridge.get("fit")
    if fit:
        lo, hi = fit["growth_per_2yr_ci95"]
        cap.append(
            f"Fit: {fit['growth_per_2yr']:.2f}x / 2 yrs [{lo:.2f}, {hi:.2f}], n={fit['n']}, "
            f"R²={fit['r2']:.2f}."
        )
        for p in ridge["projection"]:
            cap.append(
                f"Projection {p['year']}: ~{p['value']:.0f} FLOP/byte "
                f"(band {p['band_low']:.0f}-{p['band_high']:.0f}, slope 95% interval)."
            )
    return rich_table(
        "Ridge point of flagship accelerators (FLOPs per byte of DRAM traffic; spec sheets)",
        rows,
        [
            ("device", "Device", None),
            ("date", "Released", None),
            ("peak", "Peak 16-bit dense", str),
            ("bw", "Memory BW", str),
            ("ridge", "FLOP/byte", str),
        ],
        caption="\n".join(cap),
    )


@app.command("trends")
def trends(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help="paper (the paper's figures), current (devices catalog + models through "
            "2026), or a CSV path with a date column.",
        ),
    ] = "paper",
    series: Annotated[
        list[str] | None,
        typer.Option(
            "--series",
            "-s",
            help="Series to fit (repeat or comma-separate). Default: the headline series.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only points from this year (2016) or date (2016-06-01).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only points up to this year (inclusive) or date.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the figures (PNG) into this folder.")
    ] = None,
    fmt: FormatOpt = "table",  # type: ignore[assignment]
) -> None:
    """Growth per 2 and 20 years (95% CI) of hardware and model series; the widening gap."""
    from memwall.trends import summarize

    payload = summarize(dataset, series, since, until)
    if plot is not None:
        from memwall.plots.trends import plot_dataset

        written = plot_dataset(
            dataset,
            plot,
            payload["filters"]["series"],
            payload["filters"]["since"],
            payload["filters"]["until"],
        )
        payload["plots"] = [str(p) for p in written]
        if fmt.value == "table":
            for p in written:
                err_console.print(f"wrote {p}", highlight=False)
    if not payload["fits"]:
        raise MemwallError(f"dataset '{dataset}' has no series to fit")
    emit(
        fmt, payload, [_csv_row(f) for f in payload["fits"]], lambda: _tables(payload), CSV_COLUMNS
    )
