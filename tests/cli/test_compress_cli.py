"""`memwall compress` in-process: bad input is one line and exit 2; --pareto on the tiny model."""

from __future__ import annotations

import pytest

TINY = "stdlib-gpt-tiny"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--method", "prune-structured:1.5"], "between 0 and 1"),
        (["--method", "prune-unstructured:0"], "between 0 and 1"),
        (["--method", "prun-structured:0.3"], "did you mean prune-structured"),
        (["--method", "int2"], "2-bit"),
        (["--method", "int4:128"], "does not divide the layer width 64"),
        (["--method", "int4:100"], "no CPU kernel"),
        ([], "give --method METHOD or --pareto"),
        (["--method", "int8", "--pareto"], "not both"),
        (["--method", "int8", "--plot", "x.png"], "add --pareto"),
        (["--method", "int8", "--phase", "generate"], "generate"),
        (["--method", "int8", "--context", "0"], "context must be between 1 and 112"),
        (["--method", "int8", "--threads", "0"], "threads must be between"),
    ],
)
def test_bad_input_is_one_line(cli, tmp_path, args, needle):
    r = cli("compress", TINY, *args, env={"MEMWALL_CACHE_DIR": str(tmp_path)})
    r.assert_one_line_error(needle)
    assert not any(tmp_path.iterdir())  # nothing trained or written before the check


def test_unknown_model(cli):
    cli("compress", "gpt3", "--method", "int8").assert_one_line_error("unknown model")


def test_bad_plot_path_refused_before_work(cli, tmp_path):
    r = cli("compress", TINY, "--pareto", "--plot", str(tmp_path / "f.txt"),
            env={"MEMWALL_CACHE_DIR": str(tmp_path)})  # fmt: skip
    r.assert_one_line_error("--plot")


def test_pareto_json_and_plot(cli, tmp_path):
    plot = tmp_path / "pareto.png"
    r = cli("compress", TINY, "--pareto", "--plot", plot, "--format", "json",
            env={"MEMWALL_CACHE_DIR": str(tmp_path)})  # fmt: skip
    assert r.code == 0, r.err
    d = r.json
    rows = {row["method"]: row for row in d["rows"]}
    assert {"fp32", "int8", "int8-dynamic", "int4:32", "prune-unstructured:0.9"} <= set(rows)
    for row in rows.values():
        assert row["perplexity"] > 1 and row["latency_measured"] > 0
        assert row["weights_real"] > 0 and row["weights_count"] > 0
    assert rows["fp32"]["perplexity_change"] == 0
    assert any(row["pareto"] for row in rows.values())
    assert {c["id"] for c in d["claims"]} >= {"int4-footprint", "unstructured-80"}
    assert plot.stat().st_size > 1000
    csv = cli("compress", TINY, "--method", "int8", "--format", "csv",
              env={"MEMWALL_CACHE_DIR": str(tmp_path)})  # fmt: skip
    assert csv.code == 0, csv.err
    assert csv.out.splitlines()[0].startswith("method,weights_real")
    assert len(csv.out.splitlines()) == 3
