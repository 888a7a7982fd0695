"""The case study: counted panels, budgeted measurement, Ctrl-C keeps finished rows, figure.

Tiny configs stand in for the three models (same names, same families) so that real runs
take seconds; no timing is asserted.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from memwall.count import op_table, totals  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from memwall.measure.calibration import Calibration  # noqa: E402
from memwall.measure.terms import QUICK  # noqa: E402
from memwall.spec import load_model  # noqa: E402
from memwall.studies.casestudy import LENGTHS, MODELS, counted, run_casestudy, workload_for  # noqa: E402
from tiny_configs import CASESTUDY_MODELS  # noqa: E402

TINY = CASESTUDY_MODELS


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMWALL_DATA_DIR", str(tmp_path_factory.mktemp("mwdata")))
    c = Calibration.load(QUICK)
    for p in ("fp32", "int8"):
        c.ensure(p)
    yield c
    mp.undo()


def test_counted_panels_are_the_paper_convention_for_all_rows():
    for m in MODELS:
        spec = load_model(m)
        for L in LENGTHS:
            c = counted(spec, L)
            t = totals(op_table(spec, workload_for(spec, L), convention="paper"))
            assert c == {"flops": t["flops"], "mops": t["bytes"], "intensity": t["intensity"]}
    g, b = load_model("gpt2"), load_model("bert-base")
    assert workload_for(g, 128).phase == "generate" and workload_for(g, 128).seq_len == 0
    assert workload_for(b, 128).phase == "encode"
    # the paper's observation: similar FLOPs, far lower intensity for generation
    assert counted(b, 128)["intensity"] > 10 * counted(g, 128)["intensity"]


@pytest.mark.slow
def test_measures_rows_and_extends_positions_deliberately(cal):
    case = run_casestudy(
        list(TINY), [8, 32], ["fp32", "int8"], full=True, repeats=1, cal=cal, configs=TINY
    )
    d = case.to_dict()
    json.dumps(d)
    assert len(d["rows"]) == 6 and not d["interrupted"] and not d["skipped"]
    for r in d["rows"]:
        assert r["flops"] > 0 and r["mops"] > 0 and r["intensity"] > 0
        for p in ("fp32", "int8-dynamic"):  # int8 is read as int8-dynamic
            assert r[f"latency_{p}"] > 0 and r[f"predicted_{p}"] > 0
            assert r[f"error_{p}"] >= 0 and r[f"measured_{p}"] is True
    ref = case.row("bert-base", 8)
    assert ref is None or ref["normalized_fp32"] is None  # reference is bert-base at 128
    # gpt2's tiny table has 16 positions; generating 32 tokens needs the table extended
    assert any("gpt2: position table extended from 16 to 32" in n for n in d["notes"])
    assert d["prediction_error"]["n"] == 12


@pytest.mark.slow
def test_two_interleaved_passes_pool_runs_and_give_the_run_to_run_difference(cal):
    order = []
    case = run_casestudy(
        ["bert-base", "gpt2"],
        [8],
        ["fp32"],
        full=True,
        repeats=2,
        cal=cal,
        configs=TINY,
        on_row=lambda r: order.append(r["model"]),
        passes=2,
    )
    assert order == ["bert-base", "gpt2", "bert-base", "gpt2"]  # interleaved, not back to back
    for r in case.to_dict()["rows"]:
        m1, m2 = r["latency_fp32_passes"]
        assert r["runs_fp32"] >= 4 and r["latency_fp32_min"] <= min(m1, m2)
        assert r["pass_difference_fp32"] == pytest.approx(abs(m1 - m2) / r["latency_fp32"])
        assert isinstance(r["noisy_fp32"], bool) and r["repeatability_fp32"] >= 0


@pytest.mark.slow
def test_keyboard_interrupt_keeps_finished_rows(cal):
    seen = []

    def on_row(row):
        seen.append((row["model"], row["length"]))
        if len(seen) == 1:
            raise KeyboardInterrupt

    case = run_casestudy(
        list(TINY), [8, 16], ["fp32"], full=True, repeats=1, cal=cal, configs=TINY, on_row=on_row
    )
    assert case.interrupted
    measured = [r for r in case.rows if r.get("latency_fp32") is not None]
    assert [(r["model"], r["length"]) for r in measured] == seen
    assert all(r["flops"] > 0 for r in case.rows)  # counted rows are all kept
    assert any("interrupted" in n for n in case.notes)


@pytest.mark.slow
def test_budget_skips_long_lengths_and_says_so(cal):
    case = run_casestudy(
        ["bert-base", "gpt2"],
        [8, 16, 32],
        ["fp32"],
        budget_s=1e-6,
        repeats=1,
        cal=cal,
        configs=TINY,
    )
    lengths = {r["length"] for r in case.rows if r.get("latency_fp32") is not None}
    assert lengths == {8}  # the shortest length is always measured
    assert {(s["model"], s["length"]) for s in case.skipped} == {
        (m, L) for m in ("bert-base", "gpt2") for L in (16, 32)
    }
    assert any("--full" in n for n in case.notes)
    # skipped rows still carry counted values and a prediction
    row = case.row("gpt2", 32)
    assert row["flops"] > 0 and row["predicted_fp32"] > 0 and row["latency_fp32"] is None


def test_plot_writes_png_and_svg_atomically(tmp_path):
    from memwall.plots.casestudy import plot_casestudy
    from memwall.studies.casestudy import CaseStudy

    rows = []
    for m in MODELS:
        spec = load_model(m)
        for L in (128, 256):
            r = {"model": m, "length": L, **counted(spec, L)}
            r.update(latency_int8=0.1 * L, predicted_int8=0.11 * L, normalized_int8=L / 128)
            rows.append(r)
    case = CaseStudy(rows, ("int8",), env={"cpu_model": "test", "threads": 2})
    for name in ("fig.png", "fig.svg"):
        out = plot_casestudy(case, tmp_path / name)
        assert out.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fig.svg"]
    with pytest.raises(MemwallError, match=".png or .svg"):
        plot_casestudy(case, tmp_path / "fig.pdf")


def test_bad_lengths_and_precisions_are_refused():
    with pytest.raises(MemwallError):
        run_casestudy(["bert-base"], [0], ["fp32"])
    with pytest.raises(MemwallError, match="fp32, bf16, int8"):
        run_casestudy(["bert-base"], [128], ["int4"])
