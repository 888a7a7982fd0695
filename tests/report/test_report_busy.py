"""A report measured on a busy machine, with noisy case-study rows: the verdict warns first
(how busy, the command to re-run), results.json keeps the facts, and every table and figure
that shows a noisy row marks it; the case study's median is over the clean rows. The machine
check and the case study are stubbed (nothing is timed)."""

from __future__ import annotations

import json

import pytest

import memwall.report.calm as calm
import memwall.report.sections.casestudy as cs_section
from memwall.hardware import save_measurement
from memwall.report import ReportOptions, SectionResult, build_report, registered
from memwall.studies.casestudy import CaseStudy
from report.test_report import fake_measurement
from tiny_configs import REPORT_MODELS

P = "int8-dynamic"
BUSY = {
    "load_1min": 2.71,
    "others_busy_cores": 1.8,
    "probe": {"compute": 1.52, "memory": 1.41, "dispatch": 1.9},
    "probe_ratio": 1.52,
}


def _row(model: str, length: int, lat: float, pred: float, iqr: float, noisy: bool) -> dict:
    return {
        "model": model,
        "length": length,
        "workload": "w",
        "flops": 1e9 * length,
        "mops": 1e8 * length,
        "intensity": 10.0,
        f"latency_{P}": lat,
        f"predicted_{P}": pred,
        f"error_{P}": abs(pred - lat) / lat,
        f"relative_iqr_{P}": iqr,
        f"noisy_{P}": noisy,
        f"normalized_{P}": lat / 0.01,
    }


ROWS = [
    _row("bert-base", 128, 0.010, 0.0110, 0.01, False),  # 10% error, clean
    _row("bert-base", 256, 0.020, 0.0240, 0.02, False),  # 20%, clean
    _row("gpt2", 128, 0.100, 0.1800, 0.25, True),  # 80%, noisy runs
    _row("gpt2", 256, 0.200, 0.2060, 0.15, True),  # 3%, noisy runs (spread 15%)
]


def fake_casestudy(**kw) -> CaseStudy:
    return CaseStudy(
        rows=[dict(r) for r in ROWS],
        precisions=(P,),
        env={"threads": 1, "threads_choice": "1 of 2 cores"},
        calibration={"noisy": False, "age_days": 0.0},
    )


@pytest.fixture(scope="module")
def busy_report(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMWALL_DATA_DIR", str(tmp_path_factory.mktemp("mwdata")))
    save_measurement(fake_measurement())
    mp.setattr(calm, "look", lambda cores, probe, sample_s=1.0: dict(BUSY))
    mp.setattr(cs_section, "casestudy", fake_casestudy)
    for sec in registered():  # sections this test does not read: not built (time)
        if sec.name in ("memory", "parallel", "trends"):
            mp.setattr(sec, "build", lambda ctx: SectionResult(notes=["skipped by the test"]))
    out = tmp_path_factory.mktemp("busy")
    opts = ReportOptions(
        out=str(out),
        quick=True,
        models=("gpt2",),
        devices=("local", "h100-sxm"),
        configs=REPORT_MODELS,
    )
    try:
        done = build_report(opts, show_progress=False)
    finally:
        mp.undo()
    html = (out / "index.html").read_text()
    return done, json.loads((out / "results.json").read_text()), html[html.index("<body>") :]


def test_facts_of_the_busy_machine_are_in_results_json(busy_report):
    done, res, _ = busy_report
    facts = res["machine"]["calm"]
    assert facts["checked"] and not facts["fair"]
    assert facts["first"]["load_1min"] == pytest.approx(2.71)
    assert facts["first"]["probe_ratio"] == pytest.approx(1.52)
    assert facts["wait_bound_s"] == 0 and facts["looks"] == 1  # --quick: no waiting
    assert "load_1min_after" in facts and "others_busy_cores_during" in facts
    assert facts["rerun"].startswith("memwall report --out ") and "--quick" in facts["rerun"]
    assert done.calm["warning"] == facts["warning"]


def test_the_verdict_warns_first_with_load_probe_and_command(busy_report):
    _, res, html = busy_report
    verdict = html[html.index('id="verdict"') :]
    banner = verdict[: verdict.index("</p>")]
    assert 'class="banner warning"' in banner  # the verdict's first block
    for text in ("busy", "2.71", "1.52x", "Re-run", "memwall report --out", "on a quiet machine"):
        assert text in banner, text
    assert html.index('id="verdict"') < html.index('id="machine"')  # the first section
    assert res["sections"]["verdict"]["data"]["warnings"][0] == res["machine"]["calm"]["warning"]
    assert "2 of 4 case-study measurements are noisy" in verdict[: verdict.index("<table")]


def test_casestudy_median_is_over_clean_rows_with_the_all_rows_median_labelled(busy_report):
    _, res, html = busy_report
    pe = res["sections"]["casestudy"]["data"]["prediction_error"]
    assert pe["clean"]["n"] == 2 and pe["noisy_excluded"] == 2 and pe["all_rows"]["n"] == 4
    assert pe["clean"]["median"] == pytest.approx(0.15)
    assert pe["clean"]["worst"] == pytest.approx(0.20)
    assert pe["all_rows"]["worst"] == pytest.approx(0.80)
    assert "median error of 15.0% (worst 20.0%)" in html
    assert "2 noisy runs (⚠) left out" in html and "noisy ones included: median 15.0%" in html


def test_noisy_rows_are_marked_in_the_table_and_the_figure(busy_report):
    _, res, html = busy_report
    sec = res["sections"]["casestudy"]
    rows = {(r["model"], r["length"]): r for r in sec["data"]["rows"]}
    assert rows[("gpt2", 128)][f"mark_{P}"].startswith("⚠ noisy runs (spread 25.0%)")
    assert rows[("gpt2", 256)][f"mark_{P}"] == "⚠ noisy runs (spread 15.0%)"
    assert rows[("bert-base", 128)][f"mark_{P}"] == "clean"
    table = html[html.index('id="casestudy"') :]
    table = table[table.index("<table") : table.index("</table>")]
    assert table.count('<tr class="noisy">') == 2 and "⚠ noisy: the timed runs" in table
    assert "⚠ noisy runs (spread 15.0%)" in table
    fig = html[html.index('id="fig-casestudy"') :]
    fig = fig[: fig.index("</script>")]
    legend = json.dumps("⚠ noisy (left out of the median)")  # Plotly's JSON: \u26a0
    assert legend in fig or legend[1:-1] in fig
    assert json.dumps("noisy runs (spread 25.0%)")[1:-1] in fig  # the reason, on hover


def test_the_latency_claim_marks_its_noisy_row(busy_report):
    _, res, html = busy_report
    claim = next(c for c in res["sections"]["claims"]["data"]["claims"] if c["id"] == "latency")
    assert claim["noisy"] == [f"gpt2 {P}: noisy runs (spread 25.0%)"]
    assert claim["noisy_row"] and "⚠ noisy: gpt2" in claim["text"]
    claims = html[html.index('id="claims"') :]
    assert '<tr class="noisy">' in claims[: claims.index("</table>")]
