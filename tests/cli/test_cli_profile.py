"""`memwall profile` end to end: bad input (one line, exit 2), JSON, quiet success, Ctrl-C."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_configs import GPT2_2, LLAMA_TINY  # noqa: E402

TINY_GPT2 = {**GPT2_2, "n_embd": 64, "n_head": 4, "vocab_size": 256, "n_positions": 64}


def _one_line_exit_2(r, *needles: str) -> None:
    r.assert_one_line_error(needles[0] if needles else "")
    line = r.err.strip()
    assert line.startswith("memwall: error:"), r.err
    for n in needles:
        assert n in line, line


def test_length_beyond_learned_positions_is_refused(cli):
    r = cli("profile", "gpt2", "--phase", "prefill", "--seq-len", "2048")
    _one_line_exit_2(r, "1024", "--extend-positions")
    r = cli("profile", "bert-base", "--seq-len", "513")
    _one_line_exit_2(r, "512")


@pytest.mark.parametrize("prec", ["fp16", "int4", "4/16/8", "fp64"])
def test_precision_the_cpu_cannot_run(cli, prec):
    _one_line_exit_2(cli("profile", "bert-base", "--precision", prec), "fp32, bf16, int8")


def test_model_too_large_to_allocate_is_refused_before_building(cli):
    _one_line_exit_2(cli("profile", "mixtral-8x7b", "--precision", "bf16"), "GiB")


@pytest.mark.parametrize("prec", ["int8", "int8-dynamic"])
def test_mixtral_int8_is_refused(cli, prec):
    _one_line_exit_2(cli("profile", "mixtral-8x7b", "--precision", prec), "experts")


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "llama3", "factor": 8.0},  # transformers needs more keys for llama3
        {"rope_type": "yarn", "factor": 2.0, "beta_fast": "x"},  # huggingface_hub's own error
    ],
)
def test_config_transformers_cannot_build(cli, tmp_path, rope):
    """A config memwall reads but transformers refuses: one line, never a traceback."""
    cfg = {**LLAMA_TINY, "rope_scaling": rope}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = cli("profile", str(path), "--seq-len", "8", "--repeats", "1", "--no-per-op")
    _one_line_exit_2(r, "transformers cannot build")


def test_config_memwall_refuses_before_transformers(cli, tmp_path):
    cfg = {**LLAMA_TINY, "rope_scaling": {"rope_type": "no-such-scaling", "factor": 2.0}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = cli("profile", str(path), "--seq-len", "8", "--repeats", "1", "--no-per-op")
    _one_line_exit_2(r, "rope")


def test_unknown_model_suggests(cli):
    _one_line_exit_2(cli("profile", "gtp2"), "gpt2")


def test_bad_repeats_refused_before_building(cli):
    _one_line_exit_2(cli("profile", "gpt2", "--repeats", "0"), "--repeats")
    _one_line_exit_2(cli("profile", "gpt2", "--warmup", "-1"), "--warmup")
    _one_line_exit_2(cli("profile", "gpt2", "--budget", "-1"), "--budget")
    _one_line_exit_2(cli("profile", "gpt2", "--budget", "nan"), "--budget")


@pytest.mark.slow
def test_cli_profile_json_and_quiet_success(cli_subprocess, tmp_path):
    """A successful run prints one JSON object and nothing from third parties on stderr
    (no transformers FutureWarning about `past_key_values`)."""
    cfg = tmp_path / "gpt2-2.json"
    cfg.write_text(json.dumps({**GPT2_2, "n_embd": 256, "n_head": 4, "vocab_size": 4096}))
    env = {"MEMWALL_DATA_DIR": str(tmp_path / "data"), "MEMWALL_CALIBRATION": "quick"}
    args = ["--phase", "generate", "--seq-len", "4", "--gen-len", "4", "--repeats", "2"]
    r = cli_subprocess(
        "profile", cfg, *args, "--precision", "int8", "--device", "none", "-f", "json", env=env
    )
    assert r.code == 0, r.err
    d = r.json
    assert d["workload"] == {"phase": "generate", "batch": 1, "seq_len": 4, "gen_len": 4}
    assert d["precision"] == "int8-dynamic"  # `int8` is the old spelling of the runnable one
    assert d["measured"]["runs"] == 2 + d["measured"]["added_runs"] >= 2
    assert d["measured"]["latency"] > 0
    assert d["predicted"]["latency"] > 0 and d["predicted"]["terms"]
    assert d["predicted"]["by_term"] and "by_term_method" in d["predicted"]
    assert d["tokens_per_s"] > 0 and d["interrupted"] is False
    assert {"torch", "transformers", "threads"} <= set(d["environment"])
    # issue 11: the measurement's own spread and the calibration's age, load and noise flag
    assert {"median", "q1", "q3", "min", "relative_iqr", "repeatability", "noisy"} <= set(
        d["measured"]
    )
    assert d["measured"]["relative_iqr"] >= 0 and isinstance(d["measured"]["noisy"], bool)
    c = d["calibration"]
    assert {"age_days", "load_average_1min", "others_busy_cores", "noisy", "max_spread"} <= set(c)
    assert c["age_days"] >= 0 and c["rounds"] >= 2 and isinstance(c["noisy"], bool)
    assert "Warning" not in r.err and "deprecated" not in r.err, r.err


@pytest.mark.slow
def test_ctrl_c_prints_the_runs_finished_then_exits_130(cli, tmp_path, monkeypatch):
    """Ctrl-C during the timed runs: the finished runs are printed with their count."""
    import memwall.measure.run as run_mod

    calls = []
    real_run = run_mod.Runner.run

    def run(self, on_step=None):
        calls.append(1)
        if len(calls) == 4:  # 1 warm-up, 2 timed runs, then Ctrl-C
            raise KeyboardInterrupt
        return real_run(self, on_step)

    monkeypatch.setattr(run_mod.Runner, "run", run)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_GPT2))
    env = {"MEMWALL_DATA_DIR": str(tmp_path / "data"), "MEMWALL_CALIBRATION": "quick"}
    r = cli(
        "profile",
        cfg,
        "--seq-len",
        "8",
        "--repeats",
        "5",
        "--device",
        "none",
        "-f",
        "json",
        env=env,
    )
    assert r.code == 130, r.err
    d = json.loads(r.out)
    assert d["interrupted"] is True and d["measured"]["runs"] == 2
    assert len(d["measured"]["all"]) == 2 and d["measured"]["latency"] > 0
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "2 of 5 timed runs" in lines[0], r.err


@pytest.mark.slow
def test_unwritable_data_directory_loses_no_calibration(cli, tmp_path):
    """The calibration is measured and used for this run, and the output says it was not
    saved (rather than a traceback after the work)."""
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_GPT2))
    env = {"MEMWALL_DATA_DIR": "/proc/memwall-cannot-write", "MEMWALL_CALIBRATION": "quick"}
    r = cli(
        "profile",
        cfg,
        "--seq-len",
        "8",
        "--repeats",
        "1",
        "--no-per-op",
        "--device",
        "none",
        "-f",
        "json",
        env=env,
    )
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["predicted"]["latency"] > 0 and d["predicted"]["terms"]
    # a noisy calibration (a busy machine) is never written; a good one says why it was not
    said = "not cached" if d["calibration"]["noisy"] else "calibration not saved"
    assert any(said in n for n in d["notes"]), d["notes"]
    assert d["calibration"]["saved"] is False
