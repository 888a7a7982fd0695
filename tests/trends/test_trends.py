"""Scaling trends: the paper's six growth rates, today's data, the gap, plots and bad input."""

from __future__ import annotations

import csv
import io
from datetime import date
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from memwall.errors import MemwallError
from memwall.trends import (
    Fit,
    fit_all,
    fit_column,
    fit_series,
    load_dataset,
    rate_gap,
    ridge_table,
    rounds_to,
    summarize,
)
from memwall.trends.data import fractional_year, load_current, parse_when
from memwall.trends.fit import loglinear
from memwall.trends.summary import sig_figs

# (printed in the figure, reference fit of the decoded points, n, first date, last date).
# Reference fits: least squares on fractional years, computed independently from the decoded
# figure points (the paper's lines pass through these fitted values to 1e-8).
PAPER = {
    "peak_flops": ("3.0", 3.0257, 37, "1997-01-29", "2022-09-20"),
    "dram_bw": ("1.6", 1.5915, 12, "2003-10-01", "2022-03-22"),
    "interconnect_bw": ("1.4", 1.4151, 10, "2003-01-01", "2022-09-20"),
    "transformer_params": ("410", 413.4108, 10, "2017-12-06", "2021-09-11"),
    "training_compute": ("750", 753.2185, 10, "2017-12-06", "2020-05-28"),
    "accelerator_memory": ("2", 1.8629, 7, "2016-06-20", "2022-03-22"),
}
PAPER_20YR = {
    "peak_flops": ("60000", 6.431e4),
    "dram_bw": ("100", 104.3),
    "interconnect_bw": ("30", 32.2),
}
HARDWARE = ("peak_flops", "dram_bw", "interconnect_bw", "accelerator_memory")


@pytest.fixture(scope="module")
def paper_json() -> dict:
    return summarize("paper")


@pytest.fixture(scope="module")
def current_json() -> dict:
    return summarize("current")


# ---------------------------------------------------------------- the paper's numbers


@pytest.mark.parametrize("series", list(PAPER))
def test_paper_rate_rounds_to_printed_and_matches_reference(paper_json, series):
    printed, ref, n, first, last = PAPER[series]
    fit = {f["series"]: f for f in paper_json["fits"]}[series]
    g = fit["growth_per_2yr"]
    assert float(f"{g:.{sig_figs(printed)}g}") == float(printed)
    assert g == pytest.approx(ref, rel=0.005)
    assert fit["n"] == n
    assert (fit["first_date"], fit["last_date"]) == (first, last)
    lo, hi = fit["growth_per_2yr_ci95"]
    assert lo < g < hi
    assert fit["printed"]["fit_rounds_to_printed_per_2yr"] is True


@pytest.mark.parametrize("series", list(PAPER_20YR))
def test_paper_20_year_rates(paper_json, series):
    printed, ref = PAPER_20YR[series]
    fit = {f["series"]: f for f in paper_json["fits"]}[series]
    assert fit["growth_per_20yr"] == pytest.approx(ref, rel=0.005)
    assert rounds_to(fit["growth_per_20yr"], printed)
    assert fit["printed"]["fit_rounds_to_printed_per_20yr"] is True


def test_accelerator_memory_states_it_fits_to_186(paper_json):
    fit = {f["series"]: f for f in paper_json["fits"]}["accelerator_memory"]
    assert round(fit["growth_per_2yr"], 2) == 1.86
    assert "1.86" in fit["printed"]["note"] and "2x / 2 yrs" in fit["printed"]["note"]


def test_paper_gap_is_ratio_of_rates(paper_json):
    fits = {f["series"]: f for f in paper_json["fits"]}
    gap = paper_json["gap"]["peak_flops_vs_dram_bw"]
    expect = fits["peak_flops"]["growth_per_2yr"] / fits["dram_bw"]["growth_per_2yr"]
    assert gap["ratio_per_2yr"] == pytest.approx(expect, rel=1e-9)
    lo, hi = gap["ratio_per_2yr_range"]
    assert lo < gap["ratio_per_2yr"] < hi
    assert 1.8 < gap["ratio_per_2yr"] < 2.0  # 3.03 / 1.59


def test_paper_fit_is_ordinary_least_squares():
    """Cross-check scipy's slope with numpy's polyfit on the same points."""
    ds = load_dataset("paper")
    for s in PAPER:
        pts = ds.select(s)
        slope, _ = np.polyfit(pts["year"], np.log10(pts["value"]), 1)
        assert fit_series(ds, s).slope == pytest.approx(slope, rel=1e-9)


def test_fractional_year_matches_the_figure_axis():
    got = fractional_year(pd.Series(pd.to_datetime(["2017-12-06", "2016-06-20", "1997-01-29"])))
    assert list(np.round(got, 4)) == [2017.9288, 2016.4672, 1997.0767]


def test_loglinear_exact_and_interval():
    x = np.arange(2000.0, 2010.0)
    exact = loglinear(x, 10 ** (0.25 * (x - 2000) + 3))
    assert exact["slope"] == pytest.approx(0.25) and exact["r2"] == pytest.approx(1.0)
    assert exact["slope_high"] - exact["slope_low"] == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    noisy = loglinear(x, 10 ** (0.25 * (x - 2000) + rng.normal(0, 0.2, x.size)))
    assert noisy["slope_low"] < noisy["slope"] < noisy["slope_high"]
    assert 0 < noisy["r2"] < 1


def test_filters_and_selection():
    ds = load_dataset("paper")
    assert fit_series(ds, "training_compute", until=2019).n == 7
    assert fit_series(ds, "training_compute", until="2020").n == 10
    assert fit_series(ds, "peak_flops", since="2010-01-01").first_date >= date(2010, 1, 1)
    assert parse_when("2016", end=True) < 2017 <= parse_when("2017", end=False)
    names = [f.series for f in fit_all(ds, ["dram_bw,peak_flops", "dram_bw"])]
    assert names == ["dram_bw", "peak_flops"]


def test_rounding_helpers():
    assert [sig_figs(t) for t in ("3.0", "410", "60000", "2", "1.6")] == [2, 2, 1, 1, 2]
    assert rounds_to(413.4, "410") and not rounds_to(420.0, "410")
    assert rounds_to(1.863, "2") and rounds_to(1.863, "1.9") and not rounds_to(1.863, "1.8")


# ---------------------------------------------------------------- today's data


def test_current_fits_hardware_and_models_beside_paper(current_json):
    fits = {f["series"]: f for f in current_json["fits"]}
    assert set(PAPER) <= set(fits)
    for s in HARDWARE:
        f = fits[s]
        assert f["n"] >= 5 and f["last_date"] >= "2024-01-01", s
        assert f["origin"].startswith("spec sheets")
        assert f["paper"]["fit_per_2yr"] == pytest.approx(PAPER[s][1], rel=0.005)
    assert fits["transformer_params"]["last_date"] >= "2026-01-01"
    assert fits["training_compute"]["n_estimates"] > 0
    gap = current_json["gap"]
    assert "peak_flops_vs_dram_bw" in gap and "peak_flops_vs_dram_bw" in gap["paper"]


def test_ridge_point_fit_and_projection(current_json):
    ridge = current_json["gap"]["ridge_point"]
    pts = ridge["points"]
    assert len(pts) >= 5
    for p in pts:
        assert p["ridge"] == pytest.approx(p["peak_flops"] / p["mem_bandwidth"])
    fit = ridge["fit"]
    assert fit["n"] == len(pts)
    proj = ridge["projection"]
    assert [p["year"] for p in proj] == sorted(p["year"] for p in proj)
    for p in proj:
        assert p["band_low"] <= p["value"] <= p["band_high"]
    if fit["slope_log10_per_year"] > 0:
        assert proj[-1]["value"] > proj[0]["value"]


def _fake_catalog() -> pd.DataFrame:
    rows = [
        # name, vendor, kind, released, bf16, fp16, bw, ic, cap
        ("cpu-a", "V", "cpu", "2020-01-01", 1e14, None, 1e11, 1e10, 1e12),
        ("gpu-old", "V", "gpu", "2010-01-01", None, None, 1e11, 8e9, 1e9),
        ("gpu-a", "V", "gpu", "2018-01-01", None, 1e14, 1e12, 1e11, 3e10),
        ("gpu-b", "V", "gpu", "2020-03-01", 2e14, 4e14, 2e12, 2e11, 8e10),
        ("gpu-c", "V", "gpu", "2020-09-01", 1e14, None, 1e12, 1e11, 4e10),
        ("tpu-a", "W", "tpu", "2022-01-01", 8e14, None, 2e12, 4e11, 1e11),
    ]
    cols = ["name", "vendor", "kind", "released", "peak_bf16", "peak_fp16"]
    cols += ["mem_bandwidth", "interconnect_bandwidth", "mem_capacity"]
    df = pd.DataFrame(rows, columns=cols)
    df["display_name"] = df["name"].str.upper()
    df["released"] = pd.to_datetime(df["released"])
    df["source"] = "test sheet"
    for c in ("peak_fp64", "peak_fp32", "peak_tf32", "peak_fp8", "peak_int8", "peak_int4"):
        df[c] = np.nan
    df["llc_bytes"] = np.nan
    df["tdp_w"] = 300.0
    return df


def test_catalog_points_derivation():
    ds = load_current(_fake_catalog())
    pts = ds.points
    peak = pts[pts["series"] == "peak_flops"].set_index("label")["value"]
    assert dict(peak) == {"GPU-A": 1e14, "GPU-B": 4e14, "GPU-C": 1e14, "TPU-A": 8e14}
    mem = pts[pts["series"] == "accelerator_memory"]
    assert "GPU-OLD" not in set(mem["label"]) and "CPU-A" not in set(mem["label"])
    dram = pts[pts["series"] == "dram_bw"]
    assert "GPU-OLD" in set(dram["label"]) and "CPU-A" not in set(dram["label"])
    ridge = pts[pts["series"] == "ridge_point"].set_index("label")["value"]
    assert ridge["GPU-B"] == pytest.approx(200.0)
    assert set(pts[pts["series"] == "tdp_w"]["label"]) >= {"CPU-A", "GPU-OLD"}
    hw = pts[pts["series"].isin(["peak_flops", "dram_bw", "ridge_point", "tdp_w"])]
    assert (hw["source"] == "test sheet").all()


def test_flagships_are_best_per_vendor_and_year():
    table = ridge_table(_fake_catalog())
    assert list(table["name"]) == ["gpu-a", "gpu-b", "tpu-a"]  # gpu-c loses 2020 to gpu-b
    assert list(table["ridge"]) == pytest.approx([100.0, 200.0, 400.0])
    all_acc = ridge_table(_fake_catalog(), flagship_only=False)
    assert len(all_acc) == 4


def test_rate_gap_arithmetic():
    def fit(slope: float, lo: float, hi: float) -> Fit:
        d = date(2020, 1, 1)
        return Fit(
            **dict(dataset="t", series="s", display="s", unit="", n=5, first_date=d),
            **dict(last_date=d, first_year=2000.0, last_year=2020.0, slope=slope),
            **dict(slope_stderr=0.01, slope_low=lo, slope_high=hi, intercept=0.0, r2=1.0),
            **dict(p_value=0.0, x_mean=2010.0, y_mean=0.0),
        )

    g = rate_gap(fit(0.24, 0.2, 0.28), fit(0.10, 0.08, 0.12))
    assert g["ratio_per_2yr"] == pytest.approx(10 ** (2 * 0.14))
    assert g["ratio_per_2yr_range"] == pytest.approx([10 ** (2 * 0.08), 10 ** (2 * 0.20)])


def test_fit_any_column_of_any_table():
    df = pd.DataFrame(
        {"released": ["2010-01-01", "2012-01-01", "2014-01-01", "2016-01-01"]}
    ).assign(tdp=[100.0, 200.0, 400.0, 800.0])
    f = fit_column(df, "tdp", "released")
    assert f.growth_per_2yr == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(MemwallError, match="column 'nope'"):
        fit_column(df, "nope", "released")


def test_user_csv_long_and_wide(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("date,flops,bw\n2010,1,1\n2012,4,2\n2014,16,4\n")
    fits = {f.series: f for f in fit_all(str(wide))}
    assert fits["flops"].growth_per_2yr == pytest.approx(4.0)
    assert fits["bw"].growth_per_2yr == pytest.approx(2.0)
    long = tmp_path / "long.csv"
    long.write_text("series,date,value\nx,2010-01-01,1\nx,2011-01-01,3\nx,2012-01-01,9\n")
    (f,) = fit_all(str(long))
    assert f.growth_per_2yr == pytest.approx(9.0, rel=1e-2)


# ---------------------------------------------------------------- bundled data files


def _rows(name: str) -> list[dict]:
    text = (resources.files("memwall") / "data" / "trends" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_every_trend_row_has_a_source():
    for name in ("paper_hardware.csv", "paper_models.csv", "current_models.csv"):
        for r in _rows(name):
            assert r["source"].strip() and r["unit"].strip(), (name, r)
            assert date.fromisoformat(r["date"]).year <= 2026
    for r in _rows("paper_hardware.csv") + _rows("paper_models.csv"):
        assert "e14c1ed" in r["source"]


def test_current_models_facts_and_estimate_flags():
    rows = _rows("current_models.csv")
    ds3 = {r["series"]: r for r in rows if r["label"] == "DeepSeek-V3"}
    assert float(ds3["transformer_params"]["value"]) == 671e9
    assert float(ds3["active_params"]["value"]) == 37e9
    assert float(ds3["training_tokens"]["value"]) == 14.8e12
    for r in rows:
        if r["series"] == "training_compute" and "6*N*D" in r["notes"]:
            assert r["estimate"] == "true", r
    gpt4 = [r for r in rows if r["label"] == "GPT-4"]
    assert gpt4 and all(r["estimate"] == "true" for r in gpt4)
    assert max(r["date"] for r in rows) >= "2026-01-01"


def test_paper_training_memory_table():
    rows = _rows("paper_training_memory.csv")
    assert len(rows) == 8 and all(r["source"] for r in rows)
    for r in rows:
        parts = sum(
            float(r[k]) for k in ("params_memory_GB", "optimizer_memory_GB", "activation_memory_GB")
        )
        if "total as printed" not in r["notes"]:
            assert parts == pytest.approx(float(r["total_memory_GB"]), abs=0.011), r["model"]


# ---------------------------------------------------------------- plots


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from memwall.plots.trends import plot_paper_figures

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(OSError):
        plot_paper_figures(tmp_path)
    assert list(tmp_path.iterdir()) == []
