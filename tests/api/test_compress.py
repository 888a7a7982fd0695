"""`memwall.api.compress(...)` is `memwall compress ...`: the same JSON, CSV, notes, figure and
refusals. The tiny model is trained once for the module (deterministic); where latency is
measured, the timing (`compress.run._time`) is stubbed with fixed seconds per method."""

from __future__ import annotations

import importlib
import json

import pytest

pytest.importorskip("torch")

import memwall.api  # noqa: E402
from memwall.errors import MemwallError  # noqa: E402

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

TINY = "stdlib-gpt-tiny"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("compress-cache")


@pytest.fixture
def env(cache_dir, monkeypatch):
    """The module's cache for the CLI and the library alike."""
    monkeypatch.setenv("MEMWALL_CACHE_DIR", str(cache_dir))
    return {"MEMWALL_CACHE_DIR": str(cache_dir)}


@pytest.fixture
def timed(monkeypatch):
    """Latency stubbed: fp32 1 ms a step, each other model faster by its stored bytes."""
    run = importlib.import_module("memwall.compress.run")  # `compress.run` is the function
    from memwall.compress.evaluate import real_bytes

    monkeypatch.setattr(run, "_time", lambda model, wl: 1e-9 * real_bytes(model)["total"])


def _args(kw: dict) -> list[str]:
    out: list[str] = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


CASES = [
    {"method": "int8"},
    {"method": "int4:32", "phase": "prefill", "context": 32},
    {"method": "bf16", "threads": 2},
]


@pytest.mark.parametrize("kw", CASES)
def test_json_csv_and_notes_equal_the_cli(cli, env, kw):
    r = cli("compress", TINY, *_args(kw), "--format", "json", env=env)
    assert r.code == 0, r.err
    res = memwall.api.compress(TINY, **kw)
    assert json.loads(r.out) == res.to_dict()
    assert res.command == "compress" and res["claims"] == [] and res["plot"] is None
    csv = cli("compress", TINY, *_args(kw), "--format", "csv", env=env)
    header, *lines = csv.out.splitlines()
    frame = res.to_frame()
    assert list(frame.columns) == header.split(",") and len(frame) == len(lines) == 2
    table = cli("compress", TINY, *_args(kw), env=env)
    assert table.code == 0 and res.title in table.out
    assert res.notes[0].split(";")[0] in table.out
    assert res.title in res._repr_html_()
    assert res.plotter is None


def test_measured_latency_equals_the_cli(cli, env, timed):
    kw = {"method": "int8", "measure": True}
    r = cli("compress", TINY, *_args(kw), "--format", "json", env=env)
    assert r.code == 0, r.err
    res = memwall.api.compress(TINY, **kw)
    assert json.loads(r.out) == res.to_dict()
    assert [row["speedup_measured"] > 0 for row in res.rows] == [True, True]


def test_pareto_and_its_figure_equal_the_cli(cli, env, timed, tmp_path):
    plot = tmp_path / "pareto.png"
    r = cli("compress", TINY, "--pareto", "--plot", plot, "--format", "json", env=env)
    assert r.code == 0, r.err
    plot.unlink()
    res = memwall.api.compress(TINY, pareto=True, plot=plot)
    # the CLI fine-tuned the pruned variants and cached them; the library loads them: the same
    # numbers (bytes, perplexity to the last bit), only the provenance differs
    cold, warm = json.loads(r.out), res.to_dict()
    pruned = [row["method"] for row in cold["rows"] if row["method"].startswith("prune")]
    assert cold["from_cache"] == [] and warm["from_cache"] == pruned
    assert not_provenance(cold) == not_provenance(warm) and res["plot"] == str(plot)
    assert plot.stat().st_size > 1000
    assert {c["id"] for c in res["claims"]} >= {"int4-footprint", "unstructured-80"}
    assert res.plot(tmp_path / "again.svg").stat().st_size > 1000
    assert len(res.to_frame()) == len(res["rows"]) and "pareto" in res.to_frame()


def not_provenance(payload: dict) -> dict:
    """The payload without what says where the pruned variants came from."""
    notes = [n for n in payload["notes"] if not n.startswith("recovery fine-tunes")]
    return {**{k: v for k, v in payload.items() if k != "from_cache"}, "notes": notes}


BAD = [
    {"method": "prune-structured:1.5"},
    {"method": "prun-structured:0.3"},
    {"method": "int2"},
    {"method": "int4:128"},
    {"method": "int4:100"},
    {},
    {"method": "int8", "pareto": True},
    {"method": "int8", "plot": "x.png"},
    {"pareto": True, "plot": "{tmp}/f.txt"},
    {"method": "int8", "context": 0},
    {"method": "int8", "threads": 0},
]


@pytest.mark.parametrize("bad", BAD)
def test_bad_input_is_the_same_one_line(cli, tmp_path, monkeypatch, bad):
    monkeypatch.setenv("MEMWALL_CACHE_DIR", str(tmp_path))
    kw = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in bad.items()}
    r = cli("compress", TINY, *_args(kw))
    r.assert_one_line_error()
    with pytest.raises(MemwallError) as e:
        memwall.api.compress(TINY, **kw)
    assert r.err == f"memwall: error: {e.value}\n"
    assert not any(tmp_path.iterdir())  # nothing trained or written before the check


def test_unknown_model_and_too_big_for_memory_are_the_same_line(cli, monkeypatch):
    fp = importlib.import_module("memwall.compress.footprint")
    monkeypatch.setattr(fp, "available_bytes", lambda: 1e8)
    for model in ("gpt3", "gpt2"):
        r = cli("compress", model, "--method", "int8")
        r.assert_one_line_error()
        with pytest.raises(MemwallError) as e:
            memwall.api.compress(model, method="int8")
        assert r.err == f"memwall: error: {e.value}\n"


def test_library_phase_is_checked_like_the_cli_choice():
    with pytest.raises(MemwallError, match="decode or prefill"):
        memwall.api.compress(TINY, method="int8", phase="generate")
