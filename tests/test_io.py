"""memwall.io: the one atomic write and the one output-path check everyone uses."""

from __future__ import annotations

import json
import os

import pytest

from memwall.errors import MemwallError
from memwall.io import check_output_dir, check_output_path, write_atomic_with, write_json


def test_write_json_is_whole_or_nothing(tmp_path):
    target = tmp_path / "rec.json"
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # an ordinary file, not 0600

    def half_then_fail(f):
        f.write(b'{"a": 2, "tru')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic_with(target, half_then_fail)
    assert json.loads(target.read_text()) == {"a": 1}  # the old file, intact
    assert [p.name for p in tmp_path.iterdir()] == ["rec.json"]  # no temp file left


def test_write_json_creates_folders_only_when_asked(tmp_path):
    with pytest.raises(OSError):
        write_json(tmp_path / "a" / "b.json", [])
    assert write_json(tmp_path / "a" / "b.json", [], mkdir=True).exists()


@pytest.mark.parametrize(
    "name, needle",
    [
        ("missing/x.png", "does not exist"),
        ("x" * 300 + ".png", "longer than 255"),
        ("x.jpg", ".png or .svg"),
        ("", "folder"),  # the folder itself
        ("a.png/b.png", "not a folder"),
    ],
)
def test_check_output_path_refuses(tmp_path, name, needle):
    (tmp_path / "a.png").write_text("file, not a folder")
    with pytest.raises(MemwallError, match=needle):
        check_output_path(tmp_path / name if name else tmp_path, ["png", "svg"], "--plot")


def test_check_output_path_refuses_unwritable_places():
    with pytest.raises(MemwallError, match="cannot write"):
        check_output_path("/proc/x.png", ["png"], "--plot")
    with pytest.raises(MemwallError, match="cannot"):
        check_output_dir("/proc/memwall-nope", "--out")


def test_check_output_path_accepts_and_leaves_nothing(tmp_path):
    p = check_output_path(tmp_path / "fig.SVG", ["png", "svg"])
    assert p.name == "fig.SVG" and list(tmp_path.iterdir()) == []
    d = check_output_dir(tmp_path / "new" / "dir")
    assert d.is_dir() and list(d.iterdir()) == []
    with pytest.raises(MemwallError, match="is a file"):
        check_output_dir(tmp_path / "f.txt" if (tmp_path / "f.txt").write_text("x") else tmp_path)
