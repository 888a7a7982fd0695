"""`memwall casestudy` end to end: output paths checked first, rows never lost, Ctrl-C."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_configs import CASESTUDY_MODELS  # noqa: E402

TINY = {k: CASESTUDY_MODELS[k] for k in ("bert-base", "gpt2")}


def _tiny_args(tmp_path, *extra: str) -> list[str]:
    paths = []
    for name, cfg in TINY.items():
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(cfg))
        paths.append(str(p))
    return [
        "casestudy",
        "--models",
        ",".join(paths),
        "--lengths",
        "8,16",
        "--precisions",
        "fp32",
        "--repeats",
        "1",
        "--device",
        "none",
        *extra,
    ]


@pytest.fixture
def quick_env(tmp_path):
    return {"MEMWALL_DATA_DIR": str(tmp_path / "data"), "MEMWALL_CALIBRATION": "quick"}


@pytest.mark.parametrize(
    "target, needle",
    [
        ("{tmp}/no/such/folder/cs.png", "does not exist"),
        ("/proc/cs.png", "cannot write"),
        ("{tmp}/" + "x" * 300 + ".png", "longer than 255"),
        ("{tmp}/cs.jpg", ".png or .svg"),
        ("{tmp}", "folder"),
    ],
)
def test_bad_plot_path_refused_before_any_work(cli, tmp_path, quick_env, target, needle):
    r = cli(*_tiny_args(tmp_path, "--plot", target.format(tmp=tmp_path)), env=quick_env)
    r.assert_one_line_error(needle)
    assert not (tmp_path / "data").exists()  # nothing calibrated, nothing measured


@pytest.mark.slow
def test_plot_failing_at_the_end_keeps_the_rows(cli, tmp_path, quick_env, monkeypatch):
    """The figure's folder vanishes while the study runs: the rows are printed anyway."""
    import memwall.cli.casestudy as cs

    out_dir = tmp_path / "figs"
    out_dir.mkdir()

    def vanish(row):
        if out_dir.exists():
            out_dir.rmdir()

    monkeypatch.setattr(cs, "ON_ROW", vanish)
    r = cli(*_tiny_args(tmp_path, "--plot", out_dir / "cs.png", "-f", "json"), env=quick_env)
    assert r.code == 1, r.err
    d = json.loads(r.out)
    done = [row for row in d["rows"] if row["latency_fp32"] is not None]
    assert len(done) == 4  # every row measured and printed
    assert any("figure not written" in n for n in d["notes"])
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "figure not written" in lines[0] and "rows" in lines[0]


@pytest.mark.slow
def test_cli_interrupt_prints_finished_rows(cli, tmp_path, quick_env, monkeypatch):
    """Ctrl-C in `memwall casestudy` prints the rows already measured, then exits 130."""
    import memwall.cli.casestudy as cs

    calls = []

    def hook(row):
        calls.append(row)
        raise KeyboardInterrupt

    monkeypatch.setattr(cs, "ON_ROW", hook)
    r = cli(*_tiny_args(tmp_path, "--format", "json"), env=quick_env)
    assert r.code == 130, r.err
    out = json.loads(r.out)
    assert out["interrupted"] is True
    done = [row for row in out["rows"] if row["latency_fp32"] is not None]
    assert len(calls) == 1 and len(done) == 1
    assert done[0]["model"] == calls[0]["model"] and done[0]["length"] == calls[0]["length"]
