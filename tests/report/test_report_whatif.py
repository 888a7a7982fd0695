"""What-if devices in the report (`--devices h100-sxm,h100-sxm@bw=2`): the what-if and verdict
sections scale a what-if device from its real one (they failed with "already a what-if
device")."""

from __future__ import annotations

import json

import pytest

from memwall.count import op_table
from memwall.hardware import get_device
from memwall.predict.default import default_prediction
from memwall.report import ReportOptions, SectionResult, build_report, registered
from memwall.report.sections.whatif import scaled
from memwall.spec import Workload, parse_precision, spec_from_config
from tiny_configs import REPORT_MODELS


def test_scaling_a_what_if_device_multiplies_its_factors():
    bw2 = get_device("h100-sxm@bw=2")
    assert scaled(bw2, bandwidth=2.0).name == "h100-sxm@bw=4"
    assert scaled(bw2, bandwidth=2.0).mem_bandwidth == get_device("h100-sxm@bw=4").mem_bandwidth
    both = scaled(bw2, flops=2.0)
    assert both.name == "h100-sxm@bw=2,flops=2" and both.is_derived
    assert both.peaks == get_device("h100-sxm@flops=2").peaks
    assert scaled(get_device("h100-sxm@bw=0.5"), bandwidth=2.0) == get_device("h100-sxm")
    assert scaled(get_device("h100-sxm"), bandwidth=2.0).name == "h100-sxm@bw=2"


def test_report_with_a_what_if_device_builds_what_if_and_verdict(tmp_path, monkeypatch):
    for sec in registered():  # sections the regression does not touch: not built (time)
        if sec.name in ("memory", "parallel", "trends", "claims"):
            monkeypatch.setattr(sec, "build", lambda ctx: SectionResult())
    opts = ReportOptions(
        out=str(tmp_path),
        quick=True,
        models=("gpt2",),
        devices=("h100-sxm", "h100-sxm@bw=2"),
        configs=REPORT_MODELS,
        measure=False,
    )
    done = build_report(opts, show_progress=False)
    res = json.loads((tmp_path / "results.json").read_text())
    assert done.complete and done.failed == [], res["sections"]["whatif"]["notes"]
    verdicts = {v["device"]: v for v in res["sections"]["verdict"]["data"]["verdicts"]}
    assert set(verdicts) == {"h100-sxm", "h100-sxm@bw=2"}
    rows = res["sections"]["whatif"]["data"]["gpt2"]["devices"]
    row = next(r for r in rows if r["device"] == "h100-sxm@bw=2" and r["batch"] == 1)
    spec = spec_from_config(REPORT_MODELS["gpt2"], name="gpt2")
    ops = op_table(spec, Workload("decode", 1, row["context"]), "bf16", "full")
    want = default_prediction(ops, get_device("h100-sxm@bw=4"), parse_precision("bf16"))
    want = want.totals["time"]
    assert row["time_2x_bandwidth"] == pytest.approx(want, rel=1e-9)
    remedy = verdicts["h100-sxm@bw=2"]["remedies"]["2x memory bandwidth"]
    assert remedy < verdicts["h100-sxm@bw=2"]["time"]
