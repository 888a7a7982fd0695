"""`memwall.casestudy(...)` is `memwall casestudy ...`: the same JSON, CSV, notes, figure,
refusals, thread policy and calibration choice. The measuring (`studies.casestudy.run_casestudy`,
as tests/test_report_threads.py stubs it) is replaced by fixed latencies over the real plan
(tiny configs counted by the closed form); nothing is timed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import memwall  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from tiny_configs import CASESTUDY_MODELS  # noqa: E402

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

ENV = {
    "cpu_model": "Test CPU",
    "torch": "x",
    "transformers": "y",
    "load_average_1min": 0.5,
}
CALIBRATION = {
    "age_days": 0.0,
    "rounds": 3,
    "max_spread": 0.04,
    "others_busy_cores": 0.2,
    "noisy": False,
}


@pytest.fixture
def models(tmp_path) -> str:
    """Tiny BERT and GPT-2 configs as files, comma-separated as --models takes them."""
    paths = []
    for name in ("bert-base", "gpt2"):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(CASESTUDY_MODELS[name]))
        paths.append(str(p))
    return ",".join(paths)


@pytest.fixture
def stub(monkeypatch, tmp_path):
    """`run_casestudy` replaced: the real plan, fixed latencies, `on_row` after each row (a
    KeyboardInterrupt there keeps the rows so far, as the real one does); it records the
    threads, thread choice and calibration it was given. The thread policy is spied."""
    import torch

    import memwall.measure.run as run
    import memwall.studies.casestudy as cs
    from memwall.measure.timing import Timing

    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMWALL_CALIBRATION", "quick")
    monkeypatch.setattr(run, "auto_threads", lambda: (1, "1 (the policy, spied)"))
    seen: list[dict] = []

    def run_casestudy(models, lengths, precisions, full=False, budget_s=600.0, repeats=3,
                      cal=None, device=None, configs=None, on_row=None, on_progress=None,
                      passes=1):  # fmt: skip
        choice = run.THREADS_NOTE["threads"].split(";")[0]  # the pinned CPU varies
        seen.append({"threads": torch.get_num_threads(), "choice": choice, "cal": cal})
        plan = cs.plan_casestudy(models, lengths, precisions, configs)
        progress = on_progress or (lambda d, a, t: None)
        interrupted = False
        for (m, L), row in plan.rows.items():
            for p in plan.precisions:
                t = 1e-3 * L / 8
                row[f"predicted_{p}"] = t
                cs._record(row, p, Timing((t * 1.1, t * 1.3), 1), [t * 1.2])
            progress(f"{m} L={L}", 1.0, len(plan.rows))
            try:
                if on_row is not None:
                    on_row(row)
            except KeyboardInterrupt:
                interrupted = True
                plan.notes.append("interrupted: 1 of 4 planned measurements done")
                break
        case = cs.assemble_casestudy(plan, device, budget_s, interrupted, 0.0)
        case.env = {**ENV, "threads": torch.get_num_threads(), "threads_choice": choice}
        case.calibration = CALIBRATION
        return case

    monkeypatch.setattr(cs, "run_casestudy", run_casestudy)
    return seen


def _args(kw: dict) -> list[str]:
    out: list[str] = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


CASES = [
    {"lengths": "8,16", "precisions": "fp32", "repeats": 1, "device": "none"},
    {"lengths": "8", "precisions": "int8,fp32", "full": True, "reuse_calibration": True},
    {"lengths": "16,8", "precisions": "fp32", "budget": 30.0, "threads": 1, "device": "none"},
]


@pytest.mark.parametrize("kw", CASES)
def test_json_csv_and_notes_equal_the_cli(cli, models, stub, kw):
    r = cli("casestudy", "--models", models, *_args(kw), "--format", "json")
    assert r.code == 0, r.err
    res = memwall.casestudy(models=models, **kw)
    assert json.loads(r.out) == res.to_dict()
    assert res.command == "casestudy" and res["interrupted"] is False
    csv = cli("casestudy", "--models", models, *_args(kw), "--format", "csv")
    header, *lines = csv.out.splitlines()
    frame = res.to_frame()
    assert list(frame.columns) == header.split(",") and len(frame) == len(lines) == len(res.rows)
    table = cli("casestudy", "--models", models, *_args(kw))
    assert table.code == 0 and res.title in table.out
    assert res.notes[-1].split(",")[0] in table.out  # the environment line under the table
    assert res.title in res._repr_html_()


def test_lists_are_the_same_as_comma_separated_text(models, stub):
    text = memwall.casestudy(models=models, lengths="8,16", precisions="fp32", device="none")
    lists = memwall.casestudy(
        models=models.split(","), lengths=[8, 16], precisions=["fp32"], device="none"
    )
    assert lists.to_dict()["rows"] == text.to_dict()["rows"]


def test_thread_policy_and_calibration_choice_are_the_apis(cli, models, stub):
    """threads=None: the policy's count (spied: 1 of torch's 2); the calibration measured
    fresh unless reuse_calibration; the same record from the CLI, the library and the
    report's entry (`casestudy_here`)."""
    import torch

    from memwall.api._casestudy import casestudy_here

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = cli("casestudy", "--models", models, "--lengths", "8", "--precisions", "fp32")
        assert r.code == 0, r.err
        memwall.casestudy(models=models, lengths="8", precisions="fp32", reuse_calibration=True)
        casestudy_here(models.split(","), [8], ["fp32"], reuse_calibration=True)
        assert torch.get_num_threads() == 2  # restored after
    finally:
        torch.set_num_threads(before)
    assert [s["threads"] for s in stub] == [1, 1, 1]
    assert {s["choice"] for s in stub} == {"1 (the policy, spied)"}
    assert len({(s["cal"].path, s["cal"].cfg.name) for s in stub}) == 1  # one record for all


def test_figure_written_and_said_the_same(cli, models, stub, tmp_path):
    plot = tmp_path / "cs.png"
    kw = {"lengths": "8,16", "precisions": "fp32", "device": "none", "plot": plot}
    r = cli("casestudy", "--models", models, *_args(kw), "--format", "json")
    assert r.code == 0, r.err
    assert plot.stat().st_size > 1000
    plot.unlink()
    res = memwall.casestudy(models=models, **kw)
    assert json.loads(r.out) == res.to_dict() and plot.stat().st_size > 1000
    assert f"figure written to {plot}" in res["notes"]
    assert res.plot(tmp_path / "again.svg").stat().st_size > 1000


def test_figure_failing_at_the_end_keeps_the_rows(cli, models, stub, tmp_path, monkeypatch):
    """The figure's folder vanishes while the study runs: the library returns the rows and
    says why there is no figure; the CLI prints them, then one line and exit 1."""
    import memwall.cli.casestudy as cmd

    out_dir = tmp_path / "figs"

    def vanish(row):
        if out_dir.exists():
            out_dir.rmdir()

    kw = {"lengths": "8", "precisions": "fp32", "device": "none", "plot": out_dir / "cs.png"}
    out_dir.mkdir()
    res = memwall.casestudy(models=models, on_row=vanish, **kw)
    assert res.extra["plot_error"].startswith("figure not written")
    assert res.extra["plot_error"] in res["notes"]
    out_dir.mkdir()
    monkeypatch.setattr(cmd, "ON_ROW", vanish)
    r = cli("casestudy", "--models", models, *_args(kw), "--format", "json")
    assert r.code == 1 and r.err.strip() == f"memwall: error: {res.extra['plot_error']}"
    assert json.loads(r.out) == res.to_dict()


def test_interrupted_rows_are_returned_and_the_cli_exits_130(cli, models, stub, monkeypatch):
    import memwall.cli.casestudy as cmd

    def ctrl_c(row):
        raise KeyboardInterrupt

    kw = {"lengths": "8,16", "precisions": "fp32", "device": "none"}
    res = memwall.casestudy(models=models, on_row=ctrl_c, **kw)
    assert res["interrupted"] is True
    assert [r["latency_fp32"] is not None for r in res.rows] == [True, False, False, False]
    monkeypatch.setattr(cmd, "ON_ROW", ctrl_c)
    r = cli("casestudy", "--models", models, *_args(kw), "--format", "json")
    assert r.code == 130 and json.loads(r.out) == res.to_dict()


def test_progress_callback_gets_the_work(models, stub):
    said: list[tuple[str, float, float]] = []
    memwall.casestudy(
        models=models, lengths="8", precisions="fp32", device="none",
        progress=lambda d, a, t: said.append((d, a, t)),
    )  # fmt: skip
    assert [a for _, a, _ in said] == [1.0, 1.0] and said[0][0].endswith("L=8")


BAD = [
    {"models": ""},
    {"lengths": "8,x"},
    {"lengths": ","},
    {"lengths": "0"},
    {"precisions": "fp16"},
    {"precisions": ""},
    {"repeats": 0},
    {"budget": 0.0},
    {"budget": "nan"},
    {"plot": "{tmp}/no/such/folder/cs.png"},
    {"plot": "{tmp}/cs.jpg"},
    {"device": "no-such-device"},
    {"threads": 0},
    {"models": "gtp2"},
]


@pytest.mark.parametrize("bad", BAD)
def test_bad_input_is_the_same_one_line(cli, models, stub, tmp_path, bad):
    kw = {"models": models, "lengths": "8", "precisions": "fp32", **bad}
    kw = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in kw.items()}
    if kw.get("budget") == "nan":
        kw["budget"] = float("nan")
    r = cli("casestudy", *_args(kw))
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.casestudy(**kw)
    assert r.err == f"memwall: error: {e.value}\n"
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.json"))


@pytest.mark.slow
def test_real_tiny_case_study_through_the_library(models, tmp_path, monkeypatch, one_thread):
    """Unstubbed: a real calibration and timing, reached from the library alone."""
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMWALL_CALIBRATION", "quick")
    res = memwall.casestudy(
        models=models, lengths="8", precisions="fp32", repeats=1, device="none", threads=1
    )
    assert [r["latency_fp32"] > 0 for r in res.rows] == [True, True]
    assert res["prediction_error"]["n"] == 2 and len(res.to_frame()) == 2
    assert res.notes[-1].startswith("environment")
