"""`memwall report` on the command line: output checked before work, bad names refused in one
line, user strings escaped in the page, Ctrl-C keeps the finished sections (exit 130)."""

from __future__ import annotations

import json

import pytest

from memwall.report import registered
from tiny_configs import TINY_GPT2

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


def test_out_that_is_a_file_is_refused_before_work(cli, tmp_path, data_dir):
    f = tmp_path / "taken"
    f.write_text("x")
    cli("report", "--out", f, "--no-measure").assert_one_line_error("is a file")
    assert f.read_text() == "x"


def test_unknown_model_or_device_is_one_line_and_writes_nothing(cli, tmp_path, data_dir):
    out = tmp_path / "r"
    cli("report", "--out", out, "--models", "gpt3").assert_one_line_error("unknown model 'gpt3'")
    cli("report", "--out", out, "--devices", "h100").assert_one_line_error("unknown device")
    cli("report", "--out", out, "--models", ",").assert_one_line_error("--models is empty")
    assert not out.exists()


def test_model_name_with_markup_is_escaped(cli, tmp_path, data_dir):
    cfg = tmp_path / "<img src=x onerror=alert(1)><script>alert(1)<\\script>.json"
    cfg.write_text(json.dumps(TINY_GPT2))
    out = tmp_path / "r"
    r = cli(
        "report",
        "--out",
        out,
        "--models",
        cfg,
        "--devices",
        "h100-sxm",
        "--no-measure",
        "--format",
        "json",
    )
    assert r.code == 0, r.err
    assert r.json["complete"] is True
    html = (out / "index.html").read_text()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(1)" in html
    res = json.loads((out / "results.json").read_text())
    assert res["sections"]["verdict"]["data"]["verdicts"][0]["model"] == str(cfg)


def test_ctrl_c_writes_finished_sections_marked_incomplete(cli, tmp_path, data_dir, monkeypatch):
    trends = next(s for s in registered() if s.name == "trends")

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(trends, "build", interrupted)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_GPT2))
    out = tmp_path / "r"
    r = cli("report", "--out", out, "--models", cfg, "--devices", "h100-sxm", "--no-measure")
    assert r.code == 130
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwall: interrupted"), r.err
    assert "Traceback" not in r.err
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is False and "trends" in res["sections_missing"]
    assert "Incomplete report" in (out / "index.html").read_text()
