"""Hostile input through the CLI, the library side of it: what-if factors and saved device
values at the float limits, `compress` on a machine too small, torchvision models at image
sizes they cannot take, a user's entry point that raises or exits, trend CSVs near the float
limits. Each is one line on stderr and exit 2 (an interrupt: 130), never a traceback."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

# ---------------------------------------------------------------- what-if and saved devices


@pytest.mark.parametrize("factor", ["5e-324", "1e7"])
def test_what_if_factor_at_the_float_limits_is_one_line(cli, factor):
    r = cli("analyze", "gpt2", "--device", f"h100-sxm@flops={factor}")
    r.assert_one_line_error("from 1e-06 to 1e+06")


def test_saved_device_with_an_absurd_bandwidth_is_malformed(cli, tmp_path):
    p = tmp_path / "devices" / "tiny.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"dram_bandwidth": 1e-300, "peak_flops": {"fp32": 150e9}}))
    env = {"MEMWALL_DATA_DIR": str(tmp_path)}
    r = cli("devices", "--format", "json", env=env)
    assert r.code == 0, r.err
    assert "tiny" not in {d["name"] for d in r.json["devices"]}  # no inf ridge listed
    assert "malformed" in r.err and "dram_bandwidth" in r.err and "Traceback" not in r.err
    cli("analyze", "gpt2", "--device", "tiny", env=env).assert_one_line_error(
        "dram_bandwidth: must be from 1e+06 to 1e+16 bytes/s"
    )


# ---------------------------------------------------------------- compress memory check


def test_compress_too_big_for_memory_is_one_line(cli, monkeypatch):
    pytest.importorskip("torch")
    fp = importlib.import_module("memwall.compress.footprint")
    monkeypatch.setattr(fp, "available_bytes", lambda: 1e8)
    r = cli("compress", "gpt2", "--method", "int8")
    r.assert_one_line_error("needs about")
    assert "1e+08 bytes) available" in r.err


# ---------------------------------------------------------------- torchvision image sizes


@pytest.mark.parametrize(
    "model,size,needle",
    [
        ("vit_b_16", 100, "multiple of its patch size 16"),
        ("inception_v3", 32, "minimum of 75x75"),
        ("alexnet", 16, "torchvision:alexnet at 16x16 images raised RuntimeError"),
    ],
)
def test_torchvision_image_size_it_cannot_take_is_one_line(cli, model, size, needle):
    pytest.importorskip("torch")
    r = cli("analyze", f"torchvision:{model}", "--image-size", size)
    r.assert_one_line_error(needle)


# ---------------------------------------------------------------- entry-point errors

ENTRY = textwrap.dedent(
    """
    import sys

    import torch
    from torch import nn

    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("bad in forward")

    class Deep(nn.Module):
        def forward(self, x):
            return self.forward(x + 1)

    def value():
        raise ValueError("bad")

    def recursion():
        return recursion()

    def memory():
        raise MemoryError()

    def typeerr(batch):
        return batch + "x"

    def fwd(device="cpu"):
        with torch.device(device):
            return Bad(), torch.zeros(1, 4)

    def deep(device="cpu"):
        with torch.device(device):
            return Deep(), torch.zeros(1, 4)

    def exit3():
        sys.exit(3)

    def exit0():
        sys.exit(0)

    def interrupt():
        raise KeyboardInterrupt
    """
)


@pytest.fixture
def entry_dir(tmp_path, monkeypatch):
    (tmp_path / "hl_cli_entry.py").write_text(ENTRY)
    (tmp_path / "hl_cli_syntax.py").write_text("def build(:\n    pass\n")
    (tmp_path / "hl_cli_import.py").write_text("raise ValueError('bad at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    "target,needle",
    [
        ("hl_cli_entry:value", "hl_cli_entry:value raised ValueError: bad"),
        ("hl_cli_entry:recursion", "hl_cli_entry:recursion raised RecursionError"),
        ("hl_cli_entry:memory", "hl_cli_entry:memory raised MemoryError"),
        ("hl_cli_entry:typeerr", "hl_cli_entry:typeerr raised TypeError"),
        ("hl_cli_entry:fwd", "hl_cli_entry:fwd's module forward raised RuntimeError: bad in"),
        ("hl_cli_entry:deep", "hl_cli_entry:deep's module forward raised RecursionError"),
        ("hl_cli_syntax:build", "hl_cli_syntax:build (importing hl_cli_syntax) raised SyntaxError"),
        ("hl_cli_import:build", "(importing hl_cli_import) raised ValueError: bad at import"),
    ],
)
def test_entry_point_error_is_one_line_naming_the_code(cli, entry_dir, target, needle):
    pytest.importorskip("torch")
    cli("analyze", target, "--engine", "trace").assert_one_line_error(needle)


def test_entry_point_error_in_memory_train_is_one_line(cli, entry_dir):
    pytest.importorskip("torch")
    r = cli("memory", "hl_cli_entry:fwd", "--mode", "train")
    r.assert_one_line_error("hl_cli_entry:fwd's module forward raised RuntimeError")


def _memwall(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`memwall ARGS` in a fresh interpreter with no stdin and tmp_path importable."""
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "memwall", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.mark.parametrize(
    "target,code,needle",
    [
        ("hl_cli_entry:exit3", 2, "hl_cli_entry:exit3 called sys.exit(3) instead of returning"),
        ("hl_cli_entry:exit0", 2, "hl_cli_entry:exit0 called sys.exit(0) instead of returning"),
        ("builtins:input", 2, "builtins:input raised EOFError"),
        ("hl_cli_entry:interrupt", 130, "interrupted"),
    ],
)
def test_entry_point_exit_stdin_and_interrupt_in_a_fresh_process(entry_dir, target, code, needle):
    pytest.importorskip("torch")
    p = _memwall(entry_dir, "analyze", target, "--engine", "trace")
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert p.stdout == ""


# ---------------------------------------------------------------- trend CSVs


@pytest.mark.parametrize(
    "text,needle",
    [
        ("date,value\n2000,1e308\n2001,1e307\n2002,1e306\n", "data row 1 is out of range"),
        ("date,value\n2000,1\n2001,1e-320\n2002,3\n", "data row 2 is out of range"),
        ("date,value\n2000,1\n2001,2\n2002,1e400\n", "data row 3 is not finite"),
        ("date,value\n2000-01-01,1e-90\n2000-01-02,1\n2000-01-03,1e90\n", "up to 100000x a year"),
    ],
)
def test_trend_csv_near_the_float_limits_is_one_line(cli, tmp_path, text, needle):
    p = tmp_path / "mine.csv"
    p.write_text(text)
    cli("trends", "--dataset", p, "--format", "json").assert_one_line_error(needle)


@pytest.mark.parametrize("command", ["analyze", "memory"])
def test_entry_point_refuses_a_typed_size_it_does_not_declare(cli, entry_dir, command):
    """`fwd` declares only `device`: a typed --seq-len or --batch would be silently dropped."""
    pytest.importorskip("torch")
    for flag in ("--seq-len", "--batch"):
        r = cli(command, "hl_cli_entry:fwd", flag, "64")
        r.assert_one_line_error(f"{flag} does not apply here: entry point hl_cli_entry:fwd")
