"""Output paths are checked before any work, the same way for every command that plots."""

from __future__ import annotations

import pytest

BAD = [
    ("{tmp}/no/such/folder/f.png", "does not exist"),
    ("/proc/f.png", "cannot write"),
    ("{tmp}/" + "x" * 300 + ".png", "longer than 255"),
]


@pytest.mark.parametrize("target, needle", BAD)
def test_analyze_plot_path_checked_first(cli, tmp_path, target, needle):
    r = cli("analyze", "gpt2", "--device", "h100-sxm", "--plot", target.format(tmp=tmp_path))
    r.assert_one_line_error(needle)


@pytest.mark.parametrize("target, needle", BAD)
def test_memory_plot_path_checked_first(cli, tmp_path, target, needle):
    cli("memory", "gpt2", "--plot", target.format(tmp=tmp_path)).assert_one_line_error(needle)


def test_analyze_plot_written_whole(cli, tmp_path):
    r = cli("analyze", "gpt2", "--device", "h100-sxm", "--plot", tmp_path / "r.svg")
    assert r.code == 0, r.err
    assert (tmp_path / "r.svg").read_text().lstrip().startswith("<?xml")
    assert [p.name for p in tmp_path.iterdir()] == ["r.svg"]
