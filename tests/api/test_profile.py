"""`memwall.profile(...)` is `memwall profile ...`: the same JSON, CSV, notes, refusals, thread
policy and calibration choice. The timing itself (`studies.profile.profile_loaded`) is stubbed
with fixed numbers derived from what it is given; the model is really built (tiny configs)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import memwall  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402
from tiny_configs import TINY_BERT, TINY_GPT2  # noqa: E402

ENV = {
    "cpu_model": "Test CPU",
    "logical_cpus": 2,
    "torch": "x",
    "transformers": "y",
    "load_average_1min": 0.5,
    "date": "2025-01-01T00:00:00+00:00",
}
CALIBRATION = {
    "age_days": 0.5,
    "rounds": 3,
    "max_spread": 0.04,
    "others_busy_cores": 0.2,
    "noisy": False,
    "load_average_1min": 0.5,
}


@pytest.fixture
def configs(tmp_path):
    """Tiny configs as files (the way a user names a config), and a throw-away data dir."""
    out = {}
    for name, cfg in {"gpt2": TINY_GPT2, "bert": TINY_BERT}.items():
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(cfg))
        out[name] = str(p)
    return out


@pytest.fixture
def stub(monkeypatch, tmp_path):
    """The timing stubbed: fixed runs and ops, the workload, notes and runs it was given, the
    threads and thread choice it ran under; the thread policy spied (one thread, said so)."""
    import memwall.measure.run as run
    import memwall.studies.profile as study
    from memwall.measure.timing import Timing

    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMWALL_CALIBRATION", "quick")
    monkeypatch.setattr(run, "auto_threads", lambda: (1, "1 (the policy, spied)"))
    seen: list[dict] = []

    def profile_loaded(lm, wl, repeats, warmup, per_op, cal, dev, notes, on_run, budget_s):
        import torch

        for i in range(warmup + repeats):
            on_run(i)
        choice = run.THREADS_NOTE["threads"].split(";")[0]  # the pinned CPU varies
        seen.append({"threads": torch.get_num_threads(), "choice": choice, "cal": cal})
        timing = Timing(tuple(1e-3 * (1 + i / 10) for i in range(repeats)), warmup, 0, budget_s)
        ops = [
            {"name": n, "kind": "matmul", "flops": 1e6 * (i + 1), "bytes": 2e5, "predicted":
             1e-4, "measured": 2e-4 if per_op else None, "error": 0.5, "share": 0.5,
             "profiler_time": 1e-4, "roofline_uncalibrated": None, "term": "linear"}
            for i, n in enumerate(("attn.qkv", "mlp.fc1"))
        ]  # fmt: skip
        return study.ProfileResult(
            model=lm.spec.name,
            family=lm.spec.family,
            workload=wl,
            precision=lm.precision,
            timing=timing,
            tokens=wl.batch * max(wl.gen_len, 1),
            predicted=None,
            ops=ops,
            op_profile=None,
            baseline=None,
            env={**ENV, "threads": torch.get_num_threads(), "threads_choice": choice},
            notes=[*lm.notes, *notes],
            planned_runs=repeats,
            calibration=CALIBRATION,
        )

    monkeypatch.setattr(study, "profile_loaded", profile_loaded)
    return seen


def _flags(kw: dict) -> list[str]:
    """The command line of keyword arguments (True: a bare flag)."""
    out: list[str] = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif k == "per_op" and v is False:
            out.append("--no-per-op")
        else:
            out += [flag, str(v)]
    return out


CASES = [
    ("gpt2", {"phase": "generate", "seq_len": 4, "gen_len": 4, "repeats": 2, "device": "none"}),
    ("bert", {"seq_len": 16, "repeats": 3, "per_op": False, "threads": 1}),
    ("gpt2", {"batch": 2, "seq_len": 8, "precision": "int8", "device": "none"}),
]


@pytest.mark.parametrize("model, kw", CASES)
def test_json_csv_and_notes_equal_the_cli(cli, configs, stub, model, kw):
    path = configs[model]
    r = cli("profile", path, *_flags(kw), "--format", "json")
    assert r.code == 0, r.err
    res = memwall.profile(path, **kw)
    assert json.loads(r.out) == res.to_dict()
    assert res.command == "profile" and res["interrupted"] is False
    csv = cli("profile", path, *_flags(kw), "--format", "csv")
    header, *lines = csv.out.splitlines()
    frame = res.to_frame()
    assert list(frame.columns) == header.split(",") and len(frame) == len(lines) == 2
    table = cli("profile", path, *_flags(kw))
    assert table.code == 0 and res.title in table.out
    assert all(n.split(",")[0] in table.out for n in res.notes)  # notes printed under it
    assert res.title in res._repr_html_()


def test_thread_policy_and_calibration_choice_are_the_apis(cli, configs, stub, monkeypatch):
    """threads=None: the policy's count (spied: 1 of torch's 2), said in the environment; the
    calibration reloaded unless recalibrate, the same from the CLI and the library."""
    import torch

    from memwall.measure.calibration import Calibration

    asked: list[bool] = []
    real = Calibration.load.__func__

    def load(cls, cfg=None, recalibrate=False, on_measure=None, persist=True):
        asked.append(recalibrate)
        return real(cls, cfg, recalibrate, on_measure, persist)

    monkeypatch.setattr(Calibration, "load", classmethod(load))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        args = ["--seq-len", "8", "--repeats", "1", "--device", "none"]
        assert cli("profile", configs["bert"], *args, "--recalibrate").code == 0
        res = memwall.profile(configs["bert"], seq_len=8, repeats=1, device="none")
    finally:
        assert torch.get_num_threads() == 2  # restored after
        torch.set_num_threads(before)
    assert [s["threads"] for s in stub] == [1, 1]
    assert [s["choice"] for s in stub] == ["1 (the policy, spied)"] * 2
    assert asked == [True, False]
    assert res["environment"]["threads_choice"] == "1 (the policy, spied)"


def test_progress_reports_each_run(configs, stub):
    said: list[tuple[str, float]] = []
    memwall.profile(
        configs["bert"], seq_len=8, repeats=3, warmup=1, device="none",
        progress=lambda text, n: said.append((text, n)),
    )  # fmt: skip
    assert sum(n for _, n in said) == 4  # one warm-up, three timed runs
    assert said[0] == ("building bert", 0.0)


def test_interrupted_profile_is_returned_and_the_cli_exits_130(cli, configs, stub, monkeypatch):
    """What the CLI prints on Ctrl-C is the api's result; the exit code and note are the CLI's."""
    import memwall.studies.profile as study

    timed = study.profile_loaded

    def interrupted(*a, **k):
        res = timed(*a, **k)
        res.interrupted, res.planned_runs = True, 5
        return res

    monkeypatch.setattr(study, "profile_loaded", interrupted)
    args = ["--seq-len", "8", "--repeats", "2", "--device", "none"]
    r = cli("profile", configs["bert"], *args, "-f", "json")
    assert r.code == 130
    assert "2 of 5 timed runs" in r.err
    res = memwall.profile(configs["bert"], seq_len=8, repeats=2, device="none")
    assert json.loads(r.out) == res.to_dict() and res["interrupted"] is True


BAD = [
    ("gpt2", {"phase": "prefill", "seq_len": 2048}),
    ("bert-base", {"seq_len": 513}),
    ("bert-base", {"precision": "fp16"}),
    ("mixtral-8x7b", {"precision": "int8"}),
    ("gtp2", {}),
    ("gpt2", {"repeats": 0}),
    ("gpt2", {"warmup": -1}),
    ("gpt2", {"budget": -1.0}),
    ("gpt2", {"budget": math.nan}),
    ("gpt2", {"device": "no-such-device"}),
    ("gpt2", {"threads": 0, "device": "none"}),
]


@pytest.mark.parametrize("model, kw", BAD)
def test_bad_input_is_the_same_one_line(cli, tmp_path, monkeypatch, model, kw):
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    r = cli("profile", model, *_flags(kw))
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.profile(model, **kw)
    assert r.err == f"memwall: error: {e.value}\n"
    assert not any(tmp_path.iterdir())  # refused before anything is measured or saved


def test_library_phase_is_checked_like_the_cli_choice():
    with pytest.raises(MemwallError, match="unknown phase 'forward'"):
        memwall.profile("gpt2", phase="forward")


@pytest.mark.slow
def test_real_tiny_profile_through_the_library(configs, tmp_path, monkeypatch, one_thread):
    """Unstubbed: a real timing and calibration, reached from the library alone."""
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMWALL_CALIBRATION", "quick")
    res = memwall.profile(configs["gpt2"], seq_len=8, repeats=2, device="none", threads=1)
    d = res.to_dict()
    assert d["measured"]["runs"] >= 2 and d["predicted"]["latency"] > 0
    assert set(res.to_frame().columns) <= set(res.columns) and len(res.to_frame()) == len(d["ops"])
    assert res.extra["profile"].predicted is not None and res.notes[-1].startswith("environment")
