"""Hostile input through the CLI: zero degrees, flags that do not apply, absurd MODEL strings,
many malformed saved files, bare `memwall`, CSV output with predictions, byte-order marks.
Each is one line on stderr and exit 2, or the right answer, never a silently wrong one."""

from __future__ import annotations

import csv
import io
import json

import pytest

from memwall.errors import MemwallError
from memwall.parallel import complete_layout
from memwall.spec import preset_config

LONG = "a" * 5000


# ---------------------------------------------------------------- layout degrees


@pytest.mark.parametrize(
    "flag,value", [("--tp", 0), ("--pp", 0), ("--dp", 0), ("--ep", 0), ("--tp", -2), ("--pp", -1)]
)
def test_zero_or_negative_degree_is_refused(cli, flag, value):
    r = cli("parallel", "llama-3-8b", "--mode", "train", "--device", "h100-sxm",
            "--devices", "8", flag, value)  # fmt: skip
    r.assert_one_line_error(f"{flag[2:]} must be an integer between 1")


def test_complete_layout_refuses_zero_and_defaults_none():
    with pytest.raises(MemwallError, match="tp must be"):
        complete_layout(8, tp=0)
    with pytest.raises(MemwallError, match="pp must be"):
        complete_layout(8, pp=0)
    assert complete_layout(8).label == "tp1 pp1 dp8"


# ---------------------------------------------------------------- flags that do not apply


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--mode", "infer", "--no-overlap"], "--no-overlap does not apply"),
        (["--mode", "infer", "--zero", "0"], "--zero does not apply"),
        (["--mode", "infer", "--checkpointing", "none"], "--mode train only"),
        (["--search", "--tp", "2"], "--search chooses the layout"),
        (["--search", "--zero", "1"], "--zero does not apply"),
        (["--search", "--mode", "infer", "--micro-batch", "2"], "--micro-batch does not apply"),
    ],
)
def test_parallel_flag_that_does_not_apply_is_refused(cli, args, needle):
    cli("parallel", "llama-3-8b", "--devices", "8", *args).assert_one_line_error(needle)


def test_parallel_train_flags_still_apply_to_train(cli):
    r = cli("parallel", "gpt2", "--devices", "2", "--batch", "4", "--seq-len", "128",
            "--no-overlap", "--zero", "1", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    assert "no overlap of data-parallel sync" in r.json["assumptions"]
    assert r.json["layout"]["zero"] == 1


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--seq-len", "4096"], "--seq-len does not apply"),
        (["--seq-len", "128"], "--seq-len does not apply"),  # typed, even at the default
        (["--gen-len", "5"], "--gen-len does not apply"),
        (["--group-size", "64"], "--group-size does not apply"),
        (["--device", "h100-sxm", "--launch", "eager"], "--launch does not apply"),
        (["--engine", "closed"], "--engine closed needs a config"),
    ],
)
def test_analyze_torchvision_refuses_flags_it_would_ignore(cli, args, needle):
    cli("analyze", "torchvision:resnet50", *args).assert_one_line_error(needle)


def test_memory_torchvision_refuses_seq_len(cli):
    r = cli("memory", "torchvision:resnet18", "--seq-len", "4096")
    r.assert_one_line_error("--seq-len does not apply here: a torchvision model takes images")


def test_memory_of_a_vit_counts_its_image_tokens(cli):
    assert (
        cli("memory", "vit-base-patch16-224", "--format", "json").json["workload"]["seq_len"] == 197
    )
    r = cli("memory", "vit-base-patch16-224", "--image-size", "384", "--format", "json")
    assert r.json["workload"]["seq_len"] == 577  # (384 / 16)^2 patches + the class token
    cli("memory", "vit-base-patch16-224", "--seq-len", "100").assert_one_line_error("--image-size")


def test_analyze_entry_point_refuses_engine_closed(cli):
    # refused before the entry point is imported: nothing of the user's code runs
    r = cli("analyze", "memwall_no_such_mod:build", "--engine", "closed")
    r.assert_one_line_error("use --engine trace or leave --engine out")


def test_analyze_torchvision_defaults_and_engine_trace_still_work(cli):
    r = cli("analyze", "torchvision:resnet18", "--engine", "trace", "--format", "json")
    assert r.code == 0, r.err
    assert r.json["engine"] == "trace" and r.json["totals"]["flops"] > 0


def test_measure_world_without_collectives_is_refused(cli, tmp_path):
    env = {"MEMWALL_DATA_DIR": str(tmp_path)}
    cli("measure", "--world", "4", env=env).assert_one_line_error("--world does not apply")
    cli("measure", "--quick", "--world", "2", env=env).assert_one_line_error("--collectives")
    r = cli("measure", "--collectives", "--save", "mine", env=env)
    r.assert_one_line_error("--save does not apply")
    assert not (tmp_path / "devices").exists()  # nothing was measured or saved


# ---------------------------------------------------------------- absurd MODEL strings


@pytest.mark.parametrize("command", ["analyze", "memory", "parallel"])
@pytest.mark.parametrize(
    "model,needle",
    [
        (LONG, "is too long (5,000 characters)"),
        (LONG + ".json", "cannot read config file"),
        ("x:" + LONG, "too long"),
        (LONG + ":y", "too long"),
        ("torchvision:" + LONG, "too long"),
        ("b" * 252, "unknown model"),  # fits a file name; the preset file name would not
    ],
)
def test_model_string_too_long_is_one_line(cli, command, model, needle):
    r = cli(command, model)
    r.assert_one_line_error(needle)
    assert len(r.err) < 12_000


def test_model_path_that_cannot_be_looked_up_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to("loop")
    cli("analyze", "loop").assert_one_line_error("symbolic links")


# ---------------------------------------------------------------- many malformed saved files


def _bad_saved_files(tmp_path, n: int) -> dict[str, str]:
    d = tmp_path / "devices"
    d.mkdir(parents=True)
    for i in range(n):
        (d / f"bad{i:02d}.json").write_text('{"dram_bandwidth": "lots"}')
    return {"MEMWALL_DATA_DIR": str(tmp_path)}


def test_refusal_is_not_preceded_by_a_warning_per_bad_file(cli, tmp_path):
    env = _bad_saved_files(tmp_path, 22)
    cli("devices", "--since", "3000", env=env).assert_one_line_error("--since must be a year")


def test_many_bad_saved_files_are_one_warning_line(cli, tmp_path):
    env = _bad_saved_files(tmp_path, 22)
    r = cli("devices", "--name", "h100", "--format", "csv", env=env)
    assert r.code == 0, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert "skipped 22 malformed saved device files" in lines[0]
    assert "bad00.json" in lines[0] and "dram_bandwidth" in lines[0]
    assert "h100" in r.out


def test_one_bad_saved_file_is_one_warning_line(cli, tmp_path):
    env = _bad_saved_files(tmp_path, 1)
    r = cli("devices", "--name", "h100", env=env)
    assert r.code == 0, r.err
    assert len(r.err.strip().splitlines()) == 1 and "skipping" in r.err


# ---------------------------------------------------------------- bare memwall


def test_bare_memwall_prints_help_and_exits_0(cli):
    r = cli()
    assert r.code == 0, r.err
    assert r.err == ""
    assert "Usage" in r.out and "analyze" in r.out


# ---------------------------------------------------------------- CSV with predictions


def test_analyze_csv_carries_the_predicted_times(cli):
    c = cli("analyze", "gpt2", "--device", "h100-sxm", "--format", "csv")
    assert c.code == 0, c.err
    rows = list(csv.DictReader(io.StringIO(c.out)))
    assert {"time", "time_low", "time_high", "bound"} <= set(rows[0])
    j = cli("analyze", "gpt2", "--device", "h100-sxm", "--format", "json").json
    total = j["prediction"]["totals"]
    assert len(rows) == len(j["ops"])
    for key in ("time", "time_low", "time_high"):
        assert sum(float(r[key]) for r in rows) == pytest.approx(total[key])
    plain = cli("analyze", "gpt2", "--format", "csv")
    assert "time" not in plain.out.splitlines()[0].split(",")


def test_analyze_module_csv_carries_the_predicted_times(cli):
    c = cli("analyze", "torchvision:resnet18", "--device", "h100-sxm", "--format", "csv")
    assert c.code == 0, c.err
    rows = list(csv.DictReader(io.StringIO(c.out)))
    j = cli("analyze", "torchvision:resnet18", "--device", "h100-sxm", "--format", "json").json
    assert sum(float(r["time"]) for r in rows) == pytest.approx(j["prediction"]["totals"]["time"])


# ---------------------------------------------------------------- byte-order marks


def test_trends_csv_with_a_byte_order_mark_is_read(cli, tmp_path):
    text = "date,flops\n2016,1e12\n2018,4e12\n2020,1.6e13\n"
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_text(text, encoding="utf-8")
    bom.write_text(text, encoding="utf-8-sig")
    a = cli("trends", "--dataset", plain, "--format", "json")
    b = cli("trends", "--dataset", bom, "--format", "json")
    assert a.code == 0 and b.code == 0, b.err
    assert [f["series"] for f in b.json["fits"]] == ["flops"]
    assert b.json["fits"][0]["growth_per_2yr"] == pytest.approx(a.json["fits"][0]["growth_per_2yr"])


def test_config_json_with_a_byte_order_mark_is_read(cli, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(preset_config("gpt2")), encoding="utf-8-sig")
    r = cli("analyze", p, "--format", "json")
    assert r.code == 0, r.err
    assert r.json["totals"] == cli("analyze", "gpt2", "--format", "json").json["totals"]
