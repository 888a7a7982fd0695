"""`memwall trends`: growth rates of hardware and models, the paper's and today's.

Parses the flags, calls `memwall.api.trends` and renders its Result as Rich tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memwall.cli._common import FormatOpt, app, emit, err_console, rich_table, si


def _x(v: Any) -> str:
    """A growth factor to 3 significant figures: 3.03x, 413x, 64,300x, 1.46e+26x."""
    if v is None:
        return "-"
    if 1e3 <= v < 1e7:
        return f"{float(f'{v:.3g}'):,.0f}x"
    return f"{v:.3g}x"


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


def _tables(payload: dict, caption: list[str]) -> list[Any]:
    rows = [_table_row(f) for f in payload["fits"]]
    paper_header = "Printed" if payload["dataset"] == "paper" else "Paper fit (printed)"
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
    from memwall.api import trends as run

    result = run(dataset, series, since, until, plot)
    payload = result.extra["summary"]
    if plot is not None and fmt.value == "table":
        for p in payload["plots"]:
            err_console.print(f"wrote {p}", highlight=False)
    tables = lambda: _tables(payload, list(result.notes))  # noqa: E731
    emit(fmt, result.payload, result.rows, tables, result.columns)
