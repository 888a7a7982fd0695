"""`memwall parallel`: JSON contract, table output, bad input as one line."""

from __future__ import annotations

import pytest

from memwall.parallel import links_for

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow


def test_infer_tp8_decode_step_with_all_reduce_share(cli):
    r = cli("parallel", "llama-3-70b", "--mode", "infer", "--devices", "8", "--tp", "8",
            "--device", "h100-sxm", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    d = r.json
    assert d["step_time"] > 0 and d["phase"] == "decode"
    assert 0 < d["all_reduce_share"] < 1
    assert d["decode_step_time"] == d["step_time"] < d["prefill_time"]
    assert {"weights", "kv_cache", "peak"} <= set(d["per_device"])
    c = d["collectives"][0]
    assert {c["kind"], c["group_size"]} == {"all_reduce", 8} and c["bytes"] > 0 and c["time"] > 0
    assert 0 < d["mfu"] < 1


def test_train_search_ranks_and_explains(cli):
    r = cli("parallel", "gpt2-xl", "--mode", "train", "--devices", "16",
            "--device", "a100-sxm-80gb", "--batch", "64", "--seq-len", "1024", "--search",
            "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    d = r.json
    ranked = d["search"]["ranked"]
    assert len(ranked) >= 2
    assert [x["step_time"] for x in ranked] == sorted(x["step_time"] for x in ranked)
    assert d["step_time"] == ranked[0]["step_time"]
    assert ranked[0]["layout"]["label"] in d["search"]["explanation"]
    assert d["layout"]["tp"] * d["layout"]["pp"] * d["layout"]["dp"] == 16


def test_table_and_csv(cli):
    r = cli("parallel", "gpt2", "--devices", "4", "--pp", "2", "--batch", "8", "--seq-len", "256")
    assert r.code == 0, r.err
    assert "pipeline" not in r.err and "bubble" in r.out and "send_recv" in r.out
    c = cli("parallel", "gpt2", "--devices", "2", "--batch", "4", "--seq-len", "128",
            "--format", "csv")  # fmt: skip
    assert c.code == 0 and c.out.splitlines()[0].startswith("kind,group,group_size,bytes")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--devices", "8", "--tp", "2", "--pp", "2", "--dp", "3"], "must equal the device count"),
        (["--devices", "8", "--tp", "3"], "does not divide --devices"),
        (["--devices", "16", "--tp", "16"], "key/value heads"),
        (["--devices", "64", "--pp", "64"], "exceed the 32 layers"),
        (["--devices", "4", "--batch", "6"], "not divisible by micro-batch x dp"),
        (["--devices", "0"], "devices must be"),
        (["--devices", "2", "--device", "h100-sxmm"], "did you mean"),
        (["--devices", "2", "--mode", "infer", "--zero", "1"], "--mode train only"),
    ],
)
def test_bad_input_one_line(cli, args, needle):
    cli("parallel", "llama-3-8b", "--seq-len", "128", *args).assert_one_line_error(needle)


def test_measure_collectives_world2_saved_for_local(cli, tmp_path, monkeypatch):
    env = {"MEMWALL_DATA_DIR": str(tmp_path)}
    r = cli("measure", "--collectives", "--world", "2", "--quick", "--format", "json", env=env)
    assert r.code == 0, r.err
    d = r.json
    assert d["world"] == 2 and d["backend"] == "gloo" and d["complete"]
    kinds = {x["kind"] for x in d["results"]}
    assert kinds | set(d["skipped"]) == {
        "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"
    }  # fmt: skip
    for x in d["results"]:
        factor = 1.0 if x["kind"] in ("all_reduce", "send_recv") else 0.5  # n = 2
        assert x["busbw"] == pytest.approx(x["algbw"] * factor)
        assert x["time"] > 0
    assert d["fit"]["all_reduce"]["alpha"] >= 0 and d["fit"]["all_reduce"]["beta"] > 0
    assert (tmp_path / "collectives" / "local.json").is_file()
    monkeypatch.setenv("MEMWALL_DATA_DIR", str(tmp_path))
    links = links_for("local")
    assert links.origin == "measured" and links.fitted["all_reduce"][1] > 0


def test_measure_collectives_bad_world(cli):
    cli("measure", "--collectives", "--world", "1").assert_one_line_error("--world must be")


def test_learned_positions_cap_the_length(cli):
    r = cli("parallel", "gpt2", "--mode", "infer", "--devices", "2", "--format", "json")
    assert r.code == 0, r.err
    assert r.json["seq_len"] == 1023  # 1024 positions, one for the decoded token
    bad = cli("parallel", "bert-base", "--mode", "infer", "--devices", "2", "--seq-len", "1024")
    bad.assert_one_line_error("512 learned positions")


def test_alpha_beta_fit_resolves_a_slope_or_says_beta_is_a_bound():
    from memwall.measure.collectives import fit_alpha_beta

    rows = [{"bus_bytes": b, "time": 1e-5 + b / 2e9} for b in (1e3, 1e5, 1e6)]
    f = fit_alpha_beta(rows)
    assert f["beta_resolved"] and abs(f["beta"] / 2e9 - 1) < 1e-6 and abs(f["alpha"] - 1e-5) < 1e-9
    # a loaded machine: the larger message came back faster, so no positive slope exists
    noisy = [{"bus_bytes": 1e3, "time": 3e-5}, {"bus_bytes": 1e5, "time": 2e-5}]
    g = fit_alpha_beta(noisy)
    assert g["beta_resolved"] is False and g["beta"] == 1e5 / 2e-5 and g["alpha"] >= 0
