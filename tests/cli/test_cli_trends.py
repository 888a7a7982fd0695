"""`memwall trends` end to end: figures, formats, bad input, the API behind the JSON."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from memwall.trends import summarize

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


def _assert_image(path) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 400
        px = np.asarray(im.convert("L"), dtype=float)
    assert px.std() > 10  # not a blank canvas
    assert (px < 128).mean() > 0.005  # some ink: points, lines, text


@pytest.mark.slow
def test_plot_command_writes_valid_figures(cli, tmp_path):
    r = cli("trends", "--plot", tmp_path, "--format", "json")
    assert r.code == 0, r.err
    written = r.json["plots"]
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == [
        "paper_fig1_hardware.png",
        "paper_fig2_models.png",
    ]
    r = cli("trends", "-d", "current", "--plot", tmp_path, "--format", "csv")
    assert r.code == 0, r.err
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "current_hardware.png",
        "current_models.png",
        "current_ridge_point.png",
        "paper_fig1_hardware.png",
        "paper_fig2_models.png",
    ]  # no temporary files left behind
    for p in tmp_path.iterdir():
        _assert_image(p)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dataset", "papr"], "unknown dataset 'papr'"),
        (["--series", "flops"], "unknown series 'flops'"),
        (["--dataset", "current", "--series", "nope"], "unknown series 'nope'"),
        (["--series", "transformer_params", "--since", "2021"], "a fit needs at least 3"),
        (["--since", "2030"], "a fit needs at least 3"),
        (["--since", "soon"], "--since 'soon' is not a year"),
        (["--since", "2020", "--until", "2010"], "is after --until"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, args, needle):
    cli("trends", *args, "--format", "json").assert_one_line_error(needle)


def test_bad_input_via_the_installed_command(cli_subprocess, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    for args in (["--dataset", "nope"], ["--plot", target]):
        cli_subprocess("trends", *args).assert_one_line_error()
    assert target.read_text() == "x"


def test_table_and_csv_formats(cli):
    t = cli("trends")
    assert t.code == 0 and "Growth rates" in t.out and "Printed" in t.out
    c = cli("trends", "--format", "csv", "--series", "peak_flops,dram_bw")
    rows = list(csv.DictReader(io.StringIO(c.out)))
    assert [r["series"] for r in rows] == ["peak_flops", "dram_bw"]
    api = {f["series"]: f for f in summarize("paper")["fits"]}
    assert float(rows[0]["growth_per_2yr"]) == pytest.approx(
        api["peak_flops"]["growth_per_2yr"], rel=1e-9
    )


def test_summarize_api_matches_cli(cli):
    api = summarize("paper")
    r = cli("trends", "--dataset", "paper", "--format", "json")
    assert r.code == 0, r.err
    paper_json = r.json
    assert [f["series"] for f in api["fits"]] == [f["series"] for f in paper_json["fits"]]
    for a, b in zip(api["fits"], paper_json["fits"], strict=True):
        assert a["growth_per_2yr"] == pytest.approx(b["growth_per_2yr"], rel=1e-12)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("date,a,b\n2010,1\n2012,4,2\n2014,16,4\n", "line 2 has 2 fields, the header has 3"),
        ("date,value\n2010,1,5\n2012,4\n2014,16\n", "line 2 has 3 fields, the header has 2"),
        ("date,a,a\n2010,1,5\n", "unique"),
        ("series,date,value\n,2010,1\n,2012,2\n,2014,4\n", "series name"),
    ],
)
def test_malformed_user_csv_is_one_line(cli, tmp_path, text, needle):
    p = tmp_path / "mine.csv"
    p.write_text(text)
    cli("trends", "--dataset", p).assert_one_line_error(needle)


def test_series_named_like_markup_is_shown_as_text(cli, tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("series,date,value\n[/nope],2010,1\n[/nope],2012,4\n[/nope],2014,16\n")
    r = cli("trends", "--dataset", p)
    assert r.code == 0, r.err
    assert "[/nope]" in r.out
    r = cli("trends", "--dataset", p, "--series", "[/nope]", "--format", "json")
    assert r.code == 0 and r.json["fits"][0]["growth_per_2yr"] == pytest.approx(4.0)
    cli("trends", "--dataset", p, "--series", "[/other]").assert_one_line_error("[/other]")


def test_empty_series_is_refused(cli):
    cli("trends", "--series", "").assert_one_line_error("--series names no series")
    cli("trends", "--series", " , ").assert_one_line_error("--series names no series")
