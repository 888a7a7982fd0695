"""`memwall.api.trends` and `memwall trends` are one function: the same JSON and CSV, the same
one-line refusals; `.plot(folder)` writes what `--plot` writes."""

from __future__ import annotations

import csv
import io

import pytest

import memwall.api
from memwall.errors import MemwallError

SAME = [
    (dict(), []),
    (dict(dataset="current"), ["--dataset", "current"]),
    (dict(series=["peak_flops", "dram_bw"]), ["--series", "peak_flops", "--series", "dram_bw"]),
    (dict(series="peak_flops,dram_bw", since="2000", until=2015),
     ["--series", "peak_flops,dram_bw", "--since", "2000", "--until", "2015"]),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,args", SAME, ids=[" ".join(a) or "default" for _, a in SAME])
def test_json_csv_and_html_equal_the_command_line(cli, kwargs, args):
    result = memwall.api.trends(**kwargs)
    r = cli("trends", *args, "--format", "json")
    assert r.code == 0, r.err
    assert result.to_dict() == r.json
    rows = list(csv.DictReader(io.StringIO(cli("trends", *args, "--format", "csv").out)))
    frame = result.to_frame()
    assert list(frame.columns) == list(rows[0]) and len(frame) == len(rows)
    assert list(frame["series"]) == [row["series"] for row in rows]
    assert result.title in result._repr_html_()
    assert result.notes[0].startswith("OLS of log10(value)")


def test_own_csv_dataset(cli, tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("series,date,value\nx,2010,1\nx,2012,4\nx,2014,16\n")
    result = memwall.api.trends(str(p))
    assert result.to_dict() == cli("trends", "--dataset", p, "--format", "json").json
    assert result["fits"][0]["growth_per_2yr"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    "kwargs,args",
    [
        (dict(dataset="papr"), ["--dataset", "papr"]),
        (dict(series="flops"), ["--series", "flops"]),
        (dict(since="soon"), ["--since", "soon"]),
        (dict(since=2020, until=2010), ["--since", "2020", "--until", "2010"]),
        (dict(series=""), ["--series", ""]),
        (dict(series=["transformer_params"], since=2021),
         ["--series", "transformer_params", "--since", "2021"]),
    ],
)  # fmt: skip
def test_bad_input_raises_the_cli_line(cli, kwargs, args):
    r = cli("trends", *args)
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.api.trends(**kwargs)
    assert r.err.strip() == f"memwall: error: {e.value}"


def test_plot_into_a_file_is_refused_like_the_cli(cli, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    r = cli("trends", "--plot", target)
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.api.trends(plot=target)
    assert r.err.strip() == f"memwall: error: {e.value}"
    with pytest.raises(MemwallError):
        memwall.api.trends().plot(target)
    assert target.read_text() == "x"


@pytest.mark.slow
def test_plot_writes_what_the_cli_writes(cli, tmp_path):
    result = memwall.api.trends(plot=tmp_path / "a")
    names = sorted(p.rsplit("/", 1)[-1] for p in result["plots"])
    assert names == ["paper_fig1_hardware.png", "paper_fig2_models.png"]
    assert result.plot(tmp_path / "b") == tmp_path / "b"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == names
    r = cli("trends", "--plot", tmp_path / "c", "--format", "json")
    assert r.json == memwall.api.trends(plot=tmp_path / "c").to_dict()
